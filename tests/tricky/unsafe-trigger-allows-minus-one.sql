-- The trigger's bound is off by one: it refuses stock below -1, so the
-- last buyer takes a unit that is not there.
\setup
CREATE OR REPLACE FUNCTION floor_minus_one() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.stock < -1 THEN
    RAISE EXCEPTION 'out of stock' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER floor_minus_one BEFORE UPDATE ON products FOR EACH ROW EXECUTE FUNCTION floor_minus_one();
\endsetup
BEGIN;
UPDATE products SET stock = stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
