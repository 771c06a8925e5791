-- FOR NO KEY UPDATE conflicts with itself and with UPDATE.
BEGIN;
SELECT stock FROM products WHERE id = :product FOR NO KEY UPDATE \gset
\if :stock < :qty
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
UPDATE products SET stock = :stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
