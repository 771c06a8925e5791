//! Constant folding of the script expressions facts hold: `:product + 0 *
//! :buyer` is `:product`, `:buyer - :buyer` is `0`. Sums and products of
//! integers and variables are brought to a polynomial normal form (a sum of
//! monomials with integer coefficients, zero terms dropped), so a variable
//! that cannot change the value disappears however it was written; other
//! operations fold their operands and compute what is constant. Folding
//! never changes a value the script language would compute, except where
//! that computation would fail (an overflow folds to no change).

use std::collections::BTreeMap;

use crate::strategy::expr::{BinOp, Expr};

/// A sum of monomials: the sorted variable slots of each (with repeats),
/// and its coefficient.
type Poly = BTreeMap<Vec<usize>, i64>;

fn constant(c: i64) -> Poly {
    let mut p = Poly::new();
    if c != 0 {
        p.insert(Vec::new(), c);
    }
    p
}

fn add(a: &Poly, b: &Poly, sign: i64) -> Option<Poly> {
    let mut out = a.clone();
    for (m, c) in b {
        let e = out.entry(m.clone()).or_insert(0);
        *e = e.checked_add(c.checked_mul(sign)?)?;
        if *e == 0 {
            out.remove(m);
        }
    }
    Some(out)
}

fn mul(a: &Poly, b: &Poly) -> Option<Poly> {
    let mut out = Poly::new();
    for (ma, ca) in a {
        for (mb, cb) in b {
            let mut m = ma.clone();
            m.extend(mb);
            m.sort_unstable();
            let e = out.entry(m.clone()).or_insert(0);
            *e = e.checked_add(ca.checked_mul(*cb)?)?;
            if *e == 0 {
                out.remove(&m);
            }
        }
    }
    Some(out)
}

/// The polynomial of `e`, when it is made of integers, variables, `-x`,
/// `+`, `-` and `*` only (and nothing overflows).
fn poly(e: &Expr) -> Option<Poly> {
    Some(match e {
        Expr::Int(i) => constant(*i),
        Expr::Var(s) => [(vec![*s], 1)].into_iter().collect(),
        Expr::Neg(x) => add(&Poly::new(), &poly(x)?, -1)?,
        Expr::Bin(BinOp::Add, l, r) => add(&poly(l)?, &poly(r)?, 1)?,
        Expr::Bin(BinOp::Sub, l, r) => add(&poly(l)?, &poly(r)?, -1)?,
        Expr::Bin(BinOp::Mul, l, r) => {
            // A factor that folds to zero makes the product zero whatever
            // the other is.
            let (pl, pr) = (poly(l), poly(r));
            match (pl, pr) {
                (Some(a), _) if a.is_empty() => Poly::new(),
                (_, Some(b)) if b.is_empty() => Poly::new(),
                (Some(a), Some(b)) => mul(&a, &b)?,
                _ => return None,
            }
        }
        _ => return None,
    })
}

/// The expression of a polynomial, terms in a fixed order.
fn unpoly(p: &Poly) -> Expr {
    let mut out: Option<Expr> = None;
    for (m, c) in p {
        let mut term: Option<Expr> = None;
        for v in m {
            term = Some(match term {
                None => Expr::Var(*v),
                Some(t) => Expr::Bin(BinOp::Mul, Box::new(t), Box::new(Expr::Var(*v))),
            });
        }
        let (neg, mag) = (*c < 0, c.unsigned_abs());
        let term = match term {
            None => Expr::Int(mag as i64),
            Some(t) if mag == 1 => t,
            Some(t) => Expr::Bin(BinOp::Mul, Box::new(Expr::Int(mag as i64)), Box::new(t)),
        };
        out = Some(match (out, neg) {
            (None, false) => term,
            (None, true) => Expr::Neg(Box::new(term)),
            (Some(o), false) => Expr::Bin(BinOp::Add, Box::new(o), Box::new(term)),
            (Some(o), true) => Expr::Bin(BinOp::Sub, Box::new(o), Box::new(term)),
        });
    }
    out.unwrap_or(Expr::Int(0))
}

/// `e` folded: the same value for every value of its variables.
pub(crate) fn fold(e: &Expr) -> Expr {
    if let Some(p) = poly(e) {
        // A magnitude of i64::MIN cannot be written back: leave it.
        if p.values().all(|c| *c != i64::MIN) {
            return unpoly(&p);
        }
        return e.clone();
    }
    match e {
        Expr::Int(_) | Expr::Var(_) => e.clone(),
        Expr::Neg(x) => Expr::Neg(Box::new(fold(x))),
        Expr::Not(x) => match fold(x) {
            Expr::Int(i) => Expr::Int(i64::from(i == 0)),
            x => Expr::Not(Box::new(x)),
        },
        Expr::Bin(op, l, r) => {
            let (l, r) = (fold(l), fold(r));
            if let (Expr::Int(a), Expr::Int(b)) = (&l, &r) {
                if let Some(v) = constant_bin(*op, *a, *b) {
                    return Expr::Int(v);
                }
            }
            match (op, &l, &r) {
                (BinOp::Mul, Expr::Int(0), _) | (BinOp::Mul, _, Expr::Int(0)) => Expr::Int(0),
                (BinOp::Div | BinOp::Rem, Expr::Int(0), Expr::Int(d)) if *d != 0 => Expr::Int(0),
                (BinOp::Rem, _, Expr::Int(1 | -1)) => Expr::Int(0),
                (BinOp::And, Expr::Int(0), _) | (BinOp::And, _, Expr::Int(0)) => Expr::Int(0),
                _ => Expr::Bin(*op, Box::new(l), Box::new(r)),
            }
        }
        Expr::Call(f, args) => Expr::Call(*f, args.iter().map(fold).collect()),
    }
}

fn constant_bin(op: BinOp, a: i64, b: i64) -> Option<i64> {
    Some(match op {
        BinOp::Add => a.checked_add(b)?,
        BinOp::Sub => a.checked_sub(b)?,
        BinOp::Mul => a.checked_mul(b)?,
        BinOp::Div => a.checked_div(b)?,
        BinOp::Rem => a.checked_rem(b)?,
        BinOp::Eq => i64::from(a == b),
        BinOp::Ne => i64::from(a != b),
        BinOp::Lt => i64::from(a < b),
        BinOp::Le => i64::from(a <= b),
        BinOp::Gt => i64::from(a > b),
        BinOp::Ge => i64::from(a >= b),
        BinOp::And => i64::from(a != 0 && b != 0),
        BinOp::Or => i64::from(a != 0 || b != 0),
    })
}

/// The variable slots `e` still depends on once folded, ascending.
pub(crate) fn folded_vars(e: &Expr) -> Vec<usize> {
    fn walk(e: &Expr, out: &mut Vec<usize>) {
        match e {
            Expr::Int(_) => {}
            Expr::Var(s) => out.push(*s),
            Expr::Neg(x) | Expr::Not(x) => walk(x, out),
            Expr::Bin(_, l, r) => {
                walk(l, out);
                walk(r, out);
            }
            Expr::Call(_, args) => args.iter().for_each(|a| walk(a, out)),
        }
    }
    let mut out = Vec::new();
    walk(&fold(e), &mut out);
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn v(s: usize) -> Box<Expr> {
        Box::new(Expr::Var(s))
    }
    fn i(n: i64) -> Box<Expr> {
        Box::new(Expr::Int(n))
    }
    fn b(op: BinOp, l: Box<Expr>, r: Box<Expr>) -> Box<Expr> {
        Box::new(Expr::Bin(op, l, r))
    }

    #[test]
    fn a_variable_times_zero_is_gone() {
        // :product + 0 * :buyer
        let e = b(BinOp::Add, v(0), b(BinOp::Mul, i(0), v(2)));
        assert_eq!(fold(&e), Expr::Var(0));
        assert_eq!(folded_vars(&e), vec![0]);
        // :product + :buyer - :buyer
        let e = b(BinOp::Sub, b(BinOp::Add, v(0), v(2)), v(2));
        assert_eq!(folded_vars(&e), vec![0]);
        // (:buyer - :buyer) * random(1, 9): zero whatever random gives.
        let e = b(
            BinOp::Mul,
            b(BinOp::Sub, v(2), v(2)),
            Box::new(Expr::Call(
                crate::strategy::expr::Func::Random,
                vec![Expr::Int(1), Expr::Int(9)],
            )),
        );
        assert_eq!(fold(&e), Expr::Int(0));
        // :product * 100000 + :buyer keeps both.
        let e = b(BinOp::Add, b(BinOp::Mul, v(0), i(100_000)), v(2));
        assert_eq!(folded_vars(&e), vec![0, 2]);
        // :buyer % 1 is 0; :buyer / 7 is not constant.
        assert_eq!(folded_vars(&b(BinOp::Rem, v(2), i(1))), Vec::<usize>::new());
        assert_eq!(folded_vars(&b(BinOp::Div, v(2), i(7))), vec![2]);
    }

    #[test]
    fn folding_keeps_the_value() {
        let exprs = [
            b(
                BinOp::Sub,
                b(
                    BinOp::Mul,
                    b(BinOp::Add, v(0), i(3)),
                    b(BinOp::Sub, v(1), i(2)),
                ),
                v(1),
            ),
            b(
                BinOp::Ge,
                b(BinOp::Sub, v(0), v(1)),
                b(BinOp::Mul, i(0), v(2)),
            ),
            Box::new(Expr::Neg(b(BinOp::Sub, i(4), b(BinOp::Mul, v(1), i(-3))))),
            b(BinOp::Div, b(BinOp::Add, v(0), v(1)), i(3)),
        ];
        let mut rng = rand::rngs::SmallRng::seed_from_u64(0);
        for e in &exprs {
            let f = fold(e);
            for a in -5..=5 {
                for c in -5..=5 {
                    let get = |s: usize| -> Result<i64, crate::strategy::EvalError> {
                        Ok(match s {
                            0 => a,
                            1 => c,
                            _ => 7,
                        })
                    };
                    assert_eq!(
                        e.eval(&get, &mut rng),
                        f.eval(&get, &mut rng),
                        "{e:?} -> {f:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn overflow_is_left_alone() {
        let e = b(BinOp::Mul, i(i64::MAX), b(BinOp::Add, v(0), i(2)));
        let Expr::Bin(BinOp::Mul, l, _) = fold(&e) else {
            panic!("{:?}", fold(&e))
        };
        assert_eq!(*l, Expr::Int(i64::MAX));
    }
}
