-- FOR KEY SHARE does not block an UPDATE of stock.
BEGIN;
SELECT stock FROM products WHERE id = :product FOR KEY SHARE \gset
\if :stock < :qty
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
UPDATE products SET stock = :stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
