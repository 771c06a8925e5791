-- Decrements inside a transaction, looks at what is left, and rolls back
-- when it went below zero.
BEGIN;
UPDATE products SET stock = stock - :qty WHERE id = :product RETURNING stock AS left_over \gset
\if :left_over < 0
  ROLLBACK;
  \sold_out
\endif
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
