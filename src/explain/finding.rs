//! One reason behind explain's verdict, and how sure it is: the words every
//! analysis of a path (`writes`, `decrement`, `redis`, `protect`) speaks.

use serde::Serialize;

/// How sure the verdict is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Safe,
    Unsure,
    Unsafe,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Safe => "SAFE",
            Level::Unsure => "UNSURE",
            Level::Unsafe => "UNSAFE",
        }
    }
}

/// One reason behind the verdict.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
pub struct Finding {
    pub level: Level,
    /// Script lines involved, in order.
    pub lines: Vec<usize>,
    pub text: String,
}
