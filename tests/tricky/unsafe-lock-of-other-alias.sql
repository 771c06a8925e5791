-- FOR UPDATE OF the joined copy of the buyer's row, not of the product's.
BEGIN;
SELECT p.stock FROM products p JOIN products b ON b.id = 1 + :buyer % 1
  WHERE p.id = :product FOR UPDATE OF b \gset
\if :stock < :qty
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
UPDATE products SET stock = :stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
