-- Sets default_transaction_isolation LOCAL to the transaction: the default
-- of transactions that start later, and it ends with this one. This
-- transaction stays at READ COMMITTED.
BEGIN;
SET LOCAL default_transaction_isolation = 'serializable';
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
