//! Expressions of `\set`, `\if`, `\elif` and `\sleep`: 64-bit integers,
//! variables, arithmetic, comparisons, logic and four functions. Parsed once
//! into a small tree whose variables are already resolved to slots, so
//! evaluating it allocates nothing and hashes no names. Every operation is
//! checked: overflow and division by zero are errors, never panics.

use rand::rngs::SmallRng;
use rand::Rng;

use super::lex::{is_var_char, is_var_start};

/// Deep nesting would make the recursive parser and evaluator use a lot of
/// stack; real expressions are a handful of operators.
const MAX_DEPTH: usize = 64;
const MAX_TOKENS: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Random,
    Least,
    Greatest,
    Abs,
    /// `is_null(:x)`: 1 when the variable is NULL (a nil Redis reply).
    IsNull,
}

const FUNCS: [&str; 5] = ["random", "least", "greatest", "abs", "is_null"];

/// A compiled expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    Int(i64),
    /// A variable slot.
    Var(usize),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
}

/// Why an evaluation failed. Slots are turned into names by the caller, so
/// the failure path is the only one that formats anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EvalError {
    DivisionByZero,
    Overflow,
    Unset(usize),
    Null(usize),
    NotInteger(usize),
    EmptyRange(i64, i64),
}

impl EvalError {
    pub(crate) fn describe(&self, vars: &[String]) -> String {
        let name = |s: &usize| vars.get(*s).map(String::as_str).unwrap_or("?");
        match self {
            EvalError::DivisionByZero => "division by zero".into(),
            EvalError::Overflow => "integer overflow".into(),
            EvalError::Unset(s) => format!("variable :{} has no value yet", name(s)),
            EvalError::Null(s) => format!("variable :{} is NULL", name(s)),
            EvalError::NotInteger(s) => format!("variable :{} is text, not an integer", name(s)),
            EvalError::EmptyRange(lo, hi) => format!("random({lo}, {hi}): empty range"),
        }
    }
}

/// A parse error at a 1-based column of the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExprError {
    pub col: usize,
    pub message: String,
}

fn eerr(col: usize, message: impl Into<String>) -> ExprError {
    ExprError {
        col,
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokKind {
    /// Unsigned, so that `-9223372036854775808` can be written.
    Int(u64),
    Var(String),
    Word(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: TokKind,
    pub col: usize,
}

/// Tokenize `text`, whose first character is at column `col0`. Returns the
/// tokens and the column just past the text (for "expected ... at end").
pub(crate) fn tokenize(text: &str, col0: usize) -> Result<(Vec<Token>, usize), ExprError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = col0 + i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if out.len() >= MAX_TOKENS {
            return Err(eerr(col, "expression is too long"));
        }
        let next = chars.get(i + 1).copied();
        let kind = if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if i < chars.len() && is_var_char(chars[i]) {
                return Err(eerr(col0 + i, "unexpected character in a number"));
            }
            let digits: String = chars[start..i].iter().collect();
            let v = digits
                .parse::<u64>()
                .ok()
                .filter(|v| *v <= i64::MAX as u64 + 1)
                .ok_or_else(|| eerr(col, "integer literal out of range"))?;
            out.push(Token {
                kind: TokKind::Int(v),
                col,
            });
            continue;
        } else if c == ':' && next.is_some_and(is_var_start) {
            let start = i + 1;
            i = start;
            while i < chars.len() && is_var_char(chars[i]) {
                i += 1;
            }
            out.push(Token {
                kind: TokKind::Var(chars[start..i].iter().collect()),
                col,
            });
            continue;
        } else if is_var_start(c) {
            let start = i;
            while i < chars.len() && is_var_char(chars[i]) {
                i += 1;
            }
            out.push(Token {
                kind: TokKind::Word(chars[start..i].iter().collect()),
                col,
            });
            continue;
        } else {
            let two: Option<&'static str> = match (c, next) {
                ('=', Some('=')) => Some("=="),
                ('<', Some('>')) => Some("<>"),
                ('!', Some('=')) => Some("!="),
                ('<', Some('=')) => Some("<="),
                ('>', Some('=')) => Some(">="),
                ('&', Some('&')) => Some("&&"),
                ('|', Some('|')) => Some("||"),
                _ => None,
            };
            if let Some(op) = two {
                i += 2;
                out.push(Token {
                    kind: TokKind::Op(op),
                    col,
                });
                continue;
            }
            match c {
                '(' => TokKind::LParen,
                ')' => TokKind::RParen,
                ',' => TokKind::Comma,
                '+' => TokKind::Op("+"),
                '-' => TokKind::Op("-"),
                '*' => TokKind::Op("*"),
                '/' => TokKind::Op("/"),
                '%' => TokKind::Op("%"),
                '=' => TokKind::Op("="),
                '<' => TokKind::Op("<"),
                '>' => TokKind::Op(">"),
                '!' => TokKind::Op("!"),
                ':' => return Err(eerr(col, "expected a variable name after `:`")),
                _ => return Err(eerr(col, format!("unexpected character `{c}`"))),
            }
        };
        out.push(Token { kind, col });
        i += 1;
    }
    Ok((out, col0 + chars.len()))
}

/// Parse a whole token list as one expression. `var` resolves a variable
/// name (at a column) to its slot.
pub(crate) fn parse(
    tokens: &[Token],
    end_col: usize,
    var: &mut dyn FnMut(&str, usize) -> usize,
) -> Result<Expr, ExprError> {
    let mut p = ExprParser {
        toks: tokens,
        pos: 0,
        end_col,
        depth: 0,
        var,
    };
    if tokens.is_empty() {
        return Err(eerr(end_col, "expected an expression"));
    }
    let e = p.or()?;
    if let Some(t) = p.peek() {
        return Err(eerr(t.col, format!("unexpected {}", describe(&t.kind))));
    }
    Ok(e)
}

fn describe(k: &TokKind) -> String {
    match k {
        TokKind::Int(v) => format!("number {v}"),
        TokKind::Var(n) => format!("variable :{n}"),
        TokKind::Word(w) => format!("word `{w}`"),
        TokKind::Op(o) => format!("`{o}`"),
        TokKind::LParen => "`(`".into(),
        TokKind::RParen => "`)`".into(),
        TokKind::Comma => "`,`".into(),
    }
}

struct ExprParser<'t, 'v> {
    toks: &'t [Token],
    pos: usize,
    end_col: usize,
    depth: usize,
    var: &'v mut dyn FnMut(&str, usize) -> usize,
}

impl ExprParser<'_, '_> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    fn col(&self) -> usize {
        self.peek().map_or(self.end_col, |t| t.col)
    }

    fn is_op(&self, ops: &[&str]) -> Option<&'static str> {
        match self.peek().map(|t| &t.kind) {
            Some(TokKind::Op(o)) if ops.contains(o) => Some(o),
            _ => None,
        }
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek().map(|t| &t.kind), Some(TokKind::Word(x)) if x.eq_ignore_ascii_case(w))
    }

    fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(eerr(self.col(), "expression is nested too deeply"));
        }
        Ok(())
    }

    /// Build a binary node, refusing chains so long that evaluating them
    /// would recurse too deep.
    fn bin(&mut self, op: BinOp, l: Expr, r: Expr, col: usize) -> Result<Expr, ExprError> {
        if depth_of(&l).max(depth_of(&r)) >= MAX_DEPTH {
            return Err(eerr(col, "expression is nested too deeply"));
        }
        Ok(Expr::Bin(op, Box::new(l), Box::new(r)))
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        let mut l = self.and()?;
        while self.is_word("or") || self.is_op(&["||"]).is_some() {
            let col = self.col();
            self.pos += 1;
            let r = self.and()?;
            l = self.bin(BinOp::Or, l, r, col)?;
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        let mut l = self.not()?;
        while self.is_word("and") || self.is_op(&["&&"]).is_some() {
            let col = self.col();
            self.pos += 1;
            let r = self.not()?;
            l = self.bin(BinOp::And, l, r, col)?;
        }
        Ok(l)
    }

    fn not(&mut self) -> Result<Expr, ExprError> {
        if self.is_word("not") || self.is_op(&["!"]).is_some() {
            self.enter()?;
            self.pos += 1;
            let e = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Expr, ExprError> {
        let mut l = self.add()?;
        while let Some(op) = self.is_op(&["=", "==", "<>", "!=", "<", "<=", ">", ">="]) {
            let col = self.col();
            self.pos += 1;
            let r = self.add()?;
            let op = match op {
                "=" | "==" => BinOp::Eq,
                "<>" | "!=" => BinOp::Ne,
                "<" => BinOp::Lt,
                "<=" => BinOp::Le,
                ">" => BinOp::Gt,
                _ => BinOp::Ge,
            };
            l = self.bin(op, l, r, col)?;
        }
        Ok(l)
    }

    fn add(&mut self) -> Result<Expr, ExprError> {
        let mut l = self.mul()?;
        while let Some(op) = self.is_op(&["+", "-"]) {
            let col = self.col();
            self.pos += 1;
            let r = self.mul()?;
            let op = if op == "+" { BinOp::Add } else { BinOp::Sub };
            l = self.bin(op, l, r, col)?;
        }
        Ok(l)
    }

    fn mul(&mut self) -> Result<Expr, ExprError> {
        let mut l = self.unary()?;
        while let Some(op) = self.is_op(&["*", "/", "%"]) {
            let col = self.col();
            self.pos += 1;
            let r = self.unary()?;
            let op = match op {
                "*" => BinOp::Mul,
                "/" => BinOp::Div,
                _ => BinOp::Rem,
            };
            l = self.bin(op, l, r, col)?;
        }
        Ok(l)
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        if let Some(op) = self.is_op(&["-", "+"]) {
            if op == "-" {
                if let Some(TokKind::Int(v)) = self.toks.get(self.pos + 1).map(|t| &t.kind) {
                    if *v == i64::MAX as u64 + 1 {
                        self.pos += 2;
                        return Ok(Expr::Int(i64::MIN));
                    }
                }
            }
            self.enter()?;
            self.pos += 1;
            let e = self.unary()?;
            self.depth -= 1;
            return Ok(match (op, e) {
                ("+", e) => e,
                (_, Expr::Int(v)) if v != i64::MIN => Expr::Int(-v),
                (_, e) => Expr::Neg(Box::new(e)),
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ExprError> {
        let col = self.col();
        let Some(t) = self.peek().cloned() else {
            return Err(eerr(col, "expected a value at the end of the expression"));
        };
        self.pos += 1;
        match t.kind {
            TokKind::Int(v) => i64::try_from(v)
                .map(Expr::Int)
                .map_err(|_| eerr(t.col, "integer literal out of range")),
            TokKind::Var(name) => Ok(Expr::Var((self.var)(&name, t.col))),
            TokKind::LParen => {
                self.enter()?;
                let e = self.or()?;
                self.depth -= 1;
                self.expect_rparen(col)?;
                Ok(e)
            }
            TokKind::Word(w) => {
                let lower = w.to_ascii_lowercase();
                let func = match lower.as_str() {
                    "random" => Func::Random,
                    "least" => Func::Least,
                    "greatest" => Func::Greatest,
                    "abs" => Func::Abs,
                    "is_null" => Func::IsNull,
                    _ => {
                        let hint = if matches!(self.peek().map(|t| &t.kind), Some(TokKind::LParen))
                        {
                            format!(
                                "unknown function `{w}`{}",
                                crate::suggest::did_you_mean("", &lower, FUNCS.iter().copied())
                            )
                        } else {
                            format!("unexpected word `{w}` (variables are written `:{w}`)")
                        };
                        return Err(eerr(t.col, hint));
                    }
                };
                if !matches!(self.peek().map(|t| &t.kind), Some(TokKind::LParen)) {
                    return Err(eerr(self.col(), format!("expected `(` after `{w}`")));
                }
                let open = self.col();
                self.pos += 1;
                self.enter()?;
                let mut args = Vec::new();
                if !matches!(self.peek().map(|t| &t.kind), Some(TokKind::RParen)) {
                    loop {
                        args.push(self.or()?);
                        if matches!(self.peek().map(|t| &t.kind), Some(TokKind::Comma)) {
                            self.pos += 1;
                        } else {
                            break;
                        }
                    }
                }
                self.depth -= 1;
                self.expect_rparen(open)?;
                let ok = match func {
                    Func::Random => args.len() == 2,
                    Func::Abs => args.len() == 1,
                    Func::IsNull => matches!(args.as_slice(), [Expr::Var(_)]),
                    Func::Least | Func::Greatest => !args.is_empty(),
                };
                if !ok {
                    let want = match func {
                        Func::Random => "two arguments (lo, hi)",
                        Func::Abs => "one argument",
                        Func::IsNull => "one variable, like `is_null(:reply)`",
                        _ => "at least one argument",
                    };
                    return Err(eerr(t.col, format!("`{lower}` takes {want}")));
                }
                if args.iter().any(|a| depth_of(a) >= MAX_DEPTH) {
                    return Err(eerr(t.col, "expression is nested too deeply"));
                }
                Ok(Expr::Call(func, args))
            }
            other => Err(eerr(t.col, format!("unexpected {}", describe(&other)))),
        }
    }

    fn expect_rparen(&mut self, open_col: usize) -> Result<(), ExprError> {
        if matches!(self.peek().map(|t| &t.kind), Some(TokKind::RParen)) {
            self.pos += 1;
            Ok(())
        } else {
            Err(eerr(
                self.col(),
                format!("expected `)` to close the `(` at column {open_col}"),
            ))
        }
    }
}

fn depth_of(e: &Expr) -> usize {
    match e {
        Expr::Int(_) | Expr::Var(_) => 1,
        Expr::Neg(x) | Expr::Not(x) => 1 + depth_of(x),
        Expr::Bin(_, l, r) => 1 + depth_of(l).max(depth_of(r)),
        Expr::Call(_, args) => 1 + args.iter().map(depth_of).max().unwrap_or(0),
    }
}

impl Expr {
    /// Evaluate with `var` reading a slot. `and`/`or` short-circuit, so
    /// `:n <> 0 and 10 / :n > 1` is safe.
    pub(crate) fn eval<F>(&self, var: &F, rng: &mut SmallRng) -> Result<i64, EvalError>
    where
        F: Fn(usize) -> Result<i64, EvalError>,
    {
        use EvalError::{DivisionByZero, Overflow};
        Ok(match self {
            Expr::Int(v) => *v,
            Expr::Var(s) => var(*s)?,
            Expr::Neg(e) => e.eval(var, rng)?.checked_neg().ok_or(Overflow)?,
            Expr::Not(e) => (e.eval(var, rng)? == 0) as i64,
            Expr::Bin(BinOp::And, l, r) => {
                (l.eval(var, rng)? != 0 && r.eval(var, rng)? != 0) as i64
            }
            Expr::Bin(BinOp::Or, l, r) => (l.eval(var, rng)? != 0 || r.eval(var, rng)? != 0) as i64,
            Expr::Bin(op, l, r) => {
                let a = l.eval(var, rng)?;
                let b = r.eval(var, rng)?;
                match op {
                    BinOp::Add => a.checked_add(b).ok_or(Overflow)?,
                    BinOp::Sub => a.checked_sub(b).ok_or(Overflow)?,
                    BinOp::Mul => a.checked_mul(b).ok_or(Overflow)?,
                    BinOp::Div if b == 0 => return Err(DivisionByZero),
                    BinOp::Div => a.checked_div(b).ok_or(Overflow)?,
                    BinOp::Rem if b == 0 => return Err(DivisionByZero),
                    BinOp::Rem => a.checked_rem(b).ok_or(Overflow)?,
                    BinOp::Eq => (a == b) as i64,
                    BinOp::Ne => (a != b) as i64,
                    BinOp::Lt => (a < b) as i64,
                    BinOp::Le => (a <= b) as i64,
                    BinOp::Gt => (a > b) as i64,
                    BinOp::Ge => (a >= b) as i64,
                    BinOp::And | BinOp::Or => unreachable!("handled above"),
                }
            }
            Expr::Call(Func::IsNull, args) => match &args[0] {
                Expr::Var(slot) => match var(*slot) {
                    Err(EvalError::Null(_)) => 1,
                    Ok(_) | Err(EvalError::NotInteger(_)) => 0,
                    Err(e) => return Err(e),
                },
                _ => unreachable!("checked at parse time"),
            },
            Expr::Call(Func::Abs, args) => args[0].eval(var, rng)?.checked_abs().ok_or(Overflow)?,
            Expr::Call(Func::Random, args) => {
                let lo = args[0].eval(var, rng)?;
                let hi = args[1].eval(var, rng)?;
                if lo > hi {
                    return Err(EvalError::EmptyRange(lo, hi));
                }
                rng.gen_range(lo..=hi)
            }
            Expr::Call(f, args) => {
                let mut acc = args[0].eval(var, rng)?;
                for a in &args[1..] {
                    let v = a.eval(var, rng)?;
                    acc = if *f == Func::Least {
                        acc.min(v)
                    } else {
                        acc.max(v)
                    };
                }
                acc
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    /// Parse `text` with variables a=0, b=1, ... (slots in order of first use).
    fn compile(text: &str) -> Result<(Expr, Vec<String>), ExprError> {
        let (toks, end) = tokenize(text, 1)?;
        let mut names: Vec<String> = Vec::new();
        let mut var = |n: &str, _col: usize| match names.iter().position(|x| x == n) {
            Some(i) => i,
            None => {
                names.push(n.to_string());
                names.len() - 1
            }
        };
        let e = parse(&toks, end, &mut var)?;
        Ok((e, names))
    }

    fn eval_with(text: &str, vals: &[(&str, i64)]) -> Result<i64, EvalError> {
        let (e, names) = compile(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        let slots: Vec<Option<i64>> = names
            .iter()
            .map(|n| vals.iter().find(|(k, _)| k == n).map(|(_, v)| *v))
            .collect();
        let get = |s: usize| slots[s].ok_or(EvalError::Unset(s));
        e.eval(&get, &mut SmallRng::seed_from_u64(7))
    }

    fn ev(text: &str) -> i64 {
        eval_with(text, &[]).unwrap()
    }

    #[test]
    fn arithmetic_and_precedence() {
        assert_eq!(ev("1 + 2 * 3"), 7);
        assert_eq!(ev("(1 + 2) * 3"), 9);
        assert_eq!(ev("10 - 3 - 2"), 5);
        assert_eq!(ev("7 / 2"), 3);
        assert_eq!(ev("-7 / 2"), -3);
        assert_eq!(ev("7 % 3"), 1);
        assert_eq!(ev("-(3)"), -3);
        assert_eq!(ev("--3"), 3);
        assert_eq!(ev("+4"), 4);
        assert_eq!(ev("-9223372036854775808"), i64::MIN);
    }

    #[test]
    fn comparisons_and_logic() {
        assert_eq!(ev("1 = 1"), 1);
        assert_eq!(ev("1 == 2"), 0);
        assert_eq!(ev("1 <> 2"), 1);
        assert_eq!(ev("1 != 1"), 0);
        assert_eq!(ev("1 < 2"), 1);
        assert_eq!(ev("2 <= 2"), 1);
        assert_eq!(ev("1 > 2"), 0);
        assert_eq!(ev("2 >= 3"), 0);
        assert_eq!(ev("1 and 0"), 0);
        assert_eq!(ev("1 AND 2"), 1);
        assert_eq!(ev("0 or 3"), 1);
        assert_eq!(ev("not 0"), 1);
        assert_eq!(ev("!5"), 0);
        assert_eq!(ev("1 && 1 || 0"), 1);
        assert_eq!(ev("not 1 = 2"), 1, "not binds looser than comparison");
        assert_eq!(ev("1 + 1 = 2 and 3 > 2"), 1);
    }

    #[test]
    fn functions() {
        assert_eq!(ev("least(3, 1, 2)"), 1);
        assert_eq!(ev("greatest(3, 1, 2)"), 3);
        assert_eq!(ev("GREATEST(-1)"), -1);
        assert_eq!(ev("abs(-4)"), 4);
        for _ in 0..50 {
            let v = ev("random(1, 3)");
            assert!((1..=3).contains(&v));
        }
        assert_eq!(ev("random(5, 5)"), 5);
        // The full i64 range does not overflow.
        ev("random(-9223372036854775808, 9223372036854775807)");
    }

    #[test]
    fn variables() {
        assert_eq!(
            eval_with(":stock < :qty", &[("stock", 1), ("qty", 2)]),
            Ok(1)
        );
        assert_eq!(eval_with(":a + :a", &[("a", 21)]), Ok(42));
        assert_eq!(eval_with(":nope + 1", &[]), Err(EvalError::Unset(0)));
    }

    #[test]
    fn runtime_errors() {
        assert_eq!(eval_with("1 / 0", &[]), Err(EvalError::DivisionByZero));
        assert_eq!(eval_with("1 % 0", &[]), Err(EvalError::DivisionByZero));
        assert_eq!(
            eval_with("9223372036854775807 + 1", &[]),
            Err(EvalError::Overflow)
        );
        assert_eq!(
            eval_with("-9223372036854775808 / -1", &[]),
            Err(EvalError::Overflow)
        );
        assert_eq!(
            eval_with("-9223372036854775808 % -1", &[]),
            Err(EvalError::Overflow)
        );
        assert_eq!(
            eval_with("abs(-9223372036854775808)", &[]),
            Err(EvalError::Overflow)
        );
        assert_eq!(
            eval_with("-(-9223372036854775808)", &[]),
            Err(EvalError::Overflow)
        );
        assert_eq!(
            eval_with("random(2, 1)", &[]),
            Err(EvalError::EmptyRange(2, 1))
        );
        // Short-circuit: the division is never evaluated.
        assert_eq!(eval_with(":n <> 0 and 10 / :n > 1", &[("n", 0)]), Ok(0));
        assert_eq!(eval_with(":n = 0 or 10 / :n > 1", &[("n", 0)]), Ok(1));
    }

    fn perr(text: &str) -> ExprError {
        compile(text).expect_err(text)
    }

    #[test]
    fn parse_errors_name_the_column() {
        assert_eq!(perr("").col, 1);
        assert_eq!(perr("1 +").col, 4);
        assert_eq!(perr("1 + * 2").col, 5);
        assert_eq!(perr("(1 + 2").col, 7);
        assert_eq!(perr("1 2").col, 3);
        assert_eq!(perr("stock < 1").col, 1);
        assert!(perr("stock < 1").message.contains(":stock"));
        assert_eq!(perr("rand(1, 2)").col, 1);
        assert!(perr("rand(1, 2)").message.contains("random"));
        assert_eq!(perr("random(1)").col, 1);
        assert_eq!(perr("abs()").col, 1);
        assert_eq!(perr("1 # 2").col, 3);
        assert_eq!(perr("99999999999999999999").col, 1);
        assert_eq!(perr("12abc").col, 3);
        assert_eq!(perr(": x").col, 1);
        assert_eq!(perr("least").col, 6);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
        assert!(compile(&deep).is_err());
        let long = vec!["1"; 200].join(" + ");
        assert!(compile(&long).is_err());
        let nots = "not ".repeat(300) + "1";
        assert!(compile(&nots).is_err());
        let negs = "-".repeat(300) + "1";
        assert!(compile(&negs).is_err());
        // Within limits is fine.
        let ok = vec!["1"; 40].join(" + ");
        assert_eq!(ev(&ok), 40);
    }

    fn token_soup() -> impl Strategy<Value = String> {
        let atoms = prop::sample::select(vec![
            "1",
            "0",
            "-",
            "+",
            "*",
            "/",
            "%",
            "(",
            ")",
            ",",
            ":a",
            ":b",
            "=",
            "<>",
            "<",
            ">=",
            "and",
            "or",
            "not",
            "!",
            "&&",
            "||",
            "random",
            "least",
            "greatest",
            "abs",
            "9223372036854775807",
            "-9223372036854775808",
            "x",
            ":",
            "==",
            "!=",
        ]);
        prop::collection::vec(atoms, 0..40).prop_map(|v| v.join(" "))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,60}") {
            let _ = compile(&s);
        }

        #[test]
        fn token_soup_never_panics(s in token_soup(), a in any::<i64>(), b in any::<i64>()) {
            if let Ok((e, names)) = compile(&s) {
                let vals: Vec<i64> = names.iter().map(|n| if n == "a" { a } else { b }).collect();
                let get = |s: usize| Ok(vals[s]);
                let _ = e.eval(&get, &mut SmallRng::seed_from_u64(1));
            }
        }
    }
}
