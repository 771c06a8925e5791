-- Writes back only if the stock is still what was read; retries otherwise.
SELECT stock FROM products WHERE id = :product \gset
\if :stock < :qty
  \sold_out
\endif
\sleep :think ms
BEGIN;
UPDATE products SET stock = :stock - :qty WHERE id = :product AND stock = :stock;
\if :rows = 0
  ROLLBACK;
  \retry
\endif
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
