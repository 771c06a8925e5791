-- The guard compares a scalar subquery WITHOUT a lock: PostgreSQL evaluates
-- it once, on the statement's snapshot, and does not evaluate it again when
-- the UPDATE waits for the row and finds it changed.
BEGIN;
UPDATE products SET stock = stock - :qty
  WHERE id = :product
    AND (SELECT stock FROM products WHERE id = :product) >= :qty;
\if :rows = 0
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
