-- Counts the orders to decide, at REPEATABLE READ: write skew, two buyers
-- both see room for one more and both insert.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT initial_stock AS cap FROM products WHERE id = :product \gset
SELECT coalesce(sum(qty), 0)::bigint AS sold FROM orders WHERE product_id = :product \gset
\if :sold + :qty > :cap
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
