//! Where a strategy's statements reach, read from their parsed form: in
//! the lab (the tables of the lab schema, which every connection has as
//! its search_path), outside it, or somewhere a reader cannot tell (code
//! that runs later or elsewhere: a `DO` block, a function's body).
//!
//! On a server racelab did not start, this is the first wall: a statement
//! that leaves the lab is refused before anything starts, with its file,
//! line and column (`check`). The second wall is the server's: the buyers
//! and `\setup` log in as a role that owns the lab and nothing else
//! (`db::lab_role`); where racelab cannot make one, what it cannot read is
//! refused too. `explain` says which statements leave the lab.
//!
//! Leaving the lab, as read here:
//! - naming another schema (`public.users`, `DROP SCHEMA public`), a
//!   database, or a system catalog as the target of a write; a schema
//!   name at all, apart from reads of `pg_catalog` and
//!   `information_schema` and the session's own `pg_temp`;
//! - statements about the server rather than tables: schemas, databases,
//!   roles, extensions, grants, `ALTER SYSTEM`, `VACUUM` of everything;
//! - `COPY ... PROGRAM` (a shell command on the server) and `COPY` from or
//!   to a server file;
//! - changing who runs the statements or where names resolve: `SET ROLE`,
//!   `SET SESSION AUTHORIZATION`, `RESET ROLE`, `RESET ALL`,
//!   `SET search_path`, `set_config(...)`;
//! - the built-in functions that act on other sessions, the server's
//!   files or arbitrary tables (`pg_terminate_backend`, `pg_read_file`,
//!   `lo_export`, `query_to_xml`, ...), and `nextval('other.seq')`.
//!
//! The statements are parsed here again, from the SQL the interpreter
//! sends: reading one takes microseconds, at load time, and keeps this
//! question apart from the facts the rest of racelab reads.

use std::ops::ControlFlow;

use sqlparser::ast::{
    CommentObject, CopySource, CopyTarget, DataType, Expr, FromTable, FunctionArg, FunctionArgExpr,
    FunctionArguments, Ident, ObjectName, ObjectType, Reset, Select, Set, Statement, TableFactor,
    TableObject, Value, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::{Origin, ParseError, Strategy};

/// Where a statement reaches, as far as reading it can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// The lab's own tables (and reads of the system catalogs).
    Lab,
    /// Code racelab cannot read runs: why. Only the server can confine it.
    Opaque(String),
    /// Out of the lab: why.
    Leaves(String),
}

impl Reach {
    pub fn stays(&self) -> bool {
        *self == Reach::Lab
    }
}

/// A statement of a script that leaves the lab, or may.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escape {
    /// 1-based, in the script file.
    pub line: usize,
    /// 1-based, in characters.
    pub col: usize,
    /// Never `Reach::Lab`.
    pub reach: Reach,
    /// In the `\setup` block.
    pub setup: bool,
}

/// Where one statement reaches, and where in its text (1-based line and
/// column within `sql`) the reason is.
pub fn reach(sql: &str) -> (Reach, Option<(usize, usize)>) {
    let statements = match Parser::parse_sql(&PostgreSqlDialect {}, sql) {
        Ok(s) => s,
        Err(_) => {
            return (
                Reach::Opaque("racelab's SQL reader cannot read it".into()),
                None,
            )
        }
    };
    let mut w = Walker::default();
    for s in &statements {
        w.statement(s);
        if w.leaves.is_some() {
            break;
        }
    }
    match (w.leaves, w.opaque) {
        (Some((why, at)), _) => (Reach::Leaves(why), at),
        (None, Some((why, at))) => (Reach::Opaque(why), at),
        (None, None) => (Reach::Lab, None),
    }
}

/// Every statement of `strategy` (its `\setup` and its body) that leaves
/// the lab or runs code racelab cannot read, where it is in the file.
pub fn escapes(strategy: &Strategy) -> Vec<Escape> {
    let program = &strategy.program;
    let lines: Vec<&str> = strategy.source.lines().collect();
    let mut out = Vec::new();
    let setup = program.setup.iter().map(|s| {
        let names: Vec<String> = s
            .params
            .iter()
            .map(|p| match p {
                super::program::SetupParam::Product => "product".to_string(),
                super::program::SetupParam::InitialStock => "initial_stock".to_string(),
            })
            .collect();
        (s.line, &s.sql, &s.placeholders, names, true)
    });
    let body = program.stmts.iter().map(|s| {
        let names: Vec<String> = s.params.iter().map(|&v| program.vars[v].clone()).collect();
        (s.line, &s.sql, &s.placeholders, names, false)
    });
    for (line, sql, placeholders, names, in_setup) in setup.chain(body) {
        let (r, at) = reach(sql);
        if r.stays() {
            continue;
        }
        let first_col = lines.get(line - 1).map_or(1, |l| {
            l.chars().take_while(|c| c.is_whitespace()).count() + 1
        });
        let (l, c) = at.unwrap_or((1, 1));
        let col = source_col(sql, placeholders, &names, l, c, first_col);
        out.push(Escape {
            line: line + l - 1,
            col,
            reach: r,
            setup: in_setup,
        });
    }
    out
}

/// Refuse `strategy` if a statement of it leaves the lab (and, with
/// `opaque_too`, if one runs code racelab cannot read), as a parse error
/// at that statement: `server` names where it was to run, `why_unconfined`
/// why the server gives its statements no role of their own (when so).
pub fn check(
    strategy: &Strategy,
    server: &str,
    why_unconfined: Option<&str>,
) -> Result<(), ParseError> {
    let escape = escapes(strategy)
        .into_iter()
        .find(|e| matches!(e.reach, Reach::Leaves(_)) || why_unconfined.is_some());
    let Some(e) = escape else {
        return Ok(());
    };
    let file = file_of(strategy);
    let source_line = strategy
        .source
        .lines()
        .nth(e.line - 1)
        .unwrap_or("")
        .to_string();
    let message = match (&e.reach, why_unconfined) {
        (Reach::Leaves(why), _) => format!(
            "this statement leaves the lab ({why}); on {server}, a server racelab did not \
             start, racelab runs only statements that stay in the lab schema: use the lab's \
             tables by their plain names (racelab sets the search_path), or race it on \
             racelab's own cluster (without --database-url)"
        ),
        (Reach::Opaque(why), Some(unconfined)) => format!(
            "racelab cannot tell where this statement reaches ({why}), and {server} gives the \
             buyers no role of their own to confine it to the lab ({unconfined}); connect as a \
             user with CREATEROLE, or race it on racelab's own cluster (without --database-url)"
        ),
        (Reach::Opaque(_), None) | (Reach::Lab, _) => return Ok(()),
    };
    Err(ParseError {
        file,
        line: e.line,
        col: e.col,
        message,
        source_line,
    })
}

/// Refuse `strategy` if it sends a Lua script (EVAL, EVALSHA) to a Redis
/// that does not confine racelab to its key prefix (`why_unconfined`
/// says why): a script names its keys as it likes, and racelab does not
/// read Lua. The first such line, as a parse error.
pub fn check_redis(
    strategy: &Strategy,
    server: &str,
    why_unconfined: &str,
) -> Result<(), ParseError> {
    let Some(cmd) = strategy
        .program
        .redis
        .iter()
        .find(|c| c.effect() == super::RedisEffect::Script)
    else {
        return Ok(());
    };
    let source_line = strategy
        .source
        .lines()
        .nth(cmd.line - 1)
        .unwrap_or("")
        .to_string();
    let col = source_line
        .chars()
        .take_while(|c| c.is_whitespace())
        .count()
        + 1;
    Err(ParseError {
        file: file_of(strategy),
        line: cmd.line,
        col,
        message: format!(
            "{} runs a Lua script, which may touch keys outside racelab's prefix, and {server} \
             does not confine racelab to its prefix ({why_unconfined}); connect as a Redis user \
             that may run ACL SETUSER, or let racelab start its own Redis (without --redis-url)",
            cmd.name
        ),
        source_line,
    })
}

fn file_of(strategy: &Strategy) -> String {
    match &strategy.origin {
        Origin::File(p) => p.display().to_string(),
        Origin::Builtin => format!("{} (built-in)", strategy.name),
    }
}

/// `check`, where it applies: on a server racelab did not start
/// (`own_server` false); racelab's own clusters hold nothing but the lab.
pub fn check_on(
    strategy: &Strategy,
    own_server: bool,
    server: &str,
    why_unconfined: Option<&str>,
) -> Result<(), ParseError> {
    if own_server {
        return Ok(());
    }
    check(strategy, server, why_unconfined)
}

/// The column in the script of line `l`, column `c` of `sql`: the first
/// line starts at `first_col`, and every `$n` before the column stands for
/// a `:name` as written.
fn source_col(
    sql: &str,
    placeholders: &[super::Placeholder],
    names: &[String],
    l: usize,
    c: usize,
    first_col: usize,
) -> usize {
    // Where line `l` of `sql` starts (a byte offset).
    let line_start = if l <= 1 {
        0
    } else {
        sql.match_indices('\n')
            .nth(l - 2)
            .map_or(sql.len(), |(i, _)| i + 1)
    };
    let line_text = &sql[line_start..];
    let col_byte = line_text
        .char_indices()
        .nth(c.saturating_sub(1))
        .map_or(line_text.len(), |(i, _)| i)
        + line_start;
    let mut col = c;
    for p in placeholders {
        if p.start >= line_start && p.end <= col_byte {
            let written = 1 + names.get(p.param).map_or(0, |n| n.chars().count());
            col = (col + written).saturating_sub(p.end - p.start);
        }
    }
    if l <= 1 {
        col + first_col - 1
    } else {
        col
    }
}

/// What the walk found: the first way out of the lab, the first thing it
/// cannot read.
#[derive(Default)]
struct Walker {
    leaves: Option<(String, Option<(usize, usize)>)>,
    opaque: Option<(String, Option<(usize, usize)>)>,
    /// The statement writes: catalog names are targets, not reads.
    writing: bool,
}

fn at(i: &Ident) -> Option<(usize, usize)> {
    let l = i.span.start;
    (l.line > 0).then_some((l.line as usize, l.column as usize))
}

fn first_ident(n: &ObjectName) -> Option<&Ident> {
    n.0.iter().find_map(|p| p.as_ident())
}

/// An identifier as PostgreSQL folds it.
fn folded(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// Built-in functions that reach outside the lab: other sessions, the
/// server's files and configuration, large objects (shared by the whole
/// database), and queries or tables named by a string.
const OUTSIDE_FUNCTIONS: &[&str] = &[
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_ls_logdir",
    "pg_ls_waldir",
    "pg_ls_tmpdir",
    "pg_ls_archive_statusdir",
    "pg_ls_logicalsnapdir",
    "pg_ls_logicalmapdir",
    "pg_ls_replslotdir",
    "pg_stat_file",
    "lo_import",
    "lo_export",
    "lo_unlink",
    "lo_create",
    "lo_creat",
    "lo_put",
    "lo_from_bytea",
    "lo_truncate",
    "pg_file_write",
    "pg_file_unlink",
    "pg_file_rename",
    "pg_promote",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_logical_emit_message",
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_drop_replication_slot",
    "pg_replication_origin_create",
    "pg_replication_origin_drop",
    "pg_stat_reset",
    "pg_stat_reset_shared",
    "pg_stat_reset_single_table_counters",
    "pg_backup_start",
    "pg_backup_stop",
    "query_to_xml",
    "query_to_xml_and_xmlschema",
    "query_to_xmlschema",
    "cursor_to_xml",
    "table_to_xml",
    "table_to_xml_and_xmlschema",
    "table_to_xmlschema",
    "schema_to_xml",
    "schema_to_xml_and_xmlschema",
    "schema_to_xmlschema",
    "database_to_xml",
    "database_to_xml_and_xmlschema",
    "database_to_xmlschema",
    "dblink",
    "dblink_exec",
];

/// Functions whose first argument names a relation as a string.
const NAMES_BY_STRING: &[&str] = &["nextval", "setval", "currval", "to_regclass"];

/// Settings that change who runs the statements or where names resolve,
/// or load code into the server.
const ESCAPE_SETTINGS: &[&str] = &[
    "search_path",
    "role",
    "session_authorization",
    "session_preload_libraries",
    "local_preload_libraries",
    "dynamic_library_path",
];

impl Walker {
    fn leave(&mut self, why: impl Into<String>, where_: Option<(usize, usize)>) {
        if self.leaves.is_none() {
            self.leaves = Some((why.into(), where_));
        }
    }

    fn opaque(&mut self, why: impl Into<String>, where_: Option<(usize, usize)>) {
        if self.opaque.is_none() {
            self.opaque = Some((why.into(), where_));
        }
    }

    /// A name the statement uses: another schema or database leaves the
    /// lab; so does writing a system catalog.
    fn name(&mut self, n: &ObjectName, writing: bool) {
        let parts: Vec<&Ident> = n.0.iter().filter_map(|p| p.as_ident()).collect();
        let Some(first) = parts.first() else {
            return;
        };
        match parts.len() {
            0 | 1 => {
                if writing && folded(first).starts_with("pg_") {
                    self.leave(
                        format!("it writes `{}`, a system catalog", first.value),
                        at(first),
                    );
                }
            }
            2 => {
                let schema = folded(first);
                let catalog = schema == "pg_catalog" || schema == "information_schema";
                if schema == "pg_temp" || (catalog && !writing) {
                    return;
                }
                self.leave(format!("it names schema `{}`", first.value), at(first));
            }
            _ => self.leave(format!("it names database `{}`", first.value), at(first)),
        }
    }

    fn setting(&mut self, n: &ObjectName, verb: &str) {
        let Some(last) = n.0.iter().rev().find_map(|p| p.as_ident()) else {
            return;
        };
        self.setting_named(last, at(last), verb);
    }

    /// A setting changed by name (`SET`, `RESET`, `set_config`).
    fn setting_named(&mut self, last: &Ident, place: Option<(usize, usize)>, verb: &str) {
        let name = folded(last);
        if ESCAPE_SETTINGS.contains(&name.as_str()) {
            let why = match name.as_str() {
                "search_path" => format!("{verb} search_path changes where names resolve"),
                "role" | "session_authorization" => {
                    format!(
                        "{verb} {} changes who the statements run as",
                        name.to_uppercase()
                    )
                }
                _ => format!("{verb} {name} loads code into the server"),
            };
            self.leave(why, place);
        }
    }

    fn statement(&mut self, s: &Statement) {
        let first = |n: &ObjectName| first_ident(n).and_then(at);
        self.writing = !matches!(s, Statement::Query(_));
        match s {
            Statement::Insert(i) => {
                if let TableObject::TableName(n) = &i.table {
                    self.name(n, true);
                }
            }
            Statement::Update(u) => self.table_factor(&u.table.relation),
            Statement::Delete(d) => {
                d.tables.iter().for_each(|n| self.name(n, true));
                let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &d.from;
                // The first table is the target; the rest (USING) are read.
                if let Some(t) = from.first() {
                    self.table_factor(&t.relation);
                }
            }
            Statement::Merge(m) => self.table_factor(&m.table),
            Statement::Query(_)
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::Discard { .. }
            | Statement::LISTEN { .. }
            | Statement::UNLISTEN { .. }
            | Statement::NOTIFY { .. }
            | Statement::Execute { .. }
            | Statement::Deallocate { .. }
            | Statement::Fetch { .. }
            | Statement::Close { .. }
            | Statement::ShowVariable { .. }
            | Statement::Declare { .. } => {}
            Statement::Set(set) => match set {
                Set::SingleAssignment { variable, .. } => self.setting(variable, "SET"),
                Set::ParenthesizedAssignments { variables, .. } => {
                    variables.iter().for_each(|v| self.setting(v, "SET"))
                }
                Set::MultipleAssignments { assignments } => assignments
                    .iter()
                    .for_each(|a| self.setting(&a.name, "SET")),
                Set::SetRole { .. } => {
                    self.leave("SET ROLE changes who the statements run as", None)
                }
                Set::SetSessionAuthorization(_) => self.leave(
                    "SET SESSION AUTHORIZATION changes who the statements run as",
                    None,
                ),
                _ => {}
            },
            Statement::Reset(r) => match &r.reset {
                Reset::ALL => self.leave(
                    "RESET ALL puts back the search_path and the role racelab set",
                    None,
                ),
                Reset::SessionAuthorization => self.leave(
                    "RESET SESSION AUTHORIZATION changes who the statements run as",
                    None,
                ),
                Reset::ConfigurationParameter(n) => self.setting(n, "RESET"),
            },
            Statement::Lock(l) => l.tables.iter().for_each(|t| self.name(&t.name, true)),
            Statement::CreateTable(t) => self.name(&t.name, true),
            Statement::CreateIndex(i) => {
                self.name(&i.table_name, true);
                if let Some(n) = &i.name {
                    self.name(n, true);
                }
            }
            Statement::AlterTable(a) => self.name(&a.name, true),
            Statement::CreateView(v) => self.name(&v.name, true),
            Statement::CreateSequence { name, .. } | Statement::CreateType { name, .. } => {
                self.name(name, true)
            }
            Statement::CreateDomain(d) => self.name(&d.name, true),
            Statement::AlterIndex { name, .. } => self.name(name, true),
            Statement::AlterView(v) => self.name(&v.name, true),
            Statement::RenameTable(r) => r.iter().for_each(|r| {
                self.name(&r.old_name, true);
                self.name(&r.new_name, true);
            }),
            Statement::Truncate(t) => t.table_names.iter().for_each(|t| self.name(&t.name, true)),
            Statement::Drop {
                object_type, names, ..
            } => match object_type {
                ObjectType::Table
                | ObjectType::View
                | ObjectType::MaterializedView
                | ObjectType::Index
                | ObjectType::Sequence
                | ObjectType::Type => names.iter().for_each(|n| self.name(n, true)),
                other => self.leave(
                    match names.first() {
                        Some(n) => format!("DROP {other} {n} acts outside the lab's tables"),
                        None => format!("DROP {other} acts outside the lab's tables"),
                    },
                    names.first().and_then(first),
                ),
            },
            Statement::Comment {
                object_type,
                object_name,
                ..
            } => match object_type {
                CommentObject::Column
                | CommentObject::Table
                | CommentObject::Index
                | CommentObject::Sequence
                | CommentObject::View
                | CommentObject::MaterializedView
                | CommentObject::Type
                | CommentObject::Domain
                | CommentObject::Function
                | CommentObject::Procedure => {
                    // A column is `table.column`: one name more.
                    let mut n = object_name.clone();
                    if *object_type == CommentObject::Column && !n.0.is_empty() {
                        n.0.pop();
                    }
                    self.name(&n, true)
                }
                other => self.leave(
                    format!("COMMENT ON {other} {object_name} acts outside the lab's tables"),
                    first(object_name),
                ),
            },
            Statement::Analyze(a) => match &a.table_name {
                Some(n) => self.name(n, true),
                None => self.leave("ANALYZE without a table acts on the whole database", None),
            },
            Statement::Vacuum(v) => match &v.table_name {
                Some(n) => self.name(n, true),
                None => self.leave("VACUUM without a table acts on the whole database", None),
            },
            Statement::Explain { statement, .. } | Statement::Prepare { statement, .. } => {
                self.statement(statement);
                return;
            }
            Statement::Copy {
                source, target, to, ..
            } => {
                match target {
                    CopyTarget::Program { .. } => {
                        self.leave("COPY ... PROGRAM runs a shell command on the server", None)
                    }
                    CopyTarget::File { .. } => self.leave(
                        "COPY with a file name reads or writes the server's files",
                        None,
                    ),
                    CopyTarget::Stdin | CopyTarget::Stdout => {}
                }
                if let CopySource::Table { table_name, .. } = source {
                    self.name(table_name, !to);
                }
            }
            Statement::CreateFunction(f) => {
                self.name(&f.name, true);
                self.opaque(
                    "a function's body is code racelab does not read",
                    first(&f.name),
                );
            }
            Statement::CreateProcedure { name, .. } => {
                self.name(name, true);
                self.opaque(
                    "a procedure's body is code racelab does not read",
                    first(name),
                );
            }
            Statement::Call(f) => {
                self.name(&f.name, false);
                self.opaque(
                    "a procedure runs code racelab does not read",
                    first(&f.name),
                );
            }
            Statement::CreateRule(_) => {
                self.opaque("a rule runs statements racelab does not read", None)
            }
            Statement::CreateTrigger(t) => {
                self.name(&t.name, true);
                self.name(&t.table_name, true);
            }
            Statement::DropTrigger(t) => {
                self.name(&t.trigger_name, true);
                if let Some(n) = &t.table_name {
                    self.name(n, true);
                }
            }
            Statement::DropFunction(f) => f.func_desc.iter().for_each(|d| self.name(&d.name, true)),
            other => {
                // Schemas, databases, roles, grants, extensions, settings of
                // the server: named by the statement's first words.
                let text = other.to_string();
                let words: Vec<&str> = text.split_whitespace().take(2).collect();
                self.leave(
                    format!(
                        "`{}` acts on the server, outside the lab's tables",
                        words.join(" ")
                    ),
                    None,
                );
            }
        }
        let _ = s.visit(self);
    }
}

impl Visitor for Walker {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        let writing = self.writing;
        // Reads of the catalogs are allowed; a write's target is named again
        // by `statement` with writing set.
        self.name(relation, writing && !is_catalog_read(relation));
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        if let Some(into) = &select.into {
            for target in &into.targets {
                let parts = match target {
                    Expr::Identifier(i) => vec![i.clone()],
                    Expr::CompoundIdentifier(v) => v.clone(),
                    _ => continue,
                };
                self.name(&ObjectName::from(parts), true);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Function(f) => {
                let parts: Vec<&Ident> = f.name.0.iter().filter_map(|p| p.as_ident()).collect();
                if parts.len() > 1 {
                    self.name(&f.name, false);
                }
                if let Some(last) = parts.last() {
                    let name = folded(last);
                    if OUTSIDE_FUNCTIONS.contains(&name.as_str()) {
                        self.leave(
                            format!("{name}() reaches outside the lab (other sessions, the server's files, or tables named by a string)"),
                            at(last),
                        );
                    }
                    if name == "set_config" {
                        // Judged as `SET` of the setting it names; a name
                        // computed at run time could be any of them.
                        match first_string_arg(&f.args) {
                            Some(setting) => {
                                let setting = Ident::new(setting.to_lowercase());
                                self.setting_named(&setting, at(last), "set_config of");
                            }
                            None => self.leave(
                                "set_config() with a setting named at run time could change \
                                 where names resolve or who the statements run as",
                                at(last),
                            ),
                        }
                    }
                    if NAMES_BY_STRING.contains(&name.as_str()) {
                        if let Some(text) = first_string_arg(&f.args) {
                            self.string_name(&text, at(last));
                        }
                    }
                }
            }
            Expr::Cast {
                data_type: DataType::Regclass,
                expr,
                ..
            } => {
                if let Expr::Value(v) = expr.as_ref() {
                    if let Value::SingleQuotedString(text) = &v.value {
                        let l = v.span.start;
                        self.string_name(
                            text,
                            (l.line > 0).then_some((l.line as usize, l.column as usize)),
                        );
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

impl Walker {
    /// The target of a write, when it is a plain table.
    fn table_factor(&mut self, t: &TableFactor) {
        if let TableFactor::Table { name, .. } = t {
            self.name(name, true);
        }
    }

    /// A relation named in a string (`nextval('public.seq')`): parsed as
    /// a name, and held to the same rule.
    fn string_name(&mut self, text: &str, where_: Option<(usize, usize)>) {
        let Ok(name) = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(text)
            .and_then(|mut p| p.parse_object_name(false))
        else {
            self.opaque("a relation named in a string racelab cannot read", where_);
            return;
        };
        let parts: Vec<&Ident> = name.0.iter().filter_map(|p| p.as_ident()).collect();
        if parts.len() > 1 {
            let schema = folded(parts[0]);
            if schema != "pg_temp" {
                self.leave(
                    format!("it names schema `{}` in a string", parts[0].value),
                    where_,
                );
            }
        }
    }
}

/// `pg_catalog.x` or `information_schema.x`.
fn is_catalog_read(n: &ObjectName) -> bool {
    let parts: Vec<&Ident> = n.0.iter().filter_map(|p| p.as_ident()).collect();
    parts.len() == 2 && {
        let s = folded(parts[0]);
        s == "pg_catalog" || s == "information_schema"
    }
}

fn first_string_arg(args: &FunctionArguments) -> Option<String> {
    let FunctionArguments::List(list) = args else {
        return None;
    };
    match list.args.first()? {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) => match &v.value {
            Value::SingleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(sql: &str) -> bool {
        matches!(reach(sql).0, Reach::Leaves(_))
    }

    #[test]
    fn the_lab_stays_in() {
        for sql in [
            "SELECT stock FROM products WHERE id = $1",
            "UPDATE products SET stock = stock - $1 WHERE id = $2 AND stock >= $1",
            "INSERT INTO orders (product_id, buyer_id, attempt_id, qty) VALUES ($1, $2, $3, $4)",
            "BEGIN",
            "BEGIN ISOLATION LEVEL SERIALIZABLE",
            "COMMIT",
            "ROLLBACK",
            "SET LOCAL lock_timeout = '1s'",
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
            "SELECT pg_advisory_xact_lock($1)",
            "SELECT * FROM products FOR UPDATE SKIP LOCKED",
            "ALTER TABLE products ADD CONSTRAINT stock_nonneg CHECK (stock >= 0)",
            "CREATE UNIQUE INDEX ON orders (attempt_id)",
            "CREATE TABLE tickets (id bigserial PRIMARY KEY, product_id int8)",
            "DROP TABLE IF EXISTS tickets",
            "LOCK TABLE products IN SHARE ROW EXCLUSIVE MODE",
            "SELECT count(*) FROM pg_catalog.pg_locks",
            "SELECT relname FROM pg_class",
            "SELECT nextval('orders_id_seq')",
            "CREATE TEMP TABLE scratch (x int)",
            "TRUNCATE orders",
            "COPY (SELECT 1) TO STDOUT",
        ] {
            assert_eq!(reach(sql).0, Reach::Lab, "{sql}");
        }
    }

    #[test]
    fn ways_out_of_the_lab() {
        for sql in [
            "DROP SCHEMA public CASCADE",
            "DROP TABLE public.x",
            "DELETE FROM public.users",
            "SELECT * FROM public.users",
            "INSERT INTO orders SELECT * FROM other.orders",
            "UPDATE app.accounts SET balance = 0",
            "COPY (SELECT 1) TO PROGRAM 'id > /tmp/x'",
            "COPY products FROM '/etc/passwd'",
            "SET ROLE postgres",
            "RESET ROLE",
            "SET SESSION AUTHORIZATION postgres",
            "RESET SESSION AUTHORIZATION",
            "RESET ALL",
            "SET search_path TO public",
            "SELECT set_config('search_path', 'public', false)",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
            "SELECT pg_read_file('/etc/passwd')",
            "SELECT lo_export(1, '/tmp/x')",
            "SELECT nextval('public.users_id_seq')",
            "SELECT 'public.users'::regclass",
            "CREATE SCHEMA evil",
            "CREATE ROLE evil LOGIN SUPERUSER",
            "ALTER ROLE postgres PASSWORD 'x'",
            "GRANT ALL ON products TO PUBLIC",
            "CREATE EXTENSION dblink",
            "VACUUM",
            "DELETE FROM pg_catalog.pg_class",
            "UPDATE pg_authid SET rolsuper = true",
            "SELECT 1 INTO public.copy",
            "CREATE TABLE public.junk (x int)",
            "ALTER TABLE public.users DROP COLUMN email",
            "COMMENT ON SCHEMA public IS 'x'",
            "TRUNCATE public.users",
            "SELECT * FROM otherdb.public.users",
            "CREATE VIEW v AS SELECT * FROM public.users",
            "EXPLAIN ANALYZE DELETE FROM public.users",
        ] {
            assert!(leaves(sql), "{sql}: {:?}", reach(sql));
        }
    }

    #[test]
    fn code_racelab_cannot_read() {
        for sql in [
            "DO $$ BEGIN DROP SCHEMA public CASCADE; END $$",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "CALL p()",
            "this is not sql",
        ] {
            assert!(
                matches!(reach(sql).0, Reach::Opaque(_)),
                "{sql}: {:?}",
                reach(sql)
            );
        }
    }

    #[test]
    fn positions_point_at_the_name() {
        assert_eq!(reach("DROP SCHEMA public CASCADE").1, Some((1, 13)));
        assert_eq!(reach("SELECT 1\nFROM public.users").1, Some((2, 6)));
        // `:qty` (4 characters) was sent as `$1` (2): the column as written.
        let col = source_col(
            "UPDATE public.x SET a = $1, b = public.f()",
            &[super::super::Placeholder {
                start: 24,
                end: 26,
                param: 0,
            }],
            &["qty".to_string()],
            1,
            33,
            3,
        );
        assert_eq!(col, 33 + 2 + 2);
    }

    #[test]
    fn a_script_that_escapes_is_refused_at_its_line() {
        let source = "-- escapes\n\\setup\nDROP SCHEMA public CASCADE;\n\\endsetup\nBEGIN;\n  UPDATE products SET stock = stock - :qty WHERE id = :product;\nCOMMIT;\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("escape.sql");
        std::fs::write(&path, source).unwrap();
        let strategy = crate::strategy::load(path.to_str().unwrap()).unwrap();
        let found = escapes(&strategy);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].line, found[0].col, found[0].setup), (3, 13, true));
        let err = check(&strategy, "the server", None).unwrap_err();
        assert_eq!((err.line, err.col), (3, 13));
        assert!(
            err.message.contains("DROP SCHEMA public acts outside"),
            "{}",
            err.message
        );
    }
}
