-- Takes the row lock, but only after the value it writes back was read.
BEGIN;
SELECT stock FROM products WHERE id = :product \gset
SELECT id FROM products WHERE id = :product FOR UPDATE;
\if :stock < :qty
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
UPDATE products SET stock = :stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
