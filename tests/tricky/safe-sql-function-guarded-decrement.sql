-- The purchase is a SQL function created in \setup: a guarded relative
-- decrement that returns a row only when it took the units.
\setup
CREATE OR REPLACE FUNCTION take_units(p bigint, q bigint) RETURNS SETOF bigint LANGUAGE sql AS $$
  UPDATE products SET stock = stock - q WHERE id = p AND stock >= q RETURNING stock
$$;
\endsetup
BEGIN;
SELECT count(*) AS taken FROM take_units(:product, :qty) \gset
\if :taken = 0
  ROLLBACK;
  \sold_out
\endif
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
