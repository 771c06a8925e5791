-- Looks locked: the comments say FOR UPDATE, the read does not take it.
BEGIN; -- SELECT ... FOR UPDATE
SELECT stock FROM products WHERE id = :product /* FOR UPDATE */ \gset
\if :stock < :qty
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
UPDATE products SET stock = :stock - :qty WHERE id = :product; -- SERIALIZABLE, stock >= :qty
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
