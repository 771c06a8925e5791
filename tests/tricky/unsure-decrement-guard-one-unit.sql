-- stock > 0 stops at zero only while each purchase is one unit.
-- truth: safe
UPDATE products SET stock = stock - :qty WHERE id = :product AND stock > 0;
\if :rows = 0
  \sold_out
\endif
INSERT INTO orders (product_id, buyer_id, attempt_id, qty) VALUES (:product, :buyer, :attempt, :qty);
