-- Takes the units with INCRBY of a negative amount (the same atomic step as
-- DECRBY) and gives them back when the counter went below zero: "FOR UPDATE"
-- appears nowhere, and the database decrement has no guard of its own.
\set take 0 - :qty
\redis INCRBY stock:{:product} :take \gset left
\if :left < 0
  \redis INCRBY stock:{:product} :qty
  \sold_out
\endif
\sleep :think ms
BEGIN;
UPDATE products SET stock = stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
