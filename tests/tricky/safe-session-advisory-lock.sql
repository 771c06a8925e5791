-- A session advisory lock on the product, released after the COMMIT.
SELECT pg_advisory_lock(:product);
BEGIN;
SELECT stock FROM products WHERE id = :product \gset
\if :stock < :qty
  ROLLBACK;
  SELECT pg_advisory_unlock(:product);
  \sold_out
\endif
\sleep :think ms
UPDATE products SET stock = :stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
SELECT pg_advisory_unlock(:product);
