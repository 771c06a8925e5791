//! HTTP buyers that arrive together: last-byte sync and `--http2` against
//! `racelab serve` (over the shared PostgreSQL server) and against a
//! third-party server, hypercorn serving a small ASGI shop
//! (`assets/shop_asgi.py`), with the stock read through a JSON expression.
//! A missing hypercorn fails its test, saying how to install it
//! (`.ci/run` installs it).

use std::path::Path;
use std::process::{Child, Command, Stdio};

use libtest_mimic::{Failed, Trial};
use serde_json::Value;

use crate::cli::*;
use crate::common::Lines;
use crate::common::OutputWithin as _;
use crate::http::{http, http_get, http_json, race_verified_with, Serve, BODY, START_LIMIT};

pub fn tests() -> Vec<Trial> {
    vec![
        crate::common::test(
            "http2::serve_for_update_is_safe_over_http2_and_without_sync",
            serve_for_update,
        ),
        crate::common::test("http2::serve_naive_oversells_over_http2", serve_naive),
        crate::common::test(
            "http2::serve_reports_the_arrival_spread_of_first_purchases",
            serve_arrivals,
        ),
        crate::common::test(
            "http2::hypercorn_naive_oversells_and_locked_is_safe",
            hypercorn_shop,
        ),
        crate::common::test(
            "http2::stock_expressions_are_checked_and_explained",
            stock_expressions,
        ),
        crate::common::test("http2::https_with_alpn_and_a_private_ca", hypercorn_tls),
    ]
}

fn serve_for_update() -> Result<(), Failed> {
    let schema = "t_http2_for_update";
    let serve = Serve::start(schema, "for-update", 5);
    let dir = tempfile::tempdir()?;
    let junit = dir.path().join("report.xml");
    for (extra, protocol, sync) in [
        (&["--http2"][..], "h2", "last-byte"),
        (&["--http2", "--sync", "none"][..], "h2", "none"),
        (&["--sync", "none"][..], "http/1.1", "none"),
        (&[][..], "http/1.1", "last-byte"),
    ] {
        let (out, v) = race_verified_with(&serve, schema, 2, &junit, extra);
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {}", stderr(&out));
        for r in runs(&v, 2) {
            assert_eq!(text(&r, "verdict"), "safe", "{extra:?}");
            assert_eq!(int(&r, "outcomes.succeeded"), 5, "{extra:?}: {r}");
            assert_eq!(int(&r, "outcomes.sold_out"), 95, "{extra:?}: {r}");
            assert_eq!(int(&r, "audit.units_sold"), 5);
            assert_eq!(text(&r, "target.protocol"), protocol);
            assert_eq!(text(&r, "target.sync"), sync);
            // 100 buyers: one HTTP/2 connection (the server allows 200
            // streams), or one HTTP/1.1 connection each.
            let conns = if protocol == "h2" { 1 } else { 100 };
            assert_eq!(int(&r, "target.connections"), conns, "{extra:?}");
        }
    }
    assert!(serve.stop().success());
    Ok(())
}

fn serve_naive() -> Result<(), Failed> {
    let schema = "t_http2_naive";
    let serve = Serve::start(schema, "naive", 1);
    let dir = tempfile::tempdir()?;
    let junit = dir.path().join("report.xml");
    let (out, v) = race_verified_with(&serve, schema, 3, &junit, &["--http2"]);
    let runs = runs(&v, 3);
    // --expect safe fails against the naive service, over HTTP/2 too.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let oversold = runs
        .iter()
        .filter(|r| int(r, "audit.oversold_units") > 0)
        .count();
    assert!(
        oversold >= 1,
        "the naive service never oversold over HTTP/2: {v}"
    );
    for r in &runs {
        assert_eq!(
            int(r, "outcomes.succeeded") + int(r, "outcomes.sold_out"),
            100,
            "{r}"
        );
        assert_eq!(int(r, "audit.units_sold"), int(r, "outcomes.succeeded"));
    }
    assert!(serve.stop().success());
    Ok(())
}

fn serve_arrivals() -> Result<(), Failed> {
    let serve = Serve::start("t_http2_arrivals", "conditional", 1000);
    let (purchase, stock, reset) = (
        serve.url("/purchase"),
        serve.url("/stock"),
        serve.url("/reset"),
    );
    for extra in [&[][..], &["--http2"][..]] {
        let mut args = vec![
            purchase.as_str(),
            "--buyers",
            "30",
            "--attempts",
            "2",
            "--body",
            BODY,
            "--stock-url",
            &stock,
            "--reset-url",
            &reset,
        ];
        args.extend_from_slice(extra);
        let (out, v) = http_json(&args);
        assert!(out.status.success(), "{extra:?}: {}", stderr(&out));
        assert_eq!(int(&v, "outcomes.succeeded"), 60);
        let arrivals = http_get(&serve.url("/arrivals"))?;
        let body = arrivals.split("\r\n\r\n").nth(1).unwrap_or_default();
        let a: Value = serde_json::from_str(body).map_err(|e| format!("{arrivals}: {e}"))?;
        // The first purchase of each of the 30 buyers since the reset.
        assert_eq!(a["buyers"], 30, "{a}");
        // Each buyer's first purchase reached the server after the first
        // release and before its answer came back: after the first
        // release and within the release spread plus the slowest attempt.
        // A spread beyond that counts arrivals of another race (a reset
        // that did not clear them) or times nothing real.
        let spread = a["first_purchase_spread_us"]
            .as_i64()
            .unwrap_or_else(|| panic!("no spread: {a}"));
        let bound = int(&v, "contention.release_spread_us") + int(&v, "latency_us.attempt.max");
        assert!(
            (0..=bound).contains(&spread),
            "{extra:?}: first purchases spread over {spread} µs, beyond the {bound} µs \
             from the first release to the slowest answer: {a}"
        );
        assert_eq!(int(&v, "outcomes.attempts"), 60, "{v}");
    }
    assert!(serve.stop().success());
    Ok(())
}

/// hypercorn serving `assets/shop_asgi.py` on a free loopback port; killed
/// (by its pid) on drop.
struct Hypercorn {
    child: Child,
    base: String,
}

impl Hypercorn {
    fn start() -> Result<Hypercorn, Failed> {
        Hypercorn::start_with(None)
    }

    /// With `tls` (certificate and key files): https://, ALPN h2 and http/1.1.
    fn start_with(tls: Option<(&Path, &Path)>) -> Result<Hypercorn, Failed> {
        let probe = Command::new("python3")
            .args(["-c", "import hypercorn"])
            .output_bounded();
        if !matches!(&probe, Ok(o) if o.status.success()) {
            return Err(
                "hypercorn is not installed (pip install hypercorn; .ci/run installs it)".into(),
            );
        }
        let app = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/assets");
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "hypercorn", "--bind", "127.0.0.1:0"]);
        if let Some((cert, key)) = tls {
            cmd.arg("--certfile").arg(cert).arg("--keyfile").arg(key);
        }
        let mut child = cmd
            .arg("shop_asgi:app")
            .current_dir(app)
            .env("SHOP_STOCK", "5")
            .env("SHOP_RESERVED", "2")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let lines = Lines::of(child.stderr.take().unwrap(), "hypercorn's log");
        let base = lines.find("where it listens", START_LIMIT, |line| {
            let i = line.find("Running on http")?;
            let rest = &line[i + "Running on ".len()..];
            rest.split_whitespace().next().map(str::to_string)
        });
        // Keep draining its log so that it never blocks on a full pipe.
        lines.drain();
        match base {
            Ok(base) => Ok(Hypercorn { child, base }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("hypercorn did not say where it listens: {e:#}").into())
            }
        }
    }
}

impl Drop for Hypercorn {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let stopped = crate::common::wait_status(&mut self.child, START_LIMIT);
        if !matches!(stopped, Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Race one of the ASGI app's shops, 20 buyers, 2 rounds, its stock read
/// as `quantity - reservedQuantity` and its sales from `.sold`.
fn race_shop(h: &Hypercorn, shop: &str, extra: &[&str]) -> (std::process::Output, Value) {
    let purchase = format!("{}/{shop}/purchase", h.base);
    let stock = format!("{}/{shop}/stock", h.base);
    let reset = format!("{}/{shop}/reset", h.base);
    let mut args = vec![
        purchase.as_str(),
        "--buyers",
        "20",
        "--body",
        r#"{"buyer": {{buyer}}}"#,
        "--stock-url",
        &stock,
        "--stock-json-path",
        ".item.quantity - .item.reservedQuantity",
        "--sold-json-path",
        ".sold",
        "--reset-url",
        &reset,
        "--repeat",
        "2",
    ];
    args.extend_from_slice(extra);
    http_json(&args)
}

fn hypercorn_shop() -> Result<(), Failed> {
    let h = Hypercorn::start()?;
    for extra in [&["--http2"][..], &[][..]] {
        let protocol = if extra.is_empty() { "http/1.1" } else { "h2" };
        // The naive shop: every buyer reads 3 on sale before anyone writes.
        let (out, v) = race_shop(&h, "naive", extra);
        assert!(out.status.success(), "{extra:?}: {}", stderr(&out));
        for r in runs(&v, 2) {
            assert_eq!(text(&r, "target.protocol"), protocol);
            assert_eq!(text(&r, "target.sync"), "last-byte");
            assert_eq!(int(&r, "outcomes.errors"), 0, "{r}");
            assert_eq!(int(&r, "audit.initial_stock"), 3, "quantity 5 - reserved 2");
            // Units sold are the service's own count, not racelab's.
            assert_eq!(int(&r, "audit.units_sold"), int(&r, "outcomes.succeeded"));
            assert!(int(&r, "audit.oversold_units") > 0, "{extra:?}: {r}");
            assert_eq!(text(&r, "verdict"), "oversold");
        }
        // The locked shop sells exactly what it has.
        let (out, v) = race_shop(&h, "locked", extra);
        assert!(out.status.success(), "{extra:?}: {}", stderr(&out));
        for r in runs(&v, 2) {
            assert_eq!(text(&r, "verdict"), "safe", "{extra:?}: {r}");
            assert_eq!(int(&r, "outcomes.succeeded"), 3);
            assert_eq!(int(&r, "outcomes.sold_out"), 17);
            assert_eq!(int(&r, "audit.units_sold"), 3);
            assert_eq!(int(&r, "audit.final_stock"), 0);
        }
    }
    Ok(())
}

fn stock_expressions() -> Result<(), Failed> {
    // Bad syntax is bad input before anything is sent.
    let out = http(&[
        "http://127.0.0.1:9/buy",
        "--stock-url",
        "http://127.0.0.1:9/stock",
        "--stock-json-path",
        ".quantity - ",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--stock-json-path \".quantity - \": column 13"),
        "{}",
        stderr(&out)
    );
    // --sold-json-path reads the stock endpoint: it needs one.
    let out = http(&[
        "http://127.0.0.1:9/buy",
        "--stock",
        "3",
        "--sold-json-path",
        ".sold",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--stock-url"), "{}", stderr(&out));
    // A path the endpoint does not have is named, with what it has.
    let h = Hypercorn::start()?;
    let out = http(&[
        &format!("{}/locked/purchase", h.base),
        "--stock-url",
        &format!("{}/locked/stock", h.base),
        "--stock-json-path",
        ".item.quantity - .item.reserved",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--stock-json-path: .item.reserved is missing in {\"item\""),
        "{}",
        stderr(&out)
    );
    let out = http(&[
        &format!("{}/locked/purchase", h.base),
        "--stock-url",
        &format!("{}/locked/stock", h.base),
        "--stock-json-path",
        ".item.quantity",
        "--sold-json-path",
        ".item",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--sold-json-path: .item is {\"quantity\""),
        "{}",
        stderr(&out)
    );
    Ok(())
}

/// A private CA and a certificate it signed for 127.0.0.1 and localhost,
/// made with the openssl command: (ca.pem, cert.pem, key.pem) in `dir`.
fn private_ca(dir: &Path) -> Result<(), Failed> {
    let run = |args: &[&str]| -> Result<(), Failed> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output_bounded()?;
        if !out.status.success() {
            return Err(format!("openssl {args:?}: {}", stderr(&out)).into());
        }
        Ok(())
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )?;
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=racelab test CA",
    ])?;
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=localhost",
    ])?;
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ])
}

fn hypercorn_tls() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    private_ca(dir.path())?;
    let h = Hypercorn::start_with(Some((
        &dir.path().join("cert.pem"),
        &dir.path().join("key.pem"),
    )))?;
    assert!(h.base.starts_with("https://"), "{}", h.base);
    let ca = dir.path().join("ca.pem");
    let ca = ca.to_str().unwrap();
    // The private CA is not a public root: without --cacert, exit 3 before
    // anything is sent, naming the certificate.
    let out = http(&[
        &format!("{}/locked/purchase", h.base),
        "--buyers",
        "2",
        "--stock",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("certificate"), "{}", stderr(&out));
    for (extra, protocol) in [(&["--http2"][..], "h2"), (&[][..], "http/1.1")] {
        let mut args = vec!["--cacert", ca];
        args.extend_from_slice(extra);
        let (out, v) = race_shop(&h, "locked", &args);
        assert!(out.status.success(), "{extra:?}: {}", stderr(&out));
        for r in runs(&v, 2) {
            assert_eq!(text(&r, "target.protocol"), protocol, "ALPN agreed");
            assert_eq!(text(&r, "target.sync"), "last-byte");
            assert_eq!(text(&r, "verdict"), "safe", "{extra:?}: {r}");
            assert_eq!(int(&r, "outcomes.succeeded"), 3);
            assert_eq!(int(&r, "audit.units_sold"), 3);
        }
        let (out, v) = race_shop(&h, "naive", &args);
        assert!(out.status.success(), "{extra:?}: {}", stderr(&out));
        for r in runs(&v, 2) {
            assert!(int(&r, "audit.oversold_units") > 0, "{extra:?}: {r}");
            assert_eq!(text(&r, "verdict"), "oversold", "{extra:?}: {r}");
        }
    }
    // A file without certificates is bad input.
    let empty = dir.path().join("ext.cnf");
    let out = http(&[&h.base, "--stock", "1", "--cacert", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no certificate in it"),
        "{}",
        stderr(&out)
    );
    Ok(())
}
