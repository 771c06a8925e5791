-- SERIALIZABLE: counts the orders against a cap no buyer writes, inserts the
-- order, then keeps products.stock in step (a bare decrement, bookkeeping).
\setup
CREATE TABLE caps (product_id bigint PRIMARY KEY, cap bigint NOT NULL);
INSERT INTO caps VALUES (:product, :initial_stock);
\endsetup
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT cap FROM caps WHERE product_id = :product \gset
SELECT coalesce(sum(qty), 0)::bigint AS sold FROM orders WHERE product_id = :product \gset
\if :sold + :qty > :cap
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
UPDATE products SET stock = stock - :qty WHERE id = :product;
COMMIT;
