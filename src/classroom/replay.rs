//! Replaying an explore counterexample on the projector, one statement
//! per click.

use serde_json::Value;

#[derive(Default)]
pub struct Replay {}

impl Replay {
    pub fn json(&self) -> Value {
        Value::Null
    }

    pub fn running(&self) -> bool {
        false
    }
}
