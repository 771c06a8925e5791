-- FOR SHARE, then a write of the same row: two holders of the share lock
-- deadlock at the write; PostgreSQL aborts one and racelab retries it.
-- race buyers: 2
BEGIN;
SELECT stock FROM products WHERE id = :product FOR SHARE \gset
\if :stock < :qty
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
UPDATE products SET stock = :stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
