//! The interpreter driven directly against the shared test server: `\gset`
//! types and row counts, every outcome path, lost connections, `\setup`
//! scoping, and statement reuse. Each test works in its own lab schema,
//! prepared by racelab's own `Database::prepare_lab`.

use std::sync::Arc;

use libtest_mimic::{Failed, Trial};
use racelab::db::{Database, DbOptions, ProductSeed};
use racelab::outcome::{AttemptReport, Outcome};
use racelab::strategy::{load, parse, run_setup, AttemptCtx, TraceEvent, TraceKind};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Executor, PgConnection, Row};

pub fn tests() -> Vec<Trial> {
    vec![
        crate::common::test("interp::builtin_strategies_race", || {
            block(builtin_strategies_race())
        }),
        crate::common::test("interp::gset_types_and_row_counts", || {
            block(gset_types_and_row_counts())
        }),
        crate::common::test("interp::outcomes_and_transactions", || {
            block(outcomes_and_transactions())
        }),
        crate::common::test("interp::lost_connections", || block(lost_connections())),
        crate::common::test("interp::setup_runs_once_or_per_product", || {
            block(setup_runs_once_or_per_product())
        }),
        crate::common::test(
            "interp::a_session_reuses_its_connection_and_statements",
            || block(a_session_reuses_its_connection_and_statements()),
        ),
    ]
}

/// Run an async test on its own multi-threaded runtime (buyers race on
/// several threads, like a busy client would).
fn block(test: impl std::future::Future<Output = ()>) -> Result<(), Failed> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?
        .block_on(test);
    Ok(())
}

struct Lab {
    db: Database,
    opts: PgConnectOptions,
    seeds: Vec<ProductSeed>,
    products: Vec<(i64, i64)>,
}

/// A fresh lab schema `t_interp_<name>` on the shared server.
async fn lab(name: &str, products: &[(i64, i64)]) -> Lab {
    let opts = DbOptions {
        database_url: Some(crate::common::server_url().to_string()),
        schema: format!("t_interp_{name}"),
        ..DbOptions::default()
    };
    let db = Database::open(&opts).await.expect("open the shared server");
    let seeds: Vec<ProductSeed> = products
        .iter()
        .map(|&(id, stock)| ProductSeed {
            id,
            name: "widget".into(),
            stock,
        })
        .collect();
    db.prepare_lab(&seeds).await.expect("prepare the lab");
    Lab {
        opts: db.connect_options(),
        db,
        seeds,
        products: products.to_vec(),
    }
}

impl Lab {
    async fn conn(&self) -> PgConnection {
        self.opts.connect().await.unwrap()
    }

    /// A fresh lab again: stock, orders, and whatever a `\setup` added.
    async fn reset(&self) {
        self.db.prepare_lab(&self.seeds).await.unwrap();
    }

    /// (stock, units sold, orders) of product 1.
    async fn audit(&self) -> (i64, i64, i64) {
        let mut c = self.conn().await;
        let stock: i64 = sqlx::query("SELECT stock FROM products WHERE id = 1")
            .fetch_one(&mut c)
            .await
            .unwrap()
            .get(0);
        let row = sqlx::query("SELECT coalesce(sum(qty), 0)::bigint, count(*) FROM orders")
            .fetch_one(&mut c)
            .await
            .unwrap();
        (stock, row.get(0), row.get(1))
    }

    async fn attempt_ids_with_orders(&self) -> Vec<i64> {
        let mut c = self.conn().await;
        sqlx::query("SELECT attempt_id FROM orders ORDER BY attempt_id")
            .fetch_all(&mut c)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }
}

fn ctx(attempt: i64, think_ms: i64, max_tries: u32) -> AttemptCtx {
    AttemptCtx {
        product: 1,
        qty: 1,
        buyer: attempt,
        attempt,
        think_ms,
        max_tries,
    }
}

/// Race `buyers` buyers, one attempt each, on their own connections.
async fn race(lab: &Lab, strategy: &str, buyers: i64, think_ms: i64) -> Vec<(i64, AttemptReport)> {
    let strat = Arc::new(load(strategy).unwrap());
    lab.reset().await;
    run_setup(&strat.program, &mut lab.conn().await, &lab.products)
        .await
        .unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(buyers as usize));
    let mut tasks = Vec::new();
    for b in 1..=buyers {
        let mut conn = lab.conn().await;
        let (strat, barrier) = (strat.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let mut session = strat.program.session(b as u64);
            barrier.wait().await;
            (
                b,
                session
                    .attempt(&mut conn, &ctx(b, think_ms, 10), None)
                    .await,
            )
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn count(reports: &[(i64, AttemptReport)], o: Outcome) -> usize {
    reports.iter().filter(|(_, r)| r.outcome == o).count()
}

async fn builtin_strategies_race() {
    let lab = lab("race", &[(1, 5)]).await;
    // The Redis built-ins need a Redis (tests/it/redis.rs races them).
    for (name, src) in racelab::strategy::builtins() {
        if parse(name, src).is_ok_and(|p| p.uses_redis()) {
            continue;
        }
        let reports = race(&lab, name, 20, 5).await;
        let (stock, sold, orders) = lab.audit().await;
        let succeeded = count(&reports, Outcome::Succeeded);
        let summary = format!(
            "{name}: stock {stock}, sold {sold}, orders {orders}, outcomes {:?}",
            reports
                .iter()
                .map(|(_, r)| (r.outcome, r.tries, r.message.clone()))
                .collect::<Vec<_>>()
        );
        let tally: Vec<(Outcome, usize)> = Outcome::ALL
            .iter()
            .map(|o| (*o, count(&reports, *o)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let retries: u32 = reports.iter().map(|(_, r)| r.tries - 1).sum();
        eprintln!("{name:>16}: sold {sold}, stock {stock}, {tally:?}, retries {retries}");
        // The client's belief matches the database, for every strategy.
        assert_eq!(succeeded as i64, orders, "{summary}");
        let mut ok_ids: Vec<i64> = reports
            .iter()
            .filter(|(_, r)| r.outcome == Outcome::Succeeded)
            .map(|(b, _)| *b)
            .collect();
        ok_ids.sort();
        assert_eq!(ok_ids, lab.attempt_ids_with_orders().await, "{summary}");
        assert_eq!(count(&reports, Outcome::Error), 0, "{summary}");
        assert_eq!(count(&reports, Outcome::Unknown), 0, "{summary}");
        assert!(reports.iter().all(|(_, r)| !r.connection_lost), "{summary}");
        if *name == "naive" {
            // Everyone reads 5 before the first commit: lost updates.
            assert!(sold > 5, "{summary}");
            assert_ne!(5 - sold, stock, "{summary}");
            continue;
        }
        assert!(sold <= 5 && stock >= 0 && 5 - sold == stock, "{summary}");
        match *name {
            "optimistic" | "serializable" | "repeatable-read" => {
                assert!(sold >= 1, "{summary}");
                assert!(reports.iter().any(|(_, r)| r.tries > 1), "{summary}");
            }
            "check-constraint" => {
                assert_eq!(sold, 5, "{summary}");
                assert_eq!(count(&reports, Outcome::Rejected), 15, "{summary}");
            }
            _ => {
                assert_eq!(sold, 5, "{summary}");
                assert_eq!(count(&reports, Outcome::SoldOut), 15, "{summary}");
            }
        }
    }
}

/// Run `src` once on one connection, with a trace.
async fn once(lab: &Lab, src: &str, max_tries: u32) -> (AttemptReport, Vec<TraceEvent>) {
    let prog = parse("t.sql", src).unwrap_or_else(|e| panic!("{}", e.render()));
    let mut conn = lab.conn().await;
    let mut trace = Vec::new();
    let r = prog
        .session(1)
        .attempt(&mut conn, &ctx(1, 0, max_tries), Some(&mut trace))
        .await;
    // The connection is left outside any transaction: SAVEPOINT fails with
    // 25P01 only outside a transaction block.
    if !r.connection_lost {
        let probe = conn.execute("SAVEPOINT probe").await.unwrap_err();
        let code = probe
            .as_database_error()
            .and_then(|e| e.code())
            .unwrap_or_default();
        assert_eq!(code, "25P01", "a transaction was left open: {r:?}");
    }
    (r, trace)
}

fn msg(r: &AttemptReport) -> &str {
    r.message.as_deref().unwrap_or("")
}

async fn gset_types_and_row_counts() {
    let lab = lab("gset", &[(1, 5)]).await;
    let (r, trace) = once(
        &lab,
        "SELECT 1::int2 AS a, 2::int4 AS b, 3::int8 AS c, true AS t, false AS f, 'x'::text AS s,
                'y'::varchar AS v, 'z'::name AS n, 'w'::char(2) AS ch, 1.5::float8 AS d, NULL::int AS z \\gset
\\if :a + :b + :c = 6 and :t = 1 and :f = 0
  SELECT :s = 'x' AND :v = 'y' AND :n = 'z' AND :ch = 'w ' AND :d = '1.5' AS ok \\gset
\\else
  SELECT 1/0;
\\endif
\\if :ok = 0
  SELECT 1/0;
\\endif
",
        1,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{r:?} {trace:#?}");
    let first = &trace[0];
    assert_eq!(first.kind, TraceKind::Sql);
    assert!(
        first.values.contains(&("c".into(), "3".into())),
        "{:?}",
        first.values
    );
    assert!(
        first.values.contains(&("z".into(), "NULL".into())),
        "{:?}",
        first.values
    );
    assert_eq!(trace.last().unwrap().outcome, Some(Outcome::Succeeded));

    let (r, _) = once(&lab, "SELECT NULL::int AS z \\gset\nSELECT :z;", 1).await;
    assert_eq!(
        (r.outcome, msg(&r)),
        (Outcome::Error, "variable :z is NULL (line 2)")
    );
    let (r, _) = once(
        &lab,
        "SELECT NULL::int AS z \\gset\n\\set y :z + 1\nSELECT 1;",
        1,
    )
    .await;
    assert_eq!(msg(&r), "variable :z is NULL (line 2)");
    let (r, _) = once(&lab, "SELECT 1.5::numeric AS x \\gset\nSELECT :x;", 1).await;
    assert_eq!(r.outcome, Outcome::Error);
    assert!(
        msg(&r).contains("cast it with ::text or ::bigint (line 1)"),
        "{r:?}"
    );
    let (r, _) = once(
        &lab,
        "SELECT 1 AS x FROM products WHERE false \\gset\nSELECT :x;",
        1,
    )
    .await;
    assert_eq!(
        msg(&r),
        "\\gset needs exactly one row, the query returned no rows (line 1)"
    );
    let (r, _) = once(
        &lab,
        "SELECT 1 AS x FROM generate_series(1, 3) \\gset\nSELECT :x;",
        1,
    )
    .await;
    assert_eq!(
        msg(&r),
        "\\gset needs exactly one row, the query returned 3 rows (line 1)"
    );
    // Columns unreadable at load time are matched by name at run time.
    let (r, _) = once(&lab, "SELECT * FROM products WHERE id = :product \\gset\n\\if :stock <> 5\nSELECT 1/0;\n\\endif\nSELECT :name || '!';", 1).await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
    let (r, _) = once(
        &lab,
        "SELECT * FROM products WHERE id = :product \\gset\nSELECT :nothing;",
        1,
    )
    .await;
    assert_eq!(msg(&r), "variable :nothing has no value yet (line 2)");
    // Text round trip through a bind parameter; a prefix.
    let (r, _) = once(&lab, "SELECT name FROM products WHERE id = :product \\gset p_\nSELECT count(*) AS n FROM products WHERE name = :p_name \\gset\n\\if :n <> 1\nSELECT 1/0;\n\\endif\n", 1).await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
}

async fn outcomes_and_transactions() {
    let lab = lab("outcomes", &[(1, 5)]).await;
    // :rows after an UPDATE; \sold_out rolls back an open transaction.
    let (r, trace) = once(&lab, "BEGIN;\nUPDATE products SET stock = 999 WHERE id = :product;\n\\if :rows = 1\n  \\sold_out\n\\endif\nCOMMIT;", 1).await;
    assert_eq!(r.outcome, Outcome::SoldOut, "{r:?}");
    assert_eq!(lab.audit().await.0, 5);
    let kinds: Vec<TraceKind> = trace.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            TraceKind::Sql,
            TraceKind::Sql,
            TraceKind::Meta,
            TraceKind::Rollback,
            TraceKind::Outcome
        ]
    );
    assert_eq!(trace[1].rows, Some(1));
    assert_eq!(
        trace[1].what,
        "UPDATE products SET stock = 999 WHERE id = :product;".trim_end_matches(';')
    );

    // Ending inside a transaction: rolled back, an error that says so.
    let (r, _) = once(
        &lab,
        "BEGIN;\nUPDATE products SET stock = 999 WHERE id = :product;\n",
        1,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Error);
    assert_eq!(
        msg(&r),
        "script ended inside an open transaction (opened at line 1): add COMMIT"
    );
    assert_eq!(lab.audit().await.0, 5);

    // Other SQL errors: SQLSTATE, message and line; rolled back.
    let (r, _) = once(
        &lab,
        "BEGIN;\nUPDATE products SET stock = 999;\nSELECT * FROM nowhere;\nCOMMIT;",
        1,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Error);
    assert_eq!(
        msg(&r),
        "42P01: relation \"nowhere\" does not exist (line 3)"
    );
    assert_eq!(lab.audit().await.0, 5);

    // A constraint violation is a rejection.
    let (r, trace) = once(
        &lab,
        "INSERT INTO orders (product_id, buyer_id, attempt_id, qty) VALUES (42, 1, 1, 1);",
        1,
    )
    .await;
    assert_eq!((r.outcome, r.message.clone()), (Outcome::Rejected, None));
    assert!(
        trace[0].error.as_deref().unwrap().starts_with("23503: "),
        "{trace:?}"
    );

    // Expression errors.
    let (r, _) = once(&lab, "\\set x 1 / (:qty - 1)\nSELECT 1;", 1).await;
    assert_eq!(msg(&r), "division by zero (line 1)");
    let (r, _) = once(
        &lab,
        "\\if :try = 1\n\\set y :later\n\\endif\n\\set later 1\nSELECT 1;",
        1,
    )
    .await;
    assert_eq!(msg(&r), "variable :later has no value yet (line 2)");

    // \retry until the tries run out; the message is the last conflict.
    let (r, trace) = once(&lab, "BEGIN;\nSELECT 1;\n\\retry\nCOMMIT;", 3).await;
    assert_eq!(
        (r.outcome, r.tries, msg(&r)),
        (Outcome::GaveUp, 3, "\\retry (line 3)")
    );
    assert_eq!(
        trace
            .iter()
            .filter(|e| e.kind == TraceKind::Backoff)
            .count(),
        2
    );
    assert_eq!(
        trace
            .iter()
            .filter(|e| e.kind == TraceKind::Rollback)
            .count(),
        3
    );
    // :try counts tries.
    let (r, _) = once(&lab, "\\if :try < 4\n\\retry\n\\endif\nSELECT 1;", 0).await;
    assert_eq!((r.outcome, r.tries), (Outcome::Succeeded, 4));
    // A serialization failure is retried; the last one is the message.
    let (r, _) = once(
        &lab,
        "SELECT 1;\nDO $$ BEGIN RAISE EXCEPTION 'boom' USING ERRCODE = '40001'; END $$;",
        2,
    )
    .await;
    assert_eq!(
        (r.outcome, r.tries, msg(&r)),
        (Outcome::GaveUp, 2, "40001: boom (line 2)")
    );
    let (r, _) = once(
        &lab,
        "DO $$ BEGIN RAISE EXCEPTION 'locked' USING ERRCODE = '55P03'; END $$;",
        2,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Rejected);
    // Sleeping: think time in ms.
    let t = std::time::Instant::now();
    let (r, _) = once(&lab, "\\sleep 30 ms\nSELECT 1;", 1).await;
    assert_eq!(r.outcome, Outcome::Succeeded);
    assert!(t.elapsed() >= std::time::Duration::from_millis(30));
}

async fn lost_connections() {
    let lab = lab("lost", &[(1, 5)]).await;
    // Outside a transaction the statement may have committed: unknown.
    let (r, _) = once(&lab, "SELECT pg_terminate_backend(pg_backend_pid());", 1).await;
    assert_eq!(
        (r.outcome, r.connection_lost),
        (Outcome::Unknown, true),
        "{r:?}"
    );
    // Inside one it cannot have: an error.
    let (r, _) = once(
        &lab,
        "BEGIN;\nSELECT pg_terminate_backend(pg_backend_pid());\nCOMMIT;",
        1,
    )
    .await;
    assert_eq!(
        (r.outcome, r.connection_lost),
        (Outcome::Error, true),
        "{r:?}"
    );
    assert!(msg(&r).ends_with("(line 2)"), "{r:?}");
}

async fn setup_runs_once_or_per_product() {
    let lab = lab("setup", &[(1, 3), (2, 4)]).await;
    let prog = parse(
        "s.sql",
        "\\setup\nCREATE TABLE log (product bigint, n bigint);\nINSERT INTO log VALUES (:product, :initial_stock);\nINSERT INTO log VALUES (0, 0);\n\\endsetup\nSELECT 1;",
    )
    .unwrap();
    assert!(prog.has_setup());
    let mut c = lab.conn().await;
    run_setup(&prog, &mut c, &lab.products).await.unwrap();
    let rows: Vec<(i64, i64)> = sqlx::query("SELECT product, n FROM log ORDER BY product")
        .fetch_all(&mut c)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, [(0, 0), (1, 3), (2, 4)]);
    // A failing setup names its line.
    let err = run_setup(&prog, &mut c, &lab.products).await.unwrap_err();
    assert!(format!("{err:#}").contains("line 2"), "{err:#}");
    // The built-in setups are idempotent (the lab may be reset in place).
    for name in ["check-constraint", "skip-locked"] {
        let s = load(name).unwrap();
        run_setup(&s.program, &mut c, &lab.products).await.unwrap();
        run_setup(&s.program, &mut c, &lab.products).await.unwrap();
    }
    let units: i64 = sqlx::query("SELECT count(*) FROM units")
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0);
    assert_eq!(units, 7);
}

async fn a_session_reuses_its_connection_and_statements() {
    let lab = lab("reuse", &[(1, 100)]).await;
    let s = load("conditional").unwrap();
    let mut conn = lab.conn().await;
    let (pid, none) = backend_and_prepared(&mut conn).await;
    assert_eq!(none, 0, "a fresh connection has no prepared statement");
    let mut session = s.program.session(9);
    let r = session.attempt(&mut conn, &ctx(1, 0, 10), None).await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
    let (after_one_pid, prepared) = backend_and_prepared(&mut conn).await;
    assert_eq!(after_one_pid, pid);
    assert!(prepared >= 1, "the attempt prepared no statement");
    for a in 2..=50 {
        let r = session.attempt(&mut conn, &ctx(a, 0, 10), None).await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
    }
    // The same backend served all 50, and the statements the first
    // attempt prepared served the other 49: none was prepared again.
    assert_eq!(backend_and_prepared(&mut conn).await, (pid, prepared));
    assert_eq!(lab.audit().await, (50, 50, 50));
    for a in 51..=52 {
        let mut c = ctx(a, 0, 10);
        c.qty = 30;
        let r = session.attempt(&mut conn, &c, None).await;
        assert_eq!(
            r.outcome,
            if a == 51 {
                Outcome::Succeeded
            } else {
                Outcome::SoldOut
            }
        );
    }
}

/// The connection's backend pid and how many statements it has prepared
/// (asked unprepared, so the question adds none).
async fn backend_and_prepared(c: &mut PgConnection) -> (i32, i64) {
    let row = sqlx::query("SELECT pg_backend_pid(), (SELECT count(*) FROM pg_prepared_statements)")
        .persistent(false)
        .fetch_one(c)
        .await
        .unwrap();
    (row.get::<i32, _>(0), row.get::<i64, _>(1))
}
