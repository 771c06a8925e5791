-- Opens the transaction at SERIALIZABLE, then lowers it before the first
-- query: SET LOCAL transaction_isolation is SET TRANSACTION by another name,
-- so the body runs at READ COMMITTED and loses updates.
BEGIN ISOLATION LEVEL SERIALIZABLE;
SET LOCAL transaction_isolation = 'read committed';
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
