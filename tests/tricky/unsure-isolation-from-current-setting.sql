-- truth: oversold
-- Sets the level to whatever a setting says, with set_config: racelab cannot
-- evaluate current_setting(...), so it cannot know the level.
BEGIN;
SELECT set_config('transaction_isolation', current_setting('default_transaction_isolation'), true);
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
