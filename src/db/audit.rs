//! The post-run audit (DESIGN §6.5): the database's truth. `query` reads
//! per-product tallies and the client/database disagreements; the
//! arithmetic (`Audit::from_tallies`) is pure. What the numbers mean (the
//! verdict) is decided in `verdict`, not here.

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    pub initial_stock: i64,
    pub units_sold: i64,
    pub final_stock: i64,
    pub oversold_units: i64,
    pub stock_drift: i64,
    pub negative_stock: bool,
    pub successes_without_order: i64,
    /// Orders of attempts the client neither reported as successes nor
    /// lost track of (see `unknown_*`).
    pub orders_without_success: i64,
    /// Attempts of unknown fate (connection lost on COMMIT, or abandoned in
    /// flight by a stop) that the database shows committed: an order exists.
    #[serde(default)]
    pub unknown_committed: i64,
    /// Attempts of unknown fate that left no order: they did not commit.
    #[serde(default)]
    pub unknown_not_committed: i64,
    /// With a strategy that counts stock in Redis (`stock:{:product}`): the
    /// Redis counters' remaining stock minus (initial stock - units
    /// ordered in Postgres), summed per product as absolute differences.
    /// Absent when Redis does not count the stock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_drift: Option<i64>,
}

/// One product as the audit sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProductTally {
    pub initial_stock: i64,
    /// Sum of `orders.qty` for the product.
    pub units_sold: i64,
    pub final_stock: i64,
}

impl ProductTally {
    pub fn new(initial_stock: i64, units_sold: i64, final_stock: i64) -> ProductTally {
        ProductTally {
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
            cache_drift: None,
        }
    }
}

/// Read the audit from the lab (search_path must point at it).
/// `succeeded_attempts`: the attempt ids the client believes succeeded;
/// `unknown_attempts`: those whose fate it does not know. Orders of unknown
/// attempts are not disagreements: they resolve what the client could not
/// know (as Jepsen's checkers treat indeterminate operations).
pub async fn query(
    conn: &mut PgConnection,
    succeeded_attempts: &[i64],
    unknown_attempts: &[i64],
) -> anyhow::Result<Audit> {
    let rows = sqlx::query(
        "SELECT p.initial_stock, COALESCE(s.sold, 0)::int8, p.stock \
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
                initial_stock: r.try_get(0)?,
                units_sold: r.try_get(1)?,
                final_stock: r.try_get(2)?,
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
           (SELECT count(*) FROM unsure u WHERE NOT EXISTS (SELECT 1 FROM recorded r WHERE r.a = u.a))",
    )
    .bind(succeeded_attempts)
    .bind(unknown_attempts)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| anyhow::anyhow!("could not compare the lab's orders with the buyers' successes: {e}"))?;
    Ok(Audit {
        unknown_committed: row.try_get(2)?,
        unknown_not_committed: row.try_get(3)?,
        ..Audit::from_tallies(&tallies, row.try_get(0)?, row.try_get(1)?)
    })
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
                cache_drift: None,
            }
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
