-- The guard compares a scalar subquery that locks the row FOR UPDATE: it
-- waits for the other buyer and then sees the committed stock.
BEGIN;
UPDATE products SET stock = stock - :qty
  WHERE id = :product
    AND (SELECT stock FROM products WHERE id = :product FOR UPDATE) >= :qty;
\if :rows = 0
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
