-- The same WATCH/MULTI/EXEC, but nobody looks at EXEC's reply: when the
-- transaction was discarded the purchase goes on anyway.
\redis WATCH stock:{:product}
\redis GET stock:{:product} \gset left
\if :left < :qty
  \redis UNWATCH
  \sold_out
\endif
\sleep :think ms
\redis MULTI
\redis DECRBY stock:{:product} :qty
\redis EXEC
BEGIN;
UPDATE products SET stock = stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
