//! Relative decrements (`SET stock = stock - :qty`): each one that commits
//! on a path is bounded — by its WHERE (a guard on the row's latest
//! version, or a locked scalar subquery of it), a CHECK constraint, a
//! trigger that refuses the row, a check on the stock that no other buyer
//! can change first, an atomic Redis counter, rows this buyer claimed, a
//! purchase claimed in an earlier transaction (bookkeeping) — or undone:
//! what RETURNING left is checked and the units given back (or the
//! transaction rolled back) when it went below zero. Otherwise stock goes
//! below zero, and the finding says which way.

use crate::strategy::facts::{CheckEffect, Source, Value, WriteOp};
use crate::strategy::{RedisEffect, QTY};

use super::bounds::{below_zero, bound_of, feasible, Answer, Bound, Cond, Point, VarFn};
use super::paths::{eval_with, Decision, Dep, Path};
use super::protect::{Analysis, Protection};

impl Analysis<'_> {
    /// A relative decrement of `column` by write `wi` of event `e`,
    /// committed at `ce`.
    #[allow(clippy::too_many_arguments)]
    pub fn decrement(
        &mut self,
        p: &Path,
        e: usize,
        ce: usize,
        wi: usize,
        column: &str,
        text: &str,
        wline: usize,
    ) {
        let f = self.facts(p, e);
        let w = &f.writes[wi];
        let by = w
            .assigns
            .iter()
            .find(|a| a.column == column)
            .and_then(|a| match &a.value {
                Value::Relative { sign: -1, by } => by.clone(),
                _ => None,
            });
        // A guard on a scalar subquery: its value must be current.
        for c in w
            .rows
            .filter
            .iter()
            .filter(|c| c.bounds_below(&w.table, column))
        {
            for o in [&c.left, &c.right] {
                let Some(sub) = &o.subquery else { continue };
                let r = &f.reads[sub.read];
                let locked = r
                    .lock
                    .is_some_and(|l| f.row_locks[l].strength.blocks_updates());
                let same_row = r.table == w.table
                    && sub.column == column
                    && self.key_sig(p, e, &r.rows) == self.key_sig(p, e, &w.rows);
                if !same_row {
                    continue;
                }
                if !locked && self.protected(p, e, sub.read, e, ce).is_none() {
                    self.unsafe_(
                        vec![wline],
                        format!(
                            "line {wline} decrements {column} only WHERE {}, but the subquery reads {column} on the statement's snapshot, without a lock: PostgreSQL does not evaluate it again when the UPDATE waits for the row and finds it changed, so every buyer that read it first passes (lock the subquery's row FOR UPDATE, or compare the row's own {column})",
                            c.text
                        ),
                    );
                    return;
                }
            }
        }
        let bounds: Vec<(String, Bound)> = w
            .rows
            .filter
            .iter()
            .filter(|c| c.bounds_below(&w.table, column))
            .map(|c| (c.text.clone(), bound_of(c, column, by.as_ref())))
            .collect();
        let strongest = bounds
            .iter()
            .find(|(_, b)| *b == Bound::Always)
            .or_else(|| bounds.iter().find(|(_, b)| matches!(b, Bound::UpTo(_))))
            .or_else(|| bounds.iter().find(|(_, b)| *b == Bound::Unknown))
            .or_else(|| bounds.first())
            .cloned();
        let constraint = self.constraint_bounds(&w.table, column);
        match &strongest {
            Some((g, Bound::UpTo(n))) => {
                self.unsure(
                    vec![wline],
                    format!(
                        "line {wline} decrements {column} only WHERE {g}: that stops at zero only while the quantity is at most {n}; above it stock goes below zero (guard with `{column} >= :qty`)"
                    ),
                );
                return;
            }
            Some((g, Bound::Unknown)) if constraint.is_none() => {
                self.unsure(
                    vec![wline],
                    format!(
                        "line {wline} decrements {column} only WHERE {g}, and racelab cannot tell whether that keeps it from going below zero (guard with `{column} >= :qty`)"
                    ),
                );
                return;
            }
            Some((g, Bound::Never)) if constraint.is_none() => {
                self.unsafe_(
                    vec![wline],
                    format!(
                        "line {wline} decrements {column} only WHERE {g}, which lets the last units go below zero: stock is oversold (guard with `{column} >= :qty`)"
                    ),
                );
                return;
            }
            _ => {}
        }
        if let Some((g, _)) = strongest.filter(|(_, b)| *b == Bound::Always) {
            match self.guard_effective(p, e, wi) {
                Ok(()) => self.safe(
                    vec![wline],
                    format!(
                        "line {wline} decrements {column} relative to the row and only WHERE {g}: re-checked on the latest row version, no row means no sale"
                    ),
                ),
                Err(later) => self.unsafe_(
                    vec![wline, later],
                    format!(
                        "line {wline} decrements only WHERE {g}, but when that matches no row the purchase goes on (line {later} writes anyway): handle `:rows = 0` with \\sold_out"
                    ),
                ),
            }
            return;
        }
        if let Some(l) = constraint {
            self.safe(
                vec![l, wline],
                format!(
                    "line {wline} decrements {column} relative to the row, and the CHECK constraint of line {l} refuses a value below zero (23514: the attempt is rejected)"
                ),
            );
            return;
        }
        // A trigger that refuses (or skips) the row below zero.
        if let Some(by_e) = by.clone() {
            let after = |b: i64, q: i64| Some(b - eval_with(&by_e, &[(QTY, q)])?);
            for c in &w.checks {
                let cond = [Cond {
                    expr: &c.refuses.0,
                    holds: false,
                    var: checks_var(&c.refuses.1, column),
                    line: c.line,
                }];
                let answer = below_zero(&cond, &after);
                if let Some(Answer::Below(pt)) = answer {
                    self.unsafe_(
                        vec![c.line, wline],
                        format!(
                            "line {wline} decrements {column}, and {} refuses only some values below zero: {column} = {} (with {}) passes it (oversold)",
                            c.by,
                            pt.after,
                            super::writes::show(&pt)
                        ),
                    );
                    return;
                }
                if answer == Some(Answer::Never) {
                    match c.effect {
                        CheckEffect::Rejects => self.safe(
                            vec![c.line, wline],
                            format!("line {wline} decrements {column}, and {} refuses a value below zero with a class 23 error (the attempt is rejected)", c.by),
                        ),
                        CheckEffect::Fails => self.safe(
                            vec![c.line, wline],
                            format!("line {wline} decrements {column}, and {} refuses a value below zero with an error (no oversell, but the attempt ends in error rather than sold out)", c.by),
                        ),
                        CheckEffect::Skips => match self.guard_effective(p, e, wi) {
                            Ok(()) => self.safe(
                                vec![c.line, wline],
                                format!("line {wline} decrements {column}, and {} skips the row (RETURN NULL) when it would go below zero; no row means no sale", c.by),
                            ),
                            Err(later) => self.unsafe_(
                                vec![c.line, wline, later],
                                format!("line {wline} decrements {column}, and {} skips the row when it would go below zero, but then the purchase goes on (line {later} writes anyway): handle `:rows = 0`", c.by),
                            ),
                        },
                    }
                    return;
                }
            }
        }
        if self.checked_before(p, e, ce, wi, column, by.as_ref(), wline) {
            return;
        }
        if self.compensated(p, e, wi, column, by.as_ref(), wline) {
            return;
        }
        self.unbounded(p, e, ce, column, text, wline);
    }

    /// A check before the decrement: on the stock itself (evaluated), on
    /// protected values against the quantity (bookkeeping), on an atomic
    /// counter or claimed rows. Returns whether it settled the write.
    #[allow(clippy::too_many_arguments)]
    fn checked_before(
        &mut self,
        p: &Path,
        e: usize,
        ce: usize,
        wi: usize,
        column: &str,
        by: Option<&crate::strategy::Expr>,
        wline: usize,
    ) -> bool {
        let f = self.facts(p, e);
        let table = f.writes[wi].table.clone();
        let pc = p.events[e].pc;
        let guards: Vec<Decision> = self.guarding(p, pc, e).into_iter().cloned().collect();
        // Checks on the stock itself, read and protected: evaluated.
        let on_stock = guards.iter().any(|d| {
            d.deps.iter().any(|dep| {
                self.read_of(p, dep).is_some_and(|(_, _, r)| {
                    r.table == table && r.columns.iter().any(|c| c == column)
                })
            })
        });
        if on_stock {
            let protected: Vec<(usize, String)> = guards
                .iter()
                .flat_map(|d| d.deps.iter())
                .filter_map(|dep| {
                    let (re, read, r) = self.read_of(p, dep)?;
                    (r.table == table && r.columns.iter().any(|c| c == column))
                        .then_some((re, read))
                })
                .filter_map(|(re, read)| {
                    Some((self.line(p, re), self.protected(p, re, read, e, ce)?))
                })
                .collect();
            if let (Some((rl, why)), Some(by)) = (protected.first().cloned(), by) {
                let after = |b: i64, q: i64| Some(b - eval_with(by, &[(QTY, q)])?);
                let (answer, lines) = {
                    let conds = self.conds_on_stock(p, e, wi, &table, column);
                    let lines: Vec<usize> = conds.iter().map(|c| c.line).collect();
                    (below_zero(&conds, &after), lines)
                };
                match answer {
                    Some(Answer::Never) => {
                        let mut all = vec![rl, wline];
                        all.extend(&lines);
                        self.safe(
                            all,
                            format!(
                                "line {wline} decrements {column} only after the check at line{} {} on the stock read at line {rl}, which no other buyer can change first ({why})",
                                if lines.len() > 1 { "s" } else { "" },
                                lines.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", ")
                            ),
                        );
                        return true;
                    }
                    Some(Answer::Below(pt)) => {
                        let mut all = vec![wline];
                        all.extend(&lines);
                        self.unsafe_(
                            all,
                            format!(
                                "line {wline} decrements {column}, but the check at line{} {} lets stock {} take quantity {}: it goes below zero (check `{column} < :qty`)",
                                if lines.len() > 1 { "s" } else { "" },
                                lines.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", "),
                                pt.before,
                                pt.qty
                            ),
                        );
                        return true;
                    }
                    Some(Answer::Unknown(l)) => {
                        self.unsure(
                            vec![l, wline],
                            format!("line {wline} decrements {column}: racelab cannot tell whether the check at line {l} keeps it from going below zero"),
                        );
                        return true;
                    }
                    None => {}
                }
            }
        }
        // A check against the quantity on values no other buyer can change
        // before this one commits (protected reads, claimed rows, a
        // purchase claimed in an earlier transaction): bookkeeping.
        for d in guards.iter().filter(|d| d.uses_qty) {
            let mut why: Vec<String> = Vec::new();
            let all = d.deps.iter().all(|dep| match dep {
                Dep::Builtin(_) | Dep::Write { .. } => true,
                Dep::Read { event: re, read } => {
                    if let Some(w) = self.protected(p, *re, *read, e, ce) {
                        why.push(w);
                        true
                    } else if let Some(w) = self.claimed_earlier(p, *re, *read, d, e) {
                        why.push(w);
                        true
                    } else {
                        false
                    }
                }
                Dep::Redis { cmd } => self.redis_gates(p, *cmd),
                _ => false,
            });
            if all && !why.is_empty() {
                self.safe(
                    vec![d.line, wline],
                    format!(
                        "line {wline} decrements {column} only after the check at line {} on values no other buyer can change first ({})",
                        d.line,
                        why.join("; ")
                    ),
                );
                return true;
            }
        }
        let mut redis_read: Option<(usize, usize)> = None;
        let mut redis_opaque: Option<(usize, usize)> = None;
        for d in &guards {
            for dep in &d.deps {
                match dep {
                    Dep::Redis { cmd } => {
                        let c = &self.prog.redis[*cmd];
                        match c.effect() {
                            RedisEffect::Count(_) => {
                                self.safe(
                                    vec![c.line, d.line, wline],
                                    format!(
                                        "line {wline} decrements {column} only after the check at line {} on the reply of an atomic Redis {} (line {}): each buyer's reply counts a different unit, so no more buyers pass than the counter allows (racelab seeds stock counters from the database's stock, and the audit's cache_drift holds the two against each other)",
                                        d.line, c.name, c.line
                                    ),
                                );
                                return true;
                            }
                            RedisEffect::Read => match self.watched_and_checked(p, *cmd) {
                                Some(exec) => {
                                    let x = self.prog.redis[exec].line;
                                    self.safe(
                                        vec![c.line, d.line, x, wline],
                                        format!(
                                            "line {wline} decrements {column} only after the check at line {} on a WATCHed Redis read (line {}), confirmed by EXEC at line {x}: EXEC replies nil when another buyer changed the key in between, and this path goes on only when it did not",
                                            d.line, c.line
                                        ),
                                    );
                                    return true;
                                }
                                None => redis_read = Some((c.line, d.line)),
                            },
                            _ => redis_opaque = Some((*cmd, d.line)),
                        }
                    }
                    Dep::Write { .. } if d.uses_qty => {
                        self.safe(
                            vec![d.line, wline],
                            format!(
                                "line {wline} decrements {column} only after the check at line {} on rows this buyer claimed (no other buyer can claim them too)",
                                d.line
                            ),
                        );
                        return true;
                    }
                    _ => {}
                }
            }
        }
        if let Some((rl, dl)) = redis_read {
            self.unsafe_(
                vec![rl, dl, wline],
                format!(
                    "line {rl} reads the stock from Redis (GET), line {dl} checks it, line {wline} decrements {column}: the read is not atomic with anything after it, so every buyer that checks before the others write passes (oversold)"
                ),
            );
            return true;
        }
        if let Some((c, dl)) = redis_opaque {
            let c = &self.prog.redis[c];
            self.unsure(
                vec![c.line, dl, wline],
                format!(
                    "line {wline} decrements {column} only after the check at line {dl} on the reply of Redis {} (line {}), which racelab does not read: whether it gates the stock is for the race, and its cache_drift audit, to show",
                    c.name, c.line
                ),
            );
            return true;
        }
        false
    }

    /// The conditions before write `wi` of event `e` that test the stock.
    fn conds_on_stock<'a>(
        &'a self,
        p: &'a Path,
        e: usize,
        wi: usize,
        table: &'a str,
        column: &'a str,
    ) -> Vec<Cond<'a>> {
        self.conds_before(p, e, wi, table, column)
    }

    /// Whether the read `reads[read]` of event `re` behind decision `d` was
    /// claimed in its own (earlier) transaction: that transaction wrote the
    /// table it read, after `d`, with the read protected there, and
    /// committed before event `e`. Then a later write is bookkeeping.
    pub fn claimed_earlier(
        &self,
        p: &Path,
        re: usize,
        read: usize,
        d: &Decision,
        e: usize,
    ) -> Option<String> {
        let rtx = p.events[re].tx;
        if rtx == p.events[e].tx || !p.events[re].in_tx {
            return None;
        }
        let table = &self.facts(p, re).reads[read].table;
        for i in d.before_event..e {
            if p.events[i].tx != rtx {
                continue;
            }
            let f = self.facts(p, i);
            if !f.writes.iter().any(|w| &w.table == table) {
                continue;
            }
            let ce = self.commit_of(p, i)?;
            if ce >= e {
                return None;
            }
            if let Some(why) = self.protected(p, re, read, i, ce) {
                return Some(format!(
                    "the purchase was decided and claimed in the transaction committed at line {}: line {} writes {table} under the check ({why}); what follows keeps the books",
                    self.line(p, ce),
                    self.line(p, i)
                ));
            }
        }
        None
    }

    /// A decrement checked afterwards on what RETURNING left, and undone
    /// on the paths where it went below zero. Returns whether it settled
    /// the write.
    fn compensated(
        &mut self,
        p: &Path,
        e: usize,
        wi: usize,
        column: &str,
        by: Option<&crate::strategy::Expr>,
        wline: usize,
    ) -> bool {
        let Some(by) = by else { return false };
        let after_decisions: Vec<&Decision> = p
            .decisions
            .iter()
            .filter(|d| d.before_event > e)
            .filter(|d| {
                d.deps.contains(&Dep::Write {
                    event: e,
                    write: wi,
                })
            })
            .filter(|d| {
                d.deps.iter().all(|x| {
                    matches!(x, Dep::Builtin(_))
                        || *x
                            == Dep::Write {
                                event: e,
                                write: wi,
                            }
                })
            })
            .collect();
        if after_decisions.is_empty() {
            return false;
        }
        let st = &self.prog.stmts[p.events[e].stmt];
        let f = self.facts(p, e);
        // The variables holding what RETURNING gave back, as expressions of
        // the column after the write and the quantity.
        let mut returned: Vec<(usize, crate::strategy::Expr, Vec<String>)> = Vec::new();
        if let (Some(cols), Some(outputs)) =
            (st.gset.as_ref().and_then(|g| g.cols.as_ref()), &f.outputs)
        {
            for ((_, slot), o) in cols.iter().zip(outputs) {
                if let (true, Some((x, names))) =
                    (o.sources.contains(&Source::Write(wi)), &o.with_columns)
                {
                    returned.push((*slot, x.clone(), names.clone()));
                }
            }
        }
        if returned.is_empty() {
            return false;
        }
        let conds: Vec<Cond> = after_decisions
            .iter()
            .map(|d| {
                let ret = returned.clone();
                let col = column.to_string();
                let var: VarFn = Box::new(move |slot, pt: &Point| {
                    if slot == QTY {
                        return Some(pt.qty);
                    }
                    let (_, x, names) = ret.iter().find(|(s, _, _)| *s == slot)?;
                    eval_with(
                        &crate::strategy::facts::map_expr(x, &|v| {
                            let i = v.checked_sub(crate::strategy::facts::COLUMN_SLOT)?;
                            Some(
                                (names.get(i) == Some(&col))
                                    .then_some(crate::strategy::Expr::Int(pt.after)),
                            )
                        })?,
                        &[(QTY, pt.qty)],
                    )
                });
                Cond {
                    expr: &d.cond,
                    holds: d.taken,
                    var,
                    line: d.line,
                }
            })
            .collect();
        let after = |b: i64, q: i64| Some(b - eval_with(by, &[(QTY, q)])?);
        if !feasible(&conds, &after) {
            // No quantity and stock takes this path.
            return true;
        }
        let dl = after_decisions[0].line;
        match below_zero(&conds, &after) {
            Some(Answer::Never) => {
                self.safe(
                    vec![wline, dl],
                    format!(
                        "line {wline} decrements {column} with no guard, and line {dl} checks what it left (RETURNING): the purchase goes on only when it did not go below zero"
                    ),
                );
                true
            }
            Some(Answer::Below(pt)) => {
                // This path lets a negative result through: it must give
                // the units back and sell nothing.
                let w = &f.writes[wi];
                let key = self.key_sig(p, e, &w.rows);
                let mut undo: Option<usize> = None;
                let mut other: Option<usize> = None;
                for i in e + 1..p.events.len() {
                    let fi = self.facts(p, i);
                    if fi.writes.is_empty() || self.commit_of(p, i).is_none() {
                        continue;
                    }
                    for x in &fi.writes {
                        let gives_back = x.table == w.table
                            && x.op == WriteOp::Update
                            && self.key_sig(p, i, &x.rows) == key
                            && x.assigns.iter().any(|a| {
                                a.column == column
                                    && matches!(&a.value, Value::Relative { sign: 1, by: Some(b) } if crate::strategy::facts::fold(b) == crate::strategy::facts::fold(by))
                            });
                        if gives_back {
                            undo.get_or_insert(self.line(p, i));
                        } else {
                            other.get_or_insert(self.line(p, i));
                        }
                    }
                }
                match (undo, other) {
                    (Some(u), None) => {
                        self.safe(
                            vec![wline, dl, u],
                            format!(
                                "line {wline} takes the units with a bare decrement, line {dl} checks what it left (RETURNING), and line {u} gives them back when it went below zero: a compensation, as with Redis's DECRBY"
                            ),
                        );
                    }
                    (_, Some(o)) => self.unsafe_(
                        vec![wline, dl, o],
                        format!(
                            "line {wline} takes the units with a bare decrement and line {dl} checks what it left, but with {} it lets {column} = {} through and the purchase goes on (line {o} writes): oversold",
                            super::writes::show(&pt),
                            pt.after
                        ),
                    ),
                    (None, None) => self.unsafe_(
                        vec![wline, dl],
                        format!(
                            "line {wline} takes the units with a bare decrement and line {dl} sees when it went below zero ({column} = {} with {}), but nothing gives the units back: the stock drifts (give them back with `SET {column} = {column} + :qty`, or decrement inside a transaction and roll it back)",
                            pt.after,
                            super::writes::show(&pt)
                        ),
                    ),
                }
                true
            }
            Some(Answer::Unknown(l)) => {
                self.unsure(
                    vec![wline, l],
                    format!("line {wline} decrements {column} with no guard: racelab cannot tell whether the check at line {l} catches it going below zero"),
                );
                true
            }
            None => false,
        }
    }

    /// Nothing bounds the decrement: a stale check, or none at all.
    fn unbounded(&mut self, p: &Path, e: usize, ce: usize, column: &str, text: &str, wline: usize) {
        let f = self.facts(p, e);
        let table = f
            .writes
            .iter()
            .find(|w| w.assigns.iter().any(|a| a.column == column))
            .map(|w| w.table.clone())
            .unwrap_or_default();
        let pc = p.events[e].pc;
        let guards: Vec<Decision> = self.guarding(p, pc, e).into_iter().cloned().collect();
        for d in &guards {
            for dep in &d.deps {
                let Dep::Read { event: re, read } = dep else {
                    continue;
                };
                let r = &self.facts(p, *re).reads[*read];
                if r.table != table || !r.columns.iter().any(|c| c == column) {
                    continue;
                }
                let rl = self.line(p, *re);
                match self.protection(p, *re, *read, e, ce) {
                    Protection::ReleasedEarly(lines, text) => {
                        self.unsafe_(lines, text);
                        return;
                    }
                    Protection::Yes(_) => continue,
                    Protection::No => {}
                }
                let text = match self.split_text(p, *re, e, d) {
                    Some(t) => t,
                    None => format!(
                        "line {rl} reads {column} without a lock, line {} checks it, line {wline} decrements it ({column} = {text}): every buyer that checks before the others commit passes, so stock is oversold (no drift: no update is lost)",
                        d.line
                    ),
                };
                self.unsafe_(vec![rl, d.line, wline], text);
                return;
            }
        }
        self.unsafe_(
            vec![wline],
            format!(
                "line {wline} decrements {table}.{column} ({column} = {text}) with no WHERE guard, no constraint and no protected check: stock goes below zero"
            ),
        );
    }

    /// The finding of a split transaction, when the read `re` behind
    /// decision `d` ran in a transaction that ended before the write `e`.
    pub fn split_text(&self, p: &Path, re: usize, e: usize, d: &Decision) -> Option<String> {
        let (rtx, wtx) = (p.events[re].tx, p.events[e].tx);
        if rtx == wtx {
            return None;
        }
        let end = (re..e).rev().find(|&i| p.events[i].tx == rtx)?;
        Some(format!(
            "split transaction: the check at line {} rests on what line {} read in {}, and line {} writes in another transaction: another buyer's purchase can commit in between, and no isolation level prevents it (each transaction is consistent on its own; the purchase is not). Put the check and the write in one transaction, or guard the write itself (`WHERE stock >= :qty`, `:rows = 0` handled)",
            d.line,
            self.line(p, re),
            if p.events[re].in_tx {
                format!("a transaction that ends at line {}", self.line(p, end))
            } else {
                "a statement of its own".to_string()
            },
            self.line(p, e),
        ))
    }
}

/// A trigger check's variables: the column after the write, `:qty`.
fn checks_var<'a>(names: &'a [String], column: &'a str) -> VarFn<'a> {
    Box::new(move |slot, pt: &Point| {
        if slot == QTY {
            return Some(pt.qty);
        }
        let n = names.get(slot.checked_sub(crate::strategy::facts::COLUMN_SLOT)?)?;
        (n == column).then_some(pt.after)
    })
}
