-- SET (not LOCAL) transaction_isolation inside the block sets this
-- transaction's level: REPEATABLE READ, and the write of the row it read
-- fails for the later writer (40001, retried).
BEGIN;
SET transaction_isolation TO 'repeatable read';
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
