-- A stale pre-check, but the decrement is relative and a CHECK refuses
-- stock below zero.
\setup
ALTER TABLE products ADD CONSTRAINT tricky_stock_not_negative CHECK (0 <= stock);
\endsetup
SELECT stock FROM products WHERE id = :product \gset
\if :stock < :qty
  \sold_out
\endif
\sleep :think ms
BEGIN;
UPDATE products SET stock = stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
