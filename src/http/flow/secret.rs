//! Secrets as data with a type (STYLE 22): a value from `--users`, what a
//! step extracted, a buyer's variables. `Debug` and `Display` show `***`
//! (`crate::secret::Secret`); the value is reached only by `expose`, where
//! a request is rendered.

pub use crate::secret::Secret;

/// A buyer's variables by slot (built-ins, users' columns, the flow's own,
/// what steps extracted): rendered into requests, shown as a count only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Values(pub Vec<String>);

impl std::fmt::Debug for Values {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Values({} hidden)", self.0.len())
    }
}

impl std::ops::Deref for Values {
    type Target = Vec<String>;
    fn deref(&self) -> &Vec<String> {
        &self.0
    }
}

impl std::ops::DerefMut for Values {
    fn deref_mut(&mut self) -> &mut Vec<String> {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
        let v = Values(vec!["hunter2".into()]);
        assert_eq!(format!("{v:?}"), "Values(1 hidden)");
    }
}
