-- advisory-session: the naive purchase behind a SESSION-level advisory lock
-- on the product id: pg_advisory_lock before the transaction, and
-- pg_advisory_unlock after it ends. The lock belongs to the server
-- connection's session, not to a transaction.
-- Safe on a direct connection and through PgBouncer in session pooling:
-- each buyer keeps its own server connection, and every buyer of a product
-- takes the same lock first. NOT safe through transaction pooling (try
-- --via pgbouncer): the lock statement runs as its own transaction on one
-- server connection, which goes back to the pool still holding the lock;
-- the buyer's transaction and its unlock may run on other connections, and
-- the next buyer handed the locking connection takes the lock again at
-- once (advisory locks are re-entrant per session). Buyers read the same
-- stock and oversell, while the lock, never released where it was taken,
-- blocks the buyers that land elsewhere until lock_timeout.
-- Cost: like advisory, buyers of a product queue for the whole purchase;
-- a failure between lock and unlock leaves the lock held by the session
-- (pg_advisory_xact_lock, in advisory, cannot leak).
SELECT pg_advisory_lock(:product);
BEGIN;
SELECT stock FROM products WHERE id = :product \gset
\if :stock < :qty
  ROLLBACK;
  SELECT pg_advisory_unlock(:product);
  \sold_out
\endif
\sleep :think ms
UPDATE products SET stock = :stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
SELECT pg_advisory_unlock(:product);
