-- Decrements with a guard and counts the rows it claimed; the order is a
-- separate statement after the check.
\sleep :think ms
BEGIN;
WITH sold AS (
  UPDATE products SET stock = stock - :qty
  WHERE id = :product AND stock >= :qty
  RETURNING id
)
SELECT count(*) AS n FROM sold \gset
\if :n = 0
  ROLLBACK;
  \sold_out
\endif
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
