-- truth: errors
-- set_config('transaction_isolation', ...) is a query, and a query takes
-- the snapshot first: PostgreSQL refuses the change (25001), every attempt.
BEGIN;
SELECT set_config('transaction_isolation', 'serializable', true);
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
