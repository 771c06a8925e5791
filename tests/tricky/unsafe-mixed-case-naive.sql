-- The naive purchase in odd case and spacing.
begin   ;
  select   STOCK
    from   Products
   where   ID   =   :product   \gset
\if :stock < :qty
  rollback;
  \sold_out
\endif
\sleep :think ms
Update   products
   SET   Stock=:stock-:qty
 WHERE   id=:product;
insert into ORDERS (product_id, buyer_id, attempt_id, qty) values (:product, :buyer, :attempt, :qty);
Commit;
