//! Bounds: whether a write can take a column below zero, decided by
//! evaluating what stands between the buyer and the write — a WHERE guard,
//! an `\if` on the value read, a function's `IF ... THEN RETURN`, a
//! trigger's RAISE, a check on what RETURNING gave back — over every
//! quantity 1..=`QTY_MAX` and every stock 0..=`STOCK_MAX`. Guards are
//! checked for what they do, not for how they are written: `stock >= :qty`,
//! `stock - :qty >= 0` and `NOT stock < :qty` are the same guard, and
//! `stock > 0` holds only for one unit at a time.

use crate::strategy::facts::{Cmp, Comparison, COLUMN_SLOT};
use crate::strategy::{EvalError, Expr, QTY};

use super::paths::eval_with;

/// Largest quantity and stock tried.
pub const QTY_MAX: i64 = 64;
pub const STOCK_MAX: i64 = 256;

/// How far a WHERE conjunct keeps a column from going below zero when the
/// row is decremented by `by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// For every quantity: `stock >= :qty`, `stock - :qty >= 0`.
    Always,
    /// Only while the quantity is at most this: `stock > 0` holds stock at
    /// zero for one unit at a time.
    UpTo(i64),
    /// For no quantity: `stock >= 0` lets the last unit go below zero.
    Never,
    /// The conjunct is not about the column, or racelab cannot evaluate it.
    Unknown,
}

fn holds(op: Cmp, a: i64, b: i64) -> bool {
    match op {
        Cmp::Eq => a == b,
        Cmp::Ne => a != b,
        Cmp::Lt => a < b,
        Cmp::Le => a <= b,
        Cmp::Gt => a > b,
        Cmp::Ge => a >= b,
    }
}

/// `x` with the column `column` (a `COLUMN_SLOT` of `names`) at `stock`
/// and `:qty` at `qty`; `None` when it needs anything else.
fn side(x: &Expr, names: &[String], column: &str, stock: i64, qty: i64) -> Option<i64> {
    use rand::SeedableRng;
    let get = |slot: usize| {
        if slot >= COLUMN_SLOT {
            return match names.get(slot - COLUMN_SLOT) {
                Some(n) if n == column => Ok(stock),
                _ => Err(EvalError::Unset(slot)),
            };
        }
        if slot == QTY {
            Ok(qty)
        } else {
            Err(EvalError::Unset(slot))
        }
    };
    x.eval(&get, &mut rand::rngs::SmallRng::seed_from_u64(0))
        .ok()
}

/// Whether the conjunct `c` of an UPDATE that sets `column = column - by`
/// keeps `column` at zero or above, evaluating both with every quantity
/// 1..=QTY_MAX and stock -QTY_MAX..=STOCK_MAX.
pub fn bound_of(c: &Comparison, column: &str, by: Option<&Expr>) -> Bound {
    let (Some((l, lnames)), Some((r, rnames))) = (&c.left.with_columns, &c.right.with_columns)
    else {
        return Bound::Unknown;
    };
    if !lnames.iter().chain(rnames).any(|n| n == column) {
        return Bound::Unknown;
    }
    let Some(by) = by else {
        return Bound::Unknown;
    };
    let mut safe_upto: Option<i64> = None;
    let mut unsafe_at: Option<i64> = None;
    for qty in 1..=QTY_MAX {
        let Some(d) = eval_with(by, &[(QTY, qty)]) else {
            return Bound::Unknown;
        };
        let mut violated = false;
        for stock in -QTY_MAX..=STOCK_MAX {
            let (Some(a), Some(b)) = (
                side(l, lnames, column, stock, qty),
                side(r, rnames, column, stock, qty),
            ) else {
                return Bound::Unknown;
            };
            if holds(c.op, a, b) && stock.checked_sub(d).map_or(true, |left| left < 0) {
                violated = true;
                break;
            }
        }
        if violated {
            unsafe_at.get_or_insert(qty);
        } else if unsafe_at.is_some() {
            // Safe again above an unsafe quantity: no simple rule.
            return Bound::Unknown;
        } else {
            safe_upto = Some(qty);
        }
    }
    match (safe_upto, unsafe_at) {
        (_, None) => Bound::Always,
        (None, Some(_)) => Bound::Never,
        (Some(n), Some(_)) => Bound::UpTo(n),
    }
}

/// A point of the space: the quantity, and the column's value before and
/// after the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub qty: i64,
    pub before: i64,
    pub after: i64,
}

/// A variable of a condition, as a function of the point (`None`: it
/// stands for something else).
pub type VarFn<'a> = Box<dyn Fn(usize, &Point) -> Option<i64> + 'a>;

/// A condition the path passed: `expr` was true (`holds`) or false.
pub struct Cond<'a> {
    pub expr: &'a Expr,
    pub holds: bool,
    pub var: VarFn<'a>,
    /// Which line it is, for the answer.
    pub line: usize,
}

/// Whether the column can go below zero on a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Every point the conditions let through keeps it at zero or above.
    Never,
    /// This point passes every condition and ends below zero.
    Below(Point),
    /// A point ends below zero, but a condition racelab cannot evaluate
    /// might stop it (its line).
    Unknown(usize),
}

/// Whether point `p` passes every condition: `Ok(true)` yes, `Ok(false)`
/// a condition stops it, `Err(line)` only a condition racelab cannot
/// evaluate (at that line) might.
fn passes(conds: &[Cond], p: &Point) -> Result<bool, usize> {
    use rand::SeedableRng;
    let mut unknown = None;
    for c in conds {
        let get = |slot: usize| (c.var)(slot, p).ok_or(EvalError::Unset(slot));
        match c
            .expr
            .eval(&get, &mut rand::rngs::SmallRng::seed_from_u64(0))
        {
            Ok(v) if (v != 0) == c.holds => {}
            Ok(_) => return Ok(false),
            Err(_) => unknown = unknown.or(Some(c.line)),
        }
    }
    match unknown {
        Some(l) => Err(l),
        None => Ok(true),
    }
}

/// Whether a write whose new value is `after(before, qty)` can end below
/// zero on a path that passed `conds`; `None` when `after` cannot be
/// evaluated.
pub fn below_zero(conds: &[Cond], after: &dyn Fn(i64, i64) -> Option<i64>) -> Option<Answer> {
    let mut unknown: Option<usize> = None;
    for qty in 1..=QTY_MAX {
        for before in 0..=STOCK_MAX {
            let a = after(before, qty)?;
            if a >= 0 {
                continue;
            }
            let p = Point {
                qty,
                before,
                after: a,
            };
            match passes(conds, &p) {
                Ok(true) => return Some(Answer::Below(p)),
                Ok(false) => {}
                Err(l) => unknown = unknown.or(Some(l)),
            }
        }
    }
    Some(match unknown {
        Some(l) => Answer::Unknown(l),
        None => Answer::Never,
    })
}

/// Whether any point passes `conds` at all (a path no quantity and stock
/// can take is no path).
pub fn feasible(conds: &[Cond], after: &dyn Fn(i64, i64) -> Option<i64>) -> bool {
    for qty in 1..=QTY_MAX {
        for before in 0..=STOCK_MAX {
            let Some(a) = after(before, qty) else {
                return true;
            };
            let p = Point {
                qty,
                before,
                after: a,
            };
            if passes(conds, &p) != Ok(false) {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::BinOp;

    fn cmp(sql: &str) -> Comparison {
        let f = crate::strategy::facts::read(
            &format!("UPDATE products SET stock = stock - $1 WHERE {sql}"),
            &|_| Some(QTY),
            &|_| "qty".into(),
        );
        f.writes[0].rows.filter[0].clone()
    }

    #[test]
    fn where_guards_by_what_they_do() {
        let by = Expr::Var(QTY);
        assert_eq!(
            bound_of(&cmp("stock >= $1"), "stock", Some(&by)),
            Bound::Always
        );
        assert_eq!(
            bound_of(&cmp("stock - $1 >= 0"), "stock", Some(&by)),
            Bound::Always
        );
        assert_eq!(
            bound_of(&cmp("0 <= stock - $1"), "stock", Some(&by)),
            Bound::Always
        );
        assert_eq!(
            bound_of(&cmp("stock > 0"), "stock", Some(&by)),
            Bound::UpTo(1)
        );
        assert_eq!(
            bound_of(&cmp("stock >= 0"), "stock", Some(&by)),
            Bound::Never
        );
        assert_eq!(
            bound_of(&cmp("version >= 0"), "stock", Some(&by)),
            Bound::Unknown
        );
        assert_eq!(
            bound_of(&cmp("stock >= $1 + 0 * $1"), "stock", Some(&by)),
            Bound::Always
        );
    }

    fn var_is(slot: usize) -> VarFn<'static> {
        Box::new(move |s, p| match s {
            x if x == slot => Some(p.before),
            QTY => Some(p.qty),
            _ => None,
        })
    }

    #[test]
    fn a_check_on_the_value_read_bounds_the_write_back() {
        let stock = 10;
        // \if :stock < :qty -> sold out; the path that writes passed it false.
        let lt = Expr::Bin(
            BinOp::Lt,
            Box::new(Expr::Var(stock)),
            Box::new(Expr::Var(QTY)),
        );
        let after = |b: i64, q: i64| Some(b - q);
        let conds = [Cond {
            expr: &lt,
            holds: false,
            var: var_is(stock),
            line: 2,
        }];
        assert_eq!(below_zero(&conds, &after), Some(Answer::Never));
        // Off by one: \if :stock < 0.
        let off = Expr::Bin(
            BinOp::Lt,
            Box::new(Expr::Var(stock)),
            Box::new(Expr::Int(0)),
        );
        let conds = [Cond {
            expr: &off,
            holds: false,
            var: var_is(stock),
            line: 2,
        }];
        assert!(matches!(below_zero(&conds, &after), Some(Answer::Below(p)) if p.before < p.qty));
        // No check at all.
        assert!(matches!(below_zero(&[], &after), Some(Answer::Below(_))));
        // A check on something racelab cannot evaluate.
        let other = Expr::Bin(BinOp::Lt, Box::new(Expr::Var(99)), Box::new(Expr::Var(QTY)));
        let conds = [Cond {
            expr: &other,
            holds: false,
            var: var_is(stock),
            line: 7,
        }];
        assert_eq!(below_zero(&conds, &after), Some(Answer::Unknown(7)));
    }

    #[test]
    fn a_check_after_the_write_on_what_it_left() {
        let left = 11;
        let after_var: VarFn = Box::new(move |s, p| match s {
            x if x == left => Some(p.after),
            QTY => Some(p.qty),
            _ => None,
        });
        let lt0 = Expr::Bin(BinOp::Lt, Box::new(Expr::Var(left)), Box::new(Expr::Int(0)));
        let after = |b: i64, q: i64| Some(b - q);
        // The path that goes on passed `:left < 0` false: never below zero.
        let c = [Cond {
            expr: &lt0,
            holds: false,
            var: after_var,
            line: 3,
        }];
        assert_eq!(below_zero(&c, &after), Some(Answer::Never));
        let after_var: VarFn = Box::new(move |s, p| (s == left).then_some(p.after));
        let c = [Cond {
            expr: &lt0,
            holds: true,
            var: after_var,
            line: 3,
        }];
        assert!(matches!(below_zero(&c, &after), Some(Answer::Below(_))));
        assert!(feasible(&c, &after));
    }
}
