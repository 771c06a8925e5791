-- A plain BEGIN, raised to SERIALIZABLE before the first query by
-- SET LOCAL transaction_isolation: the read-modify-write is serialized.
BEGIN;
SET LOCAL transaction_isolation = 'serializable';
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
