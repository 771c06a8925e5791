-- FOR UPDATE outside a transaction block: the lock ends with the statement.
SELECT stock FROM products WHERE id = :product FOR UPDATE \gset
\if :stock < :qty
  \sold_out
\endif
\sleep :think ms
UPDATE products SET stock = :stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
