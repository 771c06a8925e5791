-- The guard is written as a difference: it still keeps stock at zero or above.
UPDATE products SET stock = stock - :qty WHERE id = :product AND stock - :qty >= 0;
\if :rows = 0
  \sold_out
\endif
INSERT INTO orders (product_id, buyer_id, attempt_id, qty) VALUES (:product, :buyer, :attempt, :qty);
