-- repeatable-read: the naive purchase, unchanged, at REPEATABLE READ. Safe
-- here: a transaction that tries to update a row changed since its snapshot
-- fails with 40001 ("could not serialize access due to concurrent update")
-- and the purchase is retried. It would not catch every anomaly (write
-- skew across rows), but this purchase writes the row it read.
-- Cost: like serializable: aborts and retries under contention.
BEGIN ISOLATION LEVEL REPEATABLE READ;
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
