-- Reads the Redis counter, checks it, and only then takes the units with an
-- atomic DECRBY whose reply nobody looks at: the check is on a stale read,
-- the atomic step comes too late to gate anything.
\redis GET stock:{:product} \gset stock
\if :stock < :qty
  \sold_out
\endif
\sleep :think ms
\redis DECRBY stock:{:product} :qty
BEGIN;
UPDATE products SET stock = stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
