-- truth: safe
-- The guard's bound is a PL/pgSQL function with a loop: racelab does not
-- evaluate it.
\setup
CREATE OR REPLACE FUNCTION need(q bigint) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE i bigint := 0;
BEGIN
  WHILE i < q LOOP
    i := i + 1;
  END LOOP;
  RETURN i;
END
$$;
\endsetup
UPDATE products SET stock = stock - :qty WHERE id = :product AND stock >= need(:qty);
\if :rows = 0
  \sold_out
\endif
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
