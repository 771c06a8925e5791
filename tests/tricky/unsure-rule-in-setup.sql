-- truth: oversold
-- A rewrite RULE created in \setup: racelab does not follow what a rule
-- turns a statement into.
\setup
CREATE RULE orders_log AS ON INSERT TO orders DO ALSO NOTIFY orders_changed;
\endsetup
BEGIN;
SELECT stock FROM products WHERE id = :product \gset
\if :stock < :qty
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
UPDATE products SET stock = :stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
