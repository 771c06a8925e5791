//! The bodies of functions `\setup` creates, split into the steps racelab
//! follows: for LANGUAGE sql, its statements; for LANGUAGE plpgsql, a block
//! of straight-line statements — SQL (with `SELECT ... INTO`, `RETURNING
//! ... INTO`, `PERFORM`), assignments (`x := e`, `NEW.col := e`), `IF
//! cond THEN <exit> END IF`, `RETURN`, `RAISE` — and nothing else. A loop,
//! dynamic SQL (`EXECUTE`), an exception block or any other statement makes
//! the body unreadable, with the reason: racelab does not guess what it
//! does.
//!
//! Names are resolved here, on sqlparser's tokens: a parameter, a local
//! variable, `FOUND`, `NEW.col` and `OLD.col` become `$k` placeholders
//! bound to slots (see `routine`), so the statements are then read by the
//! same statement reader as a script's, their variables slots like a
//! script's.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer};

/// A piece of SQL with its names resolved: the text, with `$k` bound to
/// `slots[k - 1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Text {
    pub sql: String,
    pub slots: Vec<usize>,
}

/// One step of a body, before its SQL is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RawStep {
    /// A SQL statement, and the slots `INTO` stores its row in.
    Sql {
        text: Text,
        into: Vec<usize>,
    },
    Assign {
        slot: usize,
        value: Text,
    },
    ExitIf {
        cond: Text,
        exit: RawExit,
    },
    Exit(RawExit),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RawExit {
    Return(Option<Text>),
    ReturnNew,
    ReturnNull,
    Raise { sqlstate: Option<String> },
}

/// How names map to slots in one body.
pub(super) struct Names<'a> {
    pub params: &'a [String],
    pub locals: Vec<String>,
    /// Columns named as `NEW.x` or `OLD.x`, in order of first use.
    pub row_columns: Vec<String>,
    pub slots: super::slots::Slots,
}

impl Names<'_> {
    fn param(&self, name: &str) -> Option<usize> {
        self.params
            .iter()
            .position(|p| p.eq_ignore_ascii_case(name))
            .map(|i| self.slots.param(i))
    }

    fn local(&self, name: &str) -> Option<usize> {
        self.locals
            .iter()
            .position(|p| p.eq_ignore_ascii_case(name))
            .map(|i| self.slots.local(i))
    }

    fn row(&mut self, new: bool, column: &str) -> usize {
        let column = column.to_ascii_lowercase();
        let i = match self.row_columns.iter().position(|c| *c == column) {
            Some(i) => i,
            None => {
                self.row_columns.push(column);
                self.row_columns.len() - 1
            }
        };
        if new {
            self.slots.new_col(i)
        } else {
            self.slots.old_col(i)
        }
    }
}

type Toks = Vec<Token>;

fn tokens(body: &str) -> Result<Toks, String> {
    let toks = Tokenizer::new(&PostgreSqlDialect {}, body)
        .tokenize()
        .map_err(|e| e.to_string())?;
    Ok(toks
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect())
}

fn kw(t: Option<&Token>) -> Option<Keyword> {
    match t {
        Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.keyword),
        _ => None,
    }
}

fn word(t: Option<&Token>) -> Option<String> {
    match t {
        Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.value.to_ascii_lowercase()),
        Some(Token::Word(w)) => Some(w.value.clone()),
        _ => None,
    }
}

/// `toks` as SQL text with its names turned into placeholders.
fn resolve(toks: &[Token], names: &mut Names) -> Text {
    let mut out: Vec<String> = Vec::with_capacity(toks.len());
    let mut slots: Vec<usize> = Vec::new();
    let mut bind = |slot: usize, out: &mut Vec<String>| {
        let k = match slots.iter().position(|s| *s == slot) {
            Some(k) => k,
            None => {
                slots.push(slot);
                slots.len() - 1
            }
        };
        out.push(format!("${}", k + 1));
    };
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        let after_period = i > 0 && toks[i - 1] == Token::Period;
        match t {
            Token::Word(w) if !after_period => {
                let lower = w.value.to_ascii_lowercase();
                let qualified = toks.get(i + 1) == Some(&Token::Period);
                if qualified && w.quote_style.is_none() && (lower == "new" || lower == "old") {
                    if let Some(col) = word(toks.get(i + 2)) {
                        let slot = names.row(lower == "new", &col);
                        bind(slot, &mut out);
                        i += 3;
                        continue;
                    }
                }
                let slot = if qualified {
                    None
                } else if lower == "found" && w.quote_style.is_none() {
                    Some(names.slots.found())
                } else {
                    names.local(&w.value).or_else(|| names.param(&w.value))
                };
                match slot {
                    Some(s) => bind(s, &mut out),
                    None => out.push(t.to_string()),
                }
            }
            Token::Placeholder(p) => match p
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n >= 1 && *n <= names.params.len())
            {
                Some(n) => bind(names.slots.param(n - 1), &mut out),
                None => out.push(t.to_string()),
            },
            _ => out.push(t.to_string()),
        }
        i += 1;
    }
    Text {
        sql: out.join(" "),
        slots,
    }
}

/// Split at `;` outside parentheses.
fn split_statements(toks: &[Token]) -> Vec<&[Token]> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, t) in toks.iter().enumerate() {
        match t {
            Token::LParen | Token::LBracket => depth += 1,
            Token::RParen | Token::RBracket => depth -= 1,
            Token::SemiColon if depth == 0 => {
                if i > start {
                    out.push(&toks[start..i]);
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < toks.len() {
        out.push(&toks[start..]);
    }
    out
}

/// A LANGUAGE sql body: its statements.
pub(super) fn sql_body(body: &str, names: &mut Names) -> Result<Vec<RawStep>, String> {
    let toks = tokens(body)?;
    let mut steps = Vec::new();
    for st in split_statements(&toks) {
        steps.push(RawStep::Sql {
            text: resolve(st, names),
            into: Vec::new(),
        });
    }
    if steps.is_empty() {
        return Err("an empty body".into());
    }
    Ok(steps)
}

/// A LANGUAGE plpgsql body: `[DECLARE ...] BEGIN ... END`.
pub(super) fn plpgsql_body(body: &str, names: &mut Names) -> Result<Vec<RawStep>, String> {
    let toks = tokens(body)?;
    let mut p = P {
        toks: &toks,
        at: 0,
        steps: Vec::new(),
    };
    // Declarations: `name type [...] [:= | = | DEFAULT expr];`
    let mut inits: Vec<(String, Vec<Token>)> = Vec::new();
    if kw(p.peek()) == Some(Keyword::DECLARE) {
        p.at += 1;
        while kw(p.peek()) != Some(Keyword::BEGIN) {
            let decl = p.until_semicolon()?;
            let Some(name) = word(decl.first()) else {
                return Err("a declaration racelab cannot read".into());
            };
            if decl
                .iter()
                .any(|t| matches!(kw(Some(t)), Some(Keyword::CURSOR | Keyword::ALIAS)))
            {
                return Err(format!("the declaration of {name} (a cursor or alias)"));
            }
            let init = decl
                .iter()
                .position(|t| {
                    matches!(t, Token::Assignment | Token::Eq)
                        || kw(Some(t)) == Some(Keyword::DEFAULT)
                })
                .map(|i| decl[i + 1..].to_vec());
            if let Some(init) = init {
                inits.push((name.clone(), init));
            }
            names.locals.push(name);
        }
    }
    if kw(p.peek()) != Some(Keyword::BEGIN) {
        return Err("a body that is not a BEGIN ... END block".into());
    }
    p.at += 1;
    for (name, init) in inits {
        let slot = names.local(&name).expect("declared above");
        p.steps.push(RawStep::Assign {
            slot,
            value: resolve(&init, names),
        });
    }
    p.block(names, false)?;
    if kw(p.peek()) != Some(Keyword::END) {
        return Err(format!(
            "`{}` where the block should end",
            p.peek().map(|t| t.to_string()).unwrap_or_default()
        ));
    }
    p.at += 1;
    // An optional label and `;` may follow.
    while p.peek().is_some() {
        p.at += 1;
    }
    Ok(p.steps)
}

struct P<'t> {
    toks: &'t [Token],
    at: usize,
    steps: Vec<RawStep>,
}

impl<'t> P<'t> {
    fn peek(&self) -> Option<&'t Token> {
        self.toks.get(self.at)
    }

    /// The tokens up to the next `;` outside parentheses (the `;` eaten).
    fn until_semicolon(&mut self) -> Result<Vec<Token>, String> {
        let mut depth = 0i32;
        let start = self.at;
        while let Some(t) = self.toks.get(self.at) {
            match t {
                Token::LParen | Token::LBracket => depth += 1,
                Token::RParen | Token::RBracket => depth -= 1,
                Token::SemiColon if depth == 0 => {
                    let out = self.toks[start..self.at].to_vec();
                    self.at += 1;
                    return Ok(out);
                }
                _ => {}
            }
            self.at += 1;
        }
        Err("a statement without its `;`".into())
    }

    /// Statements until END (or, inside an IF, until ELSIF / ELSE / END).
    fn block(&mut self, names: &mut Names, in_if: bool) -> Result<(), String> {
        loop {
            match kw(self.peek()) {
                None if self.peek().is_none() => return Err("a block without its END".into()),
                Some(Keyword::END) => return Ok(()),
                Some(Keyword::ELSE) if in_if => return Ok(()),
                _ if in_if && word(self.peek()).as_deref() == Some("elsif") => return Ok(()),
                Some(Keyword::EXCEPTION) => {
                    return Err("an EXCEPTION block (what it catches is not followed)".into())
                }
                _ => self.statement(names)?,
            }
        }
    }

    fn statement(&mut self, names: &mut Names) -> Result<(), String> {
        if kw(self.peek()) == Some(Keyword::IF) {
            return self.if_statement(names);
        }
        const NOT_FOLLOWED: &[&str] = &[
            "loop",
            "while",
            "for",
            "foreach",
            "execute",
            "get",
            "case",
            "begin",
            "declare",
            "open",
            "fetch",
            "close",
            "move",
            "call",
            "commit",
            "rollback",
            "exit",
            "continue",
            "assert",
            "return query",
            "<<",
        ];
        if let Some(w) = word(self.peek()) {
            if NOT_FOLLOWED.contains(&w.as_str()) {
                return Err(format!(
                    "{} (racelab follows straight-line PL/pgSQL only)",
                    w.to_uppercase()
                ));
            }
        }
        if self.peek() == Some(&Token::ShiftLeft) {
            return Err(
                "a labelled block or loop (racelab follows straight-line PL/pgSQL only)".into(),
            );
        }
        let st = self.until_semicolon()?;
        let step = one_statement(&st, names)?;
        if let Some(s) = step {
            self.steps.push(s);
        }
        Ok(())
    }

    /// `IF cond THEN <no-ops and one exit> END IF;`
    fn if_statement(&mut self, names: &mut Names) -> Result<(), String> {
        self.at += 1;
        let start = self.at;
        while kw(self.peek()) != Some(Keyword::THEN) {
            if self.peek().is_none() {
                return Err("an IF without THEN".into());
            }
            self.at += 1;
        }
        let cond = self.toks[start..self.at].to_vec();
        self.at += 1;
        let mut inner = P {
            toks: self.toks,
            at: self.at,
            steps: Vec::new(),
        };
        inner.block(names, true)?;
        self.at = inner.at;
        if kw(self.peek()) == Some(Keyword::ELSE) || word(self.peek()).as_deref() == Some("elsif") {
            return Err(
                "an IF with ELSIF or ELSE (racelab follows IF ... THEN exit END IF)".into(),
            );
        }
        // END IF;
        self.at += 1;
        if kw(self.peek()) != Some(Keyword::IF) {
            return Err("an IF without END IF".into());
        }
        self.at += 1;
        if self.peek() == Some(&Token::SemiColon) {
            self.at += 1;
        }
        let exit = match inner.steps.as_slice() {
            [RawStep::Exit(e)] => e.clone(),
            _ => {
                return Err(
                    "an IF whose branch does more than end the function (RETURN or RAISE)".into(),
                )
            }
        };
        self.steps.push(RawStep::ExitIf {
            cond: resolve(&cond, names),
            exit,
        });
        Ok(())
    }
}

/// The sqlstate a RAISE names: `USING ERRCODE = 'x'`, `SQLSTATE 'x'`, or a
/// condition name, as the code when racelab knows the name.
fn raise_state(st: &[Token]) -> Option<String> {
    let code = |s: &str| -> String {
        let known = [
            ("check_violation", "23514"),
            ("unique_violation", "23505"),
            ("not_null_violation", "23502"),
            ("foreign_key_violation", "23503"),
            ("restrict_violation", "23001"),
            ("exclusion_violation", "23P01"),
            ("integrity_constraint_violation", "23000"),
            ("raise_exception", "P0001"),
            ("serialization_failure", "40001"),
            ("deadlock_detected", "40P01"),
            ("lock_not_available", "55P03"),
        ];
        let lower = s.to_ascii_lowercase();
        known
            .iter()
            .find(|(n, _)| *n == lower)
            .map(|(_, c)| c.to_string())
            .unwrap_or(lower)
    };
    for (i, t) in st.iter().enumerate() {
        let w = word(Some(t));
        if w.as_deref() == Some("errcode") || w.as_deref() == Some("sqlstate") {
            let mut j = i + 1;
            if st.get(j) == Some(&Token::Eq) || st.get(j) == Some(&Token::Assignment) {
                j += 1;
            }
            if let Some(Token::SingleQuotedString(s)) = st.get(j) {
                return Some(code(s));
            }
        }
    }
    // `RAISE [EXCEPTION] condition_name`
    let at = match kw(st.get(1)) {
        Some(Keyword::EXCEPTION) => 2,
        _ => 1,
    };
    match st.get(at) {
        Some(Token::Word(w))
            if w.quote_style.is_none() && kw(st.get(at)) != Some(Keyword::USING) =>
        {
            Some(code(&w.value))
        }
        _ => None,
    }
}

/// One statement of a block (without its `;`); `None` for a no-op.
fn one_statement(st: &[Token], names: &mut Names) -> Result<Option<RawStep>, String> {
    let Some(first) = st.first() else {
        return Ok(None);
    };
    let first_kw = kw(Some(first));
    if word(Some(first)).as_deref() == Some("perform") {
        let mut sql = vec![Token::make_keyword("SELECT")];
        sql.extend_from_slice(&st[1..]);
        return Ok(Some(RawStep::Sql {
            text: resolve(&sql, names),
            into: Vec::new(),
        }));
    }
    let step = match first_kw {
        Some(Keyword::NULL) if st.len() == 1 => return Ok(None),
        Some(Keyword::RETURN) => {
            let rest = &st[1..];
            let exit = match (rest.len(), word(rest.first()).as_deref()) {
                (0, _) => RawExit::Return(None),
                (1, Some("new")) => RawExit::ReturnNew,
                (1, Some("null")) => RawExit::ReturnNull,
                (_, Some("query" | "next")) => {
                    return Err("RETURN QUERY / RETURN NEXT".into());
                }
                _ => RawExit::Return(Some(resolve(rest, names))),
            };
            RawStep::Exit(exit)
        }
        Some(Keyword::RAISE) => {
            let level = word(st.get(1));
            if matches!(
                level.as_deref(),
                Some("notice" | "warning" | "info" | "log" | "debug")
            ) {
                return Ok(None);
            }
            RawStep::Exit(RawExit::Raise {
                sqlstate: raise_state(st),
            })
        }
        Some(
            Keyword::SELECT
            | Keyword::WITH
            | Keyword::INSERT
            | Keyword::UPDATE
            | Keyword::DELETE
            | Keyword::LOCK,
        ) => {
            let (sql, into) = strip_into(st, first_kw == Some(Keyword::INSERT), names)?;
            RawStep::Sql {
                text: resolve(&sql, names),
                into,
            }
        }
        _ => {
            // `target := value` / `target = value`
            let eq = st
                .iter()
                .position(|t| matches!(t, Token::Assignment | Token::Eq))
                .filter(|&i| i == 1 || i == 3);
            let Some(eq) = eq else {
                return Err(format!("`{}` (a statement racelab does not follow)", first));
            };
            let target = &st[..eq];
            let slot = match target {
                [Token::Word(w)] => names.local(&w.value).ok_or_else(|| {
                    format!("an assignment to {} (not a local variable)", w.value)
                })?,
                [Token::Word(row), Token::Period, Token::Word(col)]
                    if row.value.eq_ignore_ascii_case("new") =>
                {
                    names.row(true, &col.value)
                }
                _ => return Err("an assignment racelab does not follow".into()),
            };
            RawStep::Assign {
                slot,
                value: resolve(&st[eq + 1..], names),
            }
        }
    };
    Ok(Some(step))
}

/// A statement without its `INTO [STRICT] a, b` clause, and the slots of
/// `a, b`. In an INSERT the first INTO is the table's.
fn strip_into(
    st: &[Token],
    insert: bool,
    names: &Names,
) -> Result<(Vec<Token>, Vec<usize>), String> {
    let mut depth = 0i32;
    let mut seen_insert_into = !insert;
    for (i, t) in st.iter().enumerate() {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ if depth == 0 && kw(Some(t)) == Some(Keyword::INTO) => {
                if !seen_insert_into {
                    seen_insert_into = true;
                    continue;
                }
                let mut j = i + 1;
                if kw(st.get(j)) == Some(Keyword::STRICT) {
                    j += 1;
                }
                let mut into = Vec::new();
                loop {
                    let Some(Token::Word(w)) = st.get(j) else {
                        return Err("INTO without a variable".into());
                    };
                    let slot = names
                        .local(&w.value)
                        .or_else(|| names.param(&w.value))
                        .ok_or_else(|| {
                            format!("INTO {} (not a variable of the function)", w.value)
                        })?;
                    into.push(slot);
                    j += 1;
                    if st.get(j) == Some(&Token::Comma) {
                        j += 1;
                        continue;
                    }
                    break;
                }
                let mut out = st[..i].to_vec();
                out.extend_from_slice(&st[j..]);
                return Ok((out, into));
            }
            _ => {}
        }
    }
    Ok((st.to_vec(), Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::super::slots::Slots;
    use super::*;

    fn names(params: &[String]) -> Names<'_> {
        Names {
            params,
            locals: Vec::new(),
            row_columns: Vec::new(),
            slots: Slots,
        }
    }

    #[test]
    fn a_trigger_that_bumps_the_version() {
        let params: Vec<String> = Vec::new();
        let mut n = names(&params);
        let steps = plpgsql_body(
            " BEGIN NEW.version := OLD.version + 1; RETURN NEW; END ",
            &mut n,
        )
        .unwrap();
        assert_eq!(n.row_columns, vec!["version"]);
        assert_eq!(steps.len(), 2);
        let RawStep::Assign { slot, value } = &steps[0] else {
            panic!("{steps:?}")
        };
        assert_eq!(*slot, Slots.new_col(0));
        assert_eq!(value.sql, "$1 + 1");
        assert_eq!(value.slots, vec![Slots.old_col(0)]);
        assert_eq!(steps[1], RawStep::Exit(RawExit::ReturnNew));
    }

    #[test]
    fn declarations_into_if_and_raise() {
        let params = vec!["p".to_string(), "q".to_string()];
        let mut n = names(&params);
        let body = "DECLARE s bigint; n int := 0;
            BEGIN
              SELECT stock INTO STRICT s FROM products WHERE id = p FOR UPDATE;
              IF s < q THEN RETURN 0; END IF;
              IF NEW.stock < 0 THEN RAISE EXCEPTION 'no' USING ERRCODE = 'check_violation'; END IF;
              RAISE NOTICE 'bought %', q;
              UPDATE products SET stock = s - q WHERE id = p RETURNING stock INTO n;
              RETURN 1;
            END;";
        let steps = plpgsql_body(body, &mut n).unwrap();
        assert_eq!(n.locals, vec!["s", "n"]);
        // n's initial value, the SELECT, two IFs, the UPDATE, the RETURN.
        assert_eq!(steps.len(), 6, "{steps:#?}");
        let RawStep::Sql { text, into } = &steps[1] else {
            panic!()
        };
        assert_eq!(into, &vec![Slots.local(0)]);
        assert!(!text.sql.to_lowercase().contains("into"), "{}", text.sql);
        assert_eq!(text.slots, vec![Slots.param(0)]);
        let RawStep::ExitIf { cond, exit } = &steps[3] else {
            panic!()
        };
        assert_eq!(cond.slots, vec![Slots.new_col(0)]);
        assert_eq!(
            exit,
            &RawExit::Raise {
                sqlstate: Some("23514".into())
            }
        );
        let RawStep::Sql { into, .. } = &steps[4] else {
            panic!()
        };
        assert_eq!(into, &vec![Slots.local(1)]);
    }

    #[test]
    fn what_it_does_not_follow_is_named() {
        let params = vec!["q".to_string()];
        for (body, what) in [
            ("BEGIN LOOP EXIT; END LOOP; END", "LOOP"),
            ("BEGIN EXECUTE 'UPDATE t SET a = 1'; END", "EXECUTE"),
            (
                "BEGIN UPDATE t SET a = 1; EXCEPTION WHEN others THEN NULL; END",
                "EXCEPTION",
            ),
            (
                "BEGIN IF q > 1 THEN RETURN 1; ELSE RETURN 2; END IF; END",
                "ELSE",
            ),
            (
                "BEGIN IF q > 1 THEN UPDATE t SET a = 1; END IF; END",
                "more than end",
            ),
        ] {
            let mut n = names(&params);
            let e = plpgsql_body(body, &mut n).unwrap_err();
            assert!(e.contains(what), "{body}: {e}");
        }
    }

    #[test]
    fn sql_bodies_bind_names_and_positions() {
        let params = vec!["p".to_string(), "q".to_string()];
        let mut n = names(&params);
        let steps = sql_body(
            "UPDATE products SET stock = stock - q WHERE id = $1 AND stock >= q RETURNING stock",
            &mut n,
        )
        .unwrap();
        let RawStep::Sql { text, .. } = &steps[0] else {
            panic!()
        };
        assert_eq!(text.slots, vec![Slots.param(1), Slots.param(0)]);
        assert!(text.sql.contains("stock - $1"), "{}", text.sql);
    }
}
