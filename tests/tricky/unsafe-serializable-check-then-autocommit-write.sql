-- The check runs at SERIALIZABLE and commits; the decrement runs after it,
-- in a statement of its own: a purchase split across two transactions, which
-- no isolation level protects.
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT stock FROM products WHERE id = :product \gset
COMMIT;
\if :stock < :qty
  \sold_out
\endif
\sleep :think ms
UPDATE products SET stock = stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
