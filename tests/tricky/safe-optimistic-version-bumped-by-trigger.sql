-- Optimistic, but the UPDATE never bumps the version itself: a BEFORE
-- UPDATE trigger created in \setup does, so a stale version matches no row.
\setup
CREATE OR REPLACE FUNCTION bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.version := OLD.version + 1;
  RETURN NEW;
END
$$;
CREATE TRIGGER bump_version BEFORE UPDATE ON products FOR EACH ROW EXECUTE FUNCTION bump_version();
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
