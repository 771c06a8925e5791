//! The post-run audit (DESIGN §6.5): the database's truth. `query` reads
//! per-product tallies and the client/database disagreements; the
//! arithmetic (`Audit::from_tallies`) is pure. What the numbers mean (the
//! verdict) is decided in `verdict`, not here.

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Audit {
    pub initial_stock: i64,
    pub units_sold: i64,
    pub final_stock: i64,
    #[schemars(range(min = 0))]
    pub oversold_units: i64,
    pub stock_drift: i64,
    pub negative_stock: bool,
    #[schemars(range(min = 0))]
    pub successes_without_order: i64,
    /// Orders of attempts the client neither reported as successes nor
    /// lost track of (see `unknown_*`).
    #[schemars(range(min = 0))]
    pub orders_without_success: i64,
    /// Attempts of unknown fate (connection lost on COMMIT, or abandoned in
    /// flight by a stop) that the database shows committed: an order exists.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub unknown_committed: i64,
    /// Attempts of unknown fate that left no order: they did not commit.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub unknown_not_committed: i64,
    /// Orders that share an attempt id with an earlier order: one
    /// purchase processed twice (a resubmitted attempt whose first try
    /// had committed). Any is a fault of the books.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub duplicate_orders: i64,
    /// Sold-out answers given for a product that still had a purchase's
    /// worth of stock after the race: what the buyers were told, which the
    /// truth contradicts (per product where the truth is per product).
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub sold_out_with_stock_left: i64,
    /// The stock left after the race on the products of those answers.
    #[serde(default)]
    pub stock_left_after_sold_out: i64,
    /// With a strategy that counts stock in Redis (`stock:{:product}`): the
    /// Redis counters' remaining stock minus (initial stock - units
    /// ordered in Postgres), summed per product as absolute differences.
    /// Absent when Redis does not count the stock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub cache_drift: Option<i64>,
}

/// What the buyers were told, for the audit to hold against the lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct Claims<'a> {
    /// Attempt ids reported as successes.
    pub succeeded: &'a [i64],
    /// Attempt ids whose fate the client does not know.
    pub unknown: &'a [i64],
    /// Sold-out answers per product id.
    pub sold_out: &'a [(i64, u64)],
    /// Units per purchase: a product with fewer left is rightly sold out.
    pub quantity: i64,
}

/// One product as the audit sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProductTally {
    pub id: i64,
    pub initial_stock: i64,
    /// Sum of `orders.qty` for the product.
    pub units_sold: i64,
    pub final_stock: i64,
}

impl ProductTally {
    /// Product 1's tally.
    pub fn new(initial_stock: i64, units_sold: i64, final_stock: i64) -> ProductTally {
        ProductTally {
            id: 1,
            initial_stock,
            units_sold,
            final_stock,
        }
    }
}

impl Audit {
    /// The audit from per-product tallies and the two counts of
    /// disagreement between the client and the database.
    pub fn from_tallies(
        products: &[ProductTally],
        successes_without_order: i64,
        orders_without_success: i64,
    ) -> Audit {
        let sum = |f: fn(&ProductTally) -> i64| products.iter().map(f).sum::<i64>();
        Audit {
            initial_stock: sum(|p| p.initial_stock),
            units_sold: sum(|p| p.units_sold),
            final_stock: sum(|p| p.final_stock),
            oversold_units: sum(|p| (p.units_sold - p.initial_stock).max(0)),
            stock_drift: sum(|p| p.initial_stock - p.units_sold - p.final_stock),
            negative_stock: products.iter().any(|p| p.final_stock < 0),
            successes_without_order,
            orders_without_success,
            unknown_committed: 0,
            unknown_not_committed: 0,
            duplicate_orders: 0,
            sold_out_with_stock_left: 0,
            stock_left_after_sold_out: 0,
            cache_drift: None,
        }
    }

    /// Hold the sold-out answers against the stock left: `products` gives,
    /// per product (or once, for a truth that is one number), the stock
    /// left after the race and the sold-out answers buyers got for it. An
    /// answer is contradicted when at least `quantity` units are left.
    pub fn with_sold_out(
        mut self,
        products: impl IntoIterator<Item = (i64, u64)>,
        quantity: i64,
    ) -> Audit {
        for (left, told) in products {
            if told > 0 && left >= quantity.max(1) {
                self.sold_out_with_stock_left += told as i64;
                self.stock_left_after_sold_out += left;
            }
        }
        self
    }
}

/// Per product: initial stock, units sold (the orders' quantities), final
/// stock; the truth the audit starts from (search_path must point at the lab).
pub const PRODUCT_TALLIES: &str = "SELECT p.initial_stock, COALESCE(s.sold, 0)::int8, p.stock \
     FROM products p \
     LEFT JOIN (SELECT product_id, sum(qty)::int8 AS sold FROM orders GROUP BY product_id) s \
       ON s.product_id = p.id \
     ORDER BY p.id";

/// Read the audit from the lab (search_path must point at it) and hold
/// what the buyers were told against it. Orders of attempts of unknown
/// fate are not disagreements: they resolve what the client could not
/// know (as Jepsen's checkers treat indeterminate operations).
pub async fn query(conn: &mut PgConnection, claims: &Claims<'_>) -> anyhow::Result<Audit> {
    let rows = sqlx::query(
        "SELECT p.id, p.initial_stock, COALESCE(s.sold, 0)::int8, p.stock \
         FROM products p \
         LEFT JOIN (SELECT product_id, sum(qty)::int8 AS sold FROM orders GROUP BY product_id) s \
           ON s.product_id = p.id \
         ORDER BY p.id",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| anyhow::anyhow!("could not read the lab's products for the audit: {e}"))?;
    let tallies = rows
        .iter()
        .map(|r| {
            Ok(ProductTally {
                id: r.try_get(0)?,
                initial_stock: r.try_get(1)?,
                units_sold: r.try_get(2)?,
                final_stock: r.try_get(3)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let row = sqlx::query(
        "WITH claimed AS (SELECT DISTINCT a FROM unnest($1::int8[]) AS t(a)), \
              unsure AS (SELECT DISTINCT a FROM unnest($2::int8[]) AS t(a)), \
              recorded AS (SELECT DISTINCT attempt_id AS a FROM orders) \
         SELECT \
           (SELECT count(*) FROM claimed c WHERE NOT EXISTS (SELECT 1 FROM recorded r WHERE r.a = c.a)), \
           (SELECT count(*) FROM recorded r WHERE NOT EXISTS (SELECT 1 FROM claimed c WHERE c.a = r.a) \
                                              AND NOT EXISTS (SELECT 1 FROM unsure u WHERE u.a = r.a)), \
           (SELECT count(*) FROM unsure u WHERE EXISTS (SELECT 1 FROM recorded r WHERE r.a = u.a)), \
           (SELECT count(*) FROM unsure u WHERE NOT EXISTS (SELECT 1 FROM recorded r WHERE r.a = u.a)), \
           (SELECT count(*) - count(DISTINCT attempt_id) FROM orders)",
    )
    .bind(claims.succeeded)
    .bind(claims.unknown)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| anyhow::anyhow!("could not compare the lab's orders with the buyers' successes: {e}"))?;
    let told: std::collections::HashMap<i64, u64> = claims.sold_out.iter().copied().collect();
    let audit = Audit {
        unknown_committed: row.try_get(2)?,
        unknown_not_committed: row.try_get(3)?,
        duplicate_orders: row.try_get(4)?,
        ..Audit::from_tallies(&tallies, row.try_get(0)?, row.try_get(1)?)
    };
    Ok(audit.with_sold_out(
        tallies
            .iter()
            .map(|p| (p.final_stock, told.get(&p.id).copied().unwrap_or(0))),
        claims.quantity,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(initial: i64, sold: i64, left: i64) -> ProductTally {
        ProductTally::new(initial, sold, left)
    }

    #[test]
    fn a_clean_run_is_safe() {
        let a = Audit::from_tallies(&[t(10, 4, 6), t(5, 5, 0)], 0, 0);
        assert_eq!(
            a,
            Audit {
                initial_stock: 15,
                units_sold: 9,
                final_stock: 6,
                oversold_units: 0,
                stock_drift: 0,
                negative_stock: false,
                successes_without_order: 0,
                orders_without_success: 0,
                unknown_committed: 0,
                unknown_not_committed: 0,
                duplicate_orders: 0,
                sold_out_with_stock_left: 0,
                stock_left_after_sold_out: 0,
                cache_drift: None,
            }
        );
    }

    #[test]
    fn sold_out_answers_with_stock_left_are_contradictions() {
        let a = Audit::from_tallies(&[t(10, 10, 0)], 0, 0);
        // Sold out on an empty product, or with less left than a purchase.
        let fine = a.clone().with_sold_out([(0, 90), (1, 4)], 2);
        assert_eq!(fine.sold_out_with_stock_left, 0);
        let told = a.with_sold_out([(3, 5), (0, 7), (1, 0), (2, 1)], 2);
        assert_eq!(
            (
                told.sold_out_with_stock_left,
                told.stock_left_after_sold_out
            ),
            (6, 5)
        );
    }

    #[test]
    fn oversell_is_per_product_not_netted() {
        // Product 1 oversold by 3 (lost updates: stock still shows 7 left);
        // product 2 undersold: the total sold (13) is below the total
        // stock (15), but oversell must not be netted against it.
        let a = Audit::from_tallies(&[t(5, 8, 2), t(10, 5, 5)], 0, 0);
        assert_eq!(a.oversold_units, 3);
        assert_eq!(a.stock_drift, 5 - 8 - 2);
        assert!(!a.negative_stock);
    }

    #[test]
    fn negative_stock_and_drift() {
        let a = Audit::from_tallies(&[t(1, 2, -1)], 0, 0);
        assert_eq!(a.oversold_units, 1);
        assert_eq!(a.stock_drift, 0);
        assert!(a.negative_stock);
        let b = Audit::from_tallies(&[t(10, 3, 8)], 0, 0);
        assert_eq!(b.stock_drift, -1);
    }

    #[test]
    fn client_and_database_disagreements_are_kept() {
        let a = Audit::from_tallies(&[t(3, 1, 2)], 1, 2);
        assert_eq!(
            (a.successes_without_order, a.orders_without_success),
            (1, 2)
        );
        assert_eq!((a.oversold_units, a.stock_drift), (0, 0));
    }

    #[test]
    fn no_products() {
        let a = Audit::from_tallies(&[], 0, 0);
        assert_eq!(a, Audit::from_tallies(&[t(0, 0, 0)], 0, 0));
        assert_eq!(a.initial_stock, 0);
    }
}
