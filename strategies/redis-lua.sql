-- redis-lua: one Lua script checks the Redis counter and decrements it, then
-- the order goes to Postgres. Redis runs a script as one atomic step, so the
-- check and the decrement cannot interleave with another buyer's: a unit is
-- granted at most once, and a refused buyer changes nothing (no compensation
-- needed, unlike redis-decr). cache_drift stays 0.
-- Safe as long as the order insert does not fail after the decrement.
-- Cost: one Redis round trip (the script is sent each time; EVALSHA would
-- send only its hash), no row lock held while thinking.
\redis EVAL 'local s = tonumber(redis.call(''GET'', KEYS[1])) if s == nil or s < tonumber(ARGV[1]) then return -1 end return redis.call(''DECRBY'', KEYS[1], ARGV[1])' 1 stock:{:product} :qty \gset left
\if :left < 0
  \sold_out
\endif
\sleep :think ms
BEGIN;
UPDATE products SET stock = stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
