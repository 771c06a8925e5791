-- Checks the version, but records the order whether the update matched or not.
SELECT stock, version FROM products WHERE id = :product \gset
\if :stock < :qty
  \sold_out
\endif
\sleep :think ms
UPDATE products SET stock = :stock - :qty, version = version + 1
  WHERE id = :product AND version = :version;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
