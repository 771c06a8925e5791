-- The SQL form of Redis's DECRBY pattern: take the units with a bare
-- decrement, look at what is left (RETURNING), give them back when it went
-- below zero.
UPDATE products SET stock = stock - :qty WHERE id = :product RETURNING stock AS left_over \gset
\if :left_over < 0
  UPDATE products SET stock = stock + :qty WHERE id = :product;
  \sold_out
\endif
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
