-- A Redis lock with a long TTL (60 s) around the read-modify-write, but it is
-- released before the COMMIT: the next buyer reads the stock before this
-- buyer's write is visible.
\redis SET lock:{:product} :attempt NX PX 60000 \gset got
\if is_null(:got)
  \sleep 2 ms
  \retry
\endif
BEGIN;
SELECT stock FROM products WHERE id = :product \gset
\if :stock < :qty
  ROLLBACK;
  \redis DEL lock:{:product}
  \sold_out
\endif
\sleep :think ms
UPDATE products SET stock = :stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
\redis DEL lock:{:product}
\sleep :think ms
COMMIT;
