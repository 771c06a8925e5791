//! The statement reader: one SQL statement, parsed by sqlparser with its
//! PostgreSQL dialect, walked into its `Facts` — its kind, the queries and
//! their FROM lists, locking clauses, `LOCK TABLE`, the constraints a
//! `\setup` statement adds, and a safety net so no table named anywhere
//! goes unseen. Data-modifying statements are `dml`'s; expressions are
//! `operand`'s; names are `scope`'s.

use std::ops::ControlFlow;

use sqlparser::ast as sql;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::operand::setting_value;
use super::scope::{
    ident, next_level, object_last, output_name, push_unique, strip, Binding, Bound, Cte, Reader,
};
use super::{
    Constraint, Facts, IsoTarget, IsoValue, Isolation, Kind, LockMode, LockStrength, Names,
    Operand, Output, Read, RowLock, Rows, Source, TableLock, Wait,
};

pub(super) fn read_inner(
    text: &str,
    param: &dyn Fn(usize) -> Option<usize>,
    names: Names,
) -> Result<Facts, String> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, text)
        .tokenize_with_location()
        .map_err(|e| e.to_string())?;
    let (tokens, strengths) = lock_strengths(tokens);
    let mut stmts = Parser::new(&dialect)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| e.to_string())?;
    let stmt = match stmts.len() {
        1 => stmts.remove(0),
        0 => return Err("no SQL statement".into()),
        n => return Err(format!("{n} statements where one was expected")),
    };
    let mut r = Reader {
        f: Facts::new(Kind::Other),
        ctes: Vec::new(),
        aliases: Vec::new(),
        strengths,
        next_lock: 0,
        feeds: None,
        param,
        names,
        scalars: Vec::new(),
    };
    r.statement(&stmt);
    if r.next_lock != r.strengths.len() {
        return Err("racelab could not match its locking clauses".into());
    }
    r.safety_net(&stmt);
    Ok(r.f)
}

/// sqlparser reads `FOR UPDATE` and `FOR SHARE` only: take the strength of
/// every locking clause from its tokens, in order, and hand the parser
/// `FOR NO KEY UPDATE` as `FOR UPDATE` and `FOR KEY SHARE` as `FOR SHARE`.
pub(super) fn lock_strengths(
    tokens: Vec<TokenWithSpan>,
) -> (Vec<TokenWithSpan>, Vec<LockStrength>) {
    let kw = |t: &TokenWithSpan| match &t.token {
        Token::Word(w) => Some(w.keyword),
        _ => None,
    };
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut strengths = Vec::new();
    let mut i = 0;
    // Indices of the next non-whitespace tokens after `from`.
    let next = |from: usize, n: usize| -> Vec<usize> {
        tokens[from..]
            .iter()
            .enumerate()
            .filter(|(_, t)| !matches!(t.token, Token::Whitespace(_)))
            .take(n)
            .map(|(k, _)| from + k)
            .collect()
    };
    while i < tokens.len() {
        if kw(&tokens[i]) == Some(Keyword::FOR) {
            let after = next(i + 1, 3);
            let k: Vec<Option<Keyword>> = after.iter().map(|&j| kw(&tokens[j])).collect();
            let (strength, skip_to) = match k.as_slice() {
                [Some(Keyword::NO), Some(Keyword::KEY), Some(Keyword::UPDATE)] => {
                    (Some(LockStrength::NoKeyUpdate), Some(after[2]))
                }
                [Some(Keyword::KEY), Some(Keyword::SHARE), ..] => {
                    (Some(LockStrength::KeyShare), Some(after[1]))
                }
                [Some(Keyword::UPDATE), ..] => (Some(LockStrength::Update), None),
                [Some(Keyword::SHARE), ..] => (Some(LockStrength::Share), None),
                _ => (None, None),
            };
            if let Some(s) = strength {
                strengths.push(s);
            }
            out.push(tokens[i].clone());
            if let Some(j) = skip_to {
                out.push(TokenWithSpan {
                    token: Token::Whitespace(sqlparser::tokenizer::Whitespace::Space),
                    span: tokens[i].span,
                });
                i = j;
                continue;
            }
            i += 1;
            continue;
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    (out, strengths)
}

pub(super) fn isolation(modes: &[sql::TransactionMode]) -> Option<Isolation> {
    modes.iter().find_map(|m| match m {
        sql::TransactionMode::IsolationLevel(l) => Some(match l {
            sql::TransactionIsolationLevel::RepeatableRead => Isolation::RepeatableRead,
            sql::TransactionIsolationLevel::Serializable => Isolation::Serializable,
            // READ UNCOMMITTED is READ COMMITTED in PostgreSQL; SNAPSHOT is
            // not PostgreSQL's.
            _ => Isolation::ReadCommitted,
        }),
        _ => None,
    })
}

impl Reader<'_> {
    pub(super) fn statement(&mut self, s: &sql::Statement) {
        use sql::Statement as S;
        match s {
            S::StartTransaction { modes, .. } => self.f.kind = Kind::Begin(isolation(modes)),
            S::Set(set) => self.set(set),
            S::Reset(r) => {
                if let sql::Reset::ConfigurationParameter(name) = &r.reset {
                    self.setting(&object_last(name), None, IsoValue::Default);
                }
            }
            S::Commit { chain, .. } => self.f.kind = Kind::Commit { chain: *chain },
            S::Rollback {
                chain,
                savepoint: None,
            } => self.f.kind = Kind::Rollback { chain: *chain },
            S::Rollback {
                savepoint: Some(_), ..
            } => {
                self.f.opaque =
                    Some("ROLLBACK TO SAVEPOINT (which writes it undoes is not followed)".into())
            }
            S::Query(_) | S::Insert(_) | S::Update(_) | S::Delete(_) => {
                let (outputs, kind) = match s {
                    S::Query(q) => self.query(q, &[]),
                    _ => self.dml(s, &[]),
                };
                self.f.kind = kind;
                self.f.outputs = outputs;
                let main = self.f.writes.iter().rposition(|w| w.cte.is_none());
                self.f.rows_from = match kind {
                    Kind::Insert => self.feeds.or(main),
                    Kind::Update | Kind::Delete => main,
                    _ => None,
                };
            }
            S::Lock(l) => {
                use sql::LockTableMode as M;
                let mode = match l.lock_mode.clone().unwrap_or(M::AccessExclusive) {
                    M::AccessShare => LockMode::AccessShare,
                    M::RowShare => LockMode::RowShare,
                    M::RowExclusive => LockMode::RowExclusive,
                    M::ShareUpdateExclusive => LockMode::ShareUpdateExclusive,
                    M::Share => LockMode::Share,
                    M::ShareRowExclusive => LockMode::ShareRowExclusive,
                    M::Exclusive => LockMode::Exclusive,
                    M::AccessExclusive => LockMode::AccessExclusive,
                };
                self.f.kind = Kind::LockTable;
                self.f.table_locks.push(TableLock {
                    tables: l.tables.iter().map(|t| object_last(&t.name)).collect(),
                    mode,
                    nowait: l.nowait,
                });
            }
            S::CreateFunction(f) => self.f.routine = Some(super::routine::routine(f)),
            S::CreateTrigger(t) => self.f.trigger = Some(super::routine::trigger(t)),
            S::AlterTable(a) => {
                let table = object_last(&a.name);
                for op in &a.operations {
                    match op {
                        sql::AlterTableOperation::AddConstraint { constraint, .. } => {
                            self.table_constraint(&table, constraint)
                        }
                        sql::AlterTableOperation::DropConstraint { name, .. } => {
                            self.f.constraints.push(Constraint::Drop {
                                table: table.clone(),
                                name: ident(name),
                            })
                        }
                        sql::AlterTableOperation::AddColumn { column_def, .. } => {
                            self.column_constraints(&table, column_def)
                        }
                        _ => {}
                    }
                }
            }
            S::CreateTable(c) => {
                let table = object_last(&c.name);
                for col in &c.columns {
                    self.column_constraints(&table, col);
                }
                for k in &c.constraints {
                    self.table_constraint(&table, k);
                }
            }
            S::CreateIndex(i) if i.unique => {
                let table = object_last(&i.table_name);
                let columns = i
                    .columns
                    .iter()
                    .map(|c| match strip(&c.column.expr) {
                        sql::Expr::Identifier(x) => ident(x),
                        other => other.to_string(),
                    })
                    .collect();
                self.f.constraints.push(Constraint::Unique {
                    table,
                    name: i.name.as_ref().map(object_last),
                    columns,
                });
            }
            S::CreateIndex(_)
            | S::Drop { .. }
            | S::Savepoint { .. }
            | S::ReleaseSavepoint { .. }
            | S::ShowVariable { .. }
            | S::ShowVariables { .. }
            | S::Discard { .. }
            | S::NOTIFY { .. }
            | S::LISTEN { .. }
            | S::UNLISTEN { .. }
            | S::Analyze(_)
            | S::Comment { .. }
            | S::Prepare { .. }
            | S::Deallocate { .. }
            | S::CreateSequence { .. }
            | S::CreateType { .. }
            | S::CreateExtension(_)
            | S::CreateSchema { .. }
            | S::Truncate(_)
            | S::Grant(_)
            | S::Revoke(_) => {}
            other => {
                let text = other.to_string();
                let what: String = text
                    .split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ");
                self.f.opaque = Some(format!("{what} ..."));
            }
        }
    }

    /// A `SET` statement: the isolation settings change the model, any
    /// other setting nothing racelab follows.
    fn set(&mut self, set: &sql::Set) {
        match set {
            sql::Set::SetTransaction { modes, session, .. } => {
                if let Some(level) = isolation(modes) {
                    self.f.kind = Kind::SetIsolation {
                        value: IsoValue::Level(level),
                        target: if *session {
                            IsoTarget::SessionDefault
                        } else {
                            IsoTarget::Transaction
                        },
                    };
                }
            }
            sql::Set::SingleAssignment {
                scope,
                variable,
                values,
                ..
            } => {
                let value = match values.as_slice() {
                    [v] => setting_value(v),
                    _ => IsoValue::Unknown,
                };
                let local = matches!(scope, Some(sql::ContextModifier::Local));
                self.setting(&object_last(variable), Some(local), value);
            }
            _ => {}
        }
    }

    /// `SET [LOCAL] name = value` (`local`: `None` for RESET) of an
    /// isolation setting.
    fn setting(&mut self, name: &str, local: Option<bool>, value: IsoValue) {
        let target = match name {
            "transaction_isolation" => IsoTarget::Transaction,
            "default_transaction_isolation" if local == Some(true) => IsoTarget::LocalDefault,
            "default_transaction_isolation" => IsoTarget::SessionDefault,
            _ => return,
        };
        self.f.kind = Kind::SetIsolation { value, target };
    }

    pub(super) fn column_constraints(&mut self, table: &str, col: &sql::ColumnDef) {
        for o in &col.options {
            match &o.option {
                sql::ColumnOption::Check(c) => {
                    let name = o.name.as_ref().or(c.name.as_ref()).map(ident);
                    self.check(table, name, &c.expr);
                }
                sql::ColumnOption::Unique(_) | sql::ColumnOption::PrimaryKey(_) => {
                    self.f.constraints.push(Constraint::Unique {
                        table: table.to_string(),
                        name: o.name.as_ref().map(ident),
                        columns: vec![ident(&col.name)],
                    })
                }
                _ => {}
            }
        }
    }

    pub(super) fn table_constraint(&mut self, table: &str, c: &sql::TableConstraint) {
        let cols = |v: &[sql::IndexColumn]| -> Vec<String> {
            v.iter()
                .map(|c| match strip(&c.column.expr) {
                    sql::Expr::Identifier(x) => ident(x),
                    other => other.to_string(),
                })
                .collect()
        };
        match c {
            sql::TableConstraint::Check(k) => {
                self.check(table, k.name.as_ref().map(ident), &k.expr)
            }
            sql::TableConstraint::Unique(u) => self.f.constraints.push(Constraint::Unique {
                table: table.to_string(),
                name: u.name.as_ref().map(ident),
                columns: cols(&u.columns),
            }),
            sql::TableConstraint::PrimaryKey(u) => self.f.constraints.push(Constraint::Unique {
                table: table.to_string(),
                name: u.name.as_ref().map(ident),
                columns: cols(&u.columns),
            }),
            _ => {}
        }
    }

    pub(super) fn check(&mut self, table: &str, name: Option<String>, e: &sql::Expr) {
        let scope = [Binding {
            name: table.to_string(),
            bound: Bound::Derived {
                outputs: Vec::new(),
                rows: Vec::new(),
            },
            level: 0,
        }];
        let (conjuncts, _) = self.conjuncts(e, &scope);
        // Columns of a CHECK are the table's own.
        let conjuncts = conjuncts
            .into_iter()
            .map(|mut c| {
                for o in [&mut c.left, &mut c.right] {
                    for col in &mut o.cols {
                        col.table = Some(table.to_string());
                    }
                }
                c
            })
            .collect();
        let text = self.show(e);
        self.f.constraints.push(Constraint::Check {
            table: table.to_string(),
            name,
            conjuncts,
            text,
        });
    }

    /// A query: its output columns (when it returns rows) and its kind.
    pub(super) fn query(
        &mut self,
        q: &sql::Query,
        outer: &[Binding],
    ) -> (Option<Vec<Output>>, Kind) {
        let depth = self.ctes.len();
        if let Some(w) = &q.with {
            for cte in &w.cte_tables {
                let before = self.f.writes.len();
                let (outputs, _) = self.query(&cte.query, outer);
                let write = (self.f.writes.len() > before).then(|| self.f.writes.len() - 1);
                let name = ident(&cte.alias.name);
                if let Some(w) = write {
                    self.f.writes[w].cte = Some(name.clone());
                }
                let mut outputs = outputs.unwrap_or_default();
                for (o, alias) in outputs.iter_mut().zip(&cte.alias.columns) {
                    o.name = Some(ident(&alias.name));
                }
                self.ctes.push(Cte {
                    name,
                    outputs,
                    write,
                });
            }
        }
        let reads_before = self.f.reads.len();
        let (outputs, kind) = self.set_expr(&q.body, outer);
        if let Some(limit) = &q.limit_clause {
            let scope: Vec<Binding> = outer.to_vec();
            match limit {
                sql::LimitClause::LimitOffset { limit, offset, .. } => {
                    if let Some(l) = limit {
                        self.operand(l, &scope);
                    }
                    if let Some(o) = offset {
                        self.operand(&o.value, &scope);
                    }
                }
                sql::LimitClause::OffsetCommaLimit { offset, limit } => {
                    self.operand(offset, &scope);
                    self.operand(limit, &scope);
                }
            }
        }
        for lock in &q.locks {
            let strength =
                self.strengths
                    .get(self.next_lock)
                    .copied()
                    .unwrap_or(match lock.lock_type {
                        sql::LockType::Share => LockStrength::Share,
                        sql::LockType::Update => LockStrength::Update,
                    });
            self.next_lock += 1;
            let of: Vec<String> = lock.of.iter().map(object_last).collect();
            let reads: Vec<usize> = (reads_before..self.f.reads.len())
                .filter(|&i| {
                    of.is_empty()
                        || of.contains(&self.f.reads[i].table)
                        || self.aliases.get(i).is_some_and(|a| of.contains(a))
                })
                .collect();
            let idx = self.f.row_locks.len();
            for &i in &reads {
                self.f.reads[i].lock.get_or_insert(idx);
            }
            self.f.row_locks.push(RowLock {
                strength,
                wait: match lock.nonblock {
                    Some(sql::NonBlock::Nowait) => Wait::Nowait,
                    Some(sql::NonBlock::SkipLocked) => Wait::SkipLocked,
                    None => Wait::Block,
                },
                of,
                reads,
            });
        }
        self.ctes.truncate(depth);
        (outputs, kind)
    }

    pub(super) fn set_expr(
        &mut self,
        body: &sql::SetExpr,
        outer: &[Binding],
    ) -> (Option<Vec<Output>>, Kind) {
        use sql::SetExpr as E;
        match body {
            E::Select(s) => (Some(self.select(s, outer)), Kind::Select),
            E::Query(q) => self.query(q, outer),
            E::SetOperation { left, right, .. } => {
                let (l, _) = self.set_expr(left, outer);
                let (r, _) = self.set_expr(right, outer);
                // The names are the left side's; values come from both.
                let outputs = l.map(|mut l| {
                    for (a, b) in l.iter_mut().zip(r.unwrap_or_default()) {
                        a.sources.extend(b.sources);
                        a.vars.extend(b.vars);
                    }
                    l
                });
                (outputs, Kind::Select)
            }
            E::Values(v) => {
                let mut outputs: Vec<Output> = Vec::new();
                for row in &v.rows {
                    for (k, e) in row.iter().enumerate() {
                        let o = self.operand(e, outer);
                        if outputs.len() <= k {
                            outputs.push(Output {
                                name: None,
                                sources: Vec::new(),
                                vars: Vec::new(),
                                with_columns: None,
                            });
                        }
                        outputs[k].sources.extend(o.sources);
                        outputs[k].vars.extend(o.vars);
                    }
                }
                (Some(outputs), Kind::Select)
            }
            E::Insert(s) | E::Update(s) | E::Delete(s) => self.dml(s, outer),
            E::Table(t) => {
                let name = t.table_name.as_ref().map(ident).unwrap_or_default();
                let level = next_level(outer);
                let b = self.bind_table(&name, None, level);
                let sources = self.all_sources(&[b]);
                (
                    Some(vec![Output {
                        name: None,
                        sources,
                        vars: Vec::new(),
                        with_columns: None,
                    }]),
                    Kind::Select,
                )
            }
            _ => (None, Kind::Other),
        }
    }
}

impl Reader<'_> {
    pub(super) fn select(&mut self, s: &sql::Select, outer: &[Binding]) -> Vec<Output> {
        let level = next_level(outer);
        let mut scope: Vec<Binding> = outer.to_vec();
        let mut conds: Vec<&sql::Expr> = Vec::new();
        for twj in &s.from {
            self.table_with_joins(twj, &mut scope, level, &mut conds);
        }
        conds.extend(s.selection.iter());
        self.filter_rows(&scope, level, conds);
        let mut outputs = Vec::new();
        for item in &s.projection {
            outputs.extend(self.select_item(item, &scope));
        }
        if let Some(h) = &s.having {
            let _ = self.operand(h, &scope);
        }
        outputs
    }

    /// Read the WHERE (and join) conditions `conds` into comparisons and
    /// give them to every table bound at `level`.
    pub(super) fn filter_rows(&mut self, scope: &[Binding], level: usize, conds: Vec<&sql::Expr>) {
        let mut filter = Vec::new();
        let mut opaque = false;
        for c in conds {
            let (cs, op) = self.conjuncts(c, scope);
            filter.extend(cs);
            opaque |= op;
        }
        self.set_rows(scope, level, &filter, opaque);
    }

    pub(super) fn select_item(&mut self, item: &sql::SelectItem, scope: &[Binding]) -> Vec<Output> {
        let one = |r: &mut Self, e: &sql::Expr, name: Option<String>| {
            let o = r.operand(e, scope);
            Output {
                name,
                sources: o.sources,
                vars: o.vars,
                with_columns: o.with_columns,
            }
        };
        match item {
            sql::SelectItem::UnnamedExpr(e) => vec![one(self, e, output_name(e))],
            sql::SelectItem::ExprWithAlias { expr, alias } => {
                vec![one(self, expr, Some(ident(alias)))]
            }
            sql::SelectItem::ExprWithAliases { expr, aliases } => {
                vec![one(self, expr, aliases.first().map(ident))]
            }
            sql::SelectItem::Wildcard(_) | sql::SelectItem::QualifiedWildcard(..) => {
                vec![Output {
                    name: None,
                    sources: self.all_sources(scope),
                    vars: Vec::new(),
                    with_columns: None,
                }]
            }
        }
    }

    pub(super) fn table_with_joins<'e>(
        &mut self,
        twj: &'e sql::TableWithJoins,
        scope: &mut Vec<Binding>,
        level: usize,
        conds: &mut Vec<&'e sql::Expr>,
    ) {
        self.table_factor(&twj.relation, scope, level, conds);
        for j in &twj.joins {
            self.table_factor(&j.relation, scope, level, conds);
            use sql::JoinOperator as J;
            let c = match &j.join_operator {
                J::Join(c)
                | J::Inner(c)
                | J::Left(c)
                | J::LeftOuter(c)
                | J::Right(c)
                | J::RightOuter(c)
                | J::FullOuter(c)
                | J::CrossJoin(c)
                | J::Semi(c)
                | J::LeftSemi(c)
                | J::RightSemi(c)
                | J::Anti(c)
                | J::LeftAnti(c)
                | J::RightAnti(c)
                | J::StraightJoin(c) => Some(c),
                _ => None,
            };
            if let Some(sql::JoinConstraint::On(e)) = c {
                conds.push(e);
            }
        }
    }

    pub(super) fn table_factor<'e>(
        &mut self,
        tf: &'e sql::TableFactor,
        scope: &mut Vec<Binding>,
        level: usize,
        conds: &mut Vec<&'e sql::Expr>,
    ) {
        use sql::TableFactor as T;
        match tf {
            T::Table {
                name,
                alias,
                args: None,
                ..
            } => {
                let b = self.bind_table(
                    &object_last(name),
                    alias.as_ref().map(|a| ident(&a.name)),
                    level,
                );
                scope.push(b);
            }
            T::Derived {
                subquery, alias, ..
            } => {
                let (outputs, _) = self.query(subquery, scope);
                let mut outputs = outputs.unwrap_or_default();
                if let Some(a) = alias {
                    for (o, c) in outputs.iter_mut().zip(&a.columns) {
                        o.name = Some(ident(&c.name));
                    }
                }
                let mut rows = Vec::new();
                for o in &outputs {
                    for s in &o.sources {
                        push_unique(&mut rows, s.clone());
                    }
                }
                scope.push(Binding {
                    name: alias.as_ref().map(|a| ident(&a.name)).unwrap_or_default(),
                    bound: Bound::Derived { outputs, rows },
                    level,
                });
            }
            T::NestedJoin {
                table_with_joins, ..
            } => self.table_with_joins(table_with_joins, scope, level, conds),
            other => {
                // A table function (generate_series(...)) and the like: its
                // arguments may use variables; it reads no table rows, but
                // a function racelab does not know by itself is a call.
                let mut o = Operand::default();
                let call = match other {
                    T::Table {
                        name,
                        args: Some(a),
                        ..
                    } => Some((name, a.args.as_slice())),
                    T::Function { name, args, .. } => Some((name, args.as_slice())),
                    _ => None,
                };
                let mut rows = Vec::new();
                if let Some((name, args)) = call {
                    let f = sql::Function {
                        name: name.clone(),
                        uses_odbc_syntax: false,
                        parameters: sql::FunctionArguments::None,
                        args: sql::FunctionArguments::List(sql::FunctionArgumentList {
                            duplicate_treatment: None,
                            args: args.to_vec(),
                            clauses: Vec::new(),
                        }),
                        filter: None,
                        null_treatment: None,
                        over: None,
                        within_group: Vec::new(),
                    };
                    let before = self.f.calls.len();
                    self.function(&f, scope, &mut o);
                    if self.f.calls.len() > before {
                        rows.push(Source::Call(before));
                    }
                } else {
                    let mut found: Vec<sql::Expr> = Vec::new();
                    let _ = sql::visit_expressions(other, |x: &sql::Expr| {
                        found.push(x.clone());
                        ControlFlow::<()>::Continue(())
                    });
                    for x in &found {
                        if let sql::Expr::Value(_) = x {
                            self.walk(x, scope, &mut o);
                        }
                    }
                }
                let alias = match other {
                    T::Table { alias, .. } | T::Function { alias, .. } => alias.as_ref(),
                    T::UNNEST { alias, .. } => alias.as_ref(),
                    _ => None,
                };
                scope.push(Binding {
                    name: alias.map(|a| ident(&a.name)).unwrap_or_default(),
                    bound: Bound::Derived {
                        outputs: Vec::new(),
                        rows,
                    },
                    level,
                });
            }
        }
    }

    /// Whatever the walk above did not reach: tables named anywhere in the
    /// statement become reads of unknown rows, so no table goes unseen.
    pub(super) fn safety_net(&mut self, stmt: &sql::Statement) {
        let mut names: Vec<String> = Vec::new();
        let _ = sql::visit_relations(stmt, |n: &sql::ObjectName| {
            names.push(object_last(n));
            ControlFlow::<()>::Continue(())
        });
        let mut ctes: Vec<String> = Vec::new();
        collect_cte_names(stmt, &mut ctes);
        let ddl = matches!(
            stmt,
            sql::Statement::AlterTable(_)
                | sql::Statement::CreateTable(_)
                | sql::Statement::CreateIndex(_)
                | sql::Statement::Drop { .. }
                | sql::Statement::Lock(_)
        );
        if ddl {
            return;
        }
        for n in names {
            let known = self.f.reads.iter().any(|r| r.table == n)
                || self.f.writes.iter().any(|w| w.table == n)
                || self.f.calls.iter().any(|c| c.name == n)
                || ctes.contains(&n);
            if !known {
                self.f.reads.push(Read {
                    table: n,
                    columns: Vec::new(),
                    rows: Rows {
                        opaque: true,
                        ..Rows::default()
                    },
                    lock: None,
                });
            }
        }
        if self.f.advisory.is_empty() {
            let mut calls: Vec<sql::Function> = Vec::new();
            let _ = sql::visit_expressions(stmt, |x: &sql::Expr| {
                if let sql::Expr::Function(f) = x {
                    calls.push(f.clone());
                }
                ControlFlow::<()>::Continue(())
            });
            for f in &calls {
                let mut o = Operand::default();
                self.advisory_call(f, &[], &mut o);
            }
        }
    }
}

pub(super) fn collect_cte_names(stmt: &sql::Statement, out: &mut Vec<String>) {
    struct V<'o>(&'o mut Vec<String>);
    impl sql::Visitor for V<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, q: &sql::Query) -> ControlFlow<()> {
            if let Some(w) = &q.with {
                self.0
                    .extend(w.cte_tables.iter().map(|c| ident(&c.alias.name)));
            }
            ControlFlow::Continue(())
        }
    }
    use sql::Visit as _;
    let _ = stmt.visit(&mut V(out));
}

#[cfg(test)]
mod tests {
    use super::super::*;

    /// `$n` is slot `100 + n`, named `vn`.
    fn f(sql: &str) -> Facts {
        read(sql, &|n| Some(100 + n), &|s| format!("v{}", s - 100))
    }

    #[test]
    fn transaction_kinds_and_isolation() {
        assert_eq!(f("BEGIN").kind, Kind::Begin(None));
        assert_eq!(
            f("begin isolation level serializable").kind,
            Kind::Begin(Some(Isolation::Serializable))
        );
        assert_eq!(
            f("START TRANSACTION ISOLATION LEVEL REPEATABLE READ").kind,
            Kind::Begin(Some(Isolation::RepeatableRead))
        );
        assert_eq!(
            f("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").kind,
            Kind::SetIsolation {
                value: IsoValue::Level(Isolation::Serializable),
                target: IsoTarget::Transaction
            }
        );
        assert_eq!(f("COMMIT").kind, Kind::Commit { chain: false });
        assert_eq!(f("END").kind, Kind::Commit { chain: false });
        assert_eq!(f("COMMIT AND CHAIN").kind, Kind::Commit { chain: true });
        assert_eq!(f("ABORT").kind, Kind::Rollback { chain: false });
        assert_eq!(f("ROLLBACK TO SAVEPOINT a").kind, Kind::Other);
        assert_eq!(f("SELECT 1").kind, Kind::Select);
        assert_eq!(f("LOCK TABLE products").kind, Kind::LockTable);
    }

    #[test]
    fn row_locks_strength_wait_and_of() {
        let x = f("SELECT stock FROM products WHERE id = $1 FOR UPDATE");
        assert_eq!(x.row_locks.len(), 1);
        assert_eq!(x.row_locks[0].strength, LockStrength::Update);
        assert_eq!(x.reads[0].lock, Some(0));
        assert_eq!(x.reads[0].rows.key[0].0, "id");
        assert_eq!(x.reads[0].rows.key[0].1.vars, vec![101]);
        let x = f("select stock from products where id = $1 for no key update nowait");
        assert_eq!(x.row_locks[0].strength, LockStrength::NoKeyUpdate);
        assert_eq!(x.row_locks[0].wait, Wait::Nowait);
        let x = f("SELECT 1 FROM products FOR KEY SHARE SKIP LOCKED");
        assert_eq!(x.row_locks[0].strength, LockStrength::KeyShare);
        assert!(!x.row_locks[0].strength.blocks_updates());
        assert_eq!(x.row_locks[0].wait, Wait::SkipLocked);
        let x = f("SELECT p.stock FROM products p JOIN orders o ON o.product_id = p.id WHERE p.id = $1 FOR SHARE OF o");
        assert_eq!(x.row_locks[0].strength, LockStrength::Share);
        assert_eq!(x.row_locks[0].of, vec!["o"]);
        let locked: Vec<&str> = x.row_locks[0]
            .reads
            .iter()
            .map(|r| x.reads[*r].table.as_str())
            .collect();
        assert_eq!(locked, ["orders"]);
        // A subquery's lock in FROM, and the words in a comment or string.
        let x = f("SELECT count(*) FROM (SELECT id FROM orders WHERE buyer_id = $1 FOR UPDATE) o");
        assert_eq!(x.row_locks.len(), 1);
        let x = f("SELECT stock /* FOR UPDATE */, 'FOR UPDATE' FROM products -- FOR UPDATE");
        assert!(x.row_locks.is_empty());
        let x = f("LOCK TABLE products IN SHARE ROW EXCLUSIVE MODE");
        assert_eq!(x.table_locks[0].mode, LockMode::ShareRowExclusive);
        let x = f("LOCK products IN ACCESS SHARE MODE");
        assert_eq!(x.table_locks[0].mode, LockMode::AccessShare);
        assert_eq!(
            f("LOCK TABLE products").table_locks[0].mode,
            LockMode::AccessExclusive
        );
    }

    #[test]
    fn ctes_returning_and_rows() {
        let x = f("WITH sold AS (UPDATE products SET stock = stock - $1 WHERE id = $2 AND stock >= $1 RETURNING id) INSERT INTO orders (product_id, qty) SELECT id, $1 FROM sold");
        assert_eq!(x.kind, Kind::Insert);
        assert_eq!(x.writes.len(), 2);
        assert_eq!(x.writes[0].cte.as_deref(), Some("sold"));
        assert_eq!(x.writes[0].returning, vec!["id"]);
        assert_eq!(x.writes[1].table, "orders");
        // The INSERT inserts as many rows as the CTE's UPDATE matched.
        assert_eq!(x.rows_from, Some(0));
        assert!(x.outputs.is_none());
        let x = f("WITH sold AS (UPDATE products SET stock = stock - 1 RETURNING id) INSERT INTO orders (product_id) VALUES (1)");
        assert_eq!(x.rows_from, Some(1));
        let x = f("WITH c AS (DELETE FROM units WHERE product_id = $1 RETURNING unit_no) SELECT count(*) AS claimed FROM c");
        assert_eq!(x.kind, Kind::Select);
        let out = x.outputs.as_ref().unwrap();
        assert_eq!(out[0].name.as_deref(), Some("claimed"));
        assert_eq!(out[0].sources, vec![Source::Write(0)]);
        let x =
            f("UPDATE products SET stock = stock - 1 WHERE id = $1 RETURNING stock AS left_over");
        let out = x.outputs.as_ref().unwrap();
        assert_eq!(out[0].name.as_deref(), Some("left_over"));
        assert!(out[0].sources.contains(&Source::Write(0)));
        assert_eq!(x.returns_rows(), Some(true));
        assert_eq!(
            f("UPDATE products SET stock = 1").returns_rows(),
            Some(false)
        );
    }

    #[test]
    fn setup_constraints() {
        let x = f("ALTER TABLE products ADD CONSTRAINT nn CHECK (stock >= 0)");
        let Constraint::Check {
            table,
            name,
            conjuncts,
            ..
        } = &x.constraints[0]
        else {
            panic!("{:?}", x.constraints)
        };
        assert_eq!((table.as_str(), name.as_deref()), ("products", Some("nn")));
        assert!(conjuncts[0].bounds_below("products", "stock"));
        let x = f("ALTER TABLE products DROP CONSTRAINT IF EXISTS nn");
        assert!(matches!(&x.constraints[0], Constraint::Drop { name, .. } if name == "nn"));
        let x = f("CREATE UNIQUE INDEX one_each ON orders (product_id, buyer_id)");
        assert!(
            matches!(&x.constraints[0], Constraint::Unique { columns, .. } if columns == &["product_id", "buyer_id"])
        );
        let x = f("CREATE TABLE units (product_id bigint NOT NULL, n bigint CHECK (n > 0), PRIMARY KEY (product_id, n))");
        assert_eq!(x.constraints.len(), 2, "{:?}", x.constraints);
    }

    #[test]
    fn unreadable_sql_is_a_fact() {
        let x =
            f("SELECT p.stock FROM products p, products q WHERE p.id = q.id FOR UPDATE OF p, q");
        assert!(x.unreadable.as_deref().is_some_and(|m| !m.is_empty()));
        assert_eq!(x.kind, Kind::Other);
        assert_eq!(x.returns_rows(), None);
        assert!(x.reads.is_empty() && x.writes.is_empty());
        let x = f("PREPARE TRANSACTION 'x'");
        assert!(x.unreadable.is_some());
        assert!(f("SELECT 1; SELECT 2").unreadable.is_some());
    }

    #[test]
    fn isolation_settings_and_what_they_target() {
        use IsoTarget::*;
        let set = |sql: &str| match f(sql).kind {
            Kind::SetIsolation { value, target } => Some((value, target)),
            _ => None,
        };
        let l = |i| IsoValue::Level(i);
        for (sql, want) in [
            (
                "SET LOCAL transaction_isolation = 'read committed'",
                (l(Isolation::ReadCommitted), Transaction),
            ),
            (
                "SET transaction_isolation TO 'REPEATABLE READ'",
                (l(Isolation::RepeatableRead), Transaction),
            ),
            (
                "SET SESSION transaction_isolation = 'read uncommitted'",
                (l(Isolation::ReadCommitted), Transaction),
            ),
            (
                "SET transaction_isolation = DEFAULT",
                (IsoValue::Default, Transaction),
            ),
            (
                "RESET transaction_isolation",
                (IsoValue::Default, Transaction),
            ),
            (
                "SET LOCAL default_transaction_isolation = 'serializable'",
                (l(Isolation::Serializable), LocalDefault),
            ),
            (
                "SET default_transaction_isolation = 'serializable'",
                (l(Isolation::Serializable), SessionDefault),
            ),
            (
                "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
                (l(Isolation::Serializable), SessionDefault),
            ),
            (
                "SET transaction_isolation = 'snapshot'",
                (IsoValue::Unknown, Transaction),
            ),
        ] {
            assert_eq!(set(sql), Some(want), "{sql}");
        }
        assert_eq!(set("SET lock_timeout = '1s'"), None);
        assert!(f("SET lock_timeout = '1s'").opaque.is_none());
        let x = f("SELECT set_config('transaction_isolation', 'serializable', true)");
        assert_eq!(x.iso_calls[0].target, Some(Transaction));
        assert_eq!(x.iso_calls[0].value, l(Isolation::Serializable));
        let x = f("SELECT set_config('default_transaction_isolation', $1, false)");
        assert_eq!(
            (x.iso_calls[0].target, x.iso_calls[0].value),
            (Some(SessionDefault), IsoValue::Unknown)
        );
        let x = f("SELECT set_config($1, 'serializable', true)");
        assert_eq!(x.iso_calls[0].target, None);
        assert!(f("SELECT set_config('work_mem', '8MB', true)")
            .iso_calls
            .is_empty());
    }

    #[test]
    fn statements_racelab_does_not_follow_are_named() {
        assert!(f("CALL restock($1)").opaque.is_some());
        assert!(
            f("DO $$ BEGIN NULL; END $$").opaque.is_some()
                || f("DO $$ BEGIN NULL; END $$").unreadable.is_some()
        );
        assert!(f("ROLLBACK TO SAVEPOINT a").opaque.is_some());
        assert!(f("CREATE VIEW v AS SELECT * FROM products")
            .opaque
            .is_some());
        for harmless in [
            "SAVEPOINT a",
            "RELEASE SAVEPOINT a",
            "SHOW transaction_isolation",
            "NOTIFY x",
            "CREATE TABLE t (a int)",
            "ANALYZE products",
        ] {
            let x = f(harmless);
            assert!(
                x.opaque.is_none() && x.unreadable.is_none(),
                "{harmless}: {x:?}"
            );
        }
    }
}
