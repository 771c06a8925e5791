-- skip-locked: stock as rows. \setup creates a `units` table with one row
-- per unit; a buyer deletes :qty unit rows chosen with FOR UPDATE SKIP
-- LOCKED, so concurrent buyers claim different units without waiting on
-- each other, then records the order and decrements products.stock to keep
-- the audit in step. Safe: a unit row can be claimed only once. Cost: an
-- extra table and a delete per unit; units locked by a buyer who later
-- rolls back are skipped, so a buyer can see "sold out" a moment early.
\setup
DROP TABLE IF EXISTS units;
CREATE TABLE units (
  product_id bigint NOT NULL,
  unit_no bigint NOT NULL,
  PRIMARY KEY (product_id, unit_no)
);
INSERT INTO units (product_id, unit_no)
  SELECT :product, g FROM generate_series(1, :initial_stock) AS g;
\endsetup
BEGIN;
WITH claimed AS (
  DELETE FROM units u
  USING (SELECT product_id, unit_no FROM units
         WHERE product_id = :product
         ORDER BY unit_no
         LIMIT :qty
         FOR UPDATE SKIP LOCKED) c
  WHERE u.product_id = c.product_id AND u.unit_no = c.unit_no
  RETURNING u.unit_no
)
SELECT count(*) AS claimed FROM claimed \gset
\if :claimed < :qty
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
UPDATE products SET stock = stock - :qty WHERE id = :product;
COMMIT;
