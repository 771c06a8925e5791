//! Facts rewritten: one statement's facts appended to another's (a
//! function's body to the statement that calls it, a trigger's to the
//! statement that fires it), with every index into the appended facts
//! shifted; and slots replaced by what is bound to them (a function's
//! parameters by the call's arguments). `VALUE_SLOT`s always name the
//! target's `values`: what is appended has bindings of the target's values
//! substituted in, never values of its own.

use super::{Facts, Operand, Source, Value};
use crate::strategy::expr::Expr;

/// By how much the indices of appended facts moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offsets {
    pub reads: usize,
    pub writes: usize,
    pub row_locks: usize,
    pub advisory: usize,
    pub calls: usize,
}

impl Offsets {
    pub fn source(&self, s: &Source) -> Source {
        match s {
            Source::Read { read, column } => Source::Read {
                read: read + self.reads,
                column: column.clone(),
            },
            Source::Write(w) => Source::Write(w + self.writes),
            Source::Advisory(a) => Source::Advisory(a + self.advisory),
            Source::Call(c) => Source::Call(c + self.calls),
        }
    }
}

/// `e` with `Var(v)` replaced by `f(v)` where it gives one; `None` when a
/// replacement has no expression.
pub fn map_expr(e: &Expr, f: &dyn Fn(usize) -> Option<Option<Expr>>) -> Option<Expr> {
    Some(match e {
        Expr::Int(i) => Expr::Int(*i),
        Expr::Var(v) => match f(*v) {
            Some(x) => x?,
            None => Expr::Var(*v),
        },
        Expr::Neg(x) => Expr::Neg(Box::new(map_expr(x, f)?)),
        Expr::Not(x) => Expr::Not(Box::new(map_expr(x, f)?)),
        Expr::Bin(op, l, r) => Expr::Bin(*op, Box::new(map_expr(l, f)?), Box::new(map_expr(r, f)?)),
        Expr::Call(func, args) => Expr::Call(
            *func,
            args.iter()
                .map(|a| map_expr(a, f))
                .collect::<Option<Vec<_>>>()?,
        ),
    })
}

impl Operand {
    /// Every source through `f`.
    fn map_sources(&mut self, f: &dyn Fn(&Source) -> Vec<Source>) {
        let old = std::mem::take(&mut self.sources);
        for s in &old {
            for n in f(s) {
                if !self.sources.contains(&n) {
                    self.sources.push(n);
                }
            }
        }
    }

    /// The operand with each slot that `bind` binds replaced by what is
    /// bound to it.
    pub fn substitute(&self, bind: &dyn Fn(usize) -> Option<Operand>) -> Operand {
        let mut o = self.clone();
        let mut vars = Vec::new();
        for v in &self.vars {
            match bind(*v) {
                Some(b) => {
                    for x in &b.vars {
                        if !vars.contains(x) {
                            vars.push(*x);
                        }
                    }
                    for s in &b.sources {
                        if !o.sources.contains(s) {
                            o.sources.push(s.clone());
                        }
                    }
                    o.opaque |= b.opaque || !b.cols.is_empty();
                }
                None => {
                    if !vars.contains(v) {
                        vars.push(*v)
                    }
                }
            }
        }
        o.vars = vars;
        let by = |v: usize| bind(v).map(|b| b.expr);
        o.expr = self.expr.as_ref().and_then(|e| map_expr(e, &by));
        o.with_columns = self
            .with_columns
            .as_ref()
            .and_then(|(e, names)| Some((map_expr(e, &by)?, names.clone())));
        if o.opaque {
            o.expr = None;
            o.with_columns = None;
        }
        o
    }
}

impl Value {
    fn substitute(&self, bind: &dyn Fn(usize) -> Option<Operand>) -> Value {
        let by = |v: usize| bind(v).map(|b| b.expr);
        match self {
            Value::Relative { sign, by: e } => Value::Relative {
                sign: *sign,
                by: e.as_ref().and_then(|e| map_expr(e, &by)),
            },
            Value::Variables { vars, expr } => {
                let o = Operand {
                    vars: vars.clone(),
                    expr: expr.clone(),
                    ..Operand::default()
                }
                .substitute(bind);
                if o.sources.is_empty() {
                    Value::Variables {
                        vars: o.vars,
                        expr: o.expr,
                    }
                } else {
                    Value::Rows {
                        sources: o.sources,
                        vars: o.vars,
                    }
                }
            }
            Value::Rows { sources, vars } => {
                let o = Operand {
                    vars: vars.clone(),
                    sources: sources.clone(),
                    ..Operand::default()
                }
                .substitute(bind);
                Value::Rows {
                    sources: o.sources,
                    vars: o.vars,
                }
            }
            Value::Constant(_) | Value::Row => self.clone(),
        }
    }

    fn map_sources(&mut self, f: &dyn Fn(&Source) -> Vec<Source>) {
        if let Value::Rows { sources, .. } = self {
            let old = std::mem::take(sources);
            for s in &old {
                for n in f(s) {
                    if !sources.contains(&n) {
                        sources.push(n);
                    }
                }
            }
        }
    }
}

impl Facts {
    /// Every operand of the facts, mutably.
    pub fn operands_mut(&mut self) -> Vec<&mut Operand> {
        let mut out: Vec<&mut Operand> = Vec::new();
        for r in &mut self.reads {
            out.extend(r.rows.key.iter_mut().map(|(_, o)| o));
            for c in &mut r.rows.filter {
                out.push(&mut c.left);
                out.push(&mut c.right);
            }
        }
        for w in &mut self.writes {
            out.extend(w.rows.key.iter_mut().map(|(_, o)| o));
            for c in &mut w.rows.filter {
                out.push(&mut c.left);
                out.push(&mut c.right);
            }
        }
        for a in &mut self.advisory {
            out.extend(a.key.iter_mut());
        }
        for c in &mut self.calls {
            out.extend(c.args.iter_mut());
        }
        for g in &mut self.guards {
            out.push(&mut g.cond);
        }
        out
    }

    /// Every source through `f` (operands, values, outputs, `values`).
    pub fn map_sources(&mut self, f: &dyn Fn(&Source) -> Vec<Source>) {
        for o in self.operands_mut() {
            o.map_sources(f);
        }
        for w in &mut self.writes {
            for a in &mut w.assigns {
                a.value.map_sources(f);
            }
        }
        for o in self.outputs.iter_mut().flatten() {
            let old = std::mem::take(&mut o.sources);
            for s in &old {
                for n in f(s) {
                    if !o.sources.contains(&n) {
                        o.sources.push(n);
                    }
                }
            }
        }
    }

    /// Replace the slots `bind` binds, everywhere.
    pub fn substitute(&mut self, bind: &dyn Fn(usize) -> Option<Operand>) {
        for o in self.operands_mut() {
            *o = o.substitute(bind);
        }
        for w in &mut self.writes {
            for a in &mut w.assigns {
                a.value = a.value.substitute(bind);
            }
        }
        for o in self.outputs.iter_mut().flatten() {
            let x = Operand {
                vars: o.vars.clone(),
                sources: o.sources.clone(),
                ..Operand::default()
            }
            .substitute(bind);
            o.vars = x.vars;
            o.sources = x.sources;
            o.with_columns = None;
        }
    }

    /// Append `other` (its indices shifted), returning the shifts.
    pub fn append(&mut self, mut other: Facts) -> Offsets {
        let off = Offsets {
            reads: self.reads.len(),
            writes: self.writes.len(),
            row_locks: self.row_locks.len(),
            advisory: self.advisory.len(),
            calls: self.calls.len(),
        };
        other.map_sources(&|s| vec![off.source(s)]);
        for r in &mut other.reads {
            r.lock = r.lock.map(|l| l + off.row_locks);
        }
        for l in &mut other.row_locks {
            l.reads.iter_mut().for_each(|r| *r += off.reads);
        }
        for g in &mut other.guards {
            g.from_write += off.writes;
        }
        self.reads.append(&mut other.reads);
        self.writes.append(&mut other.writes);
        self.row_locks.append(&mut other.row_locks);
        self.table_locks.append(&mut other.table_locks);
        self.advisory.append(&mut other.advisory);
        self.calls.append(&mut other.calls);
        self.guards.append(&mut other.guards);
        self.iso_calls.append(&mut other.iso_calls);
        off
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    fn f(sql: &str) -> Facts {
        read(sql, &|n| Some(100 + n), &|s| format!("v{}", s - 100))
    }

    #[test]
    fn appended_facts_point_at_their_own_rows() {
        let mut a = f("SELECT stock FROM products WHERE id = $1 FOR UPDATE");
        let b = f("UPDATE products SET stock = s.stock - $2 FROM (SELECT stock FROM products WHERE id = $1 FOR UPDATE) s WHERE products.id = $1 RETURNING products.stock");
        let off = a.append(b);
        assert_eq!((off.reads, off.writes, off.row_locks), (1, 0, 1));
        assert_eq!(a.reads.len(), 2);
        assert_eq!(a.reads[1].lock, Some(1));
        assert_eq!(a.row_locks[1].reads, vec![1]);
        let Value::Rows { sources, .. } = &a.writes[0].assigns[0].value else {
            panic!("{:?}", a.writes[0].assigns[0].value)
        };
        assert!(
            sources
                .iter()
                .all(|s| matches!(s, Source::Read { read: 1, .. })),
            "{sources:?}"
        );
    }

    #[test]
    fn slots_are_replaced_by_what_is_bound() {
        use super::super::VALUE_SLOT;
        let mut x = f(
            "UPDATE products SET stock = stock - $2, note = $2 * 2 WHERE id = $1 AND stock >= $2",
        );
        // $1 -> :product (slot 0), $2 -> a value read elsewhere.
        let bind = |v: usize| match v {
            101 => Some(Operand {
                vars: vec![0],
                expr: Some(Expr::Var(0)),
                ..Operand::default()
            }),
            102 => Some(Operand {
                vars: vec![VALUE_SLOT],
                expr: Some(Expr::Var(VALUE_SLOT)),
                ..Operand::default()
            }),
            _ => None,
        };
        x.substitute(&bind);
        let w = &x.writes[0];
        assert_eq!(w.rows.key[0].1.vars, vec![0]);
        assert_eq!(
            w.assigns[0].value,
            Value::Relative {
                sign: -1,
                by: Some(Expr::Var(VALUE_SLOT))
            }
        );
        assert!(
            matches!(&w.assigns[1].value, Value::Variables { vars, .. } if vars == &vec![VALUE_SLOT])
        );
    }
}
