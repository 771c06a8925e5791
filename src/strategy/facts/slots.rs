//! The slots of a function or trigger body's names: parameter `i` is
//! `Slots.param(i)`, local variable `j` is `Slots.local(j)`, `FOUND` is
//! `Slots.found()`, and `NEW.c` / `OLD.c` are `Slots.new_col(k)` /
//! `Slots.old_col(k)`: far above any script variable's slot and below
//! `COLUMN_SLOT`, so explain can bind them to a call's arguments or a
//! triggering row's values. Both body readers (`routine`, `plpgsql`) name
//! them.

/// Where a body's slots start (see the module docs).
const BASE: usize = usize::MAX / 4;
const LOCALS: usize = 10_000;
const FOUND: usize = 20_000;
const NEW: usize = 30_000;
const OLD: usize = 40_000;
const END: usize = 50_000;

/// The slots of a body's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slots;

impl Slots {
    pub fn param(self, i: usize) -> usize {
        BASE + i
    }
    pub fn local(self, j: usize) -> usize {
        BASE + LOCALS + j
    }
    pub fn found(self) -> usize {
        BASE + FOUND
    }
    pub fn new_col(self, k: usize) -> usize {
        BASE + NEW + k
    }
    pub fn old_col(self, k: usize) -> usize {
        BASE + OLD + k
    }

    /// What a body slot stands for.
    pub fn of(self, slot: usize) -> Option<BodySlot> {
        let off = slot.checked_sub(BASE)?;
        Some(match off {
            o if o < LOCALS => BodySlot::Param(o),
            o if o < FOUND => BodySlot::Local(o - LOCALS),
            o if o < NEW => BodySlot::Found,
            o if o < OLD => BodySlot::New(o - NEW),
            o if o < END => BodySlot::Old(o - OLD),
            _ => return None,
        })
    }
}

/// What a body slot stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySlot {
    Param(usize),
    Local(usize),
    /// PL/pgSQL's `FOUND`: whether the last SQL statement touched a row.
    Found,
    New(usize),
    Old(usize),
}
