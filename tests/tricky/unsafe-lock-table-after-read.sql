-- LOCK TABLE, but after the read: the value read is already stale.
BEGIN;
SELECT stock FROM products WHERE id = :product \gset
LOCK TABLE products IN EXCLUSIVE MODE;
\if :stock < :qty
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
UPDATE products SET stock = :stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
