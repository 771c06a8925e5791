-- SHARE does not conflict with SHARE, but with the UPDATE's ROW EXCLUSIVE:
-- two holders deadlock at the write, one is aborted and retried.
BEGIN;
LOCK TABLE products IN SHARE MODE;
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
