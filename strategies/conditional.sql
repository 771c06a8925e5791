-- conditional: one statement that decrements only if enough stock is left
-- (UPDATE ... WHERE stock >= :qty) and records the order in the same
-- statement; no row means sold out. Safe: the check and the write are one
-- atomic step, re-checked on the latest row version after any wait.
-- Cost: the lowest of the safe strategies: one round trip, the row lock held
-- only for that statement. The think time comes before it, with no lock held.
\sleep :think ms
WITH sold AS (
  UPDATE products SET stock = stock - :qty
  WHERE id = :product AND stock >= :qty
  RETURNING id
)
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
SELECT id, :buyer, :attempt, :qty FROM sold;
\if :rows = 0
  \sold_out
\endif
