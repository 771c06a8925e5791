-- Checks the stock, then calls a SQL function whose decrement has no guard:
-- every buyer that checked before the others wrote takes a unit.
\setup
CREATE OR REPLACE FUNCTION take_any(p bigint, q bigint) RETURNS void LANGUAGE sql AS $$
  UPDATE products SET stock = stock - q WHERE id = p
$$;
\endsetup
BEGIN;
SELECT stock FROM products WHERE id = :product \gset
\if :stock < :qty
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
SELECT take_any(:product, :qty);
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
