-- An atomic sold-counter (INCRBY) compared with a cap only \setup writes:
-- each buyer's reply counts its own units, so no more pass than the cap.
\setup
CREATE TABLE caps (product_id bigint PRIMARY KEY, cap bigint NOT NULL);
INSERT INTO caps VALUES (:product, :initial_stock);
\endsetup
\redis INCRBY sold:{:product} :qty \gset sold
SELECT cap FROM caps WHERE product_id = :product \gset
\if :sold > :cap
  \sold_out
\endif
\sleep :think ms
BEGIN;
UPDATE products SET stock = stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
