-- Two SERIALIZABLE transactions: one checks, the next writes back what the
-- first read. Each is serializable; the purchase is not.
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT stock FROM products WHERE id = :product \gset
COMMIT;
\if :stock < :qty
  \sold_out
\endif
\sleep :think ms
BEGIN ISOLATION LEVEL SERIALIZABLE;
UPDATE products SET stock = :stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
