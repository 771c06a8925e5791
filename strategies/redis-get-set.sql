-- redis-get-set: GET the Redis counter, think, SET it to what was read minus
-- the quantity, then write the order. Redis runs each command atomically,
-- but a GET and a later SET are two commands: every buyer that reads before
-- the first SET sees the same stock and writes back its own stale number,
-- exactly like naive SQL. Lost updates in Redis, oversold in Postgres.
-- Cost: two Redis round trips, no locks, and wrong.
\redis GET stock:{:product} \gset stock
\if :stock < :qty
  \sold_out
\endif
\sleep :think ms
\set left :stock - :qty
\redis SET stock:{:product} :left
BEGIN;
UPDATE products SET stock = stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
