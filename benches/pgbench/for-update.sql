-- pgbench twin of strategies/for-update.sql (think time 0, one product; the
-- stock is large, so the sold-out branch never runs and is left out).
\set product 1
\set qty 1
\set buyer random(1, 1000000)
\set attempt random(1, 1000000000)
BEGIN;
SELECT stock FROM products WHERE id = :product FOR UPDATE \gset
UPDATE products SET stock = :stock::bigint - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
