-- The same at SERIALIZABLE: the read-write dependencies form a cycle and
-- PostgreSQL aborts one of the two (40001).
\setup
CREATE TABLE warehouse (product_id bigint NOT NULL, site int NOT NULL, units bigint NOT NULL, PRIMARY KEY (product_id, site));
INSERT INTO warehouse VALUES (:product, 0, :initial_stock), (:product, 1, 0);
\endsetup
BEGIN ISOLATION LEVEL SERIALIZABLE;
\set site :buyer % 2
SELECT sum(units)::bigint AS units FROM warehouse WHERE product_id = :product AND site IN (0, 1) \gset
\if :units < :qty
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
UPDATE warehouse SET units = units - :qty WHERE product_id = :product AND site = :site;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
-- products.stock follows the sale in a statement of its own (a write of
-- the same row inside the transaction would make the two conflict).
UPDATE products SET stock = stock - :qty WHERE id = :product;
