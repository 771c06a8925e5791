-- The stock is read through a scalar subquery that locks the row FOR UPDATE.
BEGIN;
SELECT (SELECT stock FROM products WHERE id = :product FOR UPDATE) AS stock \gset
\if :stock < :qty
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
UPDATE products SET stock = :stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
