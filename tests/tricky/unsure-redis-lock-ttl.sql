-- A Redis lock (SET NX PX 100) around a read-think-write body: it looks like
-- SELECT ... FOR UPDATE, but the lock expires after 100 ms whether or not
-- its holder has finished.
-- truth: safe
\redis SET lock:{:product} :attempt NX PX 100 \gset got
\if is_null(:got)
  \sleep 5 ms
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
COMMIT;
\redis DEL lock:{:product}
