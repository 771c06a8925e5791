-- The compensation's bound is off by one: stock -1 is kept as a sale.
UPDATE products SET stock = stock - :qty WHERE id = :product RETURNING stock AS left_over \gset
\if :left_over < -1
  UPDATE products SET stock = stock + :qty WHERE id = :product;
  \sold_out
\endif
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
