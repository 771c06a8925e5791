//! Bad input (issue 7): every case exits 2 with one clear line on stderr
//! (a script parse error adds the offending line and a caret), and fails
//! before any database is touched: the runs here point at a port where
//! nothing listens, so an input that slipped through would exit 3 instead.
//! Also property tests: the scenario loader and the plan builder never
//! panic, and refuse only with bad-input errors.

use std::path::Path;
use std::process::Output;

use libtest_mimic::{Failed, Trial};

use crate::cli::{racelab, stderr, stdout};
use crate::common::OutputWithin as _;

pub fn tests() -> Vec<Trial> {
    vec![
        crate::common::test("badinput::unknown_names_suggest_the_closest", unknown_names),
        crate::common::test(
            "badinput::unreadable_strategy_files",
            unreadable_strategy_files,
        ),
        crate::common::test("badinput::every_parse_error_class", parse_errors),
        crate::common::test("badinput::scenario_files", scenario_files),
        crate::common::test(
            "badinput::impossible_values_and_conflicts",
            impossible_values,
        ),
        crate::common::test("badinput::database_url_not_a_url", bad_urls),
        crate::common::test("badinput::unwritable_out_before_the_race", unwritable_out),
        crate::common::test("badinput::clap_usage_errors_exit_2", clap_errors),
        crate::common::test("badinput::scenario_loader_never_panics", scenario_proptest),
        crate::common::test("badinput::plan_builder_never_panics", plan_proptest),
    ]
}

/// A URL whose port refuses connections (held while the guard lives):
/// reaching the database would exit 3.
fn nowhere() -> (crate::common::RefusingPort, String) {
    let port = crate::common::RefusingPort::new().expect("a port of our own");
    let url = format!("postgres://nobody@127.0.0.1:{}/db", port.port);
    (port, url)
}

/// `racelab run <args>` against nowhere, saving nothing.
fn run(args: &[&str]) -> Output {
    let (_port, nowhere) = nowhere();
    racelab()
        .arg("run")
        .args(args)
        .args([
            "--no-save",
            "--database-url",
            &nowhere,
            "--connect-timeout",
            "2",
        ])
        .env_remove("DATABASE_URL")
        .output_bounded()
        .expect("racelab runs")
}

/// Exit 2, nothing on stdout, exactly one line on stderr holding every `want`.
fn one_line(out: &Output, want: &[&str]) -> Result<(), Failed> {
    let err = stderr(out);
    if out.status.code() != Some(2) {
        return Err(format!("exit {:?}, want 2; stderr: {err}", out.status.code()).into());
    }
    if !stdout(out).is_empty() {
        return Err(format!("stdout is not empty: {}", stdout(out)).into());
    }
    let lines: Vec<&str> = err.lines().collect();
    if lines.len() != 1 || !lines[0].starts_with("racelab: ") {
        return Err(format!("want one `racelab: ...` line, got:\n{err}").into());
    }
    for w in want {
        if !lines[0].contains(w) {
            return Err(format!("`{w}` missing from: {}", lines[0]).into());
        }
    }
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write a test file");
    path.display().to_string()
}

fn unknown_names() -> Result<(), Failed> {
    one_line(
        &run(&["--strategy", "naiv"]),
        &["unknown strategy `naiv`", "did you mean `naive`"],
    )?;
    one_line(
        &run(&["--scenario", "last-iten"]),
        &["unknown scenario `last-iten`", "did you mean `last-item`"],
    )?;
    let out = racelab()
        .args([
            "compare",
            "--no-save",
            "--strategies",
            "for-update,optimistc",
        ])
        .output_bounded()?;
    one_line(&out, &["`optimistc`", "did you mean `optimistic`"])?;
    // Far from every name: no suggestion, but the list of built-ins.
    one_line(&run(&["--strategy", "zzzzzzzz"]), &["conditional"])?;
    Ok(())
}

fn unreadable_strategy_files() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let missing = d.join("missing.sql").display().to_string();
    one_line(&run(&["--strategy", &missing]), &[&missing, "not found"])?;
    let as_dir = format!("{}/", d.display());
    one_line(&run(&["--strategy", &as_dir]), &["is a directory"])?;
    let latin1 = write(d, "latin1.sql", b"-- caf\xe9\nSELECT 1;\n");
    one_line(
        &run(&["--strategy", &latin1]),
        &["not valid UTF-8", "UTF-8"],
    )?;
    let empty = write(d, "empty.sql", b"");
    one_line(&run(&["--strategy", &empty]), &["is empty"])?;
    let comments = write(d, "comments.sql", b"-- only a description\n\n");
    one_line(&run(&["--strategy", &comments]), &["is empty"])?;
    let no_sql = write(d, "nosql.sql", b"\\set x 1\n\\sleep 1 ms\n");
    one_line(&run(&["--strategy", &no_sql]), &["has no SQL statements"])?;
    Ok(())
}

/// One script per parse-error class (lexer, parser, expressions): the first
/// line is `racelab: FILE:LINE:COL: message`, then the line and a caret.
fn parse_errors() -> Result<(), Failed> {
    let cases: &[(&str, usize, usize, &str)] = &[
        ("SELECT 'abc;\n", 1, 8, "unterminated quoted string"),
        ("SELECT \"abc;\n", 1, 8, "unterminated quoted identifier"),
        (
            "SELECT $x$ abc;\n",
            1,
            8,
            "unterminated dollar-quoted string",
        ),
        ("SELECT 1 /* x;\n", 1, 10, "unterminated /* comment"),
        ("SELECT 1\n", 1, 1, "not terminated"),
        ("SELECT 1 \\gset\n\\gset\n", 2, 1, "already has a `\\gset`"),
        ("\\gset\n", 1, 1, "must follow a query"),
        ("SELECT 1; \\set x 1\n", 1, 11, "must start its own line"),
        (";\n", 1, 1, "empty SQL statement"),
        ("SELECT 1; SELECT 2;\n", 1, 9, "`;` must end its line"),
        ("SELECT $1;\n", 1, 8, "positional parameters"),
        ("\\sett x 1\nSELECT 1;\n", 1, 1, "did you mean `\\set`"),
        (
            "SELECT 1 AS x \\gset foo bar\n",
            1,
            25,
            "unexpected text after `\\gset`",
        ),
        ("\\setup\nSELECT 1;\n", 1, 1, "`\\setup` is not closed"),
        ("\\if 1\nSELECT 1;\n", 1, 1, "`\\if` is not closed"),
        (
            "\\setup\nSELECT 1 \\gset\n\\endsetup\nSELECT 1;\n",
            2,
            10,
            "cannot be used in `\\setup`",
        ),
        (
            "\\setup\nSELECT :buyer;\n\\endsetup\nSELECT 1;\n",
            2,
            8,
            "not available in `\\setup`",
        ),
        (
            "INSERT INTO orders VALUES (1) \\gset\n",
            1,
            31,
            "needs a query that returns a row",
        ),
        ("\\sold_out 1\nSELECT 1;\n", 1, 11, "takes no arguments"),
        (
            "\\setup\n\\set x 1\n\\endsetup\nSELECT 1;\n",
            2,
            1,
            "cannot be used in `\\setup`",
        ),
        (
            "\\setup\n\\endsetup\n\\setup\n\\endsetup\nSELECT 1;\n",
            3,
            1,
            "only one `\\setup`",
        ),
        (
            "SELECT 1;\n\\setup\n\\endsetup\n",
            2,
            1,
            "must come before the transaction",
        ),
        ("\\endsetup\nSELECT 1;\n", 1, 1, "without a `\\setup`"),
        ("\\set\nSELECT 1;\n", 1, 5, "needs a variable name"),
        ("\\else\nSELECT 1;\n", 1, 1, "without a matching `\\if`"),
        (
            "\\if 1\n\\else\n\\elif 1\n\\endif\nSELECT 1;\n",
            3,
            1,
            "after the `\\else`",
        ),
        ("\\endif\nSELECT 1;\n", 1, 1, "without a matching `\\if`"),
        ("SELECT :nope;\n", 1, 8, "unknown variable `:nope`"),
        ("\\set x 1 +\nSELECT 1;\n", 1, 11, "expected a value"),
        ("\\set x (1\nSELECT 1;\n", 1, 10, "expected `)`"),
        (
            "\\set x 99999999999999999999\nSELECT 1;\n",
            1,
            8,
            "out of range",
        ),
        (
            "\\set x rand(1,2)\nSELECT 1;\n",
            1,
            8,
            "did you mean `random`",
        ),
        (
            "\\set x 1 # 2\nSELECT 1;\n",
            1,
            10,
            "unexpected character `#`",
        ),
        ("\\sleep\nSELECT 1;\n", 1, 7, "expected an expression"),
        ("\\\n", 1, 1, "expected a meta-command name"),
    ];
    let dir = tempfile::tempdir()?;
    let mut failures = Vec::new();
    for (i, (text, line, col, want)) in cases.iter().enumerate() {
        let path = write(dir.path(), &format!("case{i}.sql"), text.as_bytes());
        let out = run(&["--strategy", &path]);
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().collect();
        let head = format!("racelab: {path}:{line}:{col}: ");
        let ok = out.status.code() == Some(2)
            && lines.len() == 3
            && lines[0].starts_with(&head)
            && lines[0].contains(want)
            && lines[2].trim_end().ends_with('^');
        if !ok {
            failures.push(format!(
                "{text:?}: want {head}...{want} (exit 2), got exit {:?}:\n{err}",
                out.status.code()
            ));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n").into())
    }
}

fn scenario_files() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let cases: &[(&str, &[u8], &[&str])] = &[
        (
            "syntax.toml",
            b"stock = 10\nbuyers = = 2\n",
            &["syntax.toml:2:"],
        ),
        (
            "unknown.toml",
            b"stock = 10\nbuyers = 2\nbuyerz = 3\n",
            &["unknown.toml:3:1:", "buyerz"],
        ),
        (
            "type.toml",
            b"stock = \"ten\"\nbuyers = 2\n",
            &["type.toml:1:9:", "key `stock`"],
        ),
        (
            "zero.toml",
            b"stock = 10\nbuyers = 0\n",
            &["key `buyers`", "between 1 and"],
        ),
        (
            "negative.toml",
            b"stock = -1\nbuyers = 2\n",
            &["key `stock`", "between 0 and"],
        ),
        (
            "qty.toml",
            b"stock = 1\nbuyers = 2\nquantity = 0\n",
            &["key `quantity`"],
        ),
        (
            "huge.toml",
            b"stock = 1\nbuyers = 2000000\n",
            &["key `buyers`", "100000"],
        ),
        (
            "latin1.toml",
            b"name = \"caf\xe9\"\nstock = 1\nbuyers = 1\n",
            &["not UTF-8"],
        ),
    ];
    for (name, text, want) in cases {
        let path = write(d, name, text);
        one_line(&run(&["--scenario", &path]), want)
            .map_err(|e| format!("{name}: {}", e.message().unwrap_or_default()))?;
    }
    let missing = d.join("missing.toml").display().to_string();
    one_line(&run(&["--scenario", &missing]), &[&missing])?;
    let as_dir = format!("{}/", d.display());
    one_line(&run(&["--scenario", &as_dir]), &["is a directory"])?;
    Ok(())
}

fn impossible_values() -> Result<(), Failed> {
    one_line(&run(&["--buyers", "0"]), &["--buyers", "between 1 and"])?;
    one_line(&run(&["--stock", "-1"]), &["--stock", "between 0 and"])?;
    one_line(&run(&["--quantity", "0"]), &["--quantity"])?;
    one_line(&run(&["--quantity", "-3"]), &["--quantity"])?;
    // The ceiling is named, so the user knows what is allowed.
    let ceiling = racelab::scenario::limits::MAX_BUYERS.to_string();
    one_line(&run(&["--buyers", "1000000"]), &["--buyers", &ceiling])?;
    one_line(
        &run(&["--duration", "1", "--attempts", "2"]),
        &["--duration and --attempts conflict"],
    )?;
    one_line(&run(&["--repeat", "0"]), &["--repeat"])?;
    let (_port, nowhere) = nowhere();
    let out = racelab()
        .args([
            "run",
            "--no-save",
            "--connect-timeout",
            "0",
            "--database-url",
            &nowhere,
        ])
        .output_bounded()?;
    one_line(&out, &["--connect-timeout"])?;
    Ok(())
}

fn bad_urls() -> Result<(), Failed> {
    for url in [
        "not a url",
        "localhost:5432/db",
        "mysql://root:hunter2@h/db",
    ] {
        let out = racelab()
            .args(["run", "--no-save", "--database-url", url])
            .output_bounded()?;
        one_line(&out, &["--database-url"])?;
        if stderr(&out).contains("hunter2") {
            return Err(format!("password shown: {}", stderr(&out)).into());
        }
    }
    Ok(())
}

fn unwritable_out() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let file = write(dir.path(), "plain-file", b"x");
    let below_file = format!("{file}/results");
    let (_port, nowhere) = nowhere();
    // Without --no-save: the results directory is checked before the
    // (unreachable) database, so this is exit 2, not 3.
    let out = racelab()
        .args(["run", "--out", &below_file, "--database-url", &nowhere])
        .output_bounded()?;
    one_line(&out, &["cannot write results to", &below_file, "--out"])?;
    let out = racelab()
        .args([
            "run",
            "--no-save",
            "--junit",
            &format!("{}/no/such/dir/r.xml", dir.path().display()),
            "--database-url",
            &nowhere,
        ])
        .output_bounded()?;
    one_line(&out, &["--junit"])?;
    Ok(())
}

fn clap_errors() -> Result<(), Failed> {
    let help = racelab().arg("--help").output_bounded()?;
    assert_eq!(help.status.code(), Some(0));
    for args in [
        &["run", "--bogus"][..],
        &["run", "--buyers", "abc"],
        &["frobnicate"],
        &["run", "--expect", "maybe"],
        &[],
    ] {
        let out = racelab().args(args).output_bounded()?;
        if out.status.code() != Some(2) || stderr(&out).is_empty() {
            return Err(format!(
                "racelab {args:?}: exit {:?}, stderr {}",
                out.status.code(),
                stderr(&out)
            )
            .into());
        }
    }
    Ok(())
}

/// A bounded proptest run inside a libtest-mimic trial: no regression
/// files (the seed is printed on failure), a fixed number of cases.
fn check<S: proptest::strategy::Strategy>(
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), proptest::test_runner::TestCaseError>,
) -> Result<(), Failed>
where
    S::Value: std::fmt::Debug,
{
    let config = proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..Default::default()
    };
    proptest::test_runner::TestRunner::new(config)
        .run(&strategy, test)
        .map_err(|e| Failed::from(e.to_string()))
}

fn scenario_proptest() -> Result<(), Failed> {
    use proptest::prelude::*;
    let atoms = prop::sample::select(vec![
        "stock",
        "buyers",
        "quantity",
        "attempts_per_buyer",
        "think_ms",
        "think_jitter_ms",
        "products",
        "product_skew",
        "connections",
        "duration_s",
        "name",
        "description",
        "bogus",
        " = ",
        "=",
        "\n",
        " ",
        "0",
        "1",
        "-1",
        "100000",
        "100001",
        "1e309",
        "nan",
        "inf",
        "-0.0",
        "0.5",
        "9223372036854775807",
        "-9223372036854775808",
        "99999999999999999999",
        "\"",
        "'",
        "\"\"\"",
        "[",
        "]",
        "[[x]]",
        "{",
        "}",
        ",",
        "#",
        "true",
        "é",
        "\t",
        "\r\n",
    ]);
    let soup = prop::collection::vec(atoms, 0..40).prop_map(|v| v.concat());
    let any_text = "\\PC{0,120}";
    let text = prop_oneof![soup, any_text.prop_map(String::from)];
    check(3000, text, |text| {
        match racelab::scenario::Scenario::parse("p.toml", "p", &text) {
            Ok(s) => {
                prop_assert!(s.buyers >= 1 && s.stock >= 0 && s.quantity >= 1, "{s:?}");
            }
            Err(e) => {
                prop_assert!(e.0.starts_with("p.toml"), "{e}");
                prop_assert!(!e.0.contains('\n'), "multi-line error: {e}");
            }
        }
        Ok(())
    })
}

fn plan_proptest() -> Result<(), Failed> {
    use clap::Parser;
    use proptest::prelude::*;
    use racelab::cli::{Cli, Command};
    let token = prop::sample::select(vec![
        "--strategy",
        "--strategies",
        "--scenario",
        "--buyers",
        "--stock",
        "--attempts",
        "--quantity",
        "--think-ms",
        "--products",
        "--skew",
        "--connections",
        "--duration",
        "--max-tries",
        "--seed",
        "--timeout",
        "--repeat",
        "--expect",
        "--connect-timeout",
        "--schema",
        "--database-url",
        "--json",
        "--quiet",
        "-b",
        "-q",
        "-a",
        "-d",
        "0",
        "1",
        "-1",
        "2",
        "100000",
        "100001",
        "4294967296",
        "1e309",
        "NaN",
        "inf",
        "-0",
        "0.001",
        "naive",
        "for-update",
        "naive,naive",
        ",",
        "nope",
        "default",
        "last-item",
        "hot-row",
        "/nonexistent/x.toml",
        "x.sql",
        "/",
        "postgres://u:p@h/db",
        "mysql://x",
        "",
        "é",
        "safe",
        "oversold",
        "racelab",
        "Robert'); DROP",
        "http://127.0.0.1:9/buy",
        "--request-timeout",
        "--stock-url",
        "--verify-sql",
        "--reset-url",
        "--success",
        "--sold-out",
        "200,409",
    ]);
    let argv = (
        prop::sample::select(vec!["run", "compare", "http"]),
        prop::collection::vec(token, 0..12),
    );
    check(2000, argv, |(cmd, rest)| {
        let mut args = vec!["racelab", cmd];
        args.extend(rest.iter().copied());
        // Never write anything, whatever the tokens say.
        args.push("--no-save");
        let Ok(cli) = Cli::try_parse_from(&args) else {
            return Ok(());
        };
        let built = match &cli.command {
            Command::Run(a) => racelab::plan::Plan::run(a),
            Command::Compare(a) => racelab::plan::Plan::compare(a),
            Command::Http(a) => racelab::plan::Plan::http(a),
            _ => return Ok(()),
        };
        if let Err(e) = built {
            let code = racelab::error::exit_code(&e);
            prop_assert_eq!(code, 2, "{:?}: {:#}", args, e);
        }
        Ok(())
    })
}
