-- pg_try_advisory_xact_lock, and a try that did not get it retries.
BEGIN;
SELECT pg_try_advisory_xact_lock(:product)::int AS got \gset
\if :got = 0
  ROLLBACK;
  \retry
\endif
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
