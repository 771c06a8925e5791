-- Checks the stock, then inserts the order; the AFTER INSERT trigger
-- decrements the stock with no bound: two buyers that both checked both buy.
\setup
CREATE OR REPLACE FUNCTION take_on_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE products SET stock = stock - NEW.qty WHERE id = NEW.product_id;
  RETURN NEW;
END
$$;
CREATE TRIGGER take_on_order AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION take_on_order();
\endsetup
BEGIN;
SELECT stock FROM products WHERE id = :product \gset
\if :stock < :qty
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
