-- A PL/pgSQL purchase function: locks the row FOR UPDATE into a variable,
-- returns 0 when short, else writes the stock back and records the order.
\setup
CREATE OR REPLACE FUNCTION buy(p bigint, q bigint, b bigint, a bigint) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE s bigint;
BEGIN
  SELECT stock INTO s FROM products WHERE id = p FOR UPDATE;
  IF s < q THEN
    RETURN 0;
  END IF;
  UPDATE products SET stock = s - q WHERE id = p;
  INSERT INTO orders (product_id, buyer_id, attempt_id, qty) VALUES (p, b, a, q);
  RETURN 1;
END
$$;
\endsetup
SELECT buy(:product, :qty, :buyer, :attempt) AS bought \gset
\if :bought = 0
  \sold_out
\endif
