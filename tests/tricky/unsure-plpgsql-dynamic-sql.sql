-- truth: safe
-- The decrement is built as text and run with EXECUTE inside a PL/pgSQL
-- function: what it locks and writes is known only when it runs.
\setup
CREATE OR REPLACE FUNCTION take_dynamic(p bigint, q bigint) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  EXECUTE format('UPDATE %I SET stock = stock - $1 WHERE id = $2 AND stock >= $1', 'products') USING q, p;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
$$;
\endsetup
BEGIN;
SELECT take_dynamic(:product, :qty) AS taken \gset
\if :taken = 0
  ROLLBACK;
  \sold_out
\endif
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
