//! The built-in strategies (compiled in from `strategies/`), loading a
//! strategy by name or path, and the "did you mean" suggestions used by all
//! of the strategy module's messages.

use std::path::{Path, PathBuf};

use super::{description, parse, Origin, Strategy};
use crate::error::bad_input;

/// Embedded so the binary works from any directory; `build.rs` reruns when
/// `strategies/` changes.
static BUILTINS: [(&str, &str); 15] = [
    ("naive", include_str!("../../strategies/naive.sql")),
    (
        "for-update",
        include_str!("../../strategies/for-update.sql"),
    ),
    (
        "conditional",
        include_str!("../../strategies/conditional.sql"),
    ),
    (
        "optimistic",
        include_str!("../../strategies/optimistic.sql"),
    ),
    ("advisory", include_str!("../../strategies/advisory.sql")),
    (
        "advisory-session",
        include_str!("../../strategies/advisory-session.sql"),
    ),
    (
        "serializable",
        include_str!("../../strategies/serializable.sql"),
    ),
    (
        "repeatable-read",
        include_str!("../../strategies/repeatable-read.sql"),
    ),
    (
        "check-constraint",
        include_str!("../../strategies/check-constraint.sql"),
    ),
    (
        "skip-locked",
        include_str!("../../strategies/skip-locked.sql"),
    ),
    (
        "idempotent",
        include_str!("../../strategies/idempotent.sql"),
    ),
    (
        "redis-decr",
        include_str!("../../strategies/redis-decr.sql"),
    ),
    (
        "redis-get-set",
        include_str!("../../strategies/redis-get-set.sql"),
    ),
    (
        "redis-lock",
        include_str!("../../strategies/redis-lock.sql"),
    ),
    ("redis-lua", include_str!("../../strategies/redis-lua.sql")),
];

/// The built-in strategies: (name, source), in a stable order.
pub fn builtins() -> &'static [(&'static str, &'static str)] {
    &BUILTINS
}

/// Load a strategy by built-in name or by path (anything containing a `/`
/// or ending in `.sql`).
pub fn load(spec: &str) -> anyhow::Result<Strategy> {
    if spec.contains('/') || spec.ends_with(".sql") {
        return load_file(Path::new(spec));
    }
    let Some((name, source)) = BUILTINS.iter().find(|(n, _)| *n == spec) else {
        let names: Vec<&str> = BUILTINS.iter().map(|(n, _)| *n).collect();
        let hint = crate::suggest::did_you_mean("", spec, names.iter().copied());
        return Err(bad_input(format!(
            "unknown strategy `{spec}`{hint} (built-ins: {}; or give a path to a .sql file)",
            names.join(", ")
        )));
    };
    build(name, Origin::Builtin, source, &format!("{name}.sql"))
}

fn load_file(path: &Path) -> anyhow::Result<Strategy> {
    let shown = path.display();
    if path.is_dir() {
        return Err(bad_input(format!(
            "strategy file `{shown}` is a directory; pass a .sql file"
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => bad_input(format!(
            "strategy file `{shown}` not found; check the path, or see `racelab list` for built-ins"
        )),
        _ => bad_input(format!("cannot read strategy file `{shown}`: {e}")),
    })?;
    let source = String::from_utf8(bytes).map_err(|e| {
        bad_input(format!(
            "strategy file `{shown}` is not valid UTF-8 (at byte {}); save it as UTF-8",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| shown.to_string());
    build(
        &name,
        Origin::File(PathBuf::from(path)),
        &source,
        &shown.to_string(),
    )
}

fn build(name: &str, origin: Origin, source: &str, file: &str) -> anyhow::Result<Strategy> {
    let has_code = source.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with("--")
    });
    if !has_code {
        return Err(bad_input(format!(
            "strategy `{file}` is empty: write the SQL each buyer runs for one purchase"
        )));
    }
    let program = parse(file, source).map_err(anyhow::Error::new)?;
    if program.stmts.is_empty() {
        return Err(bad_input(format!(
            "strategy `{file}` has no SQL statements (outside `\\setup`): nothing to run"
        )));
    }
    Ok(Strategy {
        name: name.to_string(),
        origin,
        source: source.to_string(),
        description: description(source),
        program: std::sync::Arc::new(program),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::BadInput;

    fn bad(spec: &str) -> String {
        let e = load(spec).expect_err("an error");
        assert!(e.is::<BadInput>(), "{e:#}");
        e.to_string()
    }

    #[test]
    fn every_builtin_loads_and_describes_itself() {
        for (name, _) in builtins() {
            let s = load(name).unwrap_or_else(|e| {
                match e.downcast_ref::<crate::strategy::ParseError>() {
                    Some(p) => panic!("{}", p.render()),
                    None => panic!("{e:#}"),
                }
            });
            assert_eq!(s.name, *name);
            assert_eq!(s.origin, Origin::Builtin);
            assert!(
                s.description.starts_with(&format!("{name}:")),
                "{name}: {}",
                s.description
            );
            assert!(s.description.lines().count() >= 3, "{name}");
        }
    }

    #[test]
    fn builtin_shapes() {
        let get = |n: &str| load(n).unwrap().program;
        assert!(!get("naive").has_setup());
        assert!(get("check-constraint").has_setup());
        assert!(get("skip-locked").has_setup());
        // conditional is one statement.
        assert_eq!(get("conditional").stmts.len(), 1);
    }

    #[test]
    fn naive_is_the_design_example() {
        let src = builtins()[0].1;
        assert!(src.contains(
            "BEGIN;\nSELECT stock FROM products WHERE id = :product \\gset\n\\if :stock < :qty\n  ROLLBACK;\n  \\sold_out\n\\endif\n\\sleep :think ms\nUPDATE products SET stock = :stock - :qty WHERE id = :product;\nINSERT INTO orders (product_id, buyer_id, attempt_id, qty)\n  VALUES (:product, :buyer, :attempt, :qty);\nCOMMIT;\n"
        ));
    }

    #[test]
    fn unknown_builtin_suggests_the_closest() {
        let m = bad("naiv");
        assert!(m.contains("`naive`?"), "{m}");
        assert!(m.contains("for-update"), "{m}");
        let m = bad("forupdate");
        assert!(m.contains("did you mean `for-update`"), "{m}");
        let m = bad("zzzzzzzzzz");
        assert!(!m.contains("did you mean"), "{m}");
    }

    #[test]
    fn file_errors_are_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(bad(&format!("{}/missing.sql", d.display())).contains("not found"));
        assert!(bad(&format!("{}/", d.display())).contains("directory"));
        std::fs::write(d.join("bin.sql"), b"SELECT 1;\xff\n").unwrap();
        assert!(bad(&format!("{}/bin.sql", d.display())).contains("UTF-8"));
        std::fs::write(d.join("empty.sql"), "-- only a comment\n\n").unwrap();
        assert!(bad(&format!("{}/empty.sql", d.display())).contains("is empty"));
        std::fs::write(d.join("nosql.sql"), "\\set x 1\n").unwrap();
        assert!(bad(&format!("{}/nosql.sql", d.display())).contains("no SQL"));
    }

    #[test]
    fn file_strategy_is_named_by_its_stem_and_parse_errors_stay_typed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("my_buy.sql");
        std::fs::write(&path, "-- mine\nSELECT 1;\n").unwrap();
        let s = load(path.to_str().unwrap()).unwrap();
        assert_eq!(s.name, "my_buy");
        assert_eq!(s.origin, Origin::File(path.clone()));
        assert_eq!(s.description, "mine");
        std::fs::write(&path, "SELECT 1;\n\\bogus\n").unwrap();
        let e = load(path.to_str().unwrap()).unwrap_err();
        let p = e
            .downcast_ref::<crate::strategy::ParseError>()
            .expect("a ParseError");
        assert_eq!((p.line, p.col), (2, 1));
    }
}
