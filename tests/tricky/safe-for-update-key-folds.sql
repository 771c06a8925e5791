-- The row locked FOR UPDATE is picked by :product + :buyer - :buyer: the
-- product's row for every buyer.
BEGIN;
SELECT stock FROM products WHERE id = :product + :buyer - :buyer FOR UPDATE \gset
\if :stock < :qty
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
UPDATE products SET stock = :stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
