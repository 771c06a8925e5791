//! A schedule as a PostgreSQL isolation-tester spec (`src/test/isolation`
//! in PostgreSQL's tree; the binary ships with the server's development
//! files), so that the interleaving can be reproduced without racelab:
//!
//! ```text
//! isolationtester "host=... dbname=..." < counterexample.spec
//! ```
//!
//! The spec is self-contained: its `setup` creates a schema of its own with
//! the lab's tables (racelab's migrations), seeds the product as the lab is
//! seeded and runs the strategy's `\setup`; one `session` per buyer holds
//! the statements that buyer sent, in order, with the values that were
//! bound written in as literals; one `permutation` orders them as the
//! schedule did, and a last `audit` step reads `initial_stock`,
//! `units_sold`, `final_stock` and `oversold` (units sold beyond the stock).
//! `teardown` drops the schema.

use std::fmt::Write as _;

use crate::db::audit::PRODUCT_TALLIES;
use crate::db::schema::quote_ident;
use crate::error::bad_input;
use crate::strategy::{setup_calls, Bound, Placeholder, Program};

/// A statement of the schedule, as the spec needs it.
#[derive(Debug, Clone)]
pub struct SpecStep {
    pub buyer: u32,
    pub line: usize,
    pub try_no: u32,
    /// The SQL as sent, values inlined.
    pub sql: String,
    /// A ROLLBACK racelab sent rather than the script.
    pub by_racelab: bool,
}

/// What the spec is built from.
#[derive(Debug)]
pub struct SpecInput<'a> {
    pub strategy: &'a str,
    pub program: &'a Program,
    /// The schema the spec creates (and drops).
    pub schema: String,
    pub buyers: u32,
    pub stock: i64,
    pub quantity: i64,
    pub product: i64,
    pub steps: &'a [SpecStep],
    /// Buyers PostgreSQL chose as a deadlock victim in the schedule: their
    /// sessions get a shorter deadlock_timeout than the others, so the
    /// isolation tester breaks the deadlock the same way.
    pub deadlock_victims: Vec<u32>,
}

/// The spec text. Fails (bad input) for SQL the spec format cannot hold: a
/// `}` ends a spec's SQL block, whatever surrounds it.
pub fn render(input: &SpecInput) -> anyhow::Result<String> {
    let schema = quote_ident(&input.schema);
    let mut setup = format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE;\nCREATE SCHEMA {schema};\nSET search_path = {schema};\n"
    );
    for m in crate::db::schema::migrator().iter() {
        setup.push_str(m.sql.trim());
        setup.push('\n');
    }
    let _ = writeln!(
        setup,
        "INSERT INTO products (id, name, stock, initial_stock) VALUES ({}, {}, {}, {});",
        input.product,
        literal(&Bound::Text(format!("product {}", input.product))),
        int(input.stock),
        int(input.stock)
    );
    for call in setup_calls(input.program, &[(input.product, input.stock)]) {
        let params: Vec<Bound> = call.params.iter().map(|&v| Bound::Int(v)).collect();
        let _ = writeln!(
            setup,
            "{};",
            inline(call.sql, call.placeholders, &params).trim()
        );
    }
    check_block("the setup (migrations and the strategy's \\setup)", &setup)?;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# racelab explore: strategy {}, {} buyers, stock {}, quantity {}, one attempt each.",
        input.strategy, input.buyers, input.stock, input.quantity
    );
    let order: Vec<String> = input.steps.iter().map(|s| s.buyer.to_string()).collect();
    let _ = writeln!(out, "# schedule: {}", order.join(" "));
    out.push_str(
        "# Run: isolationtester \"host=... dbname=...\" < this.spec\n\
         # The last step's `oversold` counts units sold beyond the initial stock.\n\n",
    );
    let _ = writeln!(out, "setup\n{{\n{}}}\n", indent(&setup));
    let _ = writeln!(out, "teardown {{ DROP SCHEMA {schema} CASCADE; }}\n");

    let mut names: Vec<String> = Vec::with_capacity(input.steps.len());
    let mut counts = vec![0usize; input.buyers as usize + 1];
    for s in input.steps {
        counts[s.buyer as usize] += 1;
        names.push(format!("b{}_{}", s.buyer, counts[s.buyer as usize]));
    }
    let any_deadlock = !input.deadlock_victims.is_empty();
    for b in 1..=input.buyers {
        let _ = writeln!(out, "session buyer{b}");
        let timeout = if !any_deadlock {
            String::new()
        } else if input.deadlock_victims.contains(&b) {
            " SET deadlock_timeout = '1s';".to_string()
        } else {
            " SET deadlock_timeout = '100s';".to_string()
        };
        let _ = writeln!(out, "setup {{ SET search_path = {schema};{timeout} }}");
        for (s, name) in input.steps.iter().zip(&names).filter(|(s, _)| s.buyer == b) {
            let what = if s.by_racelab {
                format!("the ROLLBACK racelab sends after line {}", s.line)
            } else {
                format!("line {}", s.line)
            };
            let tries = if s.try_no > 1 {
                format!(", try {}", s.try_no)
            } else {
                String::new()
            };
            check_block(&format!("the statement at line {}", s.line), &s.sql)?;
            let _ = writeln!(out, "# {what}{tries}");
            let _ = writeln!(out, "step {name} {{ {}; }}", s.sql.trim());
        }
        out.push('\n');
    }
    let audit = format!(
        "SELECT initial_stock, units_sold, final_stock, \
         greatest(units_sold - initial_stock, 0) AS oversold \
         FROM ({PRODUCT_TALLIES}) AS t(initial_stock, units_sold, final_stock);"
    );
    let _ = writeln!(
        out,
        "session audit\nsetup {{ SET search_path = {schema}; }}\nstep audit {{ {audit} }}\n"
    );
    let _ = writeln!(out, "permutation {} audit", names.join(" "));
    Ok(out)
}

pub(crate) fn indent(block: &str) -> String {
    block
        .lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("  {l}\n")
            }
        })
        .collect()
}

pub(crate) fn check_block(what: &str, sql: &str) -> anyhow::Result<()> {
    if sql.contains('}') {
        return Err(bad_input(format!(
            "--spec: {what} contains `}}`, which ends a block in the isolation tester's spec format; \
             the schedule cannot be written as a spec (replay it with --schedule instead)"
        )));
    }
    Ok(())
}

fn int(v: i64) -> String {
    if v < 0 {
        format!("({v})")
    } else {
        v.to_string()
    }
}

/// A bound value as a SQL literal of the type it was bound as.
pub fn literal(b: &Bound) -> String {
    match b {
        Bound::Int(v) => int(*v),
        Bound::Text(s) if s.contains('\\') => {
            format!("E'{}'::text", s.replace('\\', "\\\\").replace('\'', "''"))
        }
        Bound::Text(s) => format!("'{}'::text", s.replace('\'', "''")),
    }
}

/// `sql` with each of its `placeholders` (where the lexer wrote `$n`)
/// replaced by the literal of `params[n-1]`; one with no value is left as
/// written. Nothing else in the text is read: a `$1` inside quotes, dollar
/// quotes or comments was never a placeholder (a script cannot write one),
/// so it is not in `placeholders`.
pub fn inline(sql: &str, placeholders: &[Placeholder], params: &[Bound]) -> String {
    let mut out = String::with_capacity(sql.len() + 8 * placeholders.len());
    let mut copied = 0;
    for p in placeholders {
        let Some(v) = params.get(p.param) else {
            continue;
        };
        out.push_str(&sql[copied..p.start]);
        out.push_str(&literal(v));
        copied = p.end;
    }
    out.push_str(&sql[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statement `stmt` as the lexer writes it, values inlined.
    fn inlined(stmt: &str, params: &[Bound]) -> String {
        let program = crate::strategy::parse("t.sql", &format!("{stmt};\n"))
            .unwrap_or_else(|e| panic!("{}", e.render()));
        let st = &program.stmts[0];
        inline(&st.sql, &st.placeholders, params)
    }

    #[test]
    fn placeholders_become_literals() {
        let p = [Bound::Int(1), Bound::Int(-2), Bound::Text("it's".into())];
        assert_eq!(
            inlined("UPDATE t SET s = :qty - :buyer WHERE n = :product", &p),
            "UPDATE t SET s = 1 - (-2) WHERE n = 'it''s'::text"
        );
        assert_eq!(inlined("SELECT :qty::int8, x$1", &p), "SELECT 1::int8, x$1");
        assert_eq!(inlined("SELECT :qty + :qty", &p), "SELECT 1 + 1");
        // A placeholder with no value stays as written.
        assert_eq!(inlined("SELECT :qty, :buyer", &p[..1]), "SELECT 1, $2");
    }

    #[test]
    fn quotes_and_comments_are_left_alone() {
        let p = [Bound::Int(7)];
        for (stmt, want) in [
            ("SELECT '$1', :qty", "SELECT '$1', 7"),
            ("SELECT ':qty', :qty", "SELECT ':qty', 7"),
            ("SELECT 'a''$1', :qty", "SELECT 'a''$1', 7"),
            ("SELECT E'\\'$1', :qty", "SELECT E'\\'$1', 7"),
            ("SELECT \"$1\", :qty", "SELECT \"$1\", 7"),
            ("SELECT $$ $1 :qty $$, :qty", "SELECT $$ $1 :qty $$, 7"),
            ("SELECT $q$ $1 $q$, :qty", "SELECT $q$ $1 $q$, 7"),
            ("SELECT $q$x$q$, :qty", "SELECT $q$x$q$, 7"),
            ("SELECT 'é$1', :qty", "SELECT 'é$1', 7"),
            (
                "SELECT /* $1 /* :qty */ $1 */ :qty",
                "SELECT /* $1 /* :qty */ $1 */ 7",
            ),
            // A line comment is not sent at all.
            ("SELECT :qty -- $1 :qty\n, 2", "SELECT 7 \n, 2"),
        ] {
            assert_eq!(inlined(stmt, &p), want, "{stmt}");
        }
    }

    #[test]
    fn text_with_backslashes_uses_an_escape_string() {
        assert_eq!(literal(&Bound::Text("a\\b'".into())), "E'a\\\\b'''::text");
        assert_eq!(literal(&Bound::Int(-1)), "(-1)");
    }

    #[test]
    fn a_spec_has_sessions_steps_and_one_permutation() {
        let program = crate::strategy::parse(
            "t.sql",
            "\\setup\nALTER TABLE products ADD COLUMN note text;\n\\endsetup\nBEGIN;\nSELECT stock FROM products WHERE id = :product \\gset\nCOMMIT;\n",
        )
        .unwrap();
        let step = |buyer, line, sql: &str| SpecStep {
            buyer,
            line,
            try_no: 1,
            sql: sql.into(),
            by_racelab: false,
        };
        let steps = [
            step(1, 4, "BEGIN"),
            step(2, 4, "BEGIN"),
            step(1, 5, "SELECT stock FROM products WHERE id = 1"),
            step(2, 6, "COMMIT"),
            step(1, 6, "COMMIT"),
        ];
        let spec = render(&SpecInput {
            strategy: "t",
            program: &program,
            schema: "racelab_spec".into(),
            buyers: 2,
            stock: 1,
            quantity: 1,
            product: 1,
            steps: &steps,
            deadlock_victims: vec![],
        })
        .unwrap();
        assert!(spec.contains("CREATE TABLE products"), "{spec}");
        assert!(
            spec.contains("ALTER TABLE products ADD COLUMN note text;"),
            "{spec}"
        );
        assert!(spec.contains("session buyer1\n"), "{spec}");
        assert!(
            spec.contains("step b1_2 { SELECT stock FROM products WHERE id = 1; }"),
            "{spec}"
        );
        assert!(
            spec.contains("permutation b1_1 b2_1 b1_2 b2_2 b1_3 audit\n"),
            "{spec}"
        );
        assert!(spec.contains("AS oversold"), "{spec}");
        assert!(!spec.contains("deadlock_timeout"), "{spec}");

        let braces = [step(1, 4, "SELECT '{}'::json")];
        let err = render(&SpecInput {
            steps: &braces,
            program: &program,
            schema: "s".into(),
            strategy: "t",
            buyers: 1,
            stock: 1,
            quantity: 1,
            product: 1,
            deadlock_victims: vec![],
        })
        .unwrap_err();
        assert!(err.to_string().contains("line 4"), "{err}");
    }
}
