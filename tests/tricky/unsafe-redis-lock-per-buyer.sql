-- A Redis lock with no TTL, but its key names the buyer: every buyer takes
-- its own lock, and nothing is shared.
\redis SET lock:{:product}:{:buyer} 1 NX \gset got
\if is_null(:got)
  \retry
\endif
BEGIN;
SELECT stock FROM products WHERE id = :product \gset
\if :stock < :qty
  ROLLBACK;
  \redis DEL lock:{:product}:{:buyer}
  \sold_out
\endif
\sleep :think ms
UPDATE products SET stock = :stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
\redis DEL lock:{:product}:{:buyer}
