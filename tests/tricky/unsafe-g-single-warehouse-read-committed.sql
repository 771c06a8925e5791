-- Units live in a table of the script's own (warehouse); products.stock is
-- kept in step. At READ COMMITTED the check reads units, another buyer's
-- commit lands, and the relative decrement goes below zero: G-single.
\setup
CREATE TABLE warehouse (product_id bigint NOT NULL, site text NOT NULL, units bigint NOT NULL, PRIMARY KEY (product_id, site));
INSERT INTO warehouse VALUES (:product, 'a', :initial_stock);
\endsetup
BEGIN;
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
