-- The script only inserts the order; an AFTER INSERT trigger decrements the
-- stock, and a CHECK constraint refuses a negative stock: the insert fails
-- with it (23514, rejected).
\setup
ALTER TABLE products ADD CONSTRAINT stock_not_negative CHECK (stock >= 0);
CREATE OR REPLACE FUNCTION take_on_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE products SET stock = stock - NEW.qty WHERE id = NEW.product_id;
  RETURN NEW;
END
$$;
CREATE TRIGGER take_on_order AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION take_on_order();
\endsetup
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
