//! Functions and triggers a `\setup` block creates, as facts: a function's
//! parameters, language and body (its steps read by the same statement
//! reader as a script's statements, see `plpgsql`), and a trigger's table,
//! timing, events and function. A body racelab cannot follow is kept as
//! `Unreadable` with the reason, so explain can name it.
//!
//! Slots: inside a body, parameter `i` is `Slots.param(i)`, local variable
//! `j` is `Slots.local(j)`, `FOUND` is `Slots.found()`, and `NEW.c` /
//! `OLD.c` are `Slots.new_col(k)` / `Slots.old_col(k)` for the `k`-th name
//! of `Routine::row_columns`: far above any script variable's slot and
//! below `COLUMN_SLOT`, so explain can bind them to a call's arguments or a
//! triggering row's values.

use sqlparser::ast as sql;

use super::plpgsql::{self, RawExit, RawStep, Text};
use super::scope::{ident, object_last};
pub use super::slots::{BodySlot, Slots};
use super::{Facts, Operand};

/// How a body ends, or a branch of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// `RETURN [value]`.
    Return(Option<Operand>),
    /// `RETURN NEW`: a row trigger lets the row be written (as NEW holds it).
    ReturnNew,
    /// `RETURN NULL`: a BEFORE row trigger skips the row (nothing written).
    ReturnNull,
    /// `RAISE [EXCEPTION]`: the statement fails, with this SQLSTATE when
    /// racelab can tell it (P0001 when none is given).
    Raise { sqlstate: Option<String> },
}

impl Exit {
    /// Whether the failure is an integrity-constraint violation (class
    /// 23), which ends an attempt as `rejected`, a safe refusal.
    pub fn rejects(&self) -> bool {
        matches!(self, Exit::Raise { sqlstate: Some(s) } if s.starts_with("23"))
    }
}

/// One step of a body, in order. (Read once per function at load time, a
/// handful per program: their size does not matter.)
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum RoutineStep {
    /// A SQL statement; `into`: the slots its row is stored in.
    Sql {
        facts: Facts,
        into: Vec<usize>,
        text: String,
    },
    /// `slot := value` (a local variable or `NEW.col`).
    Assign {
        slot: usize,
        value: Operand,
    },
    /// `IF cond THEN exit END IF`.
    ExitIf {
        cond: Operand,
        exit: Exit,
    },
    Exit(Exit),
}

/// What racelab reads of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutineBody {
    Steps(Vec<RoutineStep>),
    /// Why racelab does not follow it.
    Unreadable(String),
}

/// A function created by `CREATE [OR REPLACE] FUNCTION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routine {
    /// Lower case, without a schema.
    pub name: String,
    pub params: Vec<String>,
    pub locals: Vec<String>,
    /// The columns named as `NEW.c` / `OLD.c`.
    pub row_columns: Vec<String>,
    pub language: String,
    /// `RETURNS trigger`.
    pub returns_trigger: bool,
    pub body: RoutineBody,
}

/// When a trigger fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerTiming {
    Before,
    After,
    InsteadOf,
}

/// What a trigger fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerEvent {
    Insert,
    Update,
    Delete,
    Truncate,
}

/// A trigger created by `CREATE TRIGGER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub name: String,
    pub table: String,
    pub timing: TriggerTiming,
    pub events: Vec<TriggerEvent>,
    /// `FOR EACH ROW` (else per statement).
    pub row: bool,
    /// The function it runs (lower case, without a schema).
    pub function: String,
    /// Why racelab cannot follow it beyond its function (a WHEN condition,
    /// `UPDATE OF` columns, transition tables), if so.
    pub unsupported: Option<String>,
}

fn slot_names(r: &Routine) -> impl Fn(usize) -> String + '_ {
    move |slot| match Slots.of(slot) {
        Some(BodySlot::Param(i)) => r.params.get(i).cloned().unwrap_or(format!("${}", i + 1)),
        Some(BodySlot::Local(j)) => r.locals.get(j).cloned().unwrap_or_default(),
        Some(BodySlot::Found) => "FOUND".into(),
        Some(BodySlot::New(k)) => {
            format!("NEW.{}", r.row_columns.get(k).cloned().unwrap_or_default())
        }
        Some(BodySlot::Old(k)) => {
            format!("OLD.{}", r.row_columns.get(k).cloned().unwrap_or_default())
        }
        None => String::new(),
    }
}

fn read_text(t: &Text, r: &Routine) -> Facts {
    let names = slot_names(r);
    super::read(&t.sql, &|k| t.slots.get(k.wrapping_sub(1)).copied(), &names)
}

fn read_value(t: &Text, r: &Routine) -> Result<Operand, String> {
    let names = slot_names(r);
    super::operand::read_operand(&t.sql, &|k| t.slots.get(k.wrapping_sub(1)).copied(), &names)
}

fn exit_of(e: RawExit, r: &Routine) -> Result<Exit, String> {
    Ok(match e {
        RawExit::Return(v) => Exit::Return(v.map(|t| read_value(&t, r)).transpose()?),
        RawExit::ReturnNew => Exit::ReturnNew,
        RawExit::ReturnNull => Exit::ReturnNull,
        RawExit::Raise { sqlstate } => Exit::Raise {
            sqlstate: Some(sqlstate.unwrap_or_else(|| "P0001".into())),
        },
    })
}

/// The body's text, when it is a string racelab can read.
fn body_text(f: &sql::CreateFunction) -> Option<String> {
    let e = match f.function_body.as_ref()? {
        sql::CreateFunctionBody::AsBeforeOptions { body, .. } => body,
        sql::CreateFunctionBody::AsAfterOptions(body) => body,
        _ => return None,
    };
    match e {
        sql::Expr::Value(v) => match &v.value {
            sql::Value::DollarQuotedString(d) => Some(d.value.clone()),
            sql::Value::SingleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// The routine `CREATE FUNCTION` defines.
pub(super) fn routine(f: &sql::CreateFunction) -> Routine {
    let params: Vec<String> = f
        .args
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, a)| a.name.as_ref().map(ident).unwrap_or(format!("${}", i + 1)))
        .collect();
    let language = f
        .language
        .as_ref()
        .map(|l| l.value.to_ascii_lowercase())
        .unwrap_or_else(|| "sql".into());
    let returns_trigger = matches!(
        &f.return_type,
        Some(sql::FunctionReturnType::DataType(sql::DataType::Trigger))
    );
    let mut r = Routine {
        name: object_last(&f.name),
        params,
        locals: Vec::new(),
        row_columns: Vec::new(),
        language,
        returns_trigger,
        body: RoutineBody::Unreadable(String::new()),
    };
    r.body = match read_body(f, &mut r) {
        Ok(steps) => RoutineBody::Steps(steps),
        Err(why) => RoutineBody::Unreadable(why),
    };
    r
}

fn read_body(f: &sql::CreateFunction, r: &mut Routine) -> Result<Vec<RoutineStep>, String> {
    let params = r.params.clone();
    let mut names = plpgsql::Names {
        params: &params,
        locals: Vec::new(),
        row_columns: Vec::new(),
        slots: Slots,
    };
    let raw = match (r.language.as_str(), f.function_body.as_ref()) {
        (_, Some(sql::CreateFunctionBody::Return(e))) => {
            vec![RawStep::Exit(RawExit::Return(Some(Text {
                sql: e.to_string(),
                slots: Vec::new(),
            })))]
        }
        ("sql", _) => {
            let text = body_text(f).ok_or("a body racelab cannot read")?;
            plpgsql::sql_body(&text, &mut names)?
        }
        ("plpgsql", _) => {
            let text = body_text(f).ok_or("a body racelab cannot read")?;
            plpgsql::plpgsql_body(&text, &mut names)?
        }
        (other, _) => return Err(format!("LANGUAGE {other}")),
    };
    r.locals = names.locals;
    r.row_columns = names.row_columns;
    let mut steps = Vec::with_capacity(raw.len());
    for s in raw {
        steps.push(match s {
            RawStep::Sql { text, into } => {
                let facts = read_text(&text, r);
                if let Some(why) = &facts.unreadable {
                    return Err(format!("the statement `{}` ({why})", text.sql));
                }
                RoutineStep::Sql {
                    facts,
                    into,
                    text: text.sql,
                }
            }
            RawStep::Assign { slot, value } => RoutineStep::Assign {
                slot,
                value: read_value(&value, r)?,
            },
            RawStep::ExitIf { cond, exit } => RoutineStep::ExitIf {
                cond: read_value(&cond, r)?,
                exit: exit_of(exit, r)?,
            },
            RawStep::Exit(e) => RoutineStep::Exit(exit_of(e, r)?),
        });
    }
    Ok(steps)
}

/// The trigger `CREATE TRIGGER` defines.
pub(super) fn trigger(t: &sql::CreateTrigger) -> Trigger {
    let timing = match t.period {
        Some(sql::TriggerPeriod::Before) => TriggerTiming::Before,
        Some(sql::TriggerPeriod::InsteadOf) => TriggerTiming::InsteadOf,
        _ => TriggerTiming::After,
    };
    let mut unsupported = Vec::new();
    let events = t
        .events
        .iter()
        .map(|e| match e {
            sql::TriggerEvent::Insert => TriggerEvent::Insert,
            sql::TriggerEvent::Update(cols) => {
                if !cols.is_empty() {
                    unsupported.push("UPDATE OF columns");
                }
                TriggerEvent::Update
            }
            sql::TriggerEvent::Delete => TriggerEvent::Delete,
            sql::TriggerEvent::Truncate => TriggerEvent::Truncate,
        })
        .collect();
    let row = matches!(
        t.trigger_object,
        Some(
            sql::TriggerObjectKind::ForEach(sql::TriggerObject::Row)
                | sql::TriggerObjectKind::For(sql::TriggerObject::Row)
        )
    );
    if t.condition.is_some() {
        unsupported.push("a WHEN condition");
    }
    if !t.referencing.is_empty() {
        unsupported.push("transition tables");
    }
    if t.is_constraint {
        unsupported.push("a constraint trigger");
    }
    Trigger {
        name: object_last(&t.name),
        table: object_last(&t.table_name),
        timing,
        events,
        row,
        function: t
            .exec_body
            .as_ref()
            .map(|b| object_last(&b.func_desc.name))
            .unwrap_or_default(),
        unsupported: (!unsupported.is_empty()).then(|| unsupported.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    fn setup(sql: &str) -> Facts {
        read(sql, &|_| None, &|_| String::new())
    }

    #[test]
    fn slots_are_told_apart() {
        assert_eq!(Slots.of(Slots.param(2)), Some(BodySlot::Param(2)));
        assert_eq!(Slots.of(Slots.local(0)), Some(BodySlot::Local(0)));
        assert_eq!(Slots.of(Slots.found()), Some(BodySlot::Found));
        assert_eq!(Slots.of(Slots.new_col(3)), Some(BodySlot::New(3)));
        assert_eq!(Slots.of(Slots.old_col(1)), Some(BodySlot::Old(1)));
        assert_eq!(Slots.of(7), None);
        assert_eq!(Slots.of(COLUMN_SLOT), None);
    }

    #[test]
    fn a_sql_function_is_read_with_its_parameters() {
        let f = setup("CREATE OR REPLACE FUNCTION take(p bigint, q bigint) RETURNS SETOF bigint LANGUAGE sql AS $$ UPDATE products SET stock = stock - q WHERE id = p AND stock >= q RETURNING stock $$");
        let r = f.routine.expect("a routine");
        assert_eq!((r.name.as_str(), r.language.as_str()), ("take", "sql"));
        let RoutineBody::Steps(steps) = &r.body else {
            panic!("{:?}", r.body)
        };
        let RoutineStep::Sql { facts, .. } = &steps[0] else {
            panic!()
        };
        let w = &facts.writes[0];
        assert_eq!(w.table, "products");
        assert_eq!(
            w.assigns[0].value,
            Value::Relative {
                sign: -1,
                by: Some(Expr::Var(Slots.param(1)))
            }
        );
        assert_eq!(w.rows.key[0].1.vars, vec![Slots.param(0)]);
        assert!(w
            .rows
            .filter
            .iter()
            .any(|c| c.bounds_below("products", "stock")));
    }

    #[test]
    fn a_trigger_and_its_function() {
        let f = setup("CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.version := OLD.version + 1; RETURN NEW; END $$");
        let r = f.routine.unwrap();
        assert!(r.returns_trigger);
        let RoutineBody::Steps(steps) = &r.body else {
            panic!("{:?}", r.body)
        };
        let RoutineStep::Assign { slot, value } = &steps[0] else {
            panic!()
        };
        assert_eq!(*slot, Slots.new_col(0));
        assert_eq!(value.vars, vec![Slots.old_col(0)]);
        let t = setup(
            "CREATE TRIGGER bump BEFORE UPDATE ON products FOR EACH ROW EXECUTE FUNCTION bump()",
        )
        .trigger
        .unwrap();
        assert_eq!(
            (t.table.as_str(), t.timing, t.row, t.function.as_str()),
            ("products", TriggerTiming::Before, true, "bump")
        );
        assert_eq!(t.events, vec![TriggerEvent::Update]);
        assert!(t.unsupported.is_none());
        let t = setup("CREATE TRIGGER w AFTER UPDATE OF stock ON products FOR EACH ROW WHEN (NEW.stock < 0) EXECUTE FUNCTION f()")
            .trigger
            .unwrap();
        assert!(t.unsupported.as_deref().is_some_and(|u| u.contains("WHEN")));
    }

    #[test]
    fn an_unreadable_body_says_why() {
        let f = setup("CREATE FUNCTION f(q int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'SELECT 1'; RETURN q; END $$");
        assert!(
            matches!(&f.routine.unwrap().body, RoutineBody::Unreadable(w) if w.contains("EXECUTE"))
        );
        let f = setup("CREATE FUNCTION f(q int) RETURNS int LANGUAGE c AS 'lib', 'f'");
        assert!(
            matches!(&f.routine.unwrap().body, RoutineBody::Unreadable(w) if w.contains("LANGUAGE c"))
        );
    }
}
