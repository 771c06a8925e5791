-- redis-lock: a Redis lock in front of the naive SQL body. Take the lock with
-- SET lock:{product} <token> NX PX 50 (a 50 ms TTL, so a crashed holder
-- cannot block the product for ever); while another buyer holds it, back off
-- and \retry. Then read, think and write back like naive, and release the
-- lock only if it is still ours (a Lua script compares the token, the
-- attempt id, before DEL).
-- Safe only while the holder finishes within the TTL: with think time under
-- 50 ms one buyer at a time runs the body; with more, the lock expires
-- mid-body, a second buyer takes it and both write back stale stock
-- (oversold). The TTL trades liveness against safety; it never fences a
-- holder that is still running.
-- Cost: buyers run one at a time per product, each retry a Redis round trip;
-- with many buyers give it room (--max-tries 0 retries without limit).
\redis SET lock:{:product} :attempt NX PX 50 \gset got
\if is_null(:got)
  \sleep random(5, 10) * least(:try, 10) ms
  \retry
\endif
BEGIN;
SELECT stock FROM products WHERE id = :product \gset
\if :stock < :qty
  ROLLBACK;
  \redis EVAL 'if redis.call(''GET'', KEYS[1]) == ARGV[1] then return redis.call(''DEL'', KEYS[1]) end return 0' 1 lock:{:product} :attempt
  \sold_out
\endif
\sleep :think ms
UPDATE products SET stock = :stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
\redis EVAL 'if redis.call(''GET'', KEYS[1]) == ARGV[1] then return redis.call(''DEL'', KEYS[1]) end return 0' 1 lock:{:product} :attempt
