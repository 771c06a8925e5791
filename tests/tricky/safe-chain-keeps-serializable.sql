-- COMMIT AND CHAIN opens the next transaction with the same isolation
-- level: the read-modify-write runs at SERIALIZABLE.
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT 1;
COMMIT AND CHAIN;
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
