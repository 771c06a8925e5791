//! The writes: for each write that commits on a path, each value it writes
//! and each `\if` that guards it is checked — a lost update (P4), a check
//! on a stale read, a purchase split across two transactions, a relative
//! decrement that nothing bounds, a write-back that a check lets below
//! zero, a compensation (a decrement undone when what it left went below
//! zero) — against the protections `protect` finds and the bounds `bounds`
//! computes.

use crate::strategy::facts::Kind;
use crate::strategy::facts::{
    CheckEffect, Cmp, Facts, Output, Source, Value, WriteOp, COLUMN_SLOT, VALUE_SLOT,
};
use crate::strategy::{Expr, Instr, RedisEffect, QTY, ROWS};

use super::bounds::{below_zero, Answer, Cond, Point, VarFn};
use super::paths::{eval_with, Decision, Dep, Origin, Path};
use super::protect::{Analysis, Protection};

pub fn show(p: &Point) -> String {
    format!("stock {} and quantity {}", p.before, p.qty)
}

impl Analysis<'_> {
    pub fn path(&mut self, p: &Path) {
        self.redis(p);
        for e in 0..p.events.len() {
            let f = self.facts(p, e);
            if f.writes.is_empty() {
                continue;
            }
            let Some(ce) = self.commit_of(p, e) else {
                continue;
            };
            let wline = self.line(p, e);
            for wi in 0..f.writes.len() {
                self.write(p, e, ce, wi, wline);
            }
            // Is the transaction claimed by a write that refuses itself
            // (guard with zero rows handled, constraint)? Then the other
            // writes of the transaction stand or fall with it.
            let claimed = self.tx_events(p, e, ce).into_iter().any(|i| {
                let fi = self.facts(p, i);
                (0..fi.writes.len()).any(|wi| self.self_refusing(p, i, wi, fi))
            });
            // Decisions guarding this statement.
            let pc = p.events[e].pc;
            let guards: Vec<Decision> = self.guarding(p, pc, e).into_iter().cloned().collect();
            for d in guards {
                self.decision(p, e, ce, &d, claimed);
            }
        }
    }

    /// A decision guarding the writes of event `e` (committed at `ce`).
    fn decision(&mut self, p: &Path, e: usize, ce: usize, d: &Decision, claimed: bool) {
        let gated = d.deps.iter().any(|x| match x {
            Dep::Write { .. } => true,
            Dep::Redis { cmd } => self.redis_gates(p, *cmd),
            _ => false,
        });
        let mut stable_only = true;
        let mut any_read = false;
        for dep in &d.deps {
            let Dep::Read { event: re, read } = dep else {
                if let Dep::Unknown(l) = dep {
                    self.unsure(
                        vec![*l, d.line],
                        format!(
                            "the decision at line {} rests on line {l}, which racelab cannot follow",
                            d.line
                        ),
                    );
                }
                continue;
            };
            any_read = true;
            let table = self.facts(p, *re).reads[*read].table.clone();
            let written = self.table_written(&table);
            stable_only &= !written;
            let rl = self.line(p, *re);
            match self.protection(p, *re, *read, e, ce) {
                Protection::Yes(why) => {
                    if written {
                        self.safe(vec![rl, d.line], why);
                    }
                }
                Protection::ReleasedEarly(lines, text) => self.unsafe_(lines, text),
                Protection::No if claimed || gated || !written => {}
                Protection::No => {
                    if let Some(why) = self.claimed_earlier(p, *re, *read, d, e) {
                        self.safe(vec![rl, d.line, self.line(p, e)], why);
                    } else if let Some(text) = self.split_text(p, *re, e, d) {
                        self.unsafe_(vec![rl, d.line, self.line(p, e)], text);
                    } else {
                        self.unsafe_(
                            vec![rl, d.line],
                            format!(
                                "the check at line {} rests on {table} as line {rl} read it, and nothing stops another buyer from changing it before this buyer commits: both buyers pass the same check (oversell)",
                                d.line
                            ),
                        );
                    }
                }
            }
        }
        if any_read && stable_only && !claimed && !gated {
            let rl = d
                .deps
                .iter()
                .find_map(|x| match x {
                    Dep::Read { event, .. } => Some(self.line(p, *event)),
                    _ => None,
                })
                .unwrap_or(d.line);
            self.unsafe_(
                vec![rl, d.line],
                format!(
                    "the check at line {} rests only on tables no buyer ever changes: every buyer passes it (oversell)",
                    d.line
                ),
            );
        }
    }

    /// Whether the decision on Redis command `cmd`'s reply gates a sale:
    /// an atomic counter step, or a read EXEC confirmed.
    pub fn redis_gates(&self, p: &Path, cmd: usize) -> bool {
        match self.prog.redis[cmd].effect() {
            RedisEffect::Count(_) => true,
            RedisEffect::Read => self.watched_and_checked(p, cmd).is_some(),
            _ => false,
        }
    }

    /// A write that refuses itself: a relative decrement bounded by a WHERE
    /// guard (zero rows handled), a constraint or a trigger, or a WHERE
    /// guard on a value read with the zero-row case handled.
    pub fn self_refusing(&self, p: &Path, e: usize, wi: usize, f: &Facts) -> bool {
        let w = &f.writes[wi];
        let guarded = w.rows.filter.iter().any(|c| {
            w.assigns
                .iter()
                .any(|a| c.bounds_below(&w.table, &a.column))
                || (c.op == Cmp::Eq
                    && [&c.left, &c.right].iter().any(|o| {
                        o.cols
                            .iter()
                            .any(|col| self.assigned(&w.table, &col.column))
                    }))
        });
        let constrained = w.assigns.iter().any(|a| {
            matches!(a.value, Value::Relative { sign: -1, .. })
                && (self.constraint_bounds(&w.table, &a.column).is_some()
                    || w.checks.iter().any(|c| c.effect == CheckEffect::Rejects))
        });
        constrained || (guarded && self.zero_rows_handled(p, e, wi))
    }

    fn write(&mut self, p: &Path, e: usize, ce: usize, wi: usize, wline: usize) {
        let f = self.facts(p, e);
        let w = &f.writes[wi];
        for a in &w.assigns {
            let mut deps = Origin::new();
            match &a.value {
                Value::Variables { vars, .. } => {
                    for v in vars {
                        deps.extend(self.var_origin(p, e, *v));
                    }
                }
                Value::Rows { sources, vars } => {
                    for s in sources {
                        deps.insert(super::paths::source_dep(e, s, wline));
                    }
                    for v in vars {
                        deps.extend(self.var_origin(p, e, *v));
                    }
                }
                Value::Relative { sign, .. } => {
                    if *sign < 0 && w.op == WriteOp::Update {
                        self.decrement(p, e, ce, wi, &a.column, &a.text, wline);
                    }
                    continue;
                }
                Value::Row => {
                    if w.op == WriteOp::Update {
                        self.unsure(
                            vec![wline],
                            format!(
                                "line {wline} sets {} = {} from the row in a way racelab does not follow (is it bounded?)",
                                a.column, a.text
                            ),
                        );
                    }
                    continue;
                }
                Value::Constant(_) => continue,
            }
            if w.op == WriteOp::Insert {
                // A new row loses no other buyer's update.
                continue;
            }
            let mut current = false;
            for dep in &deps {
                match dep {
                    Dep::Read { event: re, read } => {
                        let rl = self.line(p, *re);
                        let table = self.facts(p, *re).reads[*read].table.clone();
                        match self.protection(p, *re, *read, e, ce) {
                            Protection::Yes(why) => {
                                if self.table_written(&table) {
                                    self.safe(vec![rl, wline], why);
                                    current = true;
                                } else {
                                    self.unsafe_(
                                        vec![rl, wline],
                                        format!(
                                            "line {wline} writes {}.{} = {} from {table} as line {rl} read it, but no buyer ever changes {table}: every buyer computes from the same value, and each overwrites the others (lost updates)",
                                            w.table, a.column, a.text
                                        ),
                                    );
                                }
                                continue;
                            }
                            Protection::ReleasedEarly(lines, text) => {
                                self.unsafe_(lines, text);
                                continue;
                            }
                            Protection::No => {}
                        }
                        // A WHERE guard comparing the written rows with
                        // what was read.
                        match self.cas_guard(p, e, wi, *re, *read) {
                            Some(Ok(col)) => {
                                current = true;
                                self.safe(
                                    vec![rl, wline],
                                    format!(
                                        "line {wline} writes only if {col} is still the value line {rl} read, and the zero-row case is handled: a stale write lands nowhere"
                                    ),
                                );
                            }
                            Some(Err(later)) => self.unsafe_(
                                vec![rl, wline, later],
                                format!(
                                    "line {wline} checks what line {rl} read in its WHERE, but when that matches no row the purchase goes on (line {later} writes anyway): handle `:rows = 0` with \\retry or \\sold_out"
                                ),
                            ),
                            None if p.events[*re].tx != p.events[e].tx && p.events[*re].in_tx => {
                                self.unsafe_(
                                    vec![rl, wline],
                                    format!(
                                        "split transaction: line {wline} writes {}.{} = {} from what line {rl} read in an earlier transaction, which ended before this one: another buyer's commit in between is overwritten (P4 lost update across transactions, which no isolation level prevents); read and write in one transaction, with the row locked (FOR UPDATE)",
                                        w.table, a.column, a.text
                                    ),
                                )
                            }
                            None => {
                                self.unsafe_(
                                    vec![rl, wline],
                                    format!(
                                        "P4 lost update: line {wline} writes {}.{} = {} from {table} as line {rl} read it, and nothing stops another buyer from committing in between: its update is overwritten",
                                        w.table, a.column, a.text
                                    ),
                                );
                            }
                        }
                    }
                    Dep::Unknown(l) => self.unsure(
                        vec![*l, wline],
                        format!(
                            "line {wline} writes a value from line {l}, which racelab cannot follow"
                        ),
                    ),
                    _ => {}
                }
            }
            if current {
                self.write_back_bound(p, e, wi, &a.column, &a.text, &a.value, wline);
            }
        }
    }

    /// Which read of `column` of the written table a variable slot holds
    /// exactly, at `event` (a `\gset` of the column, or a `VALUE_SLOT`).
    fn holds_column(
        &self,
        p: &Path,
        event: usize,
        vars: &[Origin],
        slot: usize,
        table: &str,
        column: &str,
    ) -> bool {
        if let Some(k) = slot.checked_sub(VALUE_SLOT) {
            let f = self.facts(p, event);
            return matches!(f.values.get(k), Some(Source::Read { read, column: Some(c) })
                if c == column && f.reads[*read].table == table);
        }
        let Some(origin) = vars.get(slot) else {
            return false;
        };
        let deps: Vec<&Dep> = origin.iter().collect();
        let [Dep::Read { event: re, read }] = deps.as_slice() else {
            return false;
        };
        let f = self.facts(p, *re);
        if f.reads[*read].table != table {
            return false;
        }
        let st = &self.prog.stmts[p.events[*re].stmt];
        let (Some(cols), Some(outputs)) =
            (st.gset.as_ref().and_then(|g| g.cols.as_ref()), &f.outputs)
        else {
            return false;
        };
        cols.iter()
            .zip(outputs)
            .any(|((_, s), o)| *s == slot && exact_column(o, *read, column))
    }

    /// Conditions on the path before write `wi` of event `e`: `\if`s that
    /// guard it, and the exits of the functions the statement calls.
    pub fn conds_before<'a>(
        &'a self,
        p: &'a Path,
        e: usize,
        wi: usize,
        table: &'a str,
        column: &'a str,
    ) -> Vec<Cond<'a>> {
        let mut out: Vec<Cond> = Vec::new();
        let pc = p.events[e].pc;
        for d in self.guarding(p, pc, e) {
            let vars = d.vars.clone();
            let var: VarFn = Box::new(move |slot, pt: &Point| {
                if slot == QTY {
                    Some(pt.qty)
                } else if self.holds_column(p, e, &vars, slot, table, column) {
                    Some(pt.before)
                } else {
                    None
                }
            });
            out.push(Cond {
                expr: &d.cond,
                holds: d.taken,
                var,
                line: d.line,
            });
        }
        let f = self.facts(p, e);
        let line = self.line(p, e);
        for g in f.guards.iter().filter(|g| g.from_write <= wi) {
            let Some(expr) = &g.cond.expr else {
                continue;
            };
            let ev = p.events[e].vars.clone();
            let var: VarFn = Box::new(move |slot, pt: &Point| {
                if slot == QTY {
                    Some(pt.qty)
                } else if self.holds_column(p, e, &ev, slot, table, column) {
                    Some(pt.before)
                } else {
                    None
                }
            });
            out.push(Cond {
                expr,
                holds: false,
                var,
                line,
            });
        }
        out
    }

    /// The trigger checks on write `wi` as conditions on the new value.
    fn check_conds<'a>(
        &self,
        f: &'a Facts,
        wi: usize,
        column: &'a str,
        line: usize,
    ) -> Vec<Cond<'a>> {
        f.writes[wi]
            .checks
            .iter()
            .map(|c| {
                let names = &c.refuses.1;
                let var: VarFn = Box::new(move |slot, pt: &Point| {
                    if slot == QTY {
                        return Some(pt.qty);
                    }
                    let n = names.get(slot.checked_sub(COLUMN_SLOT)?)?;
                    (n == column).then_some(pt.after)
                });
                Cond {
                    expr: &c.refuses.0,
                    holds: false,
                    var,
                    line,
                }
            })
            .collect()
    }

    /// An absolute write-back of a column read (`stock = :stock - :qty`):
    /// can the conditions before it let it below zero?
    #[allow(clippy::too_many_arguments)]
    fn write_back_bound(
        &mut self,
        p: &Path,
        e: usize,
        wi: usize,
        column: &str,
        text: &str,
        value: &Value,
        wline: usize,
    ) {
        let f = self.facts(p, e);
        let w = &f.writes[wi];
        let Value::Variables {
            vars,
            expr: Some(expr),
        } = value
        else {
            return;
        };
        let ev = &p.events[e].vars;
        let Some(&read_var) = vars
            .iter()
            .find(|v| self.holds_column(p, e, ev, **v, &w.table, column))
        else {
            return;
        };
        if self.constraint_bounds(&w.table, column).is_some() {
            return;
        }
        let after = |before: i64, qty: i64| -> Option<i64> {
            let known: Vec<(usize, i64)> = vars
                .iter()
                .map(|v| {
                    if *v == read_var {
                        (*v, before)
                    } else {
                        (*v, qty)
                    }
                })
                .filter(|(v, _)| *v == read_var || *v == QTY)
                .collect();
            eval_with(expr, &known)
        };
        // Only a write that can decrease it.
        let decreases = (1..=3).any(|q| after(5, q).is_some_and(|a| a < 5));
        if !decreases {
            return;
        }
        let wheres: Vec<(Expr, Vec<String>)> = w.rows.filter.iter().filter_map(combined).collect();
        let (answer, checks) = {
            let mut conds = self.conds_before(p, e, wi, &w.table, column);
            conds.extend(self.check_conds(f, wi, column, wline));
            // The WHERE of the write, on the row as it is (the value read).
            for (x, names) in &wheres {
                conds.push(column_cond(x, names, column, false, wline));
            }
            let checks: Vec<usize> = conds.iter().map(|c| c.line).collect();
            (below_zero(&conds, &after), checks)
        };
        match answer {
            Some(Answer::Never) | None => {}
            Some(Answer::Below(pt)) => {
                let mut lines = vec![wline];
                lines.extend(&checks);
                let why = if checks.is_empty() {
                    "nothing checks that the stock covers the quantity".to_string()
                } else {
                    format!(
                        "the check{} at line{} {} let it through",
                        if checks.len() > 1 { "s" } else { "" },
                        if checks.len() > 1 { "s" } else { "" },
                        checks.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", ")
                    )
                };
                self.unsafe_(
                    lines,
                    format!(
                        "line {wline} writes {column} = {text}, which goes below zero: with {} {why}, and it writes {} (oversold)",
                        show(&pt),
                        pt.after
                    ),
                );
            }
            Some(Answer::Unknown(l)) => self.unsure(
                vec![l, wline],
                format!(
                    "line {wline} writes {column} = {text}: racelab cannot tell whether the check at line {l} keeps it from going below zero"
                ),
            ),
        }
    }

    /// `Some(Ok(column))`: write `wi` of event `e` compares a column every
    /// successful buyer changes with the value `reads[read]` of event `re`
    /// read from it, on the same rows, with the zero-row case effective;
    /// `Some(Err(line))`: it does, but the purchase goes on at `line`.
    fn cas_guard(
        &self,
        p: &Path,
        e: usize,
        wi: usize,
        re: usize,
        read: usize,
    ) -> Option<Result<String, usize>> {
        let f = self.facts(p, e);
        let w = &f.writes[wi];
        let r = &self.facts(p, re).reads[read];
        if r.table != w.table || self.key_sig(p, e, &w.rows) != self.key_sig(p, re, &r.rows) {
            return None;
        }
        let from_read = |o: &crate::strategy::facts::Operand| {
            o.cols.is_empty()
                && o.vars.iter().any(|v| {
                    self.var_origin(p, e, *v)
                        .contains(&Dep::Read { event: re, read })
                })
        };
        let col = w.rows.filter.iter().find_map(|c| {
            if c.op != Cmp::Eq {
                return None;
            }
            let colside = if from_read(&c.right) {
                &c.left
            } else if from_read(&c.left) {
                &c.right
            } else {
                return None;
            };
            let name = colside
                .cols
                .first()
                .map(|c| c.column.clone())
                .unwrap_or_default();
            (colside.cols.len() == 1
                && colside.subquery.is_none()
                && self.assigned(&w.table, &name))
            .then_some(name)
        })?;
        Some(self.guard_effective(p, e, wi).map(|()| col))
    }

    /// Whether the zero-row case of write `w` at event `e` is handled: the
    /// next instructions, with `:rows = 0`, end the try or roll back.
    pub fn zero_rows_handled(&self, p: &Path, e: usize, w: usize) -> bool {
        let f = self.facts(p, e);
        let st = &self.prog.stmts[p.events[e].stmt];
        if f.rows_from == Some(w) && st.gset.is_some() {
            // `\gset` of no row is an error: the try ends there.
            return true;
        }
        // With the write matching nothing: `:rows` (when it counts this
        // write) and every `\gset` value taken from its rows are 0, and the
        // quantity is at least 1.
        let mut known: Vec<(usize, i64)> = vec![(QTY, 1)];
        if f.rows_from == Some(w) {
            known.push((ROWS, 0));
        }
        if let (Some(cols), Some(outputs)) =
            (st.gset.as_ref().and_then(|g| g.cols.as_ref()), &f.outputs)
        {
            for ((_, slot), o) in cols.iter().zip(outputs) {
                if o.sources.contains(&Source::Write(w)) {
                    known.push((*slot, 0));
                }
            }
        }
        let mut pc = p.events[e].pc + 1;
        for _ in 0..self.prog.instrs.len() + 1 {
            match self.prog.instrs.get(pc) {
                None => return false,
                Some(Instr::SoldOut { .. } | Instr::Retry { .. }) => return true,
                Some(Instr::Sql(i)) => {
                    return matches!(self.eff[*i].kind, Kind::Rollback { chain: false })
                }
                Some(Instr::Jump(t)) => pc = *t,
                Some(Instr::JumpUnless { cond, target, .. }) => match eval_with(cond, &known) {
                    Some(0) => pc = *target,
                    Some(_) => pc += 1,
                    None => return false,
                },
                Some(_) => pc += 1,
            }
        }
        false
    }

    /// Whether anything else is written when write `w` of event `e`
    /// matches no row: another write of the statement not fed by it, or a
    /// write reachable after it.
    fn goes_on(&self, p: &Path, e: usize, w: usize) -> Option<usize> {
        let f = self.facts(p, e);
        let line = self.line(p, e);
        let fed = |j: usize| f.rows_from == Some(w) && f.writes[j].cte.is_none();
        if (0..f.writes.len()).any(|j| j != w && !fed(j)) {
            return Some(line);
        }
        let pc = p.events[e].pc;
        self.reach
            .get(pc + 1)?
            .iter()
            .filter(|&&i| i > pc)
            .find_map(|&i| match &self.prog.instrs[i] {
                Instr::Sql(s) if !self.eff[*s].writes.is_empty() => Some(self.prog.stmts[*s].line),
                _ => None,
            })
    }

    /// Whether write `w` at event `e` has a guard that makes its zero-row
    /// case a refusal: handled, or nothing else goes on.
    pub fn guard_effective(&self, p: &Path, e: usize, w: usize) -> Result<(), usize> {
        if self.zero_rows_handled(p, e, w) {
            return Ok(());
        }
        match self.goes_on(p, e, w) {
            None => Ok(()),
            Some(l) => Err(l),
        }
    }
}

/// Whether output `o` is exactly the column `column` of `reads[read]`.
pub fn exact_column(o: &Output, read: usize, column: &str) -> bool {
    o.vars.is_empty()
        && o.sources
            == vec![Source::Read {
                read,
                column: Some(column.to_string()),
            }]
        && match &o.with_columns {
            Some((Expr::Var(s), names)) => {
                *s >= COLUMN_SLOT && names.get(s - COLUMN_SLOT).is_some_and(|n| n == column)
            }
            // A scalar subquery of the column.
            None => true,
            _ => false,
        }
}

/// A comparison as one expression over the columns of both sides
/// (`COLUMN_SLOT + i` for the `i`-th of the returned names).
pub fn combined(c: &crate::strategy::facts::Comparison) -> Option<(Expr, Vec<String>)> {
    use crate::strategy::BinOp;
    let (l, ln) = c.left.with_columns.as_ref()?;
    let (r, rn) = c.right.with_columns.as_ref()?;
    let mut names = ln.clone();
    let idx: Vec<usize> = rn
        .iter()
        .map(|n| match names.iter().position(|x| x == n) {
            Some(j) => j,
            None => {
                names.push(n.clone());
                names.len() - 1
            }
        })
        .collect();
    let r = crate::strategy::facts::map_expr(r, &|v| {
        let i = v.checked_sub(COLUMN_SLOT)?;
        Some(idx.get(i).map(|j| Expr::Var(COLUMN_SLOT + j)))
    })?;
    let op = match c.op {
        Cmp::Eq => BinOp::Eq,
        Cmp::Ne => BinOp::Ne,
        Cmp::Lt => BinOp::Lt,
        Cmp::Le => BinOp::Le,
        Cmp::Gt => BinOp::Gt,
        Cmp::Ge => BinOp::Ge,
    };
    Some((Expr::Bin(op, Box::new(l.clone()), Box::new(r)), names))
}

/// A condition on `column` (before or after the write) and `:qty` that
/// held when the write happened.
pub fn column_cond<'a>(
    x: &'a Expr,
    names: &'a [String],
    column: &'a str,
    after: bool,
    line: usize,
) -> Cond<'a> {
    let var: VarFn = Box::new(move |slot, pt: &Point| {
        if slot == QTY {
            return Some(pt.qty);
        }
        let n = names.get(slot.checked_sub(COLUMN_SLOT)?)?;
        (n == column).then_some(if after { pt.after } else { pt.before })
    });
    Cond {
        expr: x,
        holds: true,
        var,
        line,
    }
}
