//! The `\setup` block: its statements as they run on a fresh lab (once,
//! or once per product) and running them.

use anyhow::Context as _;
use sqlx::{Executor as _, PgConnection};

use crate::strategy::program::{Program, SetupParam};
use crate::strategy::Placeholder;

/// One statement of the `\setup` block as it runs on a lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupCall<'a> {
    pub line: usize,
    /// The SQL, with `$n` placeholders for `params`.
    pub sql: &'a str,
    /// Where `sql` holds each placeholder.
    pub placeholders: &'a [Placeholder],
    /// The values of `:product` and `:initial_stock` where the statement
    /// uses them, in placeholder order.
    pub params: Vec<i64>,
    /// The product the statement runs for, if it runs once per product.
    pub product: Option<i64>,
}

/// The `\setup` block as it runs on a lab of `products`, given as `(id,
/// initial_stock)`: a statement that uses neither `:product` nor
/// `:initial_stock` runs once (so `ALTER TABLE ... ADD CONSTRAINT` is not
/// repeated); one that uses either runs once per product. In script order,
/// each in its own implicit transaction.
pub fn setup_calls<'a>(program: &'a Program, products: &[(i64, i64)]) -> Vec<SetupCall<'a>> {
    let mut calls = Vec::new();
    for st in &program.setup {
        if st.params.is_empty() {
            calls.push(SetupCall {
                line: st.line,
                sql: &st.sql,
                placeholders: &st.placeholders,
                params: Vec::new(),
                product: None,
            });
            continue;
        }
        for &(id, initial_stock) in products {
            let params = st
                .params
                .iter()
                .map(|p| match p {
                    SetupParam::Product => id,
                    SetupParam::InitialStock => initial_stock,
                })
                .collect();
            calls.push(SetupCall {
                line: st.line,
                sql: &st.sql,
                placeholders: &st.placeholders,
                params,
                product: Some(id),
            });
        }
    }
    calls
}

/// Run the `\setup` block on the fresh lab (see `setup_calls`).
pub async fn run_setup(
    program: &Program,
    conn: &mut PgConnection,
    products: &[(i64, i64)],
) -> anyhow::Result<()> {
    for call in setup_calls(program, products) {
        let ctx = || format!("strategy \\setup failed at line {}", call.line);
        let Some(id) = call.product else {
            conn.execute(sqlx::raw_sql(call.sql))
                .await
                .with_context(ctx)?;
            continue;
        };
        let mut q = sqlx::query(call.sql).persistent(false);
        for &v in &call.params {
            q = q.bind(v);
        }
        conn.execute(q)
            .await
            .with_context(|| format!("{} (product {id})", ctx()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_statements_run_once_or_per_product() {
        let prog = crate::strategy::parse(
            "t.sql",
            "\\setup\nALTER TABLE products ADD COLUMN x int;\nUPDATE products SET stock = :initial_stock WHERE id = :product;\n\\endsetup\nSELECT 1;\n",
        )
        .unwrap();
        let calls = setup_calls(&prog, &[(1, 5), (2, 7)]);
        let shape: Vec<(Option<i64>, Vec<i64>)> = calls
            .iter()
            .map(|c| (c.product, c.params.clone()))
            .collect();
        assert_eq!(
            shape,
            [(None, vec![]), (Some(1), vec![5, 1]), (Some(2), vec![7, 2])]
        );
        assert!(calls[1].sql.contains("$1") && calls[1].sql.contains("$2"));
    }
}
