-- A bare relative decrement, no guard: a BEFORE UPDATE trigger refuses a
-- negative stock with a check_violation, which ends the attempt rejected.
\setup
CREATE OR REPLACE FUNCTION no_negative_stock() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.stock < 0 THEN
    RAISE EXCEPTION 'out of stock' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER no_negative_stock BEFORE UPDATE ON products FOR EACH ROW EXECUTE FUNCTION no_negative_stock();
\endsetup
BEGIN;
UPDATE products SET stock = stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
