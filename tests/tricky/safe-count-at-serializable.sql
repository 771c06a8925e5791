-- Counts the orders to decide, at SERIALIZABLE: the write skew is caught.
Begin Isolation Level Serializable;
SELECT initial_stock AS cap FROM products WHERE id = :product \gset
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
