-- FOR UPDATE OF two tables: valid PostgreSQL that racelab's SQL parser cannot read.
-- truth: safe
BEGIN;
SELECT p.stock FROM products p JOIN products q ON q.id = p.id
  WHERE p.id = :product FOR UPDATE OF p, q \gset
\if :stock < :qty
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
UPDATE products SET stock = :stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
