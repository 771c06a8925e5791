-- Sets the session's default_transaction_isolation before BEGIN, on the
-- buyer's own connection: the transaction that follows is SERIALIZABLE.
SET default_transaction_isolation = 'serializable';
BEGIN;
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
