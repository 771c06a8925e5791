-- redis-decr: take the units from a Redis counter with DECRBY, then write
-- the order to Postgres. DECRBY is one atomic command, so no two buyers can
-- take the same unit; a negative reply gives the units back (INCRBY) and
-- ends sold out. The database only records what Redis granted (a relative
-- decrement and the order), so the two agree and cache_drift stays 0.
-- Safe as long as the order insert does not fail after the decrement (then
-- the unit is gone from Redis but never sold: cache drift, not oversell).
-- Cost: one Redis round trip before a short transaction, no row lock held
-- while thinking.
\redis DECRBY stock:{:product} :qty \gset left
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
