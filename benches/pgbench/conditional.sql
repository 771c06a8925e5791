-- pgbench twin of strategies/conditional.sql (think time 0, one product).
\set product 1
\set qty 1
\set buyer random(1, 1000000)
\set attempt random(1, 1000000000)
WITH sold AS (
  UPDATE products SET stock = stock - :qty
  WHERE id = :product AND stock >= :qty
  RETURNING id
)
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
SELECT id, :buyer, :attempt, :qty FROM sold;
