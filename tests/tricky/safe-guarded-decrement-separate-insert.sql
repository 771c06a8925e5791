-- The conditional decrement as its own statement, the zero-row case handled.
\sleep :think ms
BEGIN;
UPDATE products SET stock = stock - :qty WHERE id = :product AND stock - :qty >= 0;
\if :rows = 0
  ROLLBACK;
  \sold_out
\endif
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
