//! The script's built-in variables (`:product`, `:qty`, `:buyer`,
//! `:attempt`, `:try`, `:think`, `:rows`, DESIGN §4): their names and the
//! slots the parser gives them, before any variable of the script's own.
//! Shared by the parser, the interpreter, the `\redis` commands and the
//! analyses that read a program.

/// The built-in variables, in slot order: slot `i` is `BUILTIN_VARS[i]`.
pub(crate) const BUILTIN_VARS: [&str; 7] =
    ["product", "qty", "buyer", "attempt", "try", "think", "rows"];
pub(crate) const PRODUCT: usize = 0;
pub(crate) const QTY: usize = 1;
pub(crate) const BUYER: usize = 2;
pub(crate) const ATTEMPT: usize = 3;
pub(crate) const TRY: usize = 4;
pub(crate) const THINK: usize = 5;
pub(crate) const ROWS: usize = 6;
