-- Reads a column named stock FOR UPDATE, from a copy of the stock no buyer
-- ever changes, and writes products.stock from it.
\setup
DROP TABLE IF EXISTS stock_copy;
CREATE TABLE stock_copy (product_id bigint PRIMARY KEY, stock bigint NOT NULL);
INSERT INTO stock_copy (product_id, stock) SELECT id, stock FROM products WHERE id = :product;
\endsetup
BEGIN;
SELECT c.stock FROM stock_copy c WHERE c.product_id = :product FOR UPDATE \gset
\if :stock < :qty
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
UPDATE products SET stock = :stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
