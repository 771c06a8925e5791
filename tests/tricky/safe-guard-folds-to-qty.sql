-- The guard's bound looks buyer-dependent but folds to :qty.
UPDATE products SET stock = stock - :qty
  WHERE id = :product AND stock >= :qty + 0 * :buyer;
\if :rows = 0
  \sold_out
\endif
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
