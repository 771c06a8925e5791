-- An EXCLUSIVE lock on the orders table, taken first by every buyer: a
-- mutex, though the stock lives in products.
BEGIN;
LOCK TABLE orders IN EXCLUSIVE MODE;
SELECT stock FROM products WHERE id = :product \gset
\if :stock < :qty
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
UPDATE products SET stock = :stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
