//! Data-modifying statements: INSERT, UPDATE and DELETE (top level or in a
//! CTE) read into `Write`s — the rows they pick, how each assigned column
//! is computed (relative to the row, from variables, from other rows), what
//! they return, and `ON CONFLICT`.

use std::ops::ControlFlow;

use sqlparser::ast as sql;

use super::scope::{ident, next_level, object_last, push_unique, strip, Binding, Bound, Reader};
use super::{Assign, Col, Kind, Operand, Output, Rows, Source, Value, Write, WriteOp};

impl Reader<'_> {
    pub(super) fn returning(
        &mut self,
        items: &Option<Vec<sql::SelectItem>>,
        w: usize,
        scope: &[Binding],
    ) -> Option<Vec<Output>> {
        let items = items.as_ref()?;
        let mut outputs = Vec::new();
        for item in items {
            for mut o in self.select_item(item, scope) {
                push_unique(&mut o.sources, Source::Write(w));
                if let Some(n) = &o.name {
                    push_unique(&mut self.f.writes[w].returning, n.clone());
                }
                outputs.push(o);
            }
        }
        Some(outputs)
    }

    pub(super) fn new_write(&mut self, table: String, op: WriteOp) -> usize {
        self.f.writes.push(Write {
            table,
            op,
            assigns: Vec::new(),
            rows: Rows::default(),
            returning: Vec::new(),
            checks: Vec::new(),
            cte: None,
            on_conflict: false,
        });
        self.f.writes.len() - 1
    }

    /// An INSERT, UPDATE or DELETE, top level or in a CTE.
    pub(super) fn dml(
        &mut self,
        s: &sql::Statement,
        outer: &[Binding],
    ) -> (Option<Vec<Output>>, Kind) {
        let level = next_level(outer);
        let mut scope: Vec<Binding> = outer.to_vec();
        match s {
            sql::Statement::Update(u) => {
                let (table, alias) = match &u.table.relation {
                    sql::TableFactor::Table { name, alias, .. } => {
                        (object_last(name), alias.as_ref().map(|a| ident(&a.name)))
                    }
                    other => (other.to_string(), None),
                };
                let w = self.new_write(table.clone(), WriteOp::Update);
                scope.push(Binding {
                    name: alias.unwrap_or_else(|| table.clone()),
                    bound: Bound::Target(w),
                    level,
                });
                let mut conds: Vec<&sql::Expr> = Vec::new();
                for j in &u.table.joins {
                    self.table_factor(&j.relation, &mut scope, level, &mut conds);
                }
                if let Some(
                    sql::UpdateTableFromKind::BeforeSet(from)
                    | sql::UpdateTableFromKind::AfterSet(from),
                ) = &u.from
                {
                    for twj in from {
                        self.table_with_joins(twj, &mut scope, level, &mut conds);
                    }
                }
                conds.extend(u.selection.iter());
                self.filter_rows(&scope, level, conds);
                for a in &u.assignments {
                    self.assign(w, &a.target, &a.value, &scope);
                }
                let outputs = self.returning(&u.returning, w, &scope);
                (outputs, Kind::Update)
            }
            sql::Statement::Delete(d) => {
                let from = match &d.from {
                    sql::FromTable::WithFromKeyword(v) | sql::FromTable::WithoutKeyword(v) => v,
                };
                let (table, alias) = match d.tables.first() {
                    Some(n) => (object_last(n), None),
                    None => match from.first().map(|t| &t.relation) {
                        Some(sql::TableFactor::Table { name, alias, .. }) => {
                            (object_last(name), alias.as_ref().map(|a| ident(&a.name)))
                        }
                        _ => (String::new(), None),
                    },
                };
                let w = self.new_write(table.clone(), WriteOp::Delete);
                scope.push(Binding {
                    name: alias.unwrap_or_else(|| table.clone()),
                    bound: Bound::Target(w),
                    level,
                });
                let mut conds: Vec<&sql::Expr> = Vec::new();
                if let Some(first) = from.first() {
                    for j in &first.joins {
                        self.table_factor(&j.relation, &mut scope, level, &mut conds);
                    }
                }
                for twj in from.iter().skip(1).chain(d.using.iter().flatten()) {
                    self.table_with_joins(twj, &mut scope, level, &mut conds);
                }
                conds.extend(d.selection.iter());
                self.filter_rows(&scope, level, conds);
                let outputs = self.returning(&d.returning, w, &scope);
                (outputs, Kind::Delete)
            }
            sql::Statement::Insert(i) => {
                let table = match &i.table {
                    sql::TableObject::TableName(n) => object_last(n),
                    other => other.to_string(),
                };
                let alias = i.table_alias.as_ref().map(|a| ident(&a.alias));
                let columns: Vec<String> = i.columns.iter().map(object_last).collect();
                let mut feeds: Option<usize> = None;
                let mut values: Option<Vec<Operand>> = None;
                if let Some(src) = &i.source {
                    match src.body.as_ref() {
                        sql::SetExpr::Values(v) if v.rows.len() == 1 && src.with.is_none() => {
                            values =
                                Some(v.rows[0].iter().map(|e| self.operand(e, outer)).collect());
                        }
                        body => {
                            // INSERT ... SELECT ... FROM a data-modifying CTE
                            // inserts as many rows as that write matched.
                            if let sql::SetExpr::Select(sel) = body {
                                for t in &sel.from {
                                    if let sql::TableFactor::Table { name, .. } = &t.relation {
                                        let n = object_last(name);
                                        if let Some(c) =
                                            self.ctes.iter().rev().find(|c| c.name == n)
                                        {
                                            feeds = feeds.or(c.write);
                                        }
                                    }
                                }
                            }
                            let _ = self.query(src, outer);
                        }
                    }
                }
                let w = self.new_write(table.clone(), WriteOp::Insert);
                if let Some(vals) = values {
                    for (c, o) in columns.iter().zip(vals) {
                        let value = if o.sources.is_empty() {
                            if o.vars.is_empty() {
                                Value::Constant(o.expr.clone())
                            } else {
                                Value::Variables {
                                    vars: o.vars.clone(),
                                    expr: o.expr.clone(),
                                }
                            }
                        } else {
                            Value::Rows {
                                sources: o.sources.clone(),
                                vars: o.vars.clone(),
                            }
                        };
                        self.f.writes[w].assigns.push(Assign {
                            column: c.clone(),
                            value,
                            text: o.text.clone(),
                        });
                    }
                }
                scope.push(Binding {
                    name: alias.unwrap_or_else(|| table.clone()),
                    bound: Bound::Target(w),
                    level,
                });
                if let Some(sql::OnInsert::OnConflict(oc)) = &i.on {
                    self.f.writes[w].on_conflict = true;
                    if let sql::OnConflictAction::DoUpdate(du) = &oc.action {
                        scope.push(Binding {
                            name: "excluded".into(),
                            bound: Bound::Derived {
                                outputs: Vec::new(),
                                rows: Vec::new(),
                            },
                            level,
                        });
                        for a in &du.assignments {
                            self.assign(w, &a.target, &a.value, &scope);
                        }
                        if let Some(sel) = &du.selection {
                            let (cs, op) = self.conjuncts(sel, &scope);
                            let t = self.f.writes[w].table.clone();
                            self.f.writes[w].rows = Self::rows_of(&t, &cs, op);
                        }
                    }
                }
                let outputs = self.returning(&i.returning, w, &scope);
                if self.feeds.is_none() {
                    self.feeds = feeds;
                }
                (outputs, Kind::Insert)
            }
            _ => (None, Kind::Other),
        }
    }

    pub(super) fn assign(
        &mut self,
        w: usize,
        target: &sql::AssignmentTarget,
        e: &sql::Expr,
        scope: &[Binding],
    ) {
        let columns: Vec<String> = match target {
            sql::AssignmentTarget::ColumnName(n) => vec![object_last(n)],
            sql::AssignmentTarget::Tuple(v) => v.iter().map(object_last).collect(),
        };
        let o = self.operand(e, scope);
        let table = self.f.writes[w].table.clone();
        let own = |c: &Col| c.table.as_deref().map_or(true, |t| t == table);
        for column in &columns {
            let value = if columns.len() > 1 {
                Value::Row
            } else if !o.sources.is_empty() {
                Value::Rows {
                    sources: o.sources.clone(),
                    vars: o.vars.clone(),
                }
            } else if o.cols.is_empty() {
                if o.vars.is_empty() {
                    Value::Constant(o.expr.clone())
                } else {
                    Value::Variables {
                        vars: o.vars.clone(),
                        expr: o.expr.clone(),
                    }
                }
            } else if o.cols.iter().all(|c| own(c) && c.column == *column) {
                self.relative(e, column).unwrap_or(Value::Row)
            } else {
                Value::Row
            };
            self.f.writes[w].assigns.push(Assign {
                column: column.clone(),
                value,
                text: o.text.clone(),
            });
        }
    }

    /// `c + e`, `c - e`, `e + c` with `e` free of columns.
    pub(super) fn relative(&self, e: &sql::Expr, column: &str) -> Option<Value> {
        let is_col = |x: &sql::Expr| match strip(x) {
            sql::Expr::Identifier(i) => ident(i) == column,
            sql::Expr::CompoundIdentifier(p) => p.last().is_some_and(|i| ident(i) == column),
            _ => false,
        };
        let free = |x: &sql::Expr| {
            let mut has_col = false;
            let _ = sql::visit_expressions(x, |y: &sql::Expr| {
                if matches!(
                    y,
                    sql::Expr::Identifier(_) | sql::Expr::CompoundIdentifier(_)
                ) {
                    has_col = true;
                }
                ControlFlow::<()>::Continue(())
            });
            !has_col
        };
        match strip(e) {
            sql::Expr::BinaryOp { left, op, right } => {
                let sign = match op {
                    sql::BinaryOperator::Plus => 1,
                    sql::BinaryOperator::Minus => -1,
                    _ => return None,
                };
                if is_col(left) && free(right) {
                    Some(Value::Relative {
                        sign,
                        by: self.compile(right),
                    })
                } else if sign == 1 && is_col(right) && free(left) {
                    Some(Value::Relative {
                        sign,
                        by: self.compile(left),
                    })
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use crate::strategy::expr::{BinOp, Expr};

    /// `$n` is slot `100 + n`, named `vn`.
    fn f(sql: &str) -> Facts {
        read(sql, &|n| Some(100 + n), &|s| format!("v{}", s - 100))
    }

    #[test]
    fn assigned_values() {
        let x = f("UPDATE products SET stock = stock - $1, version = version + 1, name = 'x', sold = $2 * 2 WHERE id = $3");
        let w = &x.writes[0];
        assert_eq!((w.table.as_str(), w.op), ("products", WriteOp::Update));
        let v: Vec<(&str, &Value)> = w
            .assigns
            .iter()
            .map(|a| (a.column.as_str(), &a.value))
            .collect();
        assert_eq!(
            v[0],
            (
                "stock",
                &Value::Relative {
                    sign: -1,
                    by: Some(Expr::Var(101))
                }
            )
        );
        assert!(matches!(v[1].1, Value::Relative { sign: 1, .. }));
        assert!(matches!(v[2].1, Value::Constant(None)));
        assert_eq!(
            v[3].1,
            &Value::Variables {
                vars: vec![102],
                expr: Some(Expr::Bin(
                    BinOp::Mul,
                    Box::new(Expr::Int(2)),
                    Box::new(Expr::Var(102))
                ))
            }
        );
        assert_eq!(w.assigns[3].text, ":v2 * 2");
        assert_eq!(x.rows_from, Some(0));
        let x = f("UPDATE products SET stock = greatest(stock - 1, 0)");
        assert_eq!(x.writes[0].assigns[0].value, Value::Row);
        // From rows the statement reads: UPDATE ... FROM a subquery.
        let x = f("UPDATE products p SET stock = s.stock - $1 FROM (SELECT stock FROM products WHERE id = $2) s WHERE p.id = $2");
        assert!(matches!(x.writes[0].assigns[0].value, Value::Rows { .. }));
        assert_eq!(x.reads.len(), 1);
        assert_eq!(x.writes[0].rows.key[0].0, "id");
    }

    #[test]
    fn inserts_and_upserts() {
        let x = f("INSERT INTO orders (product_id, buyer_id, qty) VALUES ($1, $2, 3)");
        let w = &x.writes[0];
        assert_eq!(w.op, WriteOp::Insert);
        assert_eq!(w.assigns.len(), 3);
        assert!(matches!(
            w.assigns[2].value,
            Value::Constant(Some(Expr::Int(3)))
        ));
        let x = f("INSERT INTO orders (product_id, qty) SELECT id, $1 FROM products WHERE id = $2 AND stock > 0");
        assert!(x.reads.iter().any(|r| r.table == "products"));
        let x = f("INSERT INTO tally (product_id, n) VALUES ($1, 1) ON CONFLICT (product_id) DO UPDATE SET n = tally.n + excluded.n");
        let w = &x.writes[0];
        assert!(w.on_conflict);
        assert!(w
            .assigns
            .iter()
            .any(|a| a.column == "n" && matches!(a.value, Value::Row | Value::Relative { .. })));
    }
}
