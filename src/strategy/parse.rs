//! Parsing: turns the lexer's commands into a `Program` — a flat list of
//! instructions with resolved jumps, SQL statements with their bind slots,
//! and the `\setup` block — and does every check that can be done before a
//! run: balanced `\if`s, `\setup` placement, `\gset` on queries only, and
//! unknown variables.

use std::collections::HashSet;

use super::expr::{self, Expr};
use super::facts::{self, Facts};
use super::lex::{self, Command, GsetCmd, MetaCmd, SqlCmd, VarUse, META_COMMANDS};
use super::program::{Gset, Instr, Program, SetupParam, SetupStmt, Stmt, TxKind};
use super::redis::{self, RedisCmd};
use super::vars::{BUILTIN_VARS, PRODUCT};
use super::ParseError;

const UNPATCHED: usize = usize::MAX;

struct IfFrame {
    line: usize,
    col: usize,
    /// The `JumpUnless` of the current branch, to point at the next one.
    pending: Option<usize>,
    /// The `Jump`s at the end of each branch, to point past `\endif`.
    ends: Vec<usize>,
    else_line: Option<usize>,
}

enum SetupState {
    NotSeen,
    Open(usize, usize),
    Done,
}

struct Parser<'a> {
    file: &'a str,
    lines: Vec<&'a str>,
    vars: Vec<String>,
    instrs: Vec<Instr>,
    stmts: Vec<Stmt>,
    setup: Vec<SetupStmt>,
    redis: Vec<RedisCmd>,
    /// Body variable uses, in source order, for the unknown-variable check.
    uses: Vec<VarUse>,
    /// Names given a value somewhere: `\set` targets and `\gset` columns.
    defined: HashSet<String>,
    /// A `\gset` whose columns could not be read: unknown names are then
    /// checked at run time instead.
    deferred: bool,
    ifs: Vec<IfFrame>,
    setup_state: SetupState,
    body_started: bool,
}

/// Parse a script. `file` names it in error messages.
pub fn parse(file: &str, source: &str) -> Result<Program, ParseError> {
    let src = source.strip_prefix('\u{feff}').unwrap_or(source);
    let mut p = Parser {
        file,
        lines: src
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .collect(),
        vars: BUILTIN_VARS.iter().map(|s| s.to_string()).collect(),
        instrs: Vec::new(),
        stmts: Vec::new(),
        setup: Vec::new(),
        redis: Vec::new(),
        uses: Vec::new(),
        defined: HashSet::new(),
        deferred: false,
        ifs: Vec::new(),
        setup_state: SetupState::NotSeen,
        body_started: false,
    };
    let commands = lex::lex(src).map_err(|e| p.err(e.line, e.col, e.message))?;
    for cmd in commands {
        match cmd {
            Command::Sql(s) => p.sql(s)?,
            Command::Meta(m) => p.meta(m)?,
        }
    }
    if let SetupState::Open(line, col) = p.setup_state {
        return Err(p.err(line, col, "`\\setup` is not closed: add `\\endsetup`"));
    }
    if let Some(f) = p.ifs.first() {
        return Err(p.err(f.line, f.col, "`\\if` is not closed: add `\\endif`"));
    }
    p.check_variables()?;
    Ok(Program {
        vars: p.vars,
        instrs: p.instrs,
        stmts: p.stmts,
        setup: p.setup,
        redis: p.redis,
    })
}

fn slot_of(vars: &mut Vec<String>, name: &str) -> usize {
    match vars.iter().position(|v| v == name) {
        Some(i) => i,
        None => {
            vars.push(name.to_string());
            vars.len() - 1
        }
    }
}

impl Parser<'_> {
    fn err(&self, line: usize, col: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            file: self.file.to_string(),
            line,
            col,
            message: message.into(),
            source_line: self
                .lines
                .get(line.wrapping_sub(1))
                .unwrap_or(&"")
                .to_string(),
        }
    }

    fn in_setup(&self) -> bool {
        matches!(self.setup_state, SetupState::Open(..))
    }

    fn sql(&mut self, s: SqlCmd) -> Result<(), ParseError> {
        if self.in_setup() {
            return self.setup_sql(s);
        }
        self.body_started = true;
        let params: Vec<usize> = s
            .params
            .iter()
            .map(|n| slot_of(&mut self.vars, n))
            .collect();
        let facts = {
            let vars = &self.vars;
            facts::read(
                &s.sql,
                &|n| params.get(n.wrapping_sub(1)).copied(),
                &|slot| vars[slot].clone(),
            )
        };
        self.uses.extend(s.uses);
        let gset = match s.gset {
            None => None,
            Some(g) => Some(self.gset(&g, &facts)?),
        };
        self.stmts.push(Stmt {
            line: s.line,
            end_line: s.end_line,
            display: s.text.lines().next().unwrap_or("").trim().to_string(),
            sql: s.sql,
            params,
            placeholders: s.placeholders,
            kind: TxKind::of(facts.kind),
            gset,
            facts,
        });
        self.instrs.push(Instr::Sql(self.stmts.len() - 1));
        Ok(())
    }

    fn setup_sql(&mut self, s: SqlCmd) -> Result<(), ParseError> {
        if let Some(g) = &s.gset {
            return Err(self.err(g.line, g.col, "`\\gset` cannot be used in `\\setup`"));
        }
        if let Some(u) = s
            .uses
            .iter()
            .find(|u| u.name != "product" && u.name != "initial_stock")
        {
            return Err(self.err(
                u.line,
                u.col,
                format!(
                    "`:{}` is not available in `\\setup`: only `:product` and `:initial_stock` are",
                    u.name
                ),
            ));
        }
        let params: Vec<SetupParam> = s
            .params
            .iter()
            .map(|n| {
                if n == "product" {
                    SetupParam::Product
                } else {
                    SetupParam::InitialStock
                }
            })
            .collect();
        let names: Vec<&str> = s.params.iter().map(String::as_str).collect();
        // `:product` is the built-in's slot; `:initial_stock` has none.
        let facts = facts::read(
            &s.sql,
            &|n| (names.get(n.wrapping_sub(1)) == Some(&"product")).then_some(PRODUCT),
            &|slot| BUILTIN_VARS[slot].to_string(),
        );
        self.setup.push(SetupStmt {
            line: s.line,
            end_line: s.end_line,
            sql: s.sql,
            params,
            placeholders: s.placeholders,
            facts,
        });
        Ok(())
    }

    fn gset(&mut self, g: &GsetCmd, facts: &Facts) -> Result<Gset, ParseError> {
        // An unreadable statement may return rows: the server decides.
        if facts.returns_rows() == Some(false) {
            return Err(self.err(
                g.line,
                g.col,
                "`\\gset` needs a query that returns a row \
                 (SELECT, WITH, VALUES, TABLE, or a statement with RETURNING)",
            ));
        }
        let cols = facts.output_names().map(|names| {
            names
                .into_iter()
                .map(|n| {
                    let full = format!("{}{n}", g.prefix);
                    let slot = slot_of(&mut self.vars, &full);
                    self.defined.insert(full);
                    (n, slot)
                })
                .collect()
        });
        if cols.is_none() {
            self.deferred = true;
        }
        Ok(Gset {
            prefix: g.prefix.clone(),
            cols,
        })
    }

    fn no_args(&self, m: &MetaCmd) -> Result<(), ParseError> {
        match m.args.char_indices().find(|(_, c)| !c.is_whitespace()) {
            None => Ok(()),
            Some((i, _)) => Err(self.err(
                m.line,
                m.args_col + m.args[..i].chars().count(),
                format!("`\\{}` takes no arguments", m.name),
            )),
        }
    }

    /// Compile an expression argument, recording its variable uses.
    fn expr(&mut self, m: &MetaCmd, toks: &[expr::Token], end: usize) -> Result<Expr, ParseError> {
        let (vars, uses, line) = (&mut self.vars, &mut self.uses, m.line);
        let mut resolve = |name: &str, col: usize| {
            uses.push(VarUse {
                name: name.to_string(),
                line,
                col,
            });
            slot_of(vars, name)
        };
        expr::parse(toks, end, &mut resolve).map_err(|e| self.err(m.line, e.col, e.message))
    }

    fn tokens(&self, m: &MetaCmd) -> Result<(Vec<expr::Token>, usize), ParseError> {
        expr::tokenize(&m.args, m.args_col).map_err(|e| self.err(m.line, e.col, e.message))
    }

    fn meta(&mut self, m: MetaCmd) -> Result<(), ParseError> {
        let name = m.name.as_str();
        if self.in_setup() && name != "endsetup" {
            let msg = if name == "setup" {
                "`\\setup` inside `\\setup`: close the first with `\\endsetup`".to_string()
            } else {
                format!(
                    "`\\{name}` cannot be used in `\\setup`: only SQL statements can \
                     (close the block with `\\endsetup`)"
                )
            };
            return Err(self.err(m.line, m.col, msg));
        }
        match name {
            "setup" => {
                self.no_args(&m)?;
                if !matches!(self.setup_state, SetupState::NotSeen) {
                    return Err(self.err(m.line, m.col, "only one `\\setup` block is allowed"));
                }
                if self.body_started {
                    return Err(self.err(
                        m.line,
                        m.col,
                        "`\\setup` must come before the transaction, ahead of every other command",
                    ));
                }
                self.setup_state = SetupState::Open(m.line, m.col);
            }
            "endsetup" => {
                self.no_args(&m)?;
                if !self.in_setup() {
                    return Err(self.err(m.line, m.col, "`\\endsetup` without a `\\setup`"));
                }
                self.setup_state = SetupState::Done;
            }
            "set" => {
                self.body_started = true;
                let (toks, end) = self.tokens(&m)?;
                let target = match toks.first().map(|t| &t.kind) {
                    Some(expr::TokKind::Word(w)) => w.clone(),
                    _ => {
                        let col = toks.first().map_or(end, |t| t.col);
                        return Err(self.err(
                            m.line,
                            col,
                            "`\\set` needs a variable name and an expression: `\\set name expr`",
                        ));
                    }
                };
                let e = self.expr(&m, &toks[1..], end)?;
                let slot = slot_of(&mut self.vars, &target);
                self.defined.insert(target);
                self.instrs.push(Instr::Set {
                    line: m.line,
                    slot,
                    expr: e,
                });
            }
            "if" => {
                self.body_started = true;
                let (toks, end) = self.tokens(&m)?;
                let cond = self.expr(&m, &toks, end)?;
                self.instrs.push(Instr::JumpUnless {
                    line: m.line,
                    cond,
                    target: UNPATCHED,
                });
                self.ifs.push(IfFrame {
                    line: m.line,
                    col: m.col,
                    pending: Some(self.instrs.len() - 1),
                    ends: Vec::new(),
                    else_line: None,
                });
            }
            "elif" | "else" => {
                let Some(frame) = self.ifs.last() else {
                    return Err(self.err(
                        m.line,
                        m.col,
                        format!("`\\{name}` without a matching `\\if`"),
                    ));
                };
                if let Some(else_line) = frame.else_line {
                    return Err(self.err(
                        m.line,
                        m.col,
                        format!("`\\{name}` after the `\\else` at line {else_line}"),
                    ));
                }
                let cond = if name == "elif" {
                    let (toks, end) = self.tokens(&m)?;
                    Some(self.expr(&m, &toks, end)?)
                } else {
                    self.no_args(&m)?;
                    None
                };
                self.instrs.push(Instr::Jump(UNPATCHED));
                let here = self.instrs.len();
                let frame = self.ifs.last_mut().expect("checked above");
                frame.ends.push(here - 1);
                let pending = frame.pending.take();
                if let Some(cond) = cond {
                    frame.pending = Some(here);
                    self.instrs.push(Instr::JumpUnless {
                        line: m.line,
                        cond,
                        target: UNPATCHED,
                    });
                } else {
                    frame.else_line = Some(m.line);
                }
                if let Some(j) = pending {
                    self.patch(j, here);
                }
            }
            "endif" => {
                self.no_args(&m)?;
                let Some(frame) = self.ifs.pop() else {
                    return Err(self.err(m.line, m.col, "`\\endif` without a matching `\\if`"));
                };
                let here = self.instrs.len();
                for j in frame.pending.into_iter().chain(frame.ends) {
                    self.patch(j, here);
                }
            }
            "sleep" => {
                self.body_started = true;
                let (mut toks, end) = self.tokens(&m)?;
                let mut unit_us = 1;
                if let Some(expr::Token {
                    kind: expr::TokKind::Word(w),
                    ..
                }) = toks.last()
                {
                    let unit = match w.as_str() {
                        "us" => Some(1),
                        "ms" => Some(1_000),
                        "s" => Some(1_000_000),
                        _ => None,
                    };
                    if let Some(u) = unit {
                        unit_us = u;
                        toks.pop();
                    }
                }
                let e = self.expr(&m, &toks, end)?;
                self.instrs.push(Instr::Sleep {
                    line: m.line,
                    expr: e,
                    unit_us,
                });
            }
            "sold_out" | "retry" => {
                self.body_started = true;
                self.no_args(&m)?;
                self.instrs.push(if name == "retry" {
                    Instr::Retry { line: m.line }
                } else {
                    Instr::SoldOut { line: m.line }
                });
            }
            "redis" => {
                self.body_started = true;
                let (vars, uses, line) = (&mut self.vars, &mut self.uses, m.line);
                let mut found = Vec::new();
                let mut slot = |n: &str| slot_of(vars, n);
                let parsed = redis::parse(line, &m.args, m.args_col, &mut slot, &mut found);
                uses.extend(
                    found
                        .into_iter()
                        .map(|(name, col)| VarUse { name, line, col }),
                );
                let (mut cmd, into) = parsed.map_err(|(col, msg)| self.err(m.line, col, msg))?;
                if let Some(name) = into {
                    cmd.into = Some(slot_of(&mut self.vars, &name));
                    self.defined.insert(name);
                }
                self.redis.push(cmd);
                self.instrs.push(Instr::Redis(self.redis.len() - 1));
            }
            _ => {
                return Err(self.err(
                    m.line,
                    m.col,
                    format!(
                        "unknown meta-command `\\{name}`{}",
                        crate::suggest::did_you_mean("\\", name, META_COMMANDS.iter().copied())
                    ),
                ))
            }
        }
        Ok(())
    }

    fn patch(&mut self, at: usize, to: usize) {
        match &mut self.instrs[at] {
            Instr::JumpUnless { target, .. } => *target = to,
            Instr::Jump(target) => *target = to,
            _ => unreachable!("only jumps are patched"),
        }
    }

    fn check_variables(&self) -> Result<(), ParseError> {
        if self.deferred {
            return Ok(());
        }
        let known = |n: &str| BUILTIN_VARS.contains(&n) || self.defined.contains(n);
        let Some(u) = self.uses.iter().find(|u| !known(&u.name)) else {
            return Ok(());
        };
        let hint = if u.name == "initial_stock" {
            " (it exists only inside `\\setup`)".to_string()
        } else {
            let candidates = BUILTIN_VARS
                .iter()
                .copied()
                .chain(self.defined.iter().map(String::as_str));
            let s = crate::suggest::did_you_mean(":", &u.name, candidates);
            if s.is_empty() {
                " (set it with `\\set` or `\\gset`)".to_string()
            } else {
                s
            }
        };
        Err(self.err(
            u.line,
            u.col,
            format!("unknown variable `:{}`{hint}", u.name),
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn p(src: &str) -> Program {
        parse("t.sql", src).unwrap_or_else(|e| panic!("{}", e.render()))
    }

    /// The error for `src`, as (line, col, message).
    pub(crate) fn e(src: &str) -> (usize, usize, String) {
        match parse("t.sql", src) {
            Ok(_) => panic!("expected an error for:\n{src}"),
            Err(e) => (e.line, e.col, e.message),
        }
    }

    fn cols(sql: &str) -> Option<Vec<String>> {
        facts::read(sql, &|_| None, &|_| String::new()).output_names()
    }

    #[test]
    fn placeholders_are_numbered_and_reused() {
        let prog = p("UPDATE products SET stock = :stock - :qty WHERE id = :product AND :qty > 0;\n\\set stock 1\n");
        let s = &prog.stmts[0];
        assert_eq!(
            s.sql,
            "UPDATE products SET stock = $1 - $2 WHERE id = $3 AND $2 > 0"
        );
        let names: Vec<&str> = s.params.iter().map(|&i| prog.vars[i].as_str()).collect();
        assert_eq!(names, ["stock", "qty", "product"]);
        // The lexer's record of where it wrote each `$n`.
        let written: Vec<(&str, usize)> = s
            .placeholders
            .iter()
            .map(|p| (&s.sql[p.start..p.end], p.param))
            .collect();
        assert_eq!(written, [("$1", 0), ("$2", 1), ("$3", 2), ("$2", 1)]);
        assert_eq!(
            s.display,
            "UPDATE products SET stock = :stock - :qty WHERE id = :product AND :qty > 0"
        );
    }

    #[test]
    fn casts_are_not_variables() {
        let prog = p("SELECT :qty::bigint, '1'::int, x::text FROM t;");
        assert_eq!(
            prog.stmts[0].sql,
            "SELECT $1::bigint, '1'::int, x::text FROM t"
        );
        assert_eq!(prog.stmts[0].params, vec![super::super::vars::QTY]);
    }

    #[test]
    fn quotes_and_comments_hide_semicolons_and_variables() {
        let src = "SELECT ':x;', E'\\':y;', \"a:b;\", $$ :z; $$, $t$ ; :w $t$ /* :v; /* nested; */ */\n  FROM t; -- :c ;\nCOMMIT;";
        let prog = p(src);
        assert_eq!(prog.stmts.len(), 2);
        let s = &prog.stmts[0];
        assert!(s.params.is_empty(), "{:?}", s.sql);
        assert!(s.placeholders.is_empty(), "{:?}", s.placeholders);
        assert!(s
            .sql
            .starts_with("SELECT ':x;', E'\\':y;', \"a:b;\", $$ :z; $$, $t$ ; :w $t$ /* :v;"));
        assert!(s.sql.ends_with("FROM t"));
        assert_eq!(prog.stmts[1].sql, "COMMIT");
        // `''` inside a string, `""` inside an identifier.
        let prog = p("SELECT 'it''s; :x', \"q\"\"; :y\" FROM t;");
        assert!(prog.stmts[0].params.is_empty());
    }

    #[test]
    fn statements_span_lines_and_end_at_a_line_ending_semicolon() {
        let prog = p("BEGIN;\nINSERT INTO orders (product_id, qty)\n  VALUES (:product,\n          :qty);  /* done */\nCOMMIT; -- bye\n");
        assert_eq!(prog.stmts.len(), 3);
        assert_eq!(prog.stmts[1].line, 2);
        assert_eq!(
            prog.stmts[1].sql,
            "INSERT INTO orders (product_id, qty)\n  VALUES ($1,\n          $2)"
        );
        assert_eq!(prog.stmts[2].line, 5);
        // A comment that opens after `;` and spans lines is skipped.
        let prog = p("BEGIN; /* a\n b; */\nCOMMIT;");
        assert_eq!(prog.stmts.len(), 2);
        assert_eq!(prog.stmts[1].sql, "COMMIT");
    }

    #[test]
    fn variables_dollar_params_and_colon_oddities() {
        let prog = p("SELECT a[1:2], :'x', x:=1, foo$bar, foo$1 FROM t;");
        assert!(prog.stmts[0].params.is_empty(), "{}", prog.stmts[0].sql);
        assert_eq!(
            prog.stmts[0].sql,
            "SELECT a[1:2], :'x', x:=1, foo$bar, foo$1 FROM t"
        );
        let (l, c, m) = e("SELECT :qty,\n  $1;\n");
        assert_eq!((l, c), (2, 3));
        assert!(m.contains("`:name`"), "{m}");
    }

    #[test]
    fn gset_forms() {
        let prog = p("SELECT stock, version AS v FROM products WHERE id = :product \\gset\nSELECT 1 AS one;\n\\gset\nSELECT 2 AS two; \\gset p_\n\\set x :stock + :v + :one + :p_two\n");
        assert_eq!(prog.stmts.len(), 3);
        let g = prog.stmts[0].gset.as_ref().unwrap();
        let names: Vec<&str> = g
            .cols
            .as_ref()
            .unwrap()
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["stock", "v"]);
        assert_eq!(
            prog.stmts[0].sql,
            "SELECT stock, version AS v FROM products WHERE id = $1"
        );
        assert!(prog.stmts[1].gset.is_some());
        assert_eq!(prog.stmts[2].gset.as_ref().unwrap().prefix, "p_");
    }

    #[test]
    fn output_column_names() {
        let v = |x: &[&str]| Some(x.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(cols("SELECT stock FROM products"), v(&["stock"]));
        assert_eq!(
            cols("SELECT p.stock, p.Version FROM products p"),
            v(&["stock", "version"])
        );
        assert_eq!(
            cols("SELECT count(*) AS n, sum(x) total FROM t"),
            v(&["n", "total"])
        );
        assert_eq!(
            cols("SELECT count(*), max(a, b)::bigint FROM t"),
            v(&["count", "max"])
        );
        assert_eq!(cols("SELECT stock::text FROM t FOR UPDATE"), v(&["stock"]));
        assert_eq!(cols("SELECT \"Odd Name\" FROM t"), v(&["Odd Name"]));
        assert_eq!(cols("SELECT DISTINCT ON (a) a, b FROM t"), v(&["a", "b"]));
        assert_eq!(cols("WITH x AS (SELECT 1 AS q) SELECT q FROM x"), v(&["q"]));
        assert_eq!(
            cols("UPDATE t SET a = 1 RETURNING a, b AS c"),
            v(&["a", "c"])
        );
        assert_eq!(cols("WITH s AS (UPDATE t SET a = 1 RETURNING id) INSERT INTO o SELECT id FROM s RETURNING o.id"), v(&["id"]));
        assert_eq!(cols("SELECT * FROM t"), None);
        assert_eq!(cols("SELECT 1 FROM t"), None);
        assert_eq!(cols("SELECT a + 1 FROM t"), None);
        assert_eq!(cols("SELECT true"), None);
        assert_eq!(cols("VALUES (1)"), None);
        assert_eq!(cols("SELECT trim(a) FROM t"), None);
    }

    #[test]
    fn transaction_kinds() {
        let k = |s: &str| TxKind::of(facts::read(s, &|_| None, &|_| String::new()).kind);
        assert_eq!(k("BEGIN"), TxKind::Begin);
        assert_eq!(k("begin isolation level serializable"), TxKind::Begin);
        assert_eq!(k("START TRANSACTION"), TxKind::Begin);
        assert_eq!(k("COMMIT"), TxKind::Commit);
        assert_eq!(k("end"), TxKind::Commit);
        assert_eq!(k("COMMIT AND CHAIN"), TxKind::CommitChain);
        assert_eq!(k("COMMIT PREPARED 'x'"), TxKind::Other);
        assert_eq!(k("ROLLBACK AND CHAIN"), TxKind::Begin);
        assert_eq!(
            k("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
            TxKind::Other
        );
        // Unreadable SQL runs, but opens or closes nothing racelab tracks.
        assert_eq!(k("PREPARE TRANSACTION 'x'"), TxKind::Other);
        assert_eq!(k("ROLLBACK"), TxKind::Rollback);
        assert_eq!(k("abort"), TxKind::Rollback);
        assert_eq!(k("ROLLBACK TO SAVEPOINT a"), TxKind::Other);
        assert_eq!(k("SELECT 1"), TxKind::Other);
    }

    #[test]
    fn control_flow_compiles_to_patched_jumps() {
        let prog = p("\\if :qty > 1\n\\set a 1\n\\elif :qty = 1\n\\set a 2\n\\else\n\\set a 3\n\\endif\nSELECT :a;\n");
        // 0 JumpUnless->3, 1 Set, 2 Jump->7, 3 JumpUnless->6, 4 Set, 5 Jump->7, 6 Set, 7 Sql
        let targets: Vec<String> = prog
            .instrs
            .iter()
            .map(|i| match i {
                Instr::JumpUnless { target, .. } => format!("?{target}"),
                Instr::Jump(t) => format!("j{t}"),
                Instr::Set { .. } => "set".into(),
                Instr::Sql(_) => "sql".into(),
                _ => "other".into(),
            })
            .collect();
        assert_eq!(
            targets,
            ["?3", "set", "j7", "?6", "set", "j7", "set", "sql"]
        );
        let prog = p("\\if 1\n\\if 0\n\\endif\n\\endif\nSELECT 1;");
        assert!(matches!(
            prog.instrs[0],
            Instr::JumpUnless { target: 2, .. }
        ));
        assert!(matches!(
            prog.instrs[1],
            Instr::JumpUnless { target: 2, .. }
        ));
    }

    #[test]
    fn sleep_units() {
        let unit = |src: &str| match &p(src).instrs[0] {
            Instr::Sleep { unit_us, .. } => *unit_us,
            _ => panic!(),
        };
        assert_eq!(unit("\\sleep 5\nSELECT 1;"), 1);
        assert_eq!(unit("\\sleep 5 us\nSELECT 1;"), 1);
        assert_eq!(unit("\\sleep :think ms\nSELECT 1;"), 1_000);
        assert_eq!(unit("\\sleep 1 + 1 s -- comment\nSELECT 1;"), 1_000_000);
    }

    #[test]
    fn setup_block() {
        let prog = p("-- d\n\\setup\nALTER TABLE products ADD CHECK (stock >= 0);\nINSERT INTO units SELECT :product, g FROM generate_series(1, :initial_stock) g;\n\\endsetup\nSELECT 1;\n");
        assert_eq!(prog.setup.len(), 2);
        assert!(prog.setup[0].params.is_empty());
        assert_eq!(
            prog.setup[1].params,
            vec![SetupParam::Product, SetupParam::InitialStock]
        );
        assert_eq!(
            prog.setup[1].sql,
            "INSERT INTO units SELECT $1, g FROM generate_series(1, $2) g"
        );
        assert_eq!(prog.stmts.len(), 1);
    }

    #[test]
    fn errors_unknown_meta_command() {
        let (l, c, m) = e("SELECT 1;\n  \\sett x 1\n");
        assert_eq!((l, c), (2, 3));
        assert!(
            m.contains("`\\sett`") && m.contains("did you mean `\\set`"),
            "{m}"
        );
        let (l, c, m) = e("SELECT 1 \\gsett\n");
        assert_eq!((l, c), (1, 10));
        assert!(m.contains("`\\gset`"), "{m}");
        let (l, c, m) = e("SELECT 1 \\if 1\n");
        assert_eq!((l, c), (1, 10));
        assert!(m.contains("own line"), "{m}");
        let (l, c, _) = e("\\\n");
        assert_eq!((l, c), (1, 1));
    }

    #[test]
    fn errors_unbalanced_if() {
        assert_eq!(e("SELECT 1;\n\\endif\n").0, 2);
        let (l, c, m) = e("SELECT 1;\n  \\else\n");
        assert_eq!((l, c), (2, 3));
        assert!(m.contains("without a matching"), "{m}");
        assert_eq!(e("\\elif 1\n").0, 1);
        let (l, c, m) = e("\\if 1\nSELECT 1;\n\\else\n\\else\n\\endif\n");
        assert_eq!((l, c), (4, 1));
        assert!(m.contains("line 3"), "{m}");
        assert_eq!(e("\\if 1\n\\else\n\\elif 1\n\\endif\n").0, 3);
        let (l, c, m) = e("SELECT 1;\n \\if 1\n\\if 2\n\\endif\n");
        assert_eq!((l, c), (2, 2));
        assert!(m.contains("not closed"), "{m}");
        let (l, c, _) = e("\\if 1\n\\endif 3\n");
        assert_eq!((l, c), (2, 8));
    }

    #[test]
    fn errors_unterminated() {
        let (l, c, m) = e("SELECT 1;\nSELECT 'abc;\nFROM t;\n");
        assert_eq!((l, c, m.as_str()), (2, 8, "unterminated quoted string"));
        let (l, c, _) = e("SELECT E'ab\\';\n");
        assert_eq!((l, c), (1, 8));
        let (l, c, m) = e("SELECT \"abc;\n");
        assert_eq!((l, c, m.as_str()), (1, 8, "unterminated quoted identifier"));
        let (l, c, m) = e("DO $body$ BEGIN\n  NULL; $$\nEND $bod$;\n");
        assert_eq!((l, c), (1, 4));
        assert!(m.contains("$body$"), "{m}");
        let (l, c, m) = e("SELECT 1; /* a /* b */\n\nSELECT 2;\n");
        assert_eq!((l, c, m.as_str()), (1, 11, "unterminated /* comment"));
        let (l, c, m) = e("BEGIN;\n  SELECT 1\n");
        assert_eq!((l, c), (2, 3));
        assert!(m.contains("not terminated"), "{m}");
        let (l, c, _) = e("  SELECT 1\n\\set x 1\n");
        assert_eq!((l, c), (1, 3));
    }

    #[test]
    fn errors_semicolon_in_the_middle_of_a_line() {
        let (l, c, m) = e("SELECT 1; SELECT 2;\n");
        assert_eq!((l, c), (1, 9));
        assert!(m.contains("one SQL statement per line"), "{m}");
        assert_eq!(e(";\n").1, 1);
    }

    #[test]
    fn errors_bad_expression() {
        let (l, c, m) = e("SELECT 1;\n\\set x 1 +\n");
        assert_eq!((l, c), (2, 11));
        assert!(m.contains("expected a value"), "{m}");
        assert_eq!(e("\\if (1\n\\endif\n").1, 7);
        assert_eq!(e("\\set\n").1, 5);
        assert_eq!(e("\\set 1 2\n").1, 6);
        assert_eq!(e("\\sleep\n").1, 7);
        assert_eq!(e("\\sleep 10 minutes\n").1, 11);
        assert_eq!(e("\\if stock < 1\n\\endif\n").1, 5);
    }

    #[test]
    fn errors_unknown_variable() {
        let (l, c, m) =
            e("SELECT stock FROM products \\gset\nUPDATE products SET stock = :stok - 1;\n");
        assert_eq!((l, c), (2, 29));
        assert!(
            m.contains("`:stok`") && m.contains("did you mean `:stock`"),
            "{m}"
        );
        let (l, c, m) = e("\\set a 1\n\\if :b > 0\n\\endif\nSELECT 1;");
        assert_eq!((l, c), (2, 5));
        assert!(m.contains("`:b`"), "{m}");
        let (_, _, m) = e("SELECT :initial_stock;\n");
        assert!(m.contains("only inside"), "{m}");
        // Defined later in the script is fine at load time (checked at run time).
        p("\\if :try > 1\nSELECT :late;\n\\endif\n\\set late 1\nSELECT 1;");
        // A `\gset` whose columns cannot be read defers the check.
        p("SELECT * FROM products \\gset\nSELECT :anything;\n");
    }

    #[test]
    fn errors_gset_on_a_non_query() {
        let (l, c, m) = e("BEGIN;\nUPDATE products SET stock = 1 \\gset\n");
        assert_eq!((l, c), (2, 31));
        assert!(m.contains("needs a query"), "{m}");
        let (l, c, _) = e("UPDATE products SET stock = 1;\n  \\gset\n");
        assert_eq!((l, c), (2, 3));
        p("UPDATE products SET stock = 1 RETURNING stock \\gset\nSELECT :stock;");
        let (l, c, m) = e("\\set x 1\n\\gset\n");
        assert_eq!((l, c), (2, 1));
        assert!(m.contains("must follow a query"), "{m}");
        assert_eq!(e("SELECT 1 AS a \\gset\n\\gset\n").0, 2);
        assert_eq!(e("SELECT 1 AS a \\gset x y\n").1, 23);
    }

    #[test]
    fn errors_setup_misuse() {
        let (l, c, m) = e("SELECT 1;\n\\setup\nSELECT 2;\n\\endsetup\n");
        assert_eq!((l, c), (2, 1));
        assert!(m.contains("before the transaction"), "{m}");
        let (l, c, m) = e("\\setup\nSELECT 1;\n\\endsetup\n\\setup\n\\endsetup\n");
        assert_eq!((l, c), (4, 1));
        assert!(m.contains("only one"), "{m}");
        let (l, c, m) = e("\\setup\n\\set x 1\n\\endsetup\n");
        assert_eq!((l, c), (2, 1));
        assert!(m.contains("only SQL"), "{m}");
        let (l, c, m) = e("\\setup\nSELECT 1;\n");
        assert_eq!((l, c), (1, 1));
        assert!(m.contains("not closed"), "{m}");
        assert_eq!(e("SELECT 1;\n\\endsetup\n").0, 2);
        let (l, c, m) = e("\\setup\nSELECT :qty;\n\\endsetup\n");
        assert_eq!((l, c), (2, 8));
        assert!(m.contains(":initial_stock"), "{m}");
        let (l, c, _) = e("\\setup\nSELECT 1 AS a \\gset\n\\endsetup\n");
        assert_eq!((l, c), (2, 15));
        assert_eq!(e("\\setup\n\\setup\n").0, 2);
        assert_eq!(e("\\setup now\n").1, 8);
    }

    #[test]
    fn no_arguments_where_none_are_taken() {
        let (l, c, _) = e("SELECT 1;\n\\sold_out please\n");
        assert_eq!((l, c), (2, 11));
        assert_eq!(e("\\retry 1\n").1, 8);
        // A trailing comment is not an argument.
        p("SELECT 1;\n\\retry -- again\n");
    }

    #[test]
    fn render_shows_the_line_and_a_caret() {
        let err = parse("x.sql", "SELECT 1;\n\t\\sett x 1\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.sql:2:2: unknown meta-command `\\sett`; did you mean `\\set`?"
        );
        assert_eq!(
            err.render(),
            "x.sql:2:2: unknown meta-command `\\sett`; did you mean `\\set`?\n2 | \t\\sett x 1\n  | \t^"
        );
    }

    #[test]
    fn crlf_and_bom() {
        let prog = p("\u{feff}BEGIN;\r\nSELECT 1 AS a \\gset\r\nCOMMIT;\r\n");
        assert_eq!(prog.stmts.len(), 3);
        assert_eq!(prog.stmts[2].sql, "COMMIT");
    }
}
