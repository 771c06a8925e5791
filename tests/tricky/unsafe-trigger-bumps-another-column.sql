-- Optimistic on the version column, but the BEFORE UPDATE trigger bumps
-- initial_stock, not version: a stale version still matches.
\setup
CREATE OR REPLACE FUNCTION bump_other() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.initial_stock := OLD.initial_stock + 1;
  RETURN NEW;
END
$$;
CREATE TRIGGER bump_other BEFORE UPDATE ON products FOR EACH ROW EXECUTE FUNCTION bump_other();
\endsetup
SELECT stock, version FROM products WHERE id = :product \gset
\if :stock < :qty
  \sold_out
\endif
\sleep :think ms
BEGIN;
UPDATE products SET stock = :stock - :qty WHERE id = :product AND version = :version;
\if :rows = 0
  ROLLBACK;
  \retry
\endif
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
