-- The units are split over two rows (sites); each buyer checks the total
-- and takes from its own site. At REPEATABLE READ two buyers write
-- different rows after reading both: write skew (G2-item), oversold.
\setup
CREATE TABLE warehouse (product_id bigint NOT NULL, site int NOT NULL, units bigint NOT NULL, PRIMARY KEY (product_id, site));
INSERT INTO warehouse VALUES (:product, 0, :initial_stock), (:product, 1, 0);
\endsetup
BEGIN ISOLATION LEVEL REPEATABLE READ;
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
