//! Scopes: what a name means where. The reader's state (`Reader`: the
//! facts being built, the CTEs in scope, the alias each read was bound to,
//! the locking clauses' strengths) and the bindings of a FROM list, with
//! the resolution of a column reference to the rows it comes from.

use sqlparser::ast as sql;

use super::{Col, Comparison, Facts, LockStrength, Names, Output, Read, Rows, Source};

pub(super) fn ident(i: &sql::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

pub(super) fn object_last(n: &sql::ObjectName) -> String {
    match n.0.last() {
        Some(sql::ObjectNamePart::Identifier(i)) => ident(i),
        Some(other) => other.to_string().to_lowercase(),
        None => String::new(),
    }
}

/// What a name in a FROM list stands for.
#[derive(Debug, Clone)]
pub(super) enum Bound {
    /// A table read by the statement: `reads[i]`.
    Table(usize),
    /// The table a write changes: `writes[i]`.
    Target(usize),
    /// A CTE, subquery or table function: its outputs, and where its rows
    /// come from.
    Derived {
        outputs: Vec<Output>,
        rows: Vec<Source>,
    },
}

#[derive(Debug, Clone)]
pub(super) struct Binding {
    pub(super) name: String,
    pub(super) bound: Bound,
    /// How deep the (sub)query that bound it is: an unqualified column
    /// belongs to the innermost level.
    pub(super) level: usize,
}

pub(super) fn next_level(scope: &[Binding]) -> usize {
    scope.iter().map(|b| b.level + 1).max().unwrap_or(0)
}

pub(super) struct Cte {
    pub(super) name: String,
    pub(super) outputs: Vec<Output>,
    pub(super) write: Option<usize>,
}

pub(super) struct Reader<'a> {
    pub(super) f: Facts,
    pub(super) ctes: Vec<Cte>,
    /// `aliases[i]`: the name `reads[i]` was bound to (for `FOR UPDATE OF`).
    pub(super) aliases: Vec<String>,
    pub(super) strengths: Vec<LockStrength>,
    pub(super) next_lock: usize,
    /// The data-modifying CTE an INSERT ... SELECT takes its rows from.
    pub(super) feeds: Option<usize>,
    pub(super) param: &'a dyn Fn(usize) -> Option<usize>,
    pub(super) names: Names<'a>,
    /// The scalar subqueries read as one column (`Operand::subquery`): the
    /// address of their query in the statement's tree, and the column.
    pub(super) scalars: Vec<(usize, String)>,
}

pub(super) fn strip(e: &sql::Expr) -> &sql::Expr {
    match e {
        sql::Expr::Nested(x) => strip(x),
        _ => e,
    }
}

pub(super) fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

impl Reader<'_> {
    pub(super) fn bind_table(
        &mut self,
        name: &str,
        alias: Option<String>,
        level: usize,
    ) -> Binding {
        let shown = alias.unwrap_or_else(|| name.to_string());
        if let Some(c) = self.ctes.iter().rev().find(|c| c.name == name) {
            let mut rows: Vec<Source> = Vec::new();
            let mut outputs = c.outputs.clone();
            if let Some(w) = c.write {
                rows.push(Source::Write(w));
                for o in &mut outputs {
                    push_unique(&mut o.sources, Source::Write(w));
                }
            } else {
                for o in &outputs {
                    for s in &o.sources {
                        push_unique(&mut rows, s.clone());
                    }
                }
            }
            return Binding {
                name: shown,
                bound: Bound::Derived { outputs, rows },
                level,
            };
        }
        let idx = self.f.reads.len();
        self.f.reads.push(Read {
            table: name.to_string(),
            columns: Vec::new(),
            rows: Rows::default(),
            lock: None,
        });
        self.aliases.push(shown.clone());
        Binding {
            name: shown,
            bound: Bound::Table(idx),
            level,
        }
    }

    /// The rows of every binding at the innermost level of `scope`.
    pub(super) fn all_sources(&self, scope: &[Binding]) -> Vec<Source> {
        let level = scope.iter().map(|b| b.level).max().unwrap_or(0);
        let mut out = Vec::new();
        for b in scope.iter().filter(|b| b.level == level) {
            match &b.bound {
                Bound::Table(i) => push_unique(
                    &mut out,
                    Source::Read {
                        read: *i,
                        column: None,
                    },
                ),
                Bound::Target(w) => push_unique(&mut out, Source::Write(*w)),
                Bound::Derived { rows, .. } => {
                    for s in rows {
                        push_unique(&mut out, s.clone());
                    }
                }
            }
        }
        out
    }

    /// Resolve a column reference against the bindings in scope.
    pub(super) fn column(&mut self, parts: &[sql::Ident], scope: &[Binding]) -> (Col, Vec<Source>) {
        let column = parts.last().map(ident).unwrap_or_default();
        let candidates: Vec<Binding> = if parts.len() >= 2 {
            let q = ident(&parts[parts.len() - 2]);
            scope
                .iter()
                .rev()
                .find(|b| b.name == q)
                .cloned()
                .into_iter()
                .collect()
        } else {
            let level = scope.iter().map(|b| b.level).max().unwrap_or(0);
            let inner: Vec<Binding> = scope.iter().filter(|b| b.level == level).cloned().collect();
            // Among several, a derived table that has the column by name.
            let named: Vec<Binding> = inner
                .iter()
                .filter(|b| match &b.bound {
                    Bound::Derived { outputs, .. } => outputs
                        .iter()
                        .any(|o| o.name.as_deref() == Some(column.as_str())),
                    _ => false,
                })
                .cloned()
                .collect();
            if inner.len() > 1 && named.len() == 1 {
                named
            } else {
                inner
            }
        };
        let mut sources = Vec::new();
        let mut tables: Vec<String> = Vec::new();
        for b in &candidates {
            match &b.bound {
                Bound::Table(i) => {
                    push_unique(&mut self.f.reads[*i].columns, column.clone());
                    sources.push(Source::Read {
                        read: *i,
                        column: Some(column.clone()),
                    });
                    tables.push(self.f.reads[*i].table.clone());
                }
                Bound::Target(w) => tables.push(self.f.writes[*w].table.clone()),
                Bound::Derived { outputs, rows } => {
                    match outputs
                        .iter()
                        .find(|o| o.name.as_deref() == Some(column.as_str()))
                    {
                        Some(o) => sources.extend(o.sources.iter().cloned()),
                        None => sources.extend(rows.iter().cloned()),
                    }
                    tables.push(b.name.clone());
                }
            }
        }
        let table = match tables.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        };
        (Col { table, column }, sources)
    }

    /// An expression's operand facts; registers the reads and advisory calls
    /// inside it.
    /// Give the rows picked by `filter` to every table bound at `level`.
    pub(super) fn set_rows(
        &mut self,
        scope: &[Binding],
        level: usize,
        filter: &[Comparison],
        opaque: bool,
    ) {
        for b in scope.iter().filter(|b| b.level == level) {
            match b.bound {
                Bound::Table(i) => {
                    let t = self.f.reads[i].table.clone();
                    self.f.reads[i].rows = Self::rows_of(&t, filter, opaque);
                }
                Bound::Target(w) => {
                    let t = self.f.writes[w].table.clone();
                    self.f.writes[w].rows = Self::rows_of(&t, filter, opaque);
                }
                Bound::Derived { .. } => {}
            }
        }
    }
}

/// The name PostgreSQL gives an unaliased output column, for the shapes
/// where it is certain: a column, `t.col`, `f(...)`, a cast of those.
pub(super) fn output_name(e: &sql::Expr) -> Option<String> {
    match e {
        sql::Expr::Identifier(i) => Some(ident(i)),
        sql::Expr::CompoundIdentifier(p) => p.last().map(ident),
        sql::Expr::Function(f) => Some(object_last(&f.name)),
        sql::Expr::Cast { expr, .. } => match expr.as_ref() {
            sql::Expr::Identifier(_)
            | sql::Expr::CompoundIdentifier(_)
            | sql::Expr::Function(_) => output_name(expr),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;

    /// `$n` is slot `100 + n`, named `vn`.
    fn f(sql: &str) -> Facts {
        read(sql, &|n| Some(100 + n), &|s| format!("v{}", s - 100))
    }

    #[test]
    fn outputs_name_their_sources() {
        let x = f("SELECT o.qty AS stock, p.version FROM products p JOIN orders o ON o.product_id = p.id WHERE p.id = $1");
        let out = x.outputs.as_ref().unwrap();
        assert_eq!(out[0].name.as_deref(), Some("stock"));
        let Source::Read { read, column } = &out[0].sources[0] else {
            panic!("{:?}", out[0].sources)
        };
        assert_eq!(
            (x.reads[*read].table.as_str(), column.as_deref()),
            ("orders", Some("qty"))
        );
        assert_eq!(out[1].name.as_deref(), Some("version"));
        // Subqueries read too.
        let x = f("SELECT (SELECT count(*) FROM orders WHERE product_id = $1) AS n, stock FROM products WHERE id = $1");
        let tables: Vec<&str> = x.reads.iter().map(|r| r.table.as_str()).collect();
        assert!(
            tables.contains(&"orders") && tables.contains(&"products"),
            "{tables:?}"
        );
        let x = f("SELECT stock FROM products WHERE id IN (SELECT product_id FROM orders WHERE buyer_id = $1)");
        assert!(x.reads.iter().any(|r| r.table == "orders"));
        assert_eq!(f("SELECT * FROM products").output_names(), None);
        assert_eq!(f("VALUES (1)").output_names(), None);
    }
}
