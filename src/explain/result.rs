//! `explain --json`.
