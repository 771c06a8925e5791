-- idempotent: the conditional purchase made idempotent by attempt id. A
-- unique index on orders(attempt_id), created in \setup, lets an attempt
-- place its order once: the INSERT ... ON CONFLICT DO NOTHING comes first,
-- and the stock is decremented (guarded by WHERE stock >= :qty) only when
-- that INSERT placed the order, in the same transaction. A resubmission
-- whose order is already there (its first COMMIT reached the server, the
-- reply was lost) inserts nothing, decrements nothing and succeeds: one
-- purchase, however often it is sent. Safe, and safe against duplicate
-- processing. Cost: one round trip more than conditional, and the unique
-- index on every insert; a resubmission racing its own first try waits
-- for it on the index.
\setup
CREATE UNIQUE INDEX IF NOT EXISTS orders_one_per_attempt ON orders (attempt_id);
\endsetup
\sleep :think ms
BEGIN;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty)
  ON CONFLICT (attempt_id) DO NOTHING;
\if :rows = 1
  UPDATE products SET stock = stock - :qty
  WHERE id = :product AND stock >= :qty;
  \if :rows = 0
    ROLLBACK;
    \sold_out
  \endif
\endif
COMMIT;
