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
        Scenario::load_with(spec, &Overrides::default())
    }

    /// Load a scenario and apply the flags: a flag may supply any field
    /// (a file then needs neither `buyers` nor `stock` when the flags give
    /// them), and the file and the flags are held to the same rules.
    pub fn load_with(spec: &str, overrides: &Overrides) -> Result<Scenario, ScenarioError> {
        if spec.contains('/') || spec.ends_with(".toml") {
            let path = Path::new(spec);
            let text = read_file(path)?;
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| spec.to_string());
            return Scenario::parse_with(spec, &stem, &text, overrides);
        }
        match builtins().iter().find(|(name, _)| *name == spec) {
            Some((name, text)) => {
                Scenario::parse_with(&format!("scenarios/{name}.toml"), name, text, overrides)
            }
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
        Scenario::parse_with(file, default_name, text, &Overrides::default())
    }

    /// Parse scenario TOML, apply the flags, validate the whole: each value
    /// refused is named where it came from (the flag, or the file's key).
    pub fn parse_with(
        file: &str,
        default_name: &str,
        text: &str,
        overrides: &Overrides,
    ) -> Result<Scenario, ScenarioError> {
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
        Scenario::merge(file, default_name, raw, overrides)
    }

    /// Apply command-line overrides to a loaded scenario, then validate
    /// again naming the flag.
    pub fn with_overrides(self, args: &Overrides) -> Result<Scenario, ScenarioError> {
        let name = self.name.clone();
        Scenario::merge("command line", &name, RawScenario::from(self), args)
    }

    /// The file's keys under the flags, checked by one set of rules.
    fn merge(
        file: &str,
        default_name: &str,
        raw: RawScenario,
        o: &Overrides,
    ) -> Result<Scenario, ScenarioError> {
        let place = Place { file, flags: o };
        // A timed run loops until the time is up: attempts would be
        // ignored, so a file and the flags alike may give only one of the
        // two. A flag of either kind replaces the file's choice.
        let file_timed = raw.duration_s.is_some_and(|d| d != 0.0);
        if file_timed && raw.attempts_per_buyer.is_some() {
            return Err(err(mode_conflict(
                &format!("{file}: keys `duration_s` and `attempts_per_buyer`"),
                "keep one of them",
            )));
        }
        if o.duration.is_some() && o.attempts.is_some() {
            return Err(err(mode_conflict(
                "--duration and --attempts",
                "pass one of them",
            )));
        }
        let (attempts, duration) = match (o.attempts, o.duration) {
            (Some(a), _) => (i64::from(a), 0.0),
            (None, Some(d)) => (raw.attempts_per_buyer.unwrap_or(1), d),
            (None, None) => (
                raw.attempts_per_buyer.unwrap_or(1),
                raw.duration_s.unwrap_or(0.0),
            ),
        };
        let required = |key: &str, flag: &str, what: &str| {
            err(format!(
                "{file}: missing key `{key}` ({what}): add `{key} = N` to the file or pass --{flag} N"
            ))
        };
        let stock = o
            .stock
            .or(raw.stock)
            .ok_or_else(|| required("stock", "stock", "initial stock per product"))?;
        let buyers = match o.buyers {
            Some(b) => i64::from(b),
            None => raw
                .buyers
                .ok_or_else(|| required("buyers", "buyers", "how many buyers race"))?,
        };
        let s = Scenario {
            name: raw.name.unwrap_or_else(|| default_name.to_string()),
            description: raw.description.unwrap_or_default(),
            stock,
            buyers: place.u32("buyers", buyers)?,
            attempts_per_buyer: place.u32("attempts_per_buyer", attempts)?,
            quantity: o.quantity.or(raw.quantity).unwrap_or(1),
            think_ms: place.u64(
                "think_ms",
                o.think_ms.map_or(raw.think_ms.unwrap_or(0), |v| {
                    v.try_into().unwrap_or(i64::MAX)
                }),
            )?,
            think_jitter_ms: place.u64("think_jitter_ms", raw.think_jitter_ms.unwrap_or(0))?,
            products: place.u32(
                "products",
                o.products.map_or(raw.products.unwrap_or(1), i64::from),
            )?,
            product_skew: o.skew.or(raw.product_skew).unwrap_or(0.0),
            connections: place.u32(
                "connections",
                o.connections
                    .map_or(raw.connections.unwrap_or(0), i64::from),
            )?,
            duration_s: duration,
            rate_per_s: o.rate.or(raw.rate_per_s).unwrap_or(0.0),
        };
        s.validate(&place)?;
        Ok(s)
    }

    fn validate(&self, place: &Place) -> Result<(), ScenarioError> {
        use limits::*;
        let check = |ok: bool, key: &str, what: String| {
            if ok {
                Ok(())
            } else {
                Err(err(format!("{}: {what}", place.of(key))))
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
                "must not exceed the think time ({} ms, {}), got {}",
                self.think_ms,
                place.of("think_ms"),
                self.think_jitter_ms
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

/// "a timed run loops until the time is up": the one message for the
/// duration and the attempts given together, by a file or by flags.
fn mode_conflict(both: &str, fix: &str) -> String {
    format!(
        "{both} conflict: a timed run loops until the time is up and ignores the attempts; {fix}"
    )
}

/// Where each value of a merged scenario came from, for its errors: the
/// flag that set it, else the file's key.
struct Place<'a> {
    file: &'a str,
    flags: &'a Overrides,
}

impl Place<'_> {
    fn of(&self, key: &str) -> String {
        let o = self.flags;
        let (flag, set) = match key {
            "buyers" => ("buyers", o.buyers.is_some()),
            "stock" => ("stock", o.stock.is_some()),
            "attempts_per_buyer" => ("attempts", o.attempts.is_some()),
            "quantity" => ("quantity", o.quantity.is_some()),
            "think_ms" => ("think-ms", o.think_ms.is_some()),
            "products" => ("products", o.products.is_some()),
            "product_skew" => ("skew", o.skew.is_some()),
            "connections" => ("connections", o.connections.is_some()),
            "duration_s" => ("duration", o.duration.is_some()),
            "rate_per_s" => ("rate", o.rate.is_some()),
            _ => ("", false),
        };
        if set || self.file == "command line" && !flag.is_empty() {
            format!("--{flag}")
        } else {
            format!("{}: key `{key}`", self.file)
        }
    }

    fn u32(&self, key: &str, v: i64) -> Result<u32, ScenarioError> {
        u32::try_from(v).map_err(|_| {
            err(format!(
                "{}: must be a whole number from 0 to {}, got {v}",
                self.of(key),
                u32::MAX
            ))
        })
    }

    fn u64(&self, key: &str, v: i64) -> Result<u64, ScenarioError> {
        u64::try_from(v)
            .map_err(|_| err(format!("{}: must not be negative, got {v}", self.of(key))))
    }
}

impl From<Scenario> for RawScenario {
    fn from(s: Scenario) -> RawScenario {
        let timed = s.duration_s > 0.0;
        RawScenario {
            name: Some(s.name),
            description: Some(s.description),
            stock: Some(s.stock),
            buyers: Some(i64::from(s.buyers)),
            attempts_per_buyer: (!timed).then_some(i64::from(s.attempts_per_buyer)),
            quantity: Some(s.quantity),
            think_ms: Some(s.think_ms.try_into().unwrap_or(i64::MAX)),
            think_jitter_ms: Some(s.think_jitter_ms.try_into().unwrap_or(i64::MAX)),
            products: Some(i64::from(s.products)),
            product_skew: Some(s.product_skew),
            connections: Some(i64::from(s.connections)),
            duration_s: Some(s.duration_s),
            rate_per_s: Some(s.rate_per_s),
        }
    }
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
    fn flags_may_supply_any_field() {
        let flags = Overrides {
            buyers: Some(7),
            stock: Some(3),
            ..Default::default()
        };
        let s = Scenario::parse_with("x.toml", "x", "quantity = 2\n", &flags).unwrap();
        assert_eq!((s.buyers, s.stock, s.quantity), (7, 3, 2));
        let e =
            Scenario::parse_with("x.toml", "x", "stock = 1\n", &Overrides::default()).unwrap_err();
        assert!(
            e.0.starts_with("x.toml: missing key `buyers`") && e.0.contains("--buyers N"),
            "{e}"
        );
    }

    #[test]
    fn a_file_and_the_flags_follow_the_same_rules() {
        // Duration and attempts together: refused from a file as from flags.
        let e = Scenario::parse(
            "x.toml",
            "x",
            "stock = 1\nbuyers = 2\nduration_s = 3\nattempts_per_buyer = 4\n",
        )
        .unwrap_err();
        let flags = Overrides {
            duration: Some(3.0),
            attempts: Some(4),
            ..Default::default()
        };
        let f = Scenario::parse_with("x.toml", "x", "stock = 1\nbuyers = 2\n", &flags).unwrap_err();
        let rule = "conflict: a timed run loops until the time is up and ignores the attempts";
        assert!(e.0.contains(rule) && e.0.contains("`duration_s`"), "{e}");
        assert!(
            f.0.contains(rule) && f.0.starts_with("--duration and --attempts"),
            "{f}"
        );
        // A flag of one kind replaces the file's other kind.
        let timed = Overrides {
            duration: Some(2.0),
            ..Default::default()
        };
        let s = Scenario::parse_with(
            "x.toml",
            "x",
            "stock = 1\nbuyers = 2\nattempts_per_buyer = 4\n",
            &timed,
        )
        .unwrap();
        assert_eq!(s.duration_s, 2.0);
        // A value is named where it came from.
        let e = Scenario::parse_with(
            "x.toml",
            "x",
            "stock = 1\nbuyers = 2\nthink_ms = 5\nthink_jitter_ms = 4\n",
            &Overrides {
                think_ms: Some(1),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            e.0.starts_with("x.toml: key `think_jitter_ms`") && e.0.contains("--think-ms"),
            "{e}"
        );
    }

    #[test]
    fn unknown_name_suggests_the_closest() {
        let e = Scenario::load("last-iten").unwrap_err();
        assert!(e.0.contains("did you mean `last-item`"), "{e}");
    }
}
