//! Workloads (DESIGN §5): load a scenario from a built-in name or a `.toml`
//! file, validate it naming the key, and apply overrides (the command
//! layer fills `Overrides` from its flags). Built-in scenarios are compiled
//! in from `scenarios/`.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// A scenario that cannot be used: names the file and key, says the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ScenarioError(pub String);

fn err(msg: impl Into<String>) -> ScenarioError {
    ScenarioError(msg.into())
}

/// The ceilings that keep a typo from asking for a billion buyers.
pub mod limits {
    pub const MAX_BUYERS: u32 = 100_000;
    pub const MAX_ATTEMPTS: u32 = 10_000_000;
    pub const MAX_STOCK: i64 = 1_000_000_000_000;
    pub const MAX_QUANTITY: i64 = 1_000_000;
    pub const MAX_THINK_MS: u64 = 60_000;
    pub const MAX_PRODUCTS: u32 = 10_000;
    pub const MAX_CONNECTIONS: u32 = 10_000;
    pub const MAX_DURATION_S: f64 = 86_400.0;
    pub const MAX_SKEW: f64 = 10.0;
    pub const MAX_RATE: f64 = 1_000_000.0;
}

/// The built-in scenarios: (name, toml source), in a stable order.
pub fn builtins() -> &'static [(&'static str, &'static str)] {
    &[
        ("default", include_str!("../../scenarios/default.toml")),
        ("last-item", include_str!("../../scenarios/last-item.toml")),
        (
            "flash-sale",
            include_str!("../../scenarios/flash-sale.toml"),
        ),
        (
            "bulk-orders",
            include_str!("../../scenarios/bulk-orders.toml"),
        ),
        ("hot-row", include_str!("../../scenarios/hot-row.toml")),
        ("catalog", include_str!("../../scenarios/catalog.toml")),
    ]
}

/// A validated workload. (`Deserialize` is for reading saved results back;
/// scenario files go through `Scenario::parse`, which validates.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// Initial stock of each product.
    #[schemars(range(min = 0))]
    pub stock: i64,
    #[schemars(range(min = 1))]
    pub buyers: u32,
    /// Attempts per buyer; ignored when `duration_s > 0`.
    pub attempts_per_buyer: u32,
    #[schemars(range(min = 1))]
    pub quantity: i64,
    pub think_ms: u64,
    /// `:think` is drawn uniformly from `think_ms ± think_jitter_ms`.
    pub think_jitter_ms: u64,
    #[schemars(range(min = 1))]
    pub products: u32,
    /// Zipf exponent of product popularity; 0 is uniform.
    #[schemars(range(min = 0))]
    pub product_skew: f64,
    /// 0: one connection per buyer; otherwise a shared pool of that size.
    pub connections: u32,
    /// 0: each buyer makes its attempts; otherwise buyers loop this long.
    #[schemars(range(min = 0))]
    pub duration_s: f64,
    /// Open loop: attempts per second across all buyers, started on a
    /// schedule of exponential inter-arrival times (the buyers are the
    /// concurrency cap). 0: closed loop, each buyer starts its next attempt
    /// when the last one ends.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = 0))]
    pub rate_per_s: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// Values that replace a scenario's own, each named in errors by the flag
/// that set it (`--buyers`, ...). `None` keeps the scenario's value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub buyers: Option<u32>,
    pub stock: Option<i64>,
    pub attempts: Option<u32>,
    pub quantity: Option<i64>,
    pub think_ms: Option<u64>,
    pub products: Option<u32>,
    pub skew: Option<f64>,
    pub connections: Option<u32>,
    pub duration: Option<f64>,
    pub rate: Option<f64>,
}

/// The file form: every key optional so that a missing one can be named.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    description: Option<String>,
    stock: Option<i64>,
    buyers: Option<i64>,
    attempts_per_buyer: Option<i64>,
    quantity: Option<i64>,
    think_ms: Option<i64>,
    think_jitter_ms: Option<i64>,
    products: Option<i64>,
    product_skew: Option<f64>,
    connections: Option<i64>,
    duration_s: Option<f64>,
    rate_per_s: Option<f64>,
}

impl Scenario {
    /// Load by built-in name, or by path (contains `/` or ends in `.toml`).
    pub fn load(spec: &str) -> Result<Scenario, ScenarioError> {
        if spec.contains('/') || spec.ends_with(".toml") {
            let path = Path::new(spec);
            let text = read_file(path)?;
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| spec.to_string());
            return Scenario::parse(spec, &stem, &text);
        }
        match builtins().iter().find(|(name, _)| *name == spec) {
            Some((name, text)) => Scenario::parse(&format!("scenarios/{name}.toml"), name, text),
            None => {
                let names: Vec<&str> = builtins().iter().map(|(n, _)| *n).collect();
                let hint = match crate::suggest::closest(spec, names.iter().copied()) {
                    Some(n) => format!("did you mean `{n}`? "),
                    None => String::new(),
                };
                Err(err(format!(
                    "unknown scenario `{spec}`: {hint}built-ins are {}; or pass a path to a .toml file",
                    names.join(", ")
                )))
            }
        }
    }

    /// Parse and validate scenario TOML. `file` names it in errors.
    pub fn parse(file: &str, default_name: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let raw: RawScenario = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            let msg = e.message().trim().replace('\n', " ");
            let key = e
                .span()
                .and_then(|s| key_at(text, s.start))
                .map(|k| format!(" (key `{k}`)"))
                .unwrap_or_default();
            err(format!("{file}:{line}:{col}: {msg}{key}"))
        })?;
        let s = Scenario {
            name: raw.name.unwrap_or_else(|| default_name.to_string()),
            description: raw.description.unwrap_or_default(),
            stock: raw.stock.ok_or_else(|| {
                err(format!(
                    "{file}: missing key `stock` (initial stock per product)"
                ))
            })?,
            buyers: to_u32(
                file,
                "buyers",
                raw.buyers
                    .ok_or_else(|| err(format!("{file}: missing key `buyers`")))?,
            )?,
            attempts_per_buyer: to_u32(
                file,
                "attempts_per_buyer",
                raw.attempts_per_buyer.unwrap_or(1),
            )?,
            quantity: raw.quantity.unwrap_or(1),
            think_ms: to_u64(file, "think_ms", raw.think_ms.unwrap_or(0))?,
            think_jitter_ms: to_u64(file, "think_jitter_ms", raw.think_jitter_ms.unwrap_or(0))?,
            products: to_u32(file, "products", raw.products.unwrap_or(1))?,
            product_skew: raw.product_skew.unwrap_or(0.0),
            connections: to_u32(file, "connections", raw.connections.unwrap_or(0))?,
            duration_s: raw.duration_s.unwrap_or(0.0),
            rate_per_s: raw.rate_per_s.unwrap_or(0.0),
        };
        s.validate(file)?;
        Ok(s)
    }

    /// Apply command-line overrides, then validate again naming the flag.
    pub fn with_overrides(mut self, args: &Overrides) -> Result<Scenario, ScenarioError> {
        if args.duration.is_some() && args.attempts.is_some() {
            return Err(err(
                "--duration and --attempts conflict: a timed run loops until the time is up; pass one of them",
            ));
        }
        if let Some(v) = args.buyers {
            self.buyers = v;
        }
        if let Some(v) = args.stock {
            self.stock = v;
        }
        if let Some(v) = args.attempts {
            self.attempts_per_buyer = v;
            self.duration_s = 0.0;
        }
        if let Some(v) = args.quantity {
            self.quantity = v;
        }
        if let Some(v) = args.think_ms {
            self.think_ms = v;
        }
        if let Some(v) = args.products {
            self.products = v;
        }
        if let Some(v) = args.skew {
            self.product_skew = v;
        }
        if let Some(v) = args.connections {
            self.connections = v;
        }
        if let Some(v) = args.duration {
            self.duration_s = v;
        }
        if let Some(v) = args.rate {
            self.rate_per_s = v;
        }
        self.validate("command line")?;
        Ok(self)
    }

    fn validate(&self, file: &str) -> Result<(), ScenarioError> {
        use limits::*;
        let flag = |key: &str| {
            if file == "command line" {
                format!("--{}", flag_for(key))
            } else {
                format!("{file}: key `{key}`")
            }
        };
        let check = |ok: bool, key: &str, what: String| {
            if ok {
                Ok(())
            } else {
                Err(err(format!("{}: {what}", flag(key))))
            }
        };
        check(
            (1..=MAX_BUYERS).contains(&self.buyers),
            "buyers",
            format!("must be between 1 and {MAX_BUYERS}, got {}", self.buyers),
        )?;
        check(
            (0..=MAX_STOCK).contains(&self.stock),
            "stock",
            format!("must be between 0 and {MAX_STOCK}, got {}", self.stock),
        )?;
        check(
            (1..=MAX_QUANTITY).contains(&self.quantity),
            "quantity",
            format!(
                "must be between 1 and {MAX_QUANTITY}, got {}",
                self.quantity
            ),
        )?;
        check(
            self.duration_s > 0.0 || (1..=MAX_ATTEMPTS).contains(&self.attempts_per_buyer),
            "attempts_per_buyer",
            format!(
                "must be between 1 and {MAX_ATTEMPTS}, got {}",
                self.attempts_per_buyer
            ),
        )?;
        check(
            self.think_ms <= MAX_THINK_MS,
            "think_ms",
            format!("must be at most {MAX_THINK_MS}, got {}", self.think_ms),
        )?;
        check(
            self.think_jitter_ms <= self.think_ms,
            "think_jitter_ms",
            format!(
                "must not exceed think_ms ({}), got {}",
                self.think_ms, self.think_jitter_ms
            ),
        )?;
        check(
            (1..=MAX_PRODUCTS).contains(&self.products),
            "products",
            format!(
                "must be between 1 and {MAX_PRODUCTS}, got {}",
                self.products
            ),
        )?;
        check(
            self.product_skew.is_finite() && (0.0..=MAX_SKEW).contains(&self.product_skew),
            "product_skew",
            format!(
                "must be between 0 and {MAX_SKEW}, got {}",
                self.product_skew
            ),
        )?;
        check(
            self.connections <= MAX_CONNECTIONS,
            "connections",
            format!(
                "must be at most {MAX_CONNECTIONS}, got {}",
                self.connections
            ),
        )?;
        check(
            self.duration_s.is_finite() && (0.0..=MAX_DURATION_S).contains(&self.duration_s),
            "duration_s",
            format!(
                "must be between 0 and {MAX_DURATION_S} seconds, got {}",
                self.duration_s
            ),
        )?;
        check(
            self.rate_per_s.is_finite() && (0.0..=MAX_RATE).contains(&self.rate_per_s),
            "rate_per_s",
            format!(
                "must be between 0 and {MAX_RATE} attempts per second (0: closed loop), got {}",
                self.rate_per_s
            ),
        )?;
        Ok(())
    }

    /// Connections the run needs at once (buyers, or the pool size).
    pub fn connections_needed(&self) -> u32 {
        if self.connections == 0 {
            self.buyers
        } else {
            self.connections.min(self.buyers)
        }
    }

    /// Total units demanded when every attempt succeeds (fixed-attempt runs).
    pub fn demand(&self) -> Option<i64> {
        (self.duration_s == 0.0)
            .then(|| i64::from(self.buyers) * i64::from(self.attempts_per_buyer) * self.quantity)
    }
}

fn flag_for(key: &str) -> &str {
    match key {
        "attempts_per_buyer" => "attempts",
        "think_ms" => "think-ms",
        "think_jitter_ms" => "think-ms",
        "product_skew" => "skew",
        "duration_s" => "duration",
        "rate_per_s" => "rate",
        other => other,
    }
}

fn to_u32(file: &str, key: &str, v: i64) -> Result<u32, ScenarioError> {
    u32::try_from(v).map_err(|_| {
        err(format!(
            "{file}: key `{key}`: must be a whole number from 0 to {}, got {v}",
            u32::MAX
        ))
    })
}

fn to_u64(file: &str, key: &str, v: i64) -> Result<u64, ScenarioError> {
    u64::try_from(v).map_err(|_| {
        err(format!(
            "{file}: key `{key}`: must not be negative, got {v}"
        ))
    })
}

fn read_file(path: &Path) -> Result<String, ScenarioError> {
    let shown = path.display();
    if path.is_dir() {
        return Err(err(format!(
            "{shown} is a directory; pass a scenario .toml file"
        )));
    }
    let bytes =
        std::fs::read(path).map_err(|e| err(format!("cannot read scenario {shown}: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        err(format!(
            "{shown}: not UTF-8 text (invalid byte at offset {}); save the file as UTF-8",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The `key = ...` on the line holding `offset`, if that line is an assignment.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then(|| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_loads() {
        for (name, _) in builtins() {
            let s = Scenario::load(name).unwrap();
            assert_eq!(&s.name, name);
        }
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = Scenario::parse("x.toml", "x", "stock = 1\nbuyers = 2\nbuyerz = 3\n").unwrap_err();
        assert!(e.0.starts_with("x.toml:3:1:"), "{e}");
        assert!(e.0.contains("buyerz"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = Scenario::parse("x.toml", "x", "stock = \"ten\"\nbuyers = 2\n").unwrap_err();
        assert!(e.0.starts_with("x.toml:1:9:"), "{e}");
        assert!(e.0.contains("key `stock`"), "{e}");
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = Scenario::parse("x.toml", "x", "stock = 1\nbuyers = = 2\n").unwrap_err();
        assert!(e.0.starts_with("x.toml:2:"), "{e}");
    }

    #[test]
    fn impossible_values_are_refused_naming_the_key() {
        let cases = [
            ("stock = 1\nbuyers = 0\n", "key `buyers`"),
            ("stock = -1\nbuyers = 2\n", "key `stock`"),
            ("stock = 1\nbuyers = 2\nquantity = 0\n", "key `quantity`"),
            ("stock = 1\nbuyers = 2000000\n", "100000"),
            ("stock = 1\nbuyers = -5\n", "key `buyers`"),
            ("buyers = 2\n", "missing key `stock`"),
        ];
        for (text, want) in cases {
            let e = Scenario::parse("x.toml", "x", text).unwrap_err();
            assert!(e.0.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn overrides_apply_and_are_validated() {
        let base = Scenario::load("default").unwrap();
        let args = Overrides {
            buyers: Some(100),
            stock: Some(3),
            ..Default::default()
        };
        let s = base.clone().with_overrides(&args).unwrap();
        assert_eq!((s.buyers, s.stock), (100, 3));
        let bad = Overrides {
            buyers: Some(0),
            ..Default::default()
        };
        let e = base.clone().with_overrides(&bad).unwrap_err();
        assert!(e.0.starts_with("--buyers:"), "{e}");
        let conflict = Overrides {
            duration: Some(1.0),
            attempts: Some(2),
            ..Default::default()
        };
        assert!(base
            .with_overrides(&conflict)
            .unwrap_err()
            .0
            .contains("conflict"));
    }

    #[test]
    fn unknown_name_suggests_the_closest() {
        let e = Scenario::load("last-iten").unwrap_err();
        assert!(e.0.contains("did you mean `last-item`"), "{e}");
    }
}
