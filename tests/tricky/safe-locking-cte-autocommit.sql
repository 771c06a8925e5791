-- One autocommit statement: the CTE locks the row, the UPDATE writes from the locked value.
WITH s AS (SELECT stock FROM products WHERE id = :product FOR UPDATE)
UPDATE products p SET stock = s.stock - :qty FROM s WHERE p.id = :product AND s.stock >= :qty
RETURNING p.stock AS left_now;
\if :rows = 0
  \sold_out
\endif
INSERT INTO orders (product_id, buyer_id, attempt_id, qty) VALUES (:product, :buyer, :attempt, :qty);
