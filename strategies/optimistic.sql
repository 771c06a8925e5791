-- optimistic: read the stock and the row's version without locking, think,
-- then write only if the version is still the one read (and bump it); if
-- another buyer got there first, no row is written and the purchase retries.
-- Safe: a write from a stale read never lands. Cost: no lock held while
-- thinking, but under contention most tries lose the race and retry, so
-- hot products burn retries and some buyers give up after --max-tries.
SELECT stock, version FROM products WHERE id = :product \gset
\if :stock < :qty
  \sold_out
\endif
\sleep :think ms
WITH sold AS (
  UPDATE products SET stock = :stock - :qty, version = version + 1
  WHERE id = :product AND version = :version
  RETURNING id
)
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
SELECT id, :buyer, :attempt, :qty FROM sold;
\if :rows = 0
  \retry
\endif
