-- for-update: the naive purchase, but the read takes a row lock (SELECT ...
-- FOR UPDATE), so the next buyer's read waits until this buyer commits and
-- then sees the new stock. Safe: no buyer ever writes from a stale read.
-- Cost: buyers of one product queue on its row, think time included, so
-- throughput on a hot product is one purchase per lock hold.
BEGIN;
SELECT stock FROM products WHERE id = :product FOR UPDATE \gset
\if :stock < :qty
  ROLLBACK;
  \sold_out
\endif
\sleep :think ms
UPDATE products SET stock = :stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
