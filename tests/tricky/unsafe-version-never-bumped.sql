-- A version check whose version is never incremented: every buyer's check passes.
BEGIN;
SELECT stock, version FROM products WHERE id = :product \gset
\if :stock < :qty
  ROLLBACK;
  \sold_out
\endif
UPDATE products SET stock = :stock - :qty WHERE id = :product AND version = :version;
\if :rows = 0
  ROLLBACK;
  \retry
\endif
INSERT INTO orders (product_id, buyer_id, attempt_id, qty) VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
