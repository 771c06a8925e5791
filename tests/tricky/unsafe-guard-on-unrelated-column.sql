-- An optimistic-looking WHERE guard on a column nobody changes.
SELECT stock, name FROM products WHERE id = :product \gset
\if :stock < :qty
  \sold_out
\endif
\sleep :think ms
WITH sold AS (
  UPDATE products SET stock = :stock - :qty
  WHERE id = :product AND name = :name
  RETURNING id
)
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
SELECT id, :buyer, :attempt, :qty FROM sold;
\if :rows = 0
  \retry
\endif
