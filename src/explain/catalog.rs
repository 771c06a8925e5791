//! The functions and triggers a `\setup` block creates, applied to the
//! statements that use them: a statement's *effective* facts are its own,
//! plus the facts of the body of every function it calls (its parameters
//! bound to the call's arguments, its local variables to what `INTO` and
//! `:=` stored), plus the facts of every trigger its writes fire (a BEFORE
//! trigger's `NEW.col := ...` as an assignment of the write, its `RAISE` or
//! `RETURN NULL` as a check on the row; an AFTER trigger's statements, with
//! `NEW.col` bound to the value written). What racelab cannot follow — a
//! function it does not know, a body it cannot read, a trigger with a WHEN
//! condition — is named, for explain to be UNSURE about.

use std::collections::BTreeMap;

use crate::strategy::facts::{
    fold, map_expr, BodySlot, CheckEffect, Exit, Facts, Guard, Operand, Routine, RoutineBody,
    RoutineStep, RowCheck, Slots, Source, Trigger, TriggerEvent, TriggerTiming, Value, WriteOp,
    COLUMN_SLOT, VALUE_SLOT,
};
use crate::strategy::{Expr, Program};

/// How many calls and writes one statement may make (its functions' and
/// triggers' included) before racelab gives up.
const MAX_CALLS: usize = 64;
const MAX_WRITES: usize = 64;

/// What the catalog made of a program.
#[derive(Debug, Clone, Default)]
pub struct Effective {
    /// Per statement of `Program::stmts`: its effective facts.
    pub facts: Vec<Facts>,
    /// `(lines, why)`: what racelab cannot follow.
    pub unsure: Vec<(Vec<usize>, String)>,
    /// `(statement, note)`: what functions and triggers add to a statement.
    pub notes: Vec<(usize, String)>,
}

struct Catalog<'p> {
    routines: BTreeMap<String, (&'p Routine, usize)>,
    triggers: Vec<(&'p Trigger, usize)>,
}

/// The effective facts of every statement of `prog`.
pub fn effective(prog: &Program) -> Effective {
    let mut c = Catalog {
        routines: BTreeMap::new(),
        triggers: Vec::new(),
    };
    let mut out = Effective::default();
    for s in &prog.setup {
        if let Some(r) = &s.facts.routine {
            c.routines.insert(r.name.clone(), (r, s.line));
        }
        if let Some(t) = &s.facts.trigger {
            c.triggers.push((t, s.line));
        }
        if let Some(what) = &s.facts.opaque {
            out.unsure.push((
                vec![s.line],
                format!(
                    "the \\setup statement at line {} ({what}) changes the lab in a way racelab does not follow",
                    s.line
                ),
            ));
        }
    }
    for (i, st) in prog.stmts.iter().enumerate() {
        let mut f = st.facts.clone();
        let mut notes = Vec::new();
        if let Err(why) = c.apply(&mut f, st.line, &mut notes) {
            out.unsure.push((vec![st.line], why));
        }
        out.notes.extend(notes.into_iter().map(|n| (i, n)));
        out.facts.push(f);
    }
    out
}

/// What a body's slot is bound to while it runs.
type Binds = BTreeMap<usize, Operand>;

/// A binding for the value of source `s` in `f`: a `VALUE_SLOT`.
fn value_of(f: &mut Facts, s: &Source) -> Operand {
    let k = match f.values.iter().position(|v| v == s) {
        Some(k) => k,
        None => {
            f.values.push(s.clone());
            f.values.len() - 1
        }
    };
    Operand {
        vars: vec![VALUE_SLOT + k],
        expr: Some(Expr::Var(VALUE_SLOT + k)),
        ..Operand::default()
    }
}

/// A binding for an output of a statement: the value of the column it
/// reads, when it is one column; else its sources.
fn output_binding(f: &mut Facts, o: &crate::strategy::facts::Output) -> Operand {
    match o.sources.as_slice() {
        [s @ Source::Read {
            column: Some(_), ..
        }] if o.vars.is_empty() => value_of(f, s),
        _ => Operand {
            vars: o.vars.clone(),
            sources: o.sources.clone(),
            ..Operand::default()
        },
    }
}

impl Catalog<'_> {
    /// Apply calls and triggers to `f` (the facts of the statement at
    /// `line`), recursively.
    fn apply(&self, f: &mut Facts, line: usize, notes: &mut Vec<String>) -> Result<(), String> {
        // Calls, in order (a body may add more, read in turn).
        let mut ci = 0;
        while ci < f.calls.len() {
            if ci >= MAX_CALLS {
                return Err(format!(
                    "line {line}: more than {MAX_CALLS} function calls (recursion?); racelab stops following them"
                ));
            }
            let call = f.calls[ci].clone();
            let Some((r, at)) = self.routines.get(&call.name).copied() else {
                return Err(format!(
                    "line {line} calls {}(), which racelab does not know (neither a PostgreSQL function it reads nor one \\setup creates): what it locks, reads and writes is unknown",
                    call.name
                ));
            };
            let steps = match &r.body {
                RoutineBody::Steps(s) => s,
                RoutineBody::Unreadable(why) => {
                    return Err(format!(
                        "line {line} calls {}(), created at line {at}, whose body racelab does not follow ({why})",
                        call.name
                    ))
                }
            };
            let result = self.inline(f, r, steps, &call.args, &Binds::new())?;
            let result = result.unwrap_or_default();
            f.map_sources(&|s| match s {
                Source::Call(c) if *c == ci => result.clone(),
                other => vec![other.clone()],
            });
            notes.push(format!(
                "calls {}() (created at line {at}): racelab reads its body as part of this statement",
                call.name
            ));
            ci += 1;
        }
        // Triggers, on every write (including those of bodies and of other
        // triggers).
        let mut wi = 0;
        while wi < f.writes.len() {
            let w = f.writes[wi].clone();
            let event = match w.op {
                WriteOp::Insert => TriggerEvent::Insert,
                WriteOp::Update => TriggerEvent::Update,
                WriteOp::Delete => TriggerEvent::Delete,
            };
            for &(t, at) in self
                .triggers
                .iter()
                .filter(|(t, _)| t.table == w.table && t.events.contains(&event))
            {
                if wi >= MAX_WRITES {
                    return Err(format!(
                        "line {line}: its triggers write more than {MAX_WRITES} times (recursion?); racelab stops following them"
                    ));
                }
                let why = if let Some(u) = &t.unsupported {
                    Some(u.clone())
                } else if !t.row {
                    Some("a statement-level trigger".into())
                } else if t.timing == TriggerTiming::InsteadOf {
                    Some("an INSTEAD OF trigger".into())
                } else {
                    None
                };
                let routine = self.routines.get(&t.function).copied();
                let steps = match (why, routine) {
                    (Some(why), _) => Err(why),
                    (None, None) => Err(format!(
                        "its function {}() is not created in \\setup",
                        t.function
                    )),
                    (None, Some((r, _))) => match &r.body {
                        RoutineBody::Steps(s) => Ok((r, s)),
                        RoutineBody::Unreadable(why) => {
                            Err(format!("its function {}() ({why})", t.function))
                        }
                    },
                };
                let (r, steps) = steps.map_err(|why| {
                    format!(
                        "line {line} writes {}, which fires the trigger {} (line {at}) that racelab does not follow: {why}",
                        w.table, t.name
                    )
                })?;
                self.trigger(f, wi, t, at, r, steps, line, notes)?;
            }
            wi += 1;
        }
        Ok(())
    }

    /// Run a body's steps into `f`: its SQL appended, its exits as guards
    /// on the writes after them. Returns the sources of its result.
    fn inline(
        &self,
        f: &mut Facts,
        r: &Routine,
        steps: &[RoutineStep],
        args: &[Operand],
        row: &Binds,
    ) -> Result<Option<Vec<Source>>, String> {
        let mut binds: Binds = row.clone();
        for (i, a) in args.iter().enumerate() {
            binds.insert(Slots.param(i), a.clone());
        }
        let mut result: Vec<Source> = Vec::new();
        let add = |result: &mut Vec<Source>, o: &Operand, f: &Facts| {
            for s in &o.sources {
                if !result.contains(s) {
                    result.push(s.clone());
                }
            }
            for v in &o.vars {
                if let Some(s) = v.checked_sub(VALUE_SLOT).and_then(|k| f.values.get(k)) {
                    if !result.contains(s) {
                        result.push(s.clone());
                    }
                }
            }
        };
        let mut last_outputs = None;
        for step in steps {
            let bind = |v: usize| -> Option<Operand> {
                match Slots.of(v) {
                    Some(BodySlot::Old(_) | BodySlot::New(_)) | Some(_) => {
                        Some(binds.get(&v).cloned().unwrap_or(Operand {
                            opaque: true,
                            ..Operand::default()
                        }))
                    }
                    None => None,
                }
            };
            match step {
                RoutineStep::Sql { facts, into, .. } => {
                    // The body's own calls join the statement's, and the
                    // loop in `apply` reads them in turn.
                    let mut sf = facts.clone();
                    sf.substitute(&bind);
                    let outputs = sf.outputs.clone();
                    let has_rows_from = sf.rows_from;
                    let reads = sf.reads.len();
                    let off = f.append(sf);
                    let outputs: Vec<_> = outputs
                        .unwrap_or_default()
                        .into_iter()
                        .map(|mut o| {
                            o.sources = o.sources.iter().map(|s| off.source(s)).collect();
                            o
                        })
                        .collect();
                    for (slot, o) in into.iter().zip(&outputs) {
                        let b = output_binding(f, o);
                        binds.insert(*slot, b);
                    }
                    let found: Vec<Source> = match has_rows_from {
                        Some(w) => vec![Source::Write(w + off.writes)],
                        None => (0..reads)
                            .map(|r| Source::Read {
                                read: r + off.reads,
                                column: None,
                            })
                            .collect(),
                    };
                    binds.insert(
                        Slots.found(),
                        Operand {
                            sources: found,
                            ..Operand::default()
                        },
                    );
                    last_outputs = Some(outputs);
                }
                RoutineStep::Assign { slot, value } => {
                    let v = value.substitute(&bind);
                    binds.insert(*slot, v);
                }
                RoutineStep::ExitIf { cond, exit } => {
                    let c = cond.substitute(&bind);
                    add(&mut result, &c, f);
                    if let Exit::Return(Some(v)) = exit {
                        add(&mut result, &v.substitute(&bind), f);
                    }
                    f.guards.push(Guard {
                        cond: c,
                        from_write: f.writes.len(),
                        text: format!("{}(): IF {} THEN {}", r.name, cond.text, exit_text(exit)),
                    });
                }
                RoutineStep::Exit(exit) => {
                    if let Exit::Return(Some(v)) = exit {
                        add(&mut result, &v.substitute(&bind), f);
                    }
                    return Ok(Some(result));
                }
            }
        }
        // A SQL function returns what its last statement returns.
        if r.language == "sql" {
            for o in last_outputs.unwrap_or_default() {
                add(
                    &mut result,
                    &Operand {
                        sources: o.sources.clone(),
                        vars: o.vars.clone(),
                        ..Operand::default()
                    },
                    f,
                );
            }
        }
        Ok(Some(result))
    }

    /// Apply trigger `t` (created at line `at`) to write `wi` of `f`.
    #[allow(clippy::too_many_arguments)]
    fn trigger(
        &self,
        f: &mut Facts,
        wi: usize,
        t: &Trigger,
        at: usize,
        r: &Routine,
        steps: &[RoutineStep],
        line: usize,
        notes: &mut Vec<String>,
    ) -> Result<(), String> {
        let w = f.writes[wi].clone();
        let by = format!("the trigger {} (line {at})", t.name);
        let fail = |why: String| {
            format!(
                "line {line} writes {}, which fires the trigger {} (line {at}) that racelab does not follow: {why}",
                w.table, t.name
            )
        };
        // NEW.col and OLD.col: the value written, or the row's key.
        let mut row = Binds::new();
        for (k, col) in r.row_columns.iter().enumerate() {
            let written = w
                .assigns
                .iter()
                .find(|a| a.column == *col)
                .map(|a| match &a.value {
                    Value::Constant(e) => Operand {
                        expr: e.clone(),
                        ..Operand::default()
                    },
                    Value::Variables { vars, expr } => Operand {
                        vars: vars.clone(),
                        expr: expr.clone(),
                        ..Operand::default()
                    },
                    Value::Rows { sources, vars } => Operand {
                        sources: sources.clone(),
                        vars: vars.clone(),
                        ..Operand::default()
                    },
                    Value::Relative { .. } | Value::Row => Operand {
                        opaque: true,
                        ..Operand::default()
                    },
                });
            let key = w
                .rows
                .key
                .iter()
                .find(|(c, _)| c == col)
                .map(|(_, o)| o.clone());
            let opaque = Operand {
                opaque: true,
                ..Operand::default()
            };
            row.insert(
                Slots.new_col(k),
                written.or_else(|| key.clone()).unwrap_or(opaque.clone()),
            );
            row.insert(Slots.old_col(k), key.unwrap_or(opaque));
        }
        // The row's new values, as columns, for checks.
        let as_columns = |e: &Expr| -> Option<(Expr, Vec<String>)> {
            let names: Vec<String> = r.row_columns.clone();
            let x = map_expr(e, &|v| match Slots.of(v) {
                Some(BodySlot::New(k)) => Some(Some(Expr::Var(COLUMN_SLOT + k))),
                Some(_) => Some(None),
                None => None,
            })?;
            Some((fold(&x), names))
        };
        let mut rest: Vec<RoutineStep> = Vec::new();
        for step in steps {
            match (t.timing, step) {
                (TriggerTiming::Before, RoutineStep::Assign { slot, value }) => {
                    let Some(BodySlot::New(k)) = Slots.of(*slot) else {
                        rest.push(step.clone());
                        continue;
                    };
                    let column = r.row_columns[k].clone();
                    let v = before_value(value, k).ok_or_else(|| {
                        fail(format!(
                            "it sets NEW.{column} := {} in a way racelab does not follow",
                            value.text
                        ))
                    })?;
                    let a = crate::strategy::facts::Assign {
                        column: column.clone(),
                        value: v,
                        text: format!("{} (set by {by})", value.text),
                    };
                    let target = &mut f.writes[wi];
                    target.assigns.retain(|x| x.column != column);
                    target.assigns.push(a);
                    notes.push(format!(
                        "{by} sets {}.{column} := {} on the rows this statement writes",
                        w.table, value.text
                    ));
                }
                (_, RoutineStep::ExitIf { cond, exit }) => {
                    let effect = match exit {
                        Exit::Raise { .. } if exit.rejects() => CheckEffect::Rejects,
                        Exit::Raise { .. } => CheckEffect::Fails,
                        Exit::ReturnNull if t.timing == TriggerTiming::Before => CheckEffect::Skips,
                        Exit::ReturnNew | Exit::ReturnNull | Exit::Return(_) => {
                            // Ends the function early, nothing refused.
                            continue;
                        }
                    };
                    let refuses = cond.expr.as_ref().and_then(as_columns).ok_or_else(|| {
                        fail(format!(
                            "its condition IF {} is not one racelab evaluates on the new row",
                            cond.text
                        ))
                    })?;
                    f.writes[wi].checks.push(RowCheck {
                        refuses,
                        effect,
                        by: by.clone(),
                        line: at,
                    });
                    notes.push(format!(
                        "{by} refuses a row of {} when {} ({})",
                        w.table,
                        cond.text,
                        match effect {
                            CheckEffect::Rejects => "a class 23 error: the attempt is rejected",
                            CheckEffect::Fails => "an error: the attempt ends in error",
                            CheckEffect::Skips => "RETURN NULL: the row is skipped",
                        }
                    ));
                }
                (_, RoutineStep::Exit(Exit::ReturnNew | Exit::ReturnNull | Exit::Return(None))) => {
                    break
                }
                (_, RoutineStep::Exit(Exit::Raise { .. })) => {
                    return Err(fail("it always raises an error".into()));
                }
                (_, other) => rest.push(other.clone()),
            }
        }
        if !rest.is_empty() {
            notes.push(format!(
                "{by} runs {} statement(s) of its function {}() for every row written",
                rest.len(),
                r.name
            ));
            self.inline(f, r, &rest, &[], &row)?;
        }
        Ok(())
    }
}

fn exit_text(e: &Exit) -> &'static str {
    match e {
        Exit::Return(_) => "RETURN",
        Exit::ReturnNew => "RETURN NEW",
        Exit::ReturnNull => "RETURN NULL",
        Exit::Raise { .. } => "RAISE",
    }
}

/// A BEFORE trigger's `NEW.col := value` (column `k` of the routine's row
/// columns) as the assignment of the write: relative when it is `OLD.col
/// + e` or `OLD.col - e` with `e` constant.
fn before_value(value: &Operand, k: usize) -> Option<Value> {
    let e = fold(value.expr.as_ref()?);
    let old = Slots.old_col(k);
    let mut vars = Vec::new();
    crate::explain::paths::expr_vars(&e, &mut vars);
    if vars.is_empty() {
        return Some(Value::Constant(Some(e)));
    }
    if vars.iter().any(|v| *v != old) {
        return None;
    }
    // OLD.col plus a constant: the same difference whatever OLD.col is.
    let at = |x: i64| crate::explain::paths::eval_with(&e, &[(old, x)]).map(|v| v - x);
    let d = at(0)?;
    (at(1000)? == d && at(-7)? == d).then(|| Value::Relative {
        sign: if d >= 0 { 1 } else { -1 },
        by: Some(Expr::Int(d.abs())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy;
    use crate::strategy::facts::Value;

    fn eff(src: &str) -> (Program, Effective) {
        let prog = strategy::parse("t.sql", src).unwrap_or_else(|e| panic!("{}", e.render()));
        let e = effective(&prog);
        (prog, e)
    }

    #[test]
    fn a_before_trigger_assigns_the_version() {
        let (_, e) = eff("\\setup\nCREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.version := OLD.version + 1; RETURN NEW; END $$;\nCREATE TRIGGER bump BEFORE UPDATE ON products FOR EACH ROW EXECUTE FUNCTION bump();\n\\endsetup\nSELECT stock, version FROM products WHERE id = :product \\gset\nUPDATE products SET stock = :stock WHERE id = :product AND version = :version;\n");
        assert!(e.unsure.is_empty(), "{:?}", e.unsure);
        let w = &e.facts[1].writes[0];
        let v = w
            .assigns
            .iter()
            .find(|a| a.column == "version")
            .expect("version assigned");
        assert_eq!(
            v.value,
            Value::Relative {
                sign: 1,
                by: Some(Expr::Int(1))
            }
        );
    }

    #[test]
    fn a_raise_becomes_a_check_on_the_row() {
        let (_, e) = eff("\\setup\nCREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.stock < 0 THEN RAISE EXCEPTION 'x' USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$;\nCREATE TRIGGER t BEFORE UPDATE ON products FOR EACH ROW EXECUTE FUNCTION f();\n\\endsetup\nUPDATE products SET stock = stock - :qty WHERE id = :product;\n");
        let c = &e.facts[0].writes[0].checks;
        assert_eq!(c.len(), 1, "{:?}", e.unsure);
        assert_eq!(c[0].effect, CheckEffect::Rejects);
        assert_eq!(c[0].refuses.1, vec!["stock"]);
    }

    #[test]
    fn a_function_body_joins_the_statement() {
        let (_, e) = eff("\\setup\nCREATE FUNCTION take(p bigint, q bigint) RETURNS SETOF bigint LANGUAGE sql AS $$ UPDATE products SET stock = stock - q WHERE id = p AND stock >= q RETURNING stock $$;\n\\endsetup\nSELECT count(*) AS taken FROM take(:product, :qty) \\gset\n");
        assert!(e.unsure.is_empty(), "{:?}", e.unsure);
        let f = &e.facts[0];
        assert_eq!(f.writes.len(), 1);
        assert_eq!(f.writes[0].rows.key[0].1.vars, vec![strategy::PRODUCT]);
        assert_eq!(
            f.writes[0].assigns[0].value,
            Value::Relative {
                sign: -1,
                by: Some(Expr::Var(strategy::QTY))
            }
        );
        // count(*) counts the rows the function's UPDATE returned.
        let out = &f.outputs.as_ref().unwrap()[0];
        assert!(out.sources.contains(&Source::Write(0)), "{:?}", out.sources);
    }

    #[test]
    fn a_plpgsql_purchase_keeps_its_guard_and_its_locked_read() {
        let (_, e) = eff("\\setup\nCREATE FUNCTION buy(p bigint, q bigint) RETURNS bigint LANGUAGE plpgsql AS $$ DECLARE s bigint; BEGIN SELECT stock INTO s FROM products WHERE id = p FOR UPDATE; IF s < q THEN RETURN 0; END IF; UPDATE products SET stock = s - q WHERE id = p; RETURN 1; END $$;\n\\endsetup\nSELECT buy(:product, :qty) AS bought \\gset\n");
        assert!(e.unsure.is_empty(), "{:?}", e.unsure);
        let f = &e.facts[0];
        assert!(f
            .reads
            .iter()
            .any(|r| r.table == "products" && r.lock.is_some()));
        assert_eq!(f.guards.len(), 1);
        assert_eq!(f.guards[0].from_write, 0);
        let Value::Variables { vars, .. } = &f.writes[0].assigns[0].value else {
            panic!("{:?}", f.writes[0].assigns[0].value)
        };
        assert!(
            vars.contains(&VALUE_SLOT),
            "{:?} {:?}",
            f.writes[0].assigns[0],
            f.values
        );
        assert!(matches!(&f.values[0], Source::Read { column: Some(c), .. } if c == "stock"));
    }

    #[test]
    fn what_it_cannot_follow_is_named() {
        let (_, e) = eff("SELECT mystery(:product);\n");
        assert!(e.unsure[0].1.contains("mystery()"), "{:?}", e.unsure);
        let (_, e) = eff("\\setup\nCREATE FUNCTION f(q int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN LOOP EXIT; END LOOP; RETURN q; END $$;\n\\endsetup\nSELECT f(:qty);\n");
        assert!(
            e.unsure[0].1.contains("f()") && e.unsure[0].1.contains("created at line 2"),
            "{:?}",
            e.unsure
        );
        let (_, e) = eff("\\setup\nCREATE FUNCTION g() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;\nCREATE TRIGGER t AFTER UPDATE ON products FOR EACH ROW WHEN (NEW.stock < 0) EXECUTE FUNCTION g();\n\\endsetup\nUPDATE products SET stock = stock - 1;\n");
        assert!(
            e.unsure[0].1.contains("the trigger t") && e.unsure[0].1.contains("WHEN"),
            "{:?}",
            e.unsure
        );
        let (_, e) = eff("SELECT count(*), coalesce(max(stock), 0), now() FROM products;\n");
        assert!(e.unsure.is_empty(), "{:?}", e.unsure);
    }
}
