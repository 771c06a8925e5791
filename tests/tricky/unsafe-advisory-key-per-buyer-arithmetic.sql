-- The advisory key is built from the product AND the buyer: each buyer
-- takes its own lock and nobody waits.
BEGIN;
SELECT pg_advisory_xact_lock(:product * 100000 + :buyer);
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
