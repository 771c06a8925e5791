-- advisory: the naive purchase behind a transaction-scoped advisory lock on
-- the product id (pg_advisory_xact_lock), released at COMMIT or ROLLBACK.
-- Safe, because every buyer of a product takes the same lock first: it only
-- protects code that cooperates. Cost: like for-update, buyers of one
-- product queue for the whole transaction, think time included.
BEGIN;
SELECT pg_advisory_xact_lock(:product);
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
