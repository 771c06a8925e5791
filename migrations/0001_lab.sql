-- The lab: products with stock, and the orders buyers write.
--
-- products.stock deliberately has NO check (stock >= 0): a lab must let a
-- broken strategy drive stock negative so that the audit can show it. A
-- strategy that needs a constraint adds it in its own \setup block.
--
-- Names are unqualified: racelab applies this with search_path set to the
-- lab schema (which it creates, with its ownership marker, beforehand).

CREATE TABLE products (
    id            bigint PRIMARY KEY,
    name          text   NOT NULL,
    stock         bigint NOT NULL,
    version       bigint NOT NULL DEFAULT 0,
    initial_stock bigint NOT NULL
);

CREATE TABLE orders (
    id         bigserial   PRIMARY KEY,
    product_id bigint      NOT NULL REFERENCES products (id),
    buyer_id   bigint      NOT NULL,
    attempt_id bigint      NOT NULL,
    qty        bigint      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
