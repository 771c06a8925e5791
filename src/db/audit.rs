//! The post-run audit (DESIGN §6.5): the database's truth.
//! INTERFACE PLACEHOLDER.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Safe,
    Oversold,
    Inconsistent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    pub initial_stock: i64,
    pub units_sold: i64,
    pub final_stock: i64,
    pub oversold_units: i64,
    pub stock_drift: i64,
    pub negative_stock: bool,
    pub successes_without_order: i64,
    pub orders_without_success: i64,
}

impl Audit {
    pub fn verdict(&self) -> Verdict {
        if self.oversold_units > 0 {
            Verdict::Oversold
        } else if self.stock_drift != 0
            || self.negative_stock
            || self.successes_without_order != 0
            || self.orders_without_success != 0
        {
            Verdict::Inconsistent
        } else {
            Verdict::Safe
        }
    }
}
