-- The "guard" is a string literal: the decrement is blind.
\sleep :think ms
BEGIN;
UPDATE products SET stock = stock - :qty WHERE id = :product AND 'stock >= :qty' <> '';
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
