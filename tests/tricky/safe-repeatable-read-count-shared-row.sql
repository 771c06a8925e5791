-- REPEATABLE READ counts the orders (a predicate read, write skew territory),
-- but every buyer that buys also updates the product's row: two that overlap
-- cannot both commit (40001), so the count is never stale at commit.
\setup
CREATE TABLE caps (product_id bigint PRIMARY KEY, cap bigint NOT NULL);
INSERT INTO caps VALUES (:product, :initial_stock);
\endsetup
BEGIN ISOLATION LEVEL REPEATABLE READ;
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
