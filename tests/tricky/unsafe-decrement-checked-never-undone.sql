-- Looks at what the decrement left and says sold out when it went below
-- zero, but never gives the units back: the stock drifts.
UPDATE products SET stock = stock - :qty WHERE id = :product RETURNING stock AS left_over \gset
\if :left_over < 0
  \sold_out
\endif
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
