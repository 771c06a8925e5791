-- serializable: the naive purchase, unchanged, at the SERIALIZABLE isolation
-- level. Safe: PostgreSQL aborts any transaction whose outcome would differ
-- from some serial order (SQLSTATE 40001), and the purchase is retried.
-- Cost: no locks to wait on, but under contention most tries abort and
-- retry, and buyers give up after --max-tries.
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT stock FROM products WHERE id = :product \gset
\if :stock < :qty
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
UPDATE products SET stock = :stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
