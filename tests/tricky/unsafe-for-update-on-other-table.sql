-- Locks the buyer's own orders, not the product's row.
BEGIN;
SELECT count(*) AS mine FROM (SELECT id FROM orders WHERE buyer_id = :buyer FOR UPDATE) o \gset
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
