-- The advisory key mentions :buyer, but multiplied by zero: every buyer of
-- the product takes the same lock.
BEGIN;
SELECT pg_advisory_xact_lock(:product + 0 * :buyer);
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
