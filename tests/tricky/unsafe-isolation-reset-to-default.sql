-- SERIALIZABLE, then SET LOCAL transaction_isolation = DEFAULT before the
-- first query: back to default_transaction_isolation, READ COMMITTED.
BEGIN ISOLATION LEVEL SERIALIZABLE;
SET LOCAL transaction_isolation = DEFAULT;
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
