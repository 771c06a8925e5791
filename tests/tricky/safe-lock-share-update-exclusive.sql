-- SHARE UPDATE EXCLUSIVE conflicts with itself: buyers queue on it, though
-- it lets an UPDATE through.
BEGIN;
LOCK TABLE products IN SHARE UPDATE EXCLUSIVE MODE;
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
