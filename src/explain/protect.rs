//! The protection analysis: whether a value a buyer read is still the
//! value when its write commits — because of a row lock the read takes or
//! an earlier one (FOR UPDATE, a write of the row), a table lock (every
//! mode by PostgreSQL's conflict table), the isolation level (REPEATABLE
//! READ and SERIALIZABLE, with what each does and does not catch), an
//! advisory lock or a Redis lock every buyer of the product takes first and
//! holds until the COMMIT. `Analysis` also holds what the other analyses
//! share: the findings, the facts of each event, the keys rows are named
//! by, where a write commits.

use std::collections::BTreeSet;

use crate::strategy::facts::{
    AdvisoryAction, AdvisoryScope, Cmp, Constraint, Facts, Isolation, Kind, Operand, Rows, WriteOp,
    VALUE_SLOT,
};
use crate::strategy::{Instr, Program, PRODUCT};

use super::finding::{Finding, Level};
use super::paths::{eval_with, source_dep, Decision, Dep, Origin, Path};

/// A key column and what it is compared with, for "same rows".
pub type KeySig = Vec<(String, String)>;

/// A row every buyer names alike: its table and key.
pub type SharedRow = (String, KeySig);

pub struct Analysis<'p> {
    pub prog: &'p Program,
    /// Per statement: its effective facts.
    pub eff: &'p [Facts],
    pub findings: BTreeSet<Finding>,
    pub protections: BTreeSet<Finding>,
    pub reach: Vec<BTreeSet<usize>>,
    /// Rows that every transaction that commits a write, on every path,
    /// updates or deletes.
    pub common_rows: BTreeSet<SharedRow>,
}

/// Why a read is protected, or how a protection failed.
pub enum Protection {
    Yes(String),
    /// A lock that would protect it is released before the COMMIT: the
    /// finding, named as such.
    ReleasedEarly(Vec<usize>, String),
    No,
}

impl<'p> Analysis<'p> {
    pub fn new(prog: &'p Program, eff: &'p [Facts], paths: &[Path]) -> Analysis<'p> {
        let mut a = Analysis {
            prog,
            eff,
            findings: BTreeSet::new(),
            protections: BTreeSet::new(),
            reach: super::paths::reach(prog),
            common_rows: BTreeSet::new(),
        };
        a.common_rows = a.common(paths);
        a
    }

    pub fn unsure(&mut self, lines: Vec<usize>, text: String) {
        self.findings.insert(Finding {
            level: Level::Unsure,
            lines,
            text,
        });
    }

    pub fn unsafe_(&mut self, lines: Vec<usize>, text: String) {
        self.findings.insert(Finding {
            level: Level::Unsafe,
            lines,
            text,
        });
    }

    pub fn safe(&mut self, lines: Vec<usize>, text: String) {
        self.protections.insert(Finding {
            level: Level::Safe,
            lines,
            text,
        });
    }

    pub fn facts(&self, p: &Path, event: usize) -> &'p Facts {
        &self.eff[p.events[event].stmt]
    }

    pub fn line(&self, p: &Path, event: usize) -> usize {
        self.prog.stmts[p.events[event].stmt].line
    }

    /// The origin of variable slot `v` at `event` (a `VALUE_SLOT` is the
    /// value the statement itself read).
    pub fn var_origin(&self, p: &Path, event: usize, v: usize) -> Origin {
        if let Some(k) = v.checked_sub(VALUE_SLOT) {
            let f = self.facts(p, event);
            if let Some(s) = f.values.get(k) {
                return [source_dep(event, s, self.line(p, event))]
                    .into_iter()
                    .collect();
            }
        }
        p.events[event].vars.get(v).cloned().unwrap_or_default()
    }

    /// The roots of an operand's variables at `event`: built-ins, or
    /// something read.
    pub fn roots(&self, p: &Path, event: usize, o: &Operand) -> Origin {
        let mut d = Origin::new();
        for v in &o.vars {
            d.extend(self.var_origin(p, event, *v));
        }
        for s in &o.sources {
            d.insert(source_dep(event, s, self.line(p, event)));
        }
        d
    }

    /// Whether every buyer of the product computes the same value: built
    /// from `:product` and constants only.
    pub fn shared(&self, p: &Path, event: usize, o: &Operand) -> bool {
        o.cols.is_empty()
            && !o.opaque
            && self
                .roots(p, event, o)
                .iter()
                .all(|d| *d == Dep::Builtin(PRODUCT))
    }

    pub fn key_sig(&self, p: &Path, event: usize, rows: &Rows) -> KeySig {
        // The rows are named by what every buyer knows before reading: a
        // key compared with a value read from the row (`version =
        // :version`) is a guard, not part of the name.
        let mut k: KeySig = rows
            .key
            .iter()
            .filter(|(_, o)| {
                o.sources.is_empty()
                    && self
                        .roots(p, event, o)
                        .iter()
                        .all(|d| matches!(d, Dep::Builtin(_)))
            })
            .map(|(c, o)| {
                let roots = self.roots(p, event, o);
                let v = match &o.expr {
                    Some(e) if o.vars.is_empty() => format!("{e:?}"),
                    Some(e) => format!("{roots:?}{e:?}"),
                    None => format!("{roots:?}{}", o.text),
                };
                (c.clone(), v)
            })
            .collect();
        k.sort();
        k.dedup();
        k
    }

    /// Whether the rows picked by `lock` (at event `le`) include the rows
    /// picked by `read` (at event `re`), the same for every buyer.
    pub fn covers(&self, p: &Path, le: usize, lock: &Rows, re: usize, read: &Rows) -> bool {
        if lock.key.is_empty() {
            // Every row of the table, unless the WHERE filters otherwise.
            return !lock.opaque && lock.filter.is_empty();
        }
        let shared = lock.key.iter().all(|(_, o)| self.shared(p, le, o));
        shared && self.key_sig(p, le, lock) == self.key_sig(p, re, read)
    }

    /// Event index of the COMMIT that makes event `e`'s writes durable, or
    /// `None` when they never commit on this path.
    pub fn commit_of(&self, p: &Path, e: usize) -> Option<usize> {
        let ev = &p.events[e];
        if !ev.in_tx {
            let f = self.facts(p, e);
            // An autocommit BEGIN opens a transaction: its writes are none.
            return (!matches!(f.kind, Kind::Begin(_))).then_some(e);
        }
        for (i, later) in p.events.iter().enumerate().skip(e + 1) {
            if later.tx != ev.tx {
                return None;
            }
            match self.facts(p, i).kind {
                Kind::Commit { .. } => return Some(i),
                Kind::Rollback { .. } => return None,
                _ => {}
            }
        }
        None
    }

    /// The events of the transaction of event `e` up to its commit `ce`.
    pub fn tx_events(&self, p: &Path, e: usize, ce: usize) -> Vec<usize> {
        let tx = p.events[e].tx;
        (0..=ce)
            .filter(|&i| p.events[i].tx == tx && (p.events[e].in_tx || i == e))
            .collect()
    }

    /// Rows every committing transaction that writes updates (the RR rule).
    fn common(&self, paths: &[Path]) -> BTreeSet<SharedRow> {
        let mut common: Option<BTreeSet<SharedRow>> = None;
        for p in paths {
            let mut seen: BTreeSet<usize> = BTreeSet::new();
            for e in 0..p.events.len() {
                if self.facts(p, e).writes.is_empty() || !seen.insert(p.events[e].tx) {
                    continue;
                }
                let Some(ce) = self.commit_of(p, e) else {
                    continue;
                };
                let mut rows = BTreeSet::new();
                for i in self.tx_events(p, e, ce) {
                    for w in &self.facts(p, i).writes {
                        if w.op != WriteOp::Insert
                            && !w.rows.key.is_empty()
                            && w.rows.key.iter().all(|(_, o)| self.shared(p, i, o))
                        {
                            rows.insert((w.table.clone(), self.key_sig(p, i, &w.rows)));
                        }
                    }
                }
                common = Some(match common {
                    None => rows,
                    Some(c) => c.intersection(&rows).cloned().collect(),
                });
            }
        }
        common.unwrap_or_default()
    }

    /// How the read `reads[read]` of event `re` is protected for a write at
    /// event `we` that commits at event `ce`.
    pub fn protection(&self, p: &Path, re: usize, read: usize, we: usize, ce: usize) -> Protection {
        let rf = self.facts(p, re);
        let r = &rf.reads[read];
        let rev = &p.events[re];
        let same_tx = |e: usize| p.events[e].in_tx && p.events[e].tx == rev.tx;
        let lines = |e: usize| self.line(p, e);
        let write_in_tx = re == we || (rev.in_tx && p.events[we].tx == rev.tx);
        // A row lock the read itself takes.
        if let Some(l) = r.lock {
            let lock = &rf.row_locks[l];
            if write_in_tx && lock.strength.blocks_updates() {
                let shared = r.rows.key.iter().all(|(_, o)| self.shared(p, re, o));
                if shared {
                    return Protection::Yes(format!(
                        "line {} reads it {} in the transaction that writes it",
                        lines(re),
                        lock.strength.as_str()
                    ));
                }
            }
        }
        if rev.in_tx && p.events[we].tx == rev.tx {
            // A lock taken earlier in the same transaction.
            for e in (0..re).rev() {
                if !same_tx(e) {
                    break;
                }
                let f = self.facts(p, e);
                for lr in f.reads.iter() {
                    let Some(l) = lr.lock else { continue };
                    if lr.table == r.table
                        && f.row_locks[l].strength.blocks_updates()
                        && self.covers(p, e, &lr.rows, re, &r.rows)
                    {
                        return Protection::Yes(format!(
                            "line {} locks the row ({}) before line {} reads it",
                            lines(e),
                            f.row_locks[l].strength.as_str(),
                            lines(re)
                        ));
                    }
                }
                for w in &f.writes {
                    if w.table == r.table
                        && w.op != WriteOp::Insert
                        && self.covers(p, e, &w.rows, re, &r.rows)
                    {
                        return Protection::Yes(format!(
                            "line {} writes (and so locks) the row before line {} reads it",
                            lines(e),
                            lines(re)
                        ));
                    }
                }
                for t in &f.table_locks {
                    if t.mode.self_conflicting() {
                        return Protection::Yes(format!(
                            "line {} locks the table{} {} IN {} MODE before line {} reads, a mode that conflicts with itself: every buyer waits for the holder's COMMIT",
                            lines(e),
                            if t.tables.len() > 1 { "s" } else { "" },
                            t.tables.join(", "),
                            t.mode.as_str(),
                            lines(re)
                        ));
                    }
                    // A mode that lets holders share but conflicts with
                    // the writes they then make: the second writer
                    // deadlocks, is aborted and retried.
                    let writes_it = (re..=ce).filter(|i| same_tx(*i)).any(|i| {
                        self.facts(p, i)
                            .writes
                            .iter()
                            .any(|w| t.tables.contains(&w.table))
                    });
                    if t.mode.blocks_writes() && writes_it {
                        return Protection::Yes(format!(
                            "line {} locks the table {} IN {} MODE before line {} reads: holders share it, but their writes conflict with it, so two that both write deadlock and PostgreSQL aborts one (40P01, retried)",
                            lines(e),
                            t.tables.join(", "),
                            t.mode.as_str(),
                            lines(re)
                        ));
                    }
                }
            }
            // The isolation level.
            let set_at = match rev.iso_line {
                Some(l) => format!(" (the level line {l} set)"),
                None => String::new(),
            };
            match rev.iso {
                Isolation::Serializable => {
                    return Protection::Yes(format!(
                        "line {} reads at SERIALIZABLE{set_at}: PostgreSQL aborts (40001) a transaction whose result could differ from a serial order, and racelab retries it",
                        lines(re)
                    ))
                }
                Isolation::RepeatableRead => {
                    // A read-modify-write of the same row aborts the later
                    // writer; write skew across rows is not caught.
                    for e in re..=ce {
                        if !same_tx(e) {
                            continue;
                        }
                        let f = self.facts(p, e);
                        for w in &f.writes {
                            if w.table == r.table
                                && w.op != WriteOp::Insert
                                && !w.rows.key.is_empty()
                                && self.key_sig(p, e, &w.rows) == self.key_sig(p, re, &r.rows)
                            {
                                return Protection::Yes(format!(
                                    "line {} reads at REPEATABLE READ{set_at} and line {} writes the same row in that transaction: the later writer fails with 40001 and racelab retries",
                                    lines(re),
                                    lines(e)
                                ));
                            }
                        }
                    }
                    // A row every buyer's committing transaction writes:
                    // two that overlap cannot both commit.
                    for e in re..=ce {
                        if !same_tx(e) {
                            continue;
                        }
                        let f = self.facts(p, e);
                        for w in &f.writes {
                            if w.op == WriteOp::Insert || w.rows.key.is_empty() {
                                continue;
                            }
                            let row = (w.table.clone(), self.key_sig(p, e, &w.rows));
                            if self.common_rows.contains(&row) {
                                return Protection::Yes(format!(
                                    "line {} reads at REPEATABLE READ, and every buyer's transaction that buys writes the row line {} writes ({}): two that overlap cannot both commit (40001, retried), so no other buyer's commit lands between this read and this COMMIT",
                                    lines(re),
                                    lines(e),
                                    w.table
                                ));
                            }
                        }
                    }
                }
                Isolation::ReadCommitted => {}
            }
        }
        // An advisory lock every buyer of the product takes first.
        let mut early: Option<(Vec<usize>, String)> = None;
        for e in 0..=re {
            let f = self.facts(p, e);
            for (ci, a) in f.advisory.iter().enumerate() {
                if a.action != AdvisoryAction::Lock || a.shared {
                    continue;
                }
                if a.try_only && !p.acquired.contains(&(e, ci)) {
                    continue;
                }
                if !a.key.iter().all(|k| self.shared(p, e, k)) {
                    continue;
                }
                match a.scope {
                    AdvisoryScope::Xact => {
                        let held = p.events[e].in_tx
                            && p.events[e].tx == rev.tx
                            && rev.in_tx
                            && p.events[we].tx == rev.tx;
                        if held {
                            return Protection::Yes(format!(
                                "line {} takes {}() on a key every buyer of the product shares, before line {} reads",
                                lines(e),
                                a.function,
                                lines(re)
                            ));
                        }
                    }
                    AdvisoryScope::Session => {
                        // Held until an unlock: it must come after the
                        // write's COMMIT.
                        let unlock = (e + 1..=ce).find(|&u| {
                            self.facts(p, u).advisory.iter().any(|x| {
                                x.action == AdvisoryAction::UnlockAll
                                    || (x.action == AdvisoryAction::Unlock
                                        && x.key.len() == a.key.len())
                            })
                        });
                        match unlock {
                            None => {
                                return Protection::Yes(format!(
                                    "line {} takes {}() on a key every buyer of the product shares, before line {} reads, and releases it only after the COMMIT",
                                    lines(e),
                                    a.function,
                                    lines(re)
                                ))
                            }
                            Some(u) => {
                                early.get_or_insert((
                                    vec![lines(e), lines(u), lines(ce)],
                                    format!(
                                        "the advisory lock of line {} is released at line {}, before the COMMIT at line {} of the write it protects: the next buyer takes the lock and reads the stock before this buyer's write is visible (release it after COMMIT)",
                                        lines(e),
                                        lines(u),
                                        lines(ce)
                                    ),
                                ));
                            }
                        }
                    }
                }
            }
        }
        // A Redis lock every buyer of the product takes first, released
        // only after the COMMIT.
        for &(c, before) in &p.redis_locks {
            let cmd = &self.prog.redis[c];
            if before > re || !cmd.key_is_shared() {
                continue;
            }
            let released = p
                .redis_releases
                .iter()
                .find(|(l, _, at)| *l == c && *at <= ce && *at > re);
            match released {
                None => {
                    return Protection::Yes(format!(
                        "line {} holds a Redis lock (SET NX) on a key every buyer of the product shares, before line {} reads",
                        cmd.line,
                        lines(re)
                    ))
                }
                Some((_, rel, _)) => {
                    let rel = self.prog.redis[*rel].line;
                    early.get_or_insert((
                        vec![cmd.line, rel, lines(ce)],
                        format!(
                            "the Redis lock of line {} is released at line {rel}, before the COMMIT at line {} of the write it protects: the next buyer takes the lock and reads the stock before this buyer's write is visible (release it after COMMIT)",
                            cmd.line,
                            lines(ce)
                        ),
                    ));
                }
            }
        }
        match early {
            Some((lines, text)) => Protection::ReleasedEarly(lines, text),
            None => Protection::No,
        }
    }

    /// `protection`, as a reason when the read is protected.
    pub fn protected(
        &self,
        p: &Path,
        re: usize,
        read: usize,
        we: usize,
        ce: usize,
    ) -> Option<String> {
        match self.protection(p, re, read, we, ce) {
            Protection::Yes(why) => Some(why),
            _ => None,
        }
    }

    /// Whether any statement of the script writes `table`.
    pub fn table_written(&self, table: &str) -> bool {
        self.eff
            .iter()
            .any(|f| f.writes.iter().any(|w| w.table == table))
    }

    /// Columns the script assigns on `table`, anywhere (triggers included).
    pub fn assigned(&self, table: &str, column: &str) -> bool {
        self.eff.iter().any(|f| {
            f.writes.iter().any(|w| {
                w.table == table
                    && (w.assigns.iter().any(|a| a.column == column) || w.op == WriteOp::Delete)
            })
        })
    }

    /// A CHECK constraint from `\setup` that keeps `table.column` from going
    /// below zero: the line that adds it.
    pub fn constraint_bounds(&self, table: &str, column: &str) -> Option<usize> {
        let mut found: Option<(Option<String>, usize)> = None;
        for s in &self.prog.setup {
            for c in &s.facts.constraints {
                match c {
                    Constraint::Check {
                        table: t,
                        name,
                        conjuncts,
                        ..
                    } if t == table => {
                        let bounds = conjuncts.iter().any(|k| {
                            if !k.bounds_below(table, column) {
                                return false;
                            }
                            let (other, strict) = match k.op {
                                Cmp::Ge => (&k.right, false),
                                Cmp::Gt => (&k.right, true),
                                Cmp::Le => (&k.left, false),
                                _ => (&k.left, true),
                            };
                            let side_is_col = match k.op {
                                Cmp::Ge | Cmp::Gt => &k.left,
                                _ => &k.right,
                            };
                            // `stock >= 0`, `stock > -1`: the column alone
                            // against a constant that is not below zero.
                            side_is_col.cols.len() == 1
                                && side_is_col.vars.is_empty()
                                && other
                                    .expr
                                    .as_ref()
                                    .and_then(|x| eval_with(x, &[]))
                                    .is_some_and(|v| if strict { v >= -1 } else { v >= 0 })
                        });
                        if bounds {
                            found = Some((name.clone(), s.line));
                        }
                    }
                    Constraint::Drop { table: t, name }
                        if t == table
                            && found
                                .as_ref()
                                .is_some_and(|(n, _)| n.as_deref() == Some(name)) =>
                    {
                        found = None;
                    }
                    _ => {}
                }
            }
        }
        found.map(|(_, l)| l)
    }

    /// The decisions of the path that guard the instruction at `pc`: one
    /// side of them reaches it, the other does not.
    pub fn guarding<'a>(&self, p: &'a Path, pc: usize, before: usize) -> Vec<&'a Decision> {
        p.decisions
            .iter()
            .filter(|d| d.before_event <= before)
            .filter(|d| {
                let Instr::JumpUnless { target, .. } = &self.prog.instrs[d.pc] else {
                    return false;
                };
                let a = self.reach[d.pc + 1].contains(&pc);
                let b = self.reach.get(*target).is_some_and(|r| r.contains(&pc));
                a != b
            })
            .collect()
    }

    /// The read behind a dependency, with its table and columns.
    pub fn read_of(
        &self,
        p: &Path,
        dep: &Dep,
    ) -> Option<(usize, usize, &'p crate::strategy::facts::Read)> {
        match dep {
            Dep::Read { event, read } => Some((*event, *read, &self.facts(p, *event).reads[*read])),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::catalog::effective;
    use super::super::paths::paths;
    use super::*;
    use crate::strategy;

    fn first_read_protection(src: &str) -> Option<String> {
        let prog = strategy::parse("t.sql", src).unwrap_or_else(|e| panic!("{}", e.render()));
        let eff = effective(&prog).facts;
        let ps = paths(&prog, &eff, Isolation::ReadCommitted).unwrap();
        let a = Analysis::new(&prog, &eff, &ps);
        // The longest path: the one that buys.
        let p = ps.iter().max_by_key(|p| p.events.len()).unwrap();
        let re = (0..p.events.len())
            .find(|&e| !a.facts(p, e).reads.is_empty())
            .unwrap();
        let we = (0..p.events.len())
            .rev()
            .find(|&e| a.facts(p, e).writes.iter().any(|w| w.table == "products"))
            .unwrap();
        let ce = a.commit_of(p, we).unwrap();
        a.protected(p, re, 0, we, ce)
    }

    const BODY: &str = "SELECT stock FROM products WHERE id = :product \\gset\n\\if :stock < :qty\n  ROLLBACK;\n  \\sold_out\n\\endif\nUPDATE products SET stock = :stock - :qty WHERE id = :product;\nCOMMIT;\n";

    #[test]
    fn every_lock_table_mode_by_its_conflicts() {
        use crate::strategy::facts::LockMode;
        for m in LockMode::ALL {
            let src = format!(
                "BEGIN;\nLOCK TABLE products IN {} MODE;\n{BODY}",
                m.as_str()
            );
            let why = first_read_protection(&src);
            // SHARE UPDATE EXCLUSIVE and stronger serialize the buyers, and
            // SHARE (which lets holders share) makes their writes deadlock.
            let protects = m >= LockMode::ShareUpdateExclusive;
            assert_eq!(why.is_some(), protects, "{}: {why:?}", m.as_str());
        }
        // A mutex on another table serializes too.
        let src = format!("BEGIN;\nLOCK TABLE orders IN EXCLUSIVE MODE;\n{BODY}");
        assert!(first_read_protection(&src).is_some());
        // SHARE on a table the transaction does not write does not.
        let src = format!("BEGIN;\nLOCK TABLE orders IN SHARE MODE;\n{BODY}");
        assert!(first_read_protection(&src).is_none());
    }

    #[test]
    fn isolation_levels_protect_what_they_catch() {
        let at = |head: &str| first_read_protection(&format!("{head}\n{BODY}"));
        assert!(at("BEGIN;").is_none());
        assert!(at("BEGIN ISOLATION LEVEL REPEATABLE READ;").is_some());
        assert!(at("BEGIN ISOLATION LEVEL SERIALIZABLE;").is_some());
        assert!(at("BEGIN ISOLATION LEVEL SERIALIZABLE;\nSET LOCAL transaction_isolation = 'read committed';").is_none());
        // A key that folds to :product is the product's row for everyone.
        assert!(at(
            "BEGIN;\nSELECT stock FROM products WHERE id = :product + 0 * :buyer FOR UPDATE;"
        )
        .is_some());
        assert!(at("BEGIN;\nSELECT pg_advisory_xact_lock(:product + :buyer - :buyer);").is_some());
        assert!(at("BEGIN;\nSELECT pg_advisory_xact_lock(:product * 1000 + :buyer);").is_none());
    }

    #[test]
    fn repeatable_read_and_a_row_every_buyer_writes() {
        let src = "BEGIN ISOLATION LEVEL REPEATABLE READ;\nSELECT count(*) AS sold FROM orders WHERE product_id = :product \\gset\n\\if :sold >= 1\n  ROLLBACK;\n  \\sold_out\n\\endif\nINSERT INTO orders (product_id, qty) VALUES (:product, :qty);\nUPDATE products SET stock = stock - :qty WHERE id = :product;\nCOMMIT;\n";
        assert!(first_read_protection(src).is_some_and(|w| w.contains("every buyer's transaction")));
        let src = src.replace(
            "UPDATE products SET stock = stock - :qty WHERE id = :product;\n",
            "",
        );
        let prog = strategy::parse("t.sql", &src).unwrap();
        let eff = effective(&prog).facts;
        let ps = paths(&prog, &eff, Isolation::ReadCommitted).unwrap();
        assert!(Analysis::new(&prog, &eff, &ps).common_rows.is_empty());
    }
}
