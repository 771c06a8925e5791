-- The same at REPEATABLE READ: the later writer of the warehouse row fails
-- (40001) and is retried on a fresh snapshot.
\setup
CREATE TABLE warehouse (product_id bigint NOT NULL, site text NOT NULL, units bigint NOT NULL, PRIMARY KEY (product_id, site));
INSERT INTO warehouse VALUES (:product, 'a', :initial_stock);
\endsetup
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT units FROM warehouse WHERE product_id = :product AND site = 'a' \gset
\if :units < :qty
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
UPDATE warehouse SET units = units - :qty WHERE product_id = :product AND site = 'a';
UPDATE products SET stock = stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
