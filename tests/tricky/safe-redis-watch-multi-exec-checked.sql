-- WATCH the counter, read it, and take the units in MULTI/EXEC: EXEC replies
-- nil when another buyer changed the counter in between, and the script
-- retries then.
\redis WATCH stock:{:product}
\redis GET stock:{:product} \gset left
\if :left < :qty
  \redis UNWATCH
  \sold_out
\endif
\redis MULTI
\redis DECRBY stock:{:product} :qty
\redis EXEC \gset done
\if is_null(:done)
  \retry
\endif
BEGIN;
UPDATE products SET stock = stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
