-- naive: read the stock, think, write back what you read minus your quantity.
-- Every buyer that reads before the first write commits sees the same stock,
-- and each writes back its own stale number: lost updates, oversold stock.
-- Cost: the cheapest there is (no locks held while thinking) and wrong.
BEGIN;
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
