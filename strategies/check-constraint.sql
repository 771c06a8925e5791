-- check-constraint: decrement blindly (stock = stock - :qty, no read, no
-- check) and let a CHECK (stock >= 0) constraint, added in \setup, refuse
-- the purchase that would drive stock negative: that buyer is rejected.
-- Safe: the relative update never loses a write, and the constraint is
-- checked on the row each buyer actually writes. Cost: one short row lock
-- per purchase; sold out shows up as a constraint error, not as a result.
\setup
ALTER TABLE products DROP CONSTRAINT IF EXISTS products_stock_not_negative;
ALTER TABLE products ADD CONSTRAINT products_stock_not_negative CHECK (stock >= 0);
\endsetup
\sleep :think ms
BEGIN;
UPDATE products SET stock = stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
