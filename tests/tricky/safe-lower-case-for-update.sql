-- The for-update purchase in lower case and odd spacing; the comments say
-- naive, no lock, unsafe: they do not count.
begin;
select stock
  from products
 where id = :product
   for   update \gset
\if :stock < :qty
  rollback;
  \sold_out
\endif
\sleep :think ms
update products set stock = :stock - :qty where id = :product; -- unsafe
insert into orders (product_id, buyer_id, attempt_id, qty) values (:product, :buyer, :attempt, :qty);
commit;
