//! Operands: value expressions read into `Operand`s (the columns,
//! variables and rows a value comes from, and the value as a script
//! expression when racelab can evaluate it), WHERE conditions split into
//! comparisons, and the advisory-lock calls found inside expressions.

use std::ops::ControlFlow;

use sqlparser::ast as sql;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::fold::{fold, folded_vars};
use super::scope::{object_last, push_unique, strip, Binding, Reader};
use super::{
    Advisory, AdvisoryAction, AdvisoryScope, Call, Cmp, Col, Comparison, Facts, IsoCall, IsoTarget,
    IsoValue, Isolation, Kind, Names, Operand, Rows, Source, Subquery, COLUMN_SLOT,
};
use crate::strategy::expr::{BinOp, Expr, Func};

/// PostgreSQL functions racelab knows change nothing a race depends on:
/// their calls are values, not effects. Any other function is recorded as
/// a `Call` (a function `\setup` created, or one racelab does not know).
const HARMLESS: &[&str] = &[
    "abs",
    "array_agg",
    "array_length",
    "avg",
    "bool_and",
    "bool_or",
    "btrim",
    "ceil",
    "ceiling",
    "char_length",
    "clock_timestamp",
    "coalesce",
    "concat",
    "concat_ws",
    "count",
    "current_date",
    "current_setting",
    "current_time",
    "current_timestamp",
    "currval",
    "date_part",
    "date_trunc",
    "every",
    "extract",
    "floor",
    "format",
    "gen_random_uuid",
    "generate_series",
    "greatest",
    "hashtext",
    "hashtextextended",
    "int4",
    "int8",
    "jsonb_build_object",
    "json_build_object",
    "least",
    "left",
    "length",
    "localtime",
    "localtimestamp",
    "lower",
    "lpad",
    "ltrim",
    "max",
    "md5",
    "min",
    "mod",
    "nextval",
    "now",
    "nullif",
    "num_nonnulls",
    "num_nulls",
    "pg_backend_pid",
    "pg_sleep",
    "power",
    "random",
    "round",
    "row_number",
    "rpad",
    "rtrim",
    "setval",
    "sign",
    "sqrt",
    "statement_timestamp",
    "string_agg",
    "substr",
    "substring",
    "sum",
    "timeofday",
    "to_char",
    "to_number",
    "to_timestamp",
    "transaction_timestamp",
    "trim",
    "trunc",
    "txid_current",
    "unnest",
    "upper",
    "uuid_generate_v4",
];

pub(super) fn cmp_of(op: &sql::BinaryOperator) -> Option<Cmp> {
    use sql::BinaryOperator as B;
    Some(match op {
        B::Eq => Cmp::Eq,
        B::NotEq => Cmp::Ne,
        B::Lt => Cmp::Lt,
        B::LtEq => Cmp::Le,
        B::Gt => Cmp::Gt,
        B::GtEq => Cmp::Ge,
        _ => return None,
    })
}

impl Reader<'_> {
    pub(super) fn operand(&mut self, e: &sql::Expr, scope: &[Binding]) -> Operand {
        let mut o = Operand::default();
        self.walk(e, scope, &mut o);
        o.expr = if o.cols.is_empty() && !o.opaque {
            self.compile(e).map(|x| fold(&x))
        } else {
            None
        };
        if !o.opaque {
            let mut names = Vec::new();
            o.with_columns = self
                .compile_in(e, Some(&mut names))
                .map(|x| (fold(&x), names));
            // The whole value is an expression: it depends on the
            // variables that survive folding (`:product + 0 * :buyer`
            // depends on :product alone).
            if o.subquery.is_none() {
                if let Some((x, _)) = &o.with_columns {
                    let keep = folded_vars(x);
                    o.vars.retain(|v| keep.contains(v));
                }
            }
        }
        o.text = self.show(e);
        o
    }

    /// A scalar subquery that reads one column of one table's rows, as
    /// `Operand::subquery` records it.
    fn scalar_subquery(
        &mut self,
        q: &sql::Query,
        reads_before: usize,
        outputs: &[super::Output],
        o: &mut Operand,
    ) -> bool {
        let [one] = outputs else { return false };
        let [Source::Read {
            read,
            column: Some(c),
        }] = one.sources.as_slice()
        else {
            return false;
        };
        if *read < reads_before || !one.vars.is_empty() || o.subquery.is_some() {
            return false;
        }
        let table = self.f.reads[*read].table.clone();
        push_unique(
            &mut o.cols,
            Col {
                table: Some(table),
                column: c.clone(),
            },
        );
        o.subquery = Some(Subquery {
            read: *read,
            column: c.clone(),
        });
        self.scalars
            .push((q as *const sql::Query as usize, c.clone()));
        true
    }

    pub(super) fn walk(&mut self, e: &sql::Expr, scope: &[Binding], o: &mut Operand) {
        use sql::Expr as E;
        match e {
            E::Identifier(i) => {
                let (c, s) = self.column(std::slice::from_ref(i), scope);
                push_unique(&mut o.cols, c);
                o.sources.extend(s);
            }
            E::CompoundIdentifier(parts) => {
                let (c, s) = self.column(parts, scope);
                push_unique(&mut o.cols, c);
                o.sources.extend(s);
            }
            E::Value(v) => match &v.value {
                sql::Value::Number(n, _) if n.parse::<i64>().is_ok() => {}
                sql::Value::Boolean(_) => {}
                sql::Value::Placeholder(p) => match self.placeholder(p) {
                    Some(slot) => push_unique(&mut o.vars, slot),
                    None => o.opaque = true,
                },
                _ => o.opaque = true,
            },
            E::Nested(x) | E::Cast { expr: x, .. } => self.walk(x, scope, o),
            E::UnaryOp { .. } | E::BinaryOp { .. } if self.compile(e).is_some() => {
                // Arithmetic on variables alone: what it depends on once
                // folded.
                let x = self.compile(e).expect("checked");
                for v in folded_vars(&x) {
                    push_unique(&mut o.vars, v);
                }
            }
            E::UnaryOp { expr, .. } => self.walk(expr, scope, o),
            E::BinaryOp { left, right, .. } => {
                self.walk(left, scope, o);
                self.walk(right, scope, o);
            }
            E::Function(f) => self.function(f, scope, o),
            E::Subquery(q) => {
                let reads_before = self.f.reads.len();
                let (outputs, _) = self.query(q, scope);
                let outputs = outputs.unwrap_or_default();
                if !self.scalar_subquery(q, reads_before, &outputs, o) {
                    o.opaque = true;
                }
                for out in outputs {
                    o.sources.extend(out.sources);
                    o.vars.extend(out.vars);
                }
            }
            E::Exists { subquery: q, .. } => {
                let (outputs, _) = self.query(q, scope);
                for out in outputs.unwrap_or_default() {
                    o.sources.extend(out.sources);
                    o.vars.extend(out.vars);
                }
                o.opaque = true;
            }
            E::In { expr, target, .. } => {
                self.walk(expr, scope, o);
                match target {
                    sql::InTarget::List(v) => {
                        for x in v {
                            self.walk(x, scope, o);
                        }
                    }
                    sql::InTarget::Subquery(q) => {
                        let (outputs, _) = self.query(q, scope);
                        for out in outputs.unwrap_or_default() {
                            o.sources.extend(out.sources);
                        }
                    }
                    _ => {}
                }
                o.opaque = true;
            }
            E::Between {
                expr, low, high, ..
            } => {
                for x in [expr, low, high] {
                    self.walk(x, scope, o);
                }
                o.opaque = true;
            }
            E::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                if let Some(x) = operand {
                    self.walk(x, scope, o);
                }
                for c in conditions {
                    self.walk(&c.condition, scope, o);
                    self.walk(&c.result, scope, o);
                }
                if let Some(x) = else_result {
                    self.walk(x, scope, o);
                }
                o.opaque = true;
            }
            E::IsNull(x) | E::IsNotNull(x) | E::IsTrue(x) | E::IsFalse(x) => {
                self.walk(x, scope, o);
                o.opaque = true;
            }
            E::Tuple(v) => {
                for x in v {
                    self.walk(x, scope, o);
                }
                o.opaque = true;
            }
            other => {
                // Anything else: its variables and columns, found by
                // sqlparser's visitor (subqueries included).
                o.opaque = true;
                let mut found: Vec<sql::Expr> = Vec::new();
                let _ = sql::visit_expressions(other, |x: &sql::Expr| {
                    if !std::ptr::eq(x, other) {
                        found.push(x.clone());
                    }
                    ControlFlow::<()>::Continue(())
                });
                for x in &found {
                    match x {
                        E::Identifier(_) | E::CompoundIdentifier(_) | E::Value(_) => {
                            self.walk(x, scope, o)
                        }
                        E::Function(f) => {
                            self.advisory_call(f, scope, o);
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    pub(super) fn placeholder(&self, p: &str) -> Option<usize> {
        p.strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| (self.param)(n))
    }

    pub(super) fn function_args(f: &sql::Function) -> (Vec<&sql::Expr>, bool) {
        let mut args = Vec::new();
        let mut star = false;
        if let sql::FunctionArguments::List(l) = &f.args {
            for a in &l.args {
                let arg = match a {
                    sql::FunctionArg::Unnamed(x)
                    | sql::FunctionArg::Named { arg: x, .. }
                    | sql::FunctionArg::ExprNamed { arg: x, .. } => x,
                };
                match arg {
                    sql::FunctionArgExpr::Expr(x) => args.push(x),
                    _ => star = true,
                }
            }
        }
        (args, star)
    }

    pub(super) fn function(&mut self, f: &sql::Function, scope: &[Binding], o: &mut Operand) {
        if self.advisory_call(f, scope, o) {
            return;
        }
        let name = object_last(&f.name);
        let (args, star) = Self::function_args(f);
        if name == "set_config" {
            self.set_config(f, &args);
        } else if !HARMLESS.contains(&name.as_str()) {
            let operands: Vec<Operand> = args.iter().map(|a| self.operand(a, scope)).collect();
            o.sources.push(Source::Call(self.f.calls.len()));
            self.f.calls.push(Call {
                name: name.clone(),
                args: operands,
                text: self.show(&sql::Expr::Function(f.clone())),
            });
        }
        for a in args {
            self.walk(a, scope, o);
        }
        if let sql::FunctionArguments::Subquery(q) = &f.args {
            let (outputs, _) = self.query(q, scope);
            for out in outputs.unwrap_or_default() {
                o.sources.extend(out.sources);
            }
        }
        if star {
            // count(*): the rows themselves.
            let rows = self.all_sources(scope);
            o.sources.extend(rows);
        }
        if !matches!(object_last(&f.name).as_str(), "least" | "greatest" | "abs") {
            o.opaque = true;
        }
    }

    /// `set_config(name, value, is_local)` on an isolation setting (or on
    /// a setting racelab cannot name).
    fn set_config(&mut self, f: &sql::Function, args: &[&sql::Expr]) {
        let lit = |e: &sql::Expr| match strip(e) {
            sql::Expr::Value(v) => match &v.value {
                sql::Value::SingleQuotedString(s) => Some(s.to_ascii_lowercase()),
                sql::Value::Boolean(b) => Some(b.to_string()),
                _ => None,
            },
            _ => None,
        };
        let [name, value, local] = args else { return };
        let target = match (lit(name).as_deref(), lit(local).as_deref()) {
            (Some("transaction_isolation"), _) => Some(IsoTarget::Transaction),
            (Some("default_transaction_isolation"), Some("true")) => Some(IsoTarget::LocalDefault),
            (Some("default_transaction_isolation"), Some("false")) => {
                Some(IsoTarget::SessionDefault)
            }
            (Some("default_transaction_isolation"), _) | (None, _) => None,
            (Some(_), _) => return,
        };
        let value = match strip(value) {
            v @ sql::Expr::Value(_) => setting_value(v),
            _ => IsoValue::Unknown,
        };
        self.f.iso_calls.push(IsoCall {
            target,
            value,
            text: self.show(&sql::Expr::Function(f.clone())),
        });
    }

    /// Register `f` when it is one of PostgreSQL's advisory-lock functions.
    pub(super) fn advisory_call(
        &mut self,
        f: &sql::Function,
        scope: &[Binding],
        o: &mut Operand,
    ) -> bool {
        let name = object_last(&f.name);
        let Some(rest) = name
            .strip_prefix("pg_try_advisory_")
            .map(|r| (true, r))
            .or_else(|| name.strip_prefix("pg_advisory_").map(|r| (false, r)))
        else {
            return false;
        };
        let (try_only, rest) = rest;
        let (scope_kind, action, shared) = match rest {
            "lock" => (AdvisoryScope::Session, AdvisoryAction::Lock, false),
            "lock_shared" => (AdvisoryScope::Session, AdvisoryAction::Lock, true),
            "xact_lock" => (AdvisoryScope::Xact, AdvisoryAction::Lock, false),
            "xact_lock_shared" => (AdvisoryScope::Xact, AdvisoryAction::Lock, true),
            "unlock" if !try_only => (AdvisoryScope::Session, AdvisoryAction::Unlock, false),
            "unlock_shared" if !try_only => (AdvisoryScope::Session, AdvisoryAction::Unlock, true),
            "unlock_all" if !try_only => (AdvisoryScope::Session, AdvisoryAction::UnlockAll, false),
            _ => return false,
        };
        let (args, _) = Self::function_args(f);
        let key: Vec<Operand> = args.into_iter().map(|a| self.operand(a, scope)).collect();
        for k in &key {
            for v in &k.vars {
                push_unique(&mut o.vars, *v);
            }
        }
        let idx = self.f.advisory.len();
        self.f.advisory.push(Advisory {
            function: name,
            scope: scope_kind,
            action,
            try_only,
            shared,
            key,
        });
        o.sources.push(Source::Advisory(idx));
        o.opaque = true;
        true
    }

    /// A script expression for `e`, when it is made only of what the script
    /// language evaluates.
    pub(super) fn compile(&self, e: &sql::Expr) -> Option<Expr> {
        self.compile_in(e, None)
    }

    /// `compile`, and with `columns` also columns, each as the slot
    /// `COLUMN_SLOT + i` of its name's index in `columns`.
    pub(super) fn compile_in(
        &self,
        e: &sql::Expr,
        mut columns: Option<&mut Vec<String>>,
    ) -> Option<Expr> {
        use sql::BinaryOperator as B;
        use sql::Expr as E;
        let column = |name: &sql::Ident, columns: &mut Vec<String>| {
            let name = name.value.to_lowercase();
            let i = match columns.iter().position(|c| *c == name) {
                Some(i) => i,
                None => {
                    columns.push(name);
                    columns.len() - 1
                }
            };
            Expr::Var(COLUMN_SLOT + i)
        };
        Some(match e {
            E::Subquery(q) => {
                let at = q.as_ref() as *const sql::Query as usize;
                let name = self.scalars.iter().find(|(a, _)| *a == at)?.1.clone();
                column(&sql::Ident::new(name), columns?)
            }
            E::Identifier(i) => column(i, columns?),
            E::CompoundIdentifier(parts) => column(parts.last()?, columns?),
            E::Nested(x) | E::Cast { expr: x, .. } => self.compile_in(x, columns)?,
            E::Value(v) => match &v.value {
                sql::Value::Number(n, _) => Expr::Int(n.parse().ok()?),
                sql::Value::Boolean(b) => Expr::Int(i64::from(*b)),
                sql::Value::Placeholder(p) => Expr::Var(self.placeholder(p)?),
                _ => return None,
            },
            E::UnaryOp { op, expr } => {
                let x = self.compile_in(expr, columns)?;
                match op {
                    sql::UnaryOperator::Minus => Expr::Neg(Box::new(x)),
                    sql::UnaryOperator::Plus => x,
                    sql::UnaryOperator::Not => Expr::Not(Box::new(x)),
                    _ => return None,
                }
            }
            E::BinaryOp { left, op, right } => {
                let op = match op {
                    B::Plus => BinOp::Add,
                    B::Minus => BinOp::Sub,
                    B::Multiply => BinOp::Mul,
                    B::Divide => BinOp::Div,
                    B::Modulo => BinOp::Rem,
                    B::Eq => BinOp::Eq,
                    B::NotEq => BinOp::Ne,
                    B::Lt => BinOp::Lt,
                    B::LtEq => BinOp::Le,
                    B::Gt => BinOp::Gt,
                    B::GtEq => BinOp::Ge,
                    B::And => BinOp::And,
                    B::Or => BinOp::Or,
                    _ => return None,
                };
                let l = self.compile_in(left, columns.as_deref_mut())?;
                Expr::Bin(op, Box::new(l), Box::new(self.compile_in(right, columns)?))
            }
            E::Function(f) => {
                let func = match object_last(&f.name).as_str() {
                    "least" => Func::Least,
                    "greatest" => Func::Greatest,
                    "abs" => Func::Abs,
                    _ => return None,
                };
                let (args, star) = Self::function_args(f);
                if star || args.is_empty() || (func == Func::Abs && args.len() != 1) {
                    return None;
                }
                Expr::Call(
                    func,
                    args.into_iter()
                        .map(|a| self.compile_in(a, columns.as_deref_mut()))
                        .collect::<Option<Vec<_>>>()?,
                )
            }
            _ => return None,
        })
    }

    /// `e` as written, with `$n` shown as `:name`.
    pub(super) fn show(&self, e: &sql::Expr) -> String {
        let mut e = e.clone();
        let _ = sql::visit_expressions_mut(&mut e, |x: &mut sql::Expr| {
            if let sql::Expr::Value(v) = x {
                if let sql::Value::Placeholder(p) = &mut v.value {
                    if let Some(slot) = self.placeholder(p) {
                        *p = format!(":{}", (self.names)(slot));
                    }
                }
            }
            ControlFlow::<()>::Continue(())
        });
        e.to_string()
    }

    /// Split a condition on top-level AND into comparisons; the flag says
    /// whether anything else was in it.
    pub(super) fn conjuncts(
        &mut self,
        e: &sql::Expr,
        scope: &[Binding],
    ) -> (Vec<Comparison>, bool) {
        let mut out = Vec::new();
        let mut opaque = false;
        let mut stack = vec![e];
        while let Some(x) = stack.pop() {
            match strip(x) {
                sql::Expr::BinaryOp {
                    left,
                    op: sql::BinaryOperator::And,
                    right,
                } => {
                    stack.push(right);
                    stack.push(left);
                }
                sql::Expr::BinaryOp { left, op, right } if cmp_of(op).is_some() => {
                    let left = self.operand(left, scope);
                    let right = self.operand(right, scope);
                    out.push(Comparison {
                        left,
                        op: cmp_of(op).expect("checked"),
                        right,
                        text: self.show(x),
                    });
                }
                other => {
                    // Still read: a subquery in it is a read.
                    let _ = self.operand(other, scope);
                    opaque = true;
                }
            }
        }
        (out, opaque)
    }

    /// The key and filter of the rows of `table` under `filter`.
    pub(super) fn rows_of(table: &str, filter: &[Comparison], opaque: bool) -> Rows {
        let key = filter
            .iter()
            .filter_map(|c| c.key_of(table))
            .map(|(c, v)| (c.to_string(), v.clone()))
            .collect();
        Rows {
            key,
            filter: filter.to_vec(),
            opaque,
        }
    }
}

/// The value a `SET` or `set_config` gives an isolation setting.
pub(super) fn setting_value(v: &sql::Expr) -> IsoValue {
    match v {
        sql::Expr::Value(v) => match &v.value {
            sql::Value::SingleQuotedString(s) => {
                Isolation::parse(s).map_or(IsoValue::Unknown, IsoValue::Level)
            }
            _ => IsoValue::Unknown,
        },
        sql::Expr::Identifier(i) if i.quote_style.is_none() => {
            if i.value.eq_ignore_ascii_case("default") {
                IsoValue::Default
            } else {
                Isolation::parse(&i.value).map_or(IsoValue::Unknown, IsoValue::Level)
            }
        }
        _ => IsoValue::Unknown,
    }
}

/// Read one value expression (a function body's `IF` condition or
/// assignment): its operand, the rows it reads included.
pub(super) fn read_operand(
    text: &str,
    param: &dyn Fn(usize) -> Option<usize>,
    names: Names,
) -> Result<Operand, String> {
    let dialect = PostgreSqlDialect {};
    let e = Parser::new(&dialect)
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| e.to_string())?;
    let mut r = Reader {
        f: Facts::new(Kind::Other),
        ctes: Vec::new(),
        aliases: Vec::new(),
        strengths: Vec::new(),
        next_lock: 0,
        feeds: None,
        param,
        names,
        scalars: Vec::new(),
    };
    Ok(r.operand(&e, &[]))
}

#[cfg(test)]
mod tests {
    use super::super::*;

    /// `$n` is slot `100 + n`, named `vn`.
    fn f(sql: &str) -> Facts {
        read(sql, &|n| Some(100 + n), &|s| format!("v{}", s - 100))
    }

    #[test]
    fn advisory_calls() {
        let x = f("SELECT pg_advisory_xact_lock($1)");
        let a = &x.advisory[0];
        assert_eq!(
            (a.scope, a.action, a.try_only, a.shared),
            (AdvisoryScope::Xact, AdvisoryAction::Lock, false, false)
        );
        assert_eq!(a.key[0].vars, vec![101]);
        let x = f("SELECT pg_try_advisory_lock(hashtext('p' || $1)) AS got");
        let a = &x.advisory[0];
        assert!(a.try_only && a.scope == AdvisoryScope::Session);
        assert_eq!(a.key[0].vars, vec![101]);
        assert_eq!(
            x.outputs.as_ref().unwrap()[0].sources,
            vec![Source::Advisory(0)]
        );
        let x = f("SELECT pg_advisory_unlock(1, $2), pg_advisory_unlock_all()");
        assert_eq!(x.advisory[0].action, AdvisoryAction::Unlock);
        assert_eq!(x.advisory[1].action, AdvisoryAction::UnlockAll);
        let x = f("SELECT pg_advisory_lock_shared(7)");
        assert!(x.advisory[0].shared);
        assert!(x.advisory[0].key[0].vars.is_empty());
    }

    #[test]
    fn where_guards() {
        let x = f("UPDATE products SET stock = stock - $1 WHERE id = $2 AND stock >= $1");
        let w = &x.writes[0];
        assert_eq!(w.rows.key.len(), 1);
        assert!(w
            .rows
            .filter
            .iter()
            .any(|c| c.bounds_below("products", "stock")));
        let x = f("UPDATE products SET stock = stock - $1 WHERE id = $2 AND stock - $1 >= 0");
        assert!(x.writes[0]
            .rows
            .filter
            .iter()
            .any(|c| c.bounds_below("products", "stock")));
        let x = f("UPDATE products SET stock = stock - $1 WHERE id = $2 AND 'stock >= 1' <> ''");
        assert!(!x.writes[0]
            .rows
            .filter
            .iter()
            .any(|c| c.bounds_below("products", "stock")));
        let x = f("UPDATE products SET stock = stock - 1 WHERE id = $1 OR stock > 5");
        assert!(x.writes[0].rows.opaque);
    }

    #[test]
    fn keys_and_guards_fold() {
        let x = f("SELECT pg_advisory_xact_lock($1 + 0 * $2)");
        assert_eq!(x.advisory[0].key[0].vars, vec![101]);
        let x = f("SELECT pg_advisory_xact_lock(hashtext(($1 + $2 - $2)::text))");
        assert_eq!(x.advisory[0].key[0].vars, vec![101]);
        let x = f("SELECT pg_advisory_xact_lock($1 * 1000 + $2)");
        assert_eq!(x.advisory[0].key[0].vars, vec![101, 102]);
        let x = f("UPDATE products SET stock = stock - $1 WHERE id = $2 AND stock >= $1 + 0 * $3");
        let g = x.writes[0]
            .rows
            .filter
            .iter()
            .find(|c| c.bounds_below("products", "stock"))
            .unwrap();
        assert_eq!(g.right.vars, vec![101]);
        assert_eq!(g.right.expr, Some(Expr::Var(101)));
    }

    #[test]
    fn scalar_subqueries_of_one_column() {
        let x = f("UPDATE products SET stock = stock - $1 WHERE id = $2 AND (SELECT stock FROM products WHERE id = $2 FOR UPDATE) >= $1");
        let g = &x.writes[0].rows.filter[1];
        let sub = g.left.subquery.as_ref().expect("a scalar subquery");
        assert_eq!(sub.column, "stock");
        assert!(x.reads[sub.read].lock.is_some());
        assert!(g.bounds_below("products", "stock"));
        assert!(g.left.with_columns.is_some());
        // Not a key: a subquery compared with `=` names no row.
        assert_eq!(x.writes[0].rows.key.len(), 1);
        let x = f("SELECT (SELECT stock FROM products WHERE id = $1) AS stock");
        assert_eq!(
            x.outputs.unwrap()[0].sources,
            vec![Source::Read {
                read: 0,
                column: Some("stock".into())
            }]
        );
    }

    #[test]
    fn calls_of_functions_racelab_does_not_know() {
        let x = f("SELECT buy($1, $2) AS bought");
        assert_eq!(x.calls[0].name, "buy");
        assert_eq!(x.calls[0].args[1].vars, vec![102]);
        assert_eq!(
            x.outputs.as_ref().unwrap()[0].sources,
            vec![Source::Call(0)]
        );
        let x = f("SELECT count(*) AS taken FROM take_units($1, $2)");
        assert_eq!(x.calls[0].name, "take_units");
        assert_eq!(
            x.outputs.as_ref().unwrap()[0].sources,
            vec![Source::Call(0)]
        );
        assert!(x.reads.is_empty(), "{:?}", x.reads);
        let x = f("SELECT coalesce(max(stock), 0), now(), hashtext('a'), count(*) FROM products");
        assert!(x.calls.is_empty(), "{:?}", x.calls);
    }
}
