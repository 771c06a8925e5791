//! `explain --check`.
