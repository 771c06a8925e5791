-- truth: errors
-- SET TRANSACTION after the first query of the transaction: PostgreSQL
-- refuses it (25001), every attempt ends in an error.
BEGIN;
SELECT stock FROM products WHERE id = :product \gset
SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;
\if :stock < :qty
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
UPDATE products SET stock = :stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
