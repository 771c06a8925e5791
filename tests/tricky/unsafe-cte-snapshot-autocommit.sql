-- One autocommit statement, but the CTE reads a snapshot without a lock: the UPDATE writes a stale value.
WITH s AS (SELECT stock FROM products WHERE id = :product)
UPDATE products p SET stock = s.stock - :qty FROM s WHERE p.id = :product AND s.stock >= :qty
RETURNING p.stock AS left_now \gset
INSERT INTO orders (product_id, buyer_id, attempt_id, qty) VALUES (:product, :buyer, :attempt, :qty);
