//! Integration tests of `racelab::db` against real PostgreSQL: the embedded
//! cluster guard (shutdown, error, panic, root), the kept cluster, external
//! mode on the shared server (migrations, ownership, foreign objects left
//! untouched), stale clean-up, missing binaries, and the audit on real rows.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use libtest_mimic::Trial;
use racelab::db::cluster::OwnerMarker;
use racelab::db::kept::{self, KeptInfo, KeptOptions};
use racelab::db::{bins, proc, schema, Cluster, Database, DbKind, DbOptions, ProductSeed};
use racelab::verdict::{of_audit, Verdict};
use sqlx::{Connection, PgConnection};

use crate::common::{self, block_on, trial};

pub fn tests() -> Vec<Trial> {
    vec![
        trial(
            "db::embedded_shutdown_leaves_nothing",
            embedded_shutdown_leaves_nothing,
        ),
        trial(
            "db::embedded_dropped_after_error",
            embedded_dropped_after_error,
        ),
        trial("db::embedded_dropped_on_panic", embedded_dropped_on_panic),
        trial("db::server_never_runs_as_root", server_never_runs_as_root),
        trial(
            "db::open_embedded_prepare_and_shutdown",
            open_embedded_prepare_and_shutdown,
        ),
        trial("db::kept_cluster_lifecycle", kept_cluster_lifecycle),
        trial("db::kept_status_with_dead_pid", kept_status_with_dead_pid),
        trial(
            "db::external_migrations_idempotent",
            external_migrations_idempotent,
        ),
        trial(
            "db::external_foreign_objects_untouched",
            external_foreign_objects_untouched,
        ),
        trial(
            "db::lab_with_foreign_dependents_kept",
            lab_with_foreign_dependents_kept,
        ),
        trial(
            "db::prepare_lab_resets_setup_changes",
            prepare_lab_resets_setup_changes,
        ),
        trial("db::stale_clusters_cleaned_up", stale_clusters_cleaned_up),
        trial(
            "db::killed_owner_takes_server_down",
            killed_owner_takes_server_down,
        ),
        trial(
            "db::missing_binaries_say_how_to_fix",
            missing_binaries_say_how_to_fix,
        ),
        trial(
            "db::bad_input_and_unreachable_server",
            bad_input_and_unreachable_server,
        ),
        trial("db::audit_counts_real_rows", audit_counts_real_rows),
    ]
}

fn seeds(stocks: &[i64]) -> Vec<ProductSeed> {
    stocks
        .iter()
        .enumerate()
        .map(|(i, &stock)| ProductSeed {
            id: i as i64 + 1,
            name: format!("product {}", i + 1),
            stock,
        })
        .collect()
}

fn assert_gone(pid: u32, dir: &Path) -> anyhow::Result<()> {
    ensure!(!proc::alive(pid), "postmaster {pid} is still running");
    ensure!(
        !dir.exists(),
        "cluster directory {} still exists",
        dir.display()
    );
    Ok(())
}

async fn select_42(conn: &mut PgConnection) -> anyhow::Result<()> {
    let v: i32 = sqlx::query_scalar("SELECT 40 + 2")
        .fetch_one(&mut *conn)
        .await?;
    ensure!(v == 42);
    Ok(())
}

fn embedded_shutdown_leaves_nothing() -> anyhow::Result<()> {
    let c = Cluster::start(&common::cluster_options()?)?;
    let (pid, dir) = (c.pid(), c.dir().to_path_buf());
    ensure!(proc::alive(pid) && dir.join("data").is_dir() && dir.join("server.log").is_file());
    let marker = OwnerMarker::read(&dir).context("no owner marker")?;
    ensure!(marker.racelab_pid == std::process::id() && marker.postmaster_pid == Some(pid));
    block_on(async {
        // Through the socket, and through the TCP URL other programs get.
        let mut conn = PgConnection::connect_with(&c.connect_options()).await?;
        select_42(&mut conn).await?;
        conn.close().await?;
        let mut tcp = PgConnection::connect(&common::cluster_url(&c)).await?;
        select_42(&mut tcp).await?;
        tcp.close().await?;
        anyhow::Ok(())
    })?;
    c.shutdown()?;
    assert_gone(pid, &dir)
}

fn embedded_dropped_after_error() -> anyhow::Result<()> {
    let mut seen = None;
    let result: anyhow::Result<()> = (|| {
        let c = Cluster::start(&common::cluster_options()?)?;
        seen = Some((c.pid(), c.dir().to_path_buf()));
        anyhow::bail!("a failure while the cluster is up")
    })();
    ensure!(result.is_err());
    let (pid, dir) = seen.context("the cluster did not start")?;
    assert_gone(pid, &dir)
}

fn embedded_dropped_on_panic() -> anyhow::Result<()> {
    let seen = Mutex::new(None);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let c = Cluster::start(&common::cluster_options().unwrap()).unwrap();
        *seen.lock().unwrap() = Some((c.pid(), c.dir().to_path_buf()));
        // Unwind exactly like a panic, without the panic hook printing a
        // (misleading) message and backtrace into the test output.
        std::panic::resume_unwind(Box::new("expected panic"));
    }));
    ensure!(result.is_err());
    let (pid, dir) = seen
        .into_inner()
        .unwrap()
        .context("the cluster did not start")?;
    assert_gone(pid, &dir)
}

fn server_never_runs_as_root() -> anyhow::Result<()> {
    let c = Cluster::start(&common::cluster_options()?)?;
    let uid = proc::uid_of(c.pid()).context("no /proc status for the postmaster")?;
    if proc::euid() == 0 {
        ensure!(uid != 0, "the postmaster runs as root");
        let meta = std::fs::metadata(c.data_dir())?;
        ensure!(
            std::os::unix::fs::MetadataExt::uid(&meta) == uid,
            "data dir not owned by the server user"
        );
    } else {
        ensure!(uid == proc::euid());
    }
    c.shutdown()
}

fn open_embedded_prepare_and_shutdown() -> anyhow::Result<()> {
    let (dirs, _state) = common::dirs_with_private_state()?;
    let opts = DbOptions {
        schema: "t_embedded".into(),
        ..DbOptions::default()
    };
    block_on(async {
        let db = Database::open_with(&opts, &dirs).await?;
        ensure!(db.kind() == DbKind::Embedded);
        ensure!(!db.durable());
        let expected = bins::find_server_bins(None)?.version(None)?;
        ensure!(
            db.server_version() == expected,
            "{} != {expected}",
            db.server_version()
        );
        let cluster = db.cluster().context("no cluster")?;
        let (pid, dir) = (cluster.pid(), cluster.dir().to_path_buf());
        let started = Instant::now();
        db.prepare_lab(&seeds(&[10, 20])).await?;
        eprintln!(
            "  prepare_lab on a fresh embedded cluster: {:?}",
            started.elapsed()
        );
        let mut conn = db.connect().await?;
        let (path, app): (String, String) = sqlx::query_as(
            "SELECT current_setting('search_path'), current_setting('application_name')",
        )
        .fetch_one(&mut conn)
        .await?;
        ensure!(path == "t_embedded" && app == "racelab", "{path} {app}");
        let stock: i64 = sqlx::query_scalar("SELECT sum(stock)::int8 FROM products")
            .fetch_one(&mut conn)
            .await?;
        ensure!(stock == 30);
        let max: String = sqlx::query_scalar("SHOW max_connections")
            .fetch_one(&mut conn)
            .await?;
        ensure!(max == "110", "max_connections {max}");
        conn.close().await?;
        db.shutdown().await?;
        assert_gone(pid, &dir)
    })
}

fn kept_cluster_lifecycle() -> anyhow::Result<()> {
    let (dirs, _state) = common::dirs_with_private_state()?;
    let opts = KeptOptions {
        pg_bin: None,
        dirs: dirs.clone(),
        durable: false,
        max_connections: 50,
    };
    block_on(async {
        ensure!(kept::status_in(&dirs.state_dir)?.is_none());
        ensure!(kept::url_in(&dirs.state_dir)
            .unwrap_err()
            .to_string()
            .contains("racelab db start"));
        let info = kept::start(&opts).await?;
        let result = async {
            // The state file shows the URL without the password; `db url`
            // gives the one that logs in, with the cluster's own password.
            ensure!(info.url == format!("postgresql://postgres@127.0.0.1:{}/postgres", info.port));
            ensure!(kept::status_in(&dirs.state_dir)?.as_ref() == Some(&info));
            let login = kept::url_in(&dirs.state_dir)?;
            let password = login.expose().password().unwrap_or_default().to_string();
            ensure!(password.len() == 64, "no password in {login}");
            ensure!(login.to_string().contains("postgres:***@"), "{login}");
            let state_json = std::fs::read_to_string(dirs.state_dir.join("cluster.json"))?;
            ensure!(
                !state_json.contains(&password),
                "the state file holds the password"
            );
            // Starting again is idempotent.
            ensure!(kept::start(&opts).await?.pid == info.pid);
            // Another program's view: the TCP URL; without the password it
            // is refused.
            let refused = PgConnection::connect(&info.url).await.err();
            ensure!(
                refused
                    .as_ref()
                    .is_some_and(|e| e.to_string().contains("password")),
                "a TCP login without the password: {refused:?}"
            );
            let mut conn = PgConnection::connect(login.expose().as_str()).await?;
            select_42(&mut conn).await?;
            let max: String = sqlx::query_scalar("SHOW max_connections")
                .fetch_one(&mut conn)
                .await?;
            ensure!(max == "50");
            conn.close().await?;
            // A run uses it.
            let db = Database::open_with(
                &DbOptions {
                    schema: "t_kept".into(),
                    ..DbOptions::default()
                },
                &dirs,
            )
            .await?;
            ensure!(db.kind() == DbKind::Kept && db.cluster().is_none());
            db.prepare_lab(&seeds(&[3])).await?;
            db.shutdown().await?;
            ensure!(
                proc::alive(info.pid),
                "closing a run stopped the kept cluster"
            );
            Ok(())
        }
        .await;
        let stopped = kept::stop_in(&dirs.state_dir).await;
        result?;
        ensure!(stopped?, "stop did not report a running cluster");
        assert_gone(info.pid, &info.cluster_dir)?;
        ensure!(kept::status_in(&dirs.state_dir)?.is_none());
        ensure!(!kept::stop_in(&dirs.state_dir).await?);
        Ok(())
    })
}

fn kept_status_with_dead_pid() -> anyhow::Result<()> {
    let state = tempfile::tempdir()?;
    let mut child = Command::new("true").spawn()?;
    let dead = child.id();
    child.wait()?;
    let cluster_dir = state.path().join("cluster");
    std::fs::create_dir_all(cluster_dir.join("data"))?;
    let info = KeptInfo {
        url: "postgresql://postgres@127.0.0.1:1/postgres".into(),
        pid: dead,
        port: 1,
        data_dir: cluster_dir.join("data"),
        socket_dir: cluster_dir.join("sock"),
        cluster_dir: cluster_dir.clone(),
        started_at: "2024-01-01T00:00:00Z".into(),
        server_version: "15.0".into(),
        durable: false,
        max_connections: 10,
    };
    std::fs::write(
        state.path().join("cluster.json"),
        serde_json::to_vec(&info)?,
    )?;
    ensure!(
        kept::status_in(state.path())?.is_none(),
        "a dead kept cluster reported as running"
    );
    ensure!(
        !state.path().join("cluster.json").exists(),
        "stale state file kept"
    );
    ensure!(!cluster_dir.exists(), "stale cluster dir kept");
    Ok(())
}

async fn connect_shared() -> anyhow::Result<PgConnection> {
    Ok(PgConnection::connect(common::server_url()).await?)
}

fn external_migrations_idempotent() -> anyhow::Result<()> {
    block_on(async {
        let mut conn = connect_shared().await?;
        schema::migrate(&mut conn, "t_migrate").await?;
        schema::migrate(&mut conn, "t_migrate").await?;
        let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM t_migrate._sqlx_migrations")
            .fetch_one(&mut conn)
            .await?;
        ensure!(applied == schema::migrator().iter().count() as i64 && applied > 0);
        let in_public: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations')::text")
                .fetch_one(&mut conn)
                .await?;
        ensure!(in_public.is_none(), "_sqlx_migrations landed in public");
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 't_migrate' ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await?;
        ensure!(
            tables == ["_sqlx_migrations", "orders", "products"],
            "{tables:?}"
        );
        ensure!(
            schema::ownership(&mut conn, "t_migrate").await? != schema::Ownership::Foreign,
            "no marker"
        );
        // No CHECK on stock: a lab must be able to go negative.
        sqlx::query("INSERT INTO t_migrate.products (id, name, stock, initial_stock) VALUES (1, 'x', -5, 0)")
            .execute(&mut conn)
            .await?;
        conn.close().await?;

        let db = Database::open(&common::external_options("t_migrate")).await?;
        ensure!(db.kind() == DbKind::External);
        ensure!(!db.durable(), "the shared server runs with fsync=off");
        ensure!(db
            .server_version()
            .starts_with(|c: char| c.is_ascii_digit()));
        db.shutdown().await
    })
}

/// A checksum of everything in `public.t_user_data` and schema `t_notours`.
/// The user's data and the tables of their schema. Only this test's own
/// objects count: other tests run at the same time and add to `public`.
async fn user_checksum(conn: &mut PgConnection) -> anyhow::Result<String> {
    Ok(sqlx::query_scalar(
        "SELECT md5(
           (SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM public.t_user_data) || '|' ||
           (SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM t_notours.products) || '|' ||
           (SELECT string_agg(table_schema || '.' || table_name, ',' ORDER BY 1)
              FROM information_schema.tables
             WHERE (table_schema = 'public' AND table_name = 't_user_data')
                OR table_schema = 't_notours') || '|' ||
           coalesce(obj_description('t_notours'::regnamespace, 'pg_namespace'), '-'))",
    )
    .fetch_one(&mut *conn)
    .await?)
}

fn external_foreign_objects_untouched() -> anyhow::Result<()> {
    block_on(async {
        let mut conn = connect_shared().await?;
        sqlx::raw_sql(
            "CREATE TABLE public.t_user_data (id int PRIMARY KEY, v text);
             INSERT INTO public.t_user_data SELECT g, 'row ' || g FROM generate_series(1, 100) g;
             CREATE SCHEMA t_notours;
             CREATE TABLE t_notours.products (id int PRIMARY KEY, v text);
             INSERT INTO t_notours.products VALUES (1, 'precious'), (2, 'data');",
        )
        .execute(&mut conn)
        .await?;
        let before = user_checksum(&mut conn).await?;

        let db = Database::open(&common::external_options("t_notours")).await?;
        let err = db.prepare_lab(&seeds(&[5])).await.unwrap_err();
        let msg = format!("{err:#}");
        ensure!(
            msg.contains("did not create") && msg.contains("--schema"),
            "{msg}"
        );
        ensure!(racelab::error::exit_code(&err) == 3);
        let err = schema::migrate(&mut conn, "t_notours").await.unwrap_err();
        ensure!(err.to_string().contains("did not create"), "{err}");
        ensure!(
            user_checksum(&mut conn).await? == before,
            "user data changed"
        );

        // A lab in another schema of the same database leaves them alone too.
        let lab = Database::open(&common::external_options("t_lab_ext")).await?;
        lab.prepare_lab(&seeds(&[5])).await?;
        lab.prepare_lab(&seeds(&[7])).await?;
        ensure!(
            user_checksum(&mut conn).await? == before,
            "user data changed"
        );
        conn.close().await?;
        Ok(())
    })
}

fn lab_with_foreign_dependents_kept() -> anyhow::Result<()> {
    block_on(async {
        let db = Database::open(&common::external_options("t_dep")).await?;
        db.prepare_lab(&seeds(&[5])).await?;
        let mut conn = connect_shared().await?;
        sqlx::raw_sql("CREATE VIEW public.t_dep_view AS SELECT id, stock FROM t_dep.products")
            .execute(&mut conn)
            .await?;
        let err = db.prepare_lab(&seeds(&[5])).await.unwrap_err();
        let msg = format!("{err:#}");
        ensure!(
            msg.contains("depend") && msg.contains("t_dep_view"),
            "{msg}"
        );
        let still: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('public.t_dep_view')::text")
                .fetch_one(&mut conn)
                .await?;
        ensure!(still.is_some(), "the user's view was dropped");
        sqlx::raw_sql("DROP VIEW public.t_dep_view")
            .execute(&mut conn)
            .await?;
        // A foreign key from a user's table is a dependent too.
        sqlx::raw_sql("CREATE TABLE public.t_dep_fk (pid bigint REFERENCES t_dep.products (id))")
            .execute(&mut conn)
            .await?;
        let msg = format!("{:#}", db.prepare_lab(&seeds(&[5])).await.unwrap_err());
        ensure!(msg.contains("t_dep_fk"), "{msg}");
        sqlx::raw_sql("DROP TABLE public.t_dep_fk")
            .execute(&mut conn)
            .await?;
        // What a strategy's \setup may add inside the lab is not foreign.
        sqlx::raw_sql(
            "SET search_path TO t_dep;
             ALTER TABLE products ADD CONSTRAINT nonneg CHECK (stock >= 0);
             CREATE INDEX ON orders (attempt_id);
             CREATE STATISTICS st ON id, stock FROM products;
             CREATE VIEW v AS SELECT * FROM products;
             CREATE TABLE tickets (id bigserial PRIMARY KEY, product_id bigint REFERENCES products (id));
             CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN NEW.version := NEW.version + 1; RETURN NEW; END $$;
             CREATE TRIGGER t BEFORE UPDATE ON products FOR EACH ROW EXECUTE FUNCTION bump();
             CREATE TYPE mood AS ENUM ('ok');
             ALTER TABLE orders ADD COLUMN m mood;
             CREATE POLICY p ON products USING (true);
             RESET search_path;",
        )
        .execute(&mut conn)
        .await?;
        db.prepare_lab(&seeds(&[5])).await?;
        let extra: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 't_dep'::regnamespace AND relname IN ('v', 'tickets')",
        )
        .fetch_one(&mut conn)
        .await?;
        ensure!(extra == 0, "the reset kept \\setup objects");
        conn.close().await?;
        Ok(())
    })
}

fn prepare_lab_resets_setup_changes() -> anyhow::Result<()> {
    block_on(async {
        let db = Database::open(&common::external_options("t_reset")).await?;
        db.prepare_lab(&seeds(&[5, 6])).await?;
        let mut conn = db.connect().await?;
        // What a strategy's \setup and a run might leave behind.
        sqlx::raw_sql(
            "ALTER TABLE products ADD CONSTRAINT stock_nonneg CHECK (stock >= 0);
             CREATE TABLE tickets (id int);
             UPDATE products SET stock = 0, version = 9;
             INSERT INTO orders (product_id, buyer_id, attempt_id, qty) VALUES (1, 1, 1, 5);",
        )
        .execute(&mut conn)
        .await?;
        conn.close().await?;
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            db.prepare_lab(&seeds(&[5, 6])).await?;
            times.push(t.elapsed());
        }
        times.sort();
        eprintln!(
            "  prepare_lab (external, debug build): median {:?}",
            times[2]
        );
        let mut conn = db.connect().await?;
        let (tables, checks, orders, stock, version): (i64, i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM information_schema.tables WHERE table_schema = 't_reset'),
                    (SELECT count(*) FROM pg_constraint WHERE conrelid = 'products'::regclass AND contype = 'c'),
                    (SELECT count(*) FROM orders),
                    (SELECT sum(stock)::int8 FROM products),
                    (SELECT sum(version)::int8 FROM products)",
        )
        .fetch_one(&mut conn)
        .await?;
        ensure!(
            (tables, checks, orders, stock, version) == (3, 0, 0, 11, 0),
            "{tables} {checks} {orders} {stock} {version}"
        );
        // Order ids start again too (a fresh sequence).
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO orders (product_id, buyer_id, attempt_id, qty) VALUES (1, 1, 1, 1) RETURNING id",
        )
        .fetch_one(&mut conn)
        .await?;
        ensure!(id == 1);
        conn.close().await?;
        Ok(())
    })
}

fn stale_clusters_cleaned_up() -> anyhow::Result<()> {
    let mut opts = common::cluster_options()?;
    opts.temp_root =
        racelab::db::paths::default_temp_root().join(format!("test-stale-{}", std::process::id()));
    let result = (|| {
        // Owner dead: the pid of a finished child.
        let a = Cluster::start(&opts)?;
        let (a_pid, a_dir) = (a.pid(), a.dir().to_path_buf());
        let mut child = Command::new("true").spawn()?;
        let dead = child.id();
        child.wait()?;
        OwnerMarker {
            racelab_pid: dead,
            racelab_start: 1,
            postmaster_pid: Some(a_pid),
        }
        .write(&a_dir)?;
        std::mem::forget(a);
        // Owner pid reused: alive, but a different start time.
        let b = Cluster::start(&opts)?;
        let (b_pid, b_dir) = (b.pid(), b.dir().to_path_buf());
        let mut m = OwnerMarker::read(&b_dir).context("no marker")?;
        m.racelab_start += 1;
        m.write(&b_dir)?;
        std::mem::forget(b);

        let c = Cluster::start(&opts)?;
        let gone = assert_gone(a_pid, &a_dir).and(assert_gone(b_pid, &b_dir));
        ensure!(proc::alive(c.pid()), "the new cluster is not running");
        c.shutdown()?;
        gone
    })();
    let _ = std::fs::remove_dir_all(&opts.temp_root);
    result
}

/// racelab killed outright (SIGKILL: no destructors run): the death signal
/// stops its server, and the next start deletes the directory it left.
fn killed_owner_takes_server_down() -> anyhow::Result<()> {
    let root =
        racelab::db::paths::default_temp_root().join(format!("test-pdeath-{}", std::process::id()));
    let result = (|| {
        let mut helper = Command::new(std::env::current_exe()?)
            .env(
                common::HELPER_ENV,
                format!("hold-cluster:{}", root.display()),
            )
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let lines = common::Lines::of(
            helper.stdout.take().context("no stdout")?,
            "the cluster-holding helper",
        );
        let line = lines.next_within(Duration::from_secs(120));
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                let _ = helper.kill();
                let _ = helper.wait();
                return Err(e);
            }
        };
        let (pid, dir) = line
            .trim()
            .split_once(' ')
            .context("helper printed no cluster")?;
        let (pid, dir): (u32, std::path::PathBuf) = (pid.parse()?, dir.into());
        ensure!(proc::alive(pid), "helper's server not running");
        // Own process group: a terminal's Ctrl-C goes to racelab, not the server.
        // SAFETY: getpgid on a pid has no memory effects.
        let (pgid, ours) = unsafe { (libc::getpgid(pid as i32), libc::getpgid(0)) };
        ensure!(
            pgid == pid as i32 && pgid != ours,
            "server shares a process group"
        );
        helper.kill()?;
        helper.wait()?;
        ensure!(
            proc::wait_gone(pid, Duration::from_secs(10)),
            "server survived its owner"
        );
        ensure!(dir.exists(), "nothing to clean up?");
        let mut opts = common::cluster_options()?;
        opts.temp_root = root.clone();
        Cluster::start(&opts)?.shutdown()?;
        ensure!(
            !dir.exists(),
            "the dead owner's cluster dir was not cleaned up"
        );
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn missing_binaries_say_how_to_fix() -> anyhow::Result<()> {
    let empty = tempfile::tempdir()?;
    let err = bins::find_server_bins(Some(empty.path())).unwrap_err();
    let msg = err.to_string();
    ensure!(
        msg.contains("apt-get install postgresql") && msg.contains("--database-url"),
        "{msg}"
    );
    let (dirs, _state) = common::dirs_with_private_state()?;
    let opts = DbOptions {
        pg_bin: Some(empty.path().to_path_buf()),
        ..DbOptions::default()
    };
    let err = block_on(Database::open_with(&opts, &dirs))
        .err()
        .context("opened without binaries")?;
    let msg = format!("{err:#}");
    ensure!(
        msg.contains("apt-get install postgresql") && !msg.contains('\n'),
        "{msg}"
    );
    ensure!(racelab::error::exit_code(&err) == 3);
    Ok(())
}

fn bad_input_and_unreachable_server() -> anyhow::Result<()> {
    let bad_url = DbOptions {
        database_url: Some("mysql://root:hunter2@localhost/db".into()),
        ..DbOptions::default()
    };
    let err = block_on(Database::open(&bad_url))
        .err()
        .context("opened a mysql URL")?;
    ensure!(racelab::error::exit_code(&err) == 2, "{err:#}");
    ensure!(!format!("{err:#}").contains("hunter2"));

    let bad_schema = common::external_options("Robert'); DROP TABLE");
    let err = block_on(Database::open(&bad_schema))
        .err()
        .context("accepted a bad schema")?;
    ensure!(
        racelab::error::exit_code(&err) == 2 && err.to_string().contains("--schema"),
        "{err:#}"
    );

    // A port held here that refuses every connection.
    let refusing = common::RefusingPort::new()?;
    let port = refusing.port;
    let unreachable = DbOptions {
        database_url: Some(format!("postgres://bob:hunter2@127.0.0.1:{port}/db")),
        connect_timeout: Duration::from_secs(3),
        ..DbOptions::default()
    };
    let started = Instant::now();
    let err = block_on(Database::open(&unreachable))
        .err()
        .context("connected to nothing")?;
    let msg = format!("{err:#}");
    // Bounded by --connect-timeout (3 s), with room for a loaded machine:
    // what matters is that a refused connection is not retried for ever.
    ensure!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    ensure!(racelab::error::exit_code(&err) == 3, "{msg}");
    ensure!(
        !msg.contains("hunter2") && msg.contains("bob:***@127.0.0.1"),
        "{msg}"
    );
    ensure!(msg.contains("--database-url"), "{msg}");
    Ok(())
}

fn audit_counts_real_rows() -> anyhow::Result<()> {
    block_on(async {
        let db = Database::open(&common::external_options("t_audit")).await?;
        db.prepare_lab(&seeds(&[5, 3, 4])).await?;
        let mut conn = db.connect().await?;
        // Product 1: 7 units sold of 5 (attempts 1..=7), stock written back to 0.
        // Product 2: 2 sold of 3 (attempt 8), stock driven to -1.
        // Product 3: untouched.
        sqlx::raw_sql(
            "INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
               SELECT 1, g, g, 1 FROM generate_series(1, 7) g;
             INSERT INTO orders (product_id, buyer_id, attempt_id, qty) VALUES (2, 8, 8, 2);
             UPDATE products SET stock = 0 WHERE id = 1;
             UPDATE products SET stock = -1 WHERE id = 2;",
        )
        .execute(&mut conn)
        .await?;
        conn.close().await?;
        // The client believes attempts 1..=6 (1 twice), 9 and 10 succeeded.
        let audit = db.audit(&[1, 1, 2, 3, 4, 5, 6, 9, 10]).await?;
        ensure!(audit.initial_stock == 12, "{audit:?}");
        ensure!(audit.units_sold == 9, "{audit:?}");
        ensure!(audit.final_stock == 3, "{audit:?}");
        ensure!(audit.oversold_units == 2, "{audit:?}");
        // (5-7-0) + (3-2-(-1)) + (4-0-4) = -2 + 2 + 0
        ensure!(audit.stock_drift == 0, "{audit:?}");
        ensure!(audit.negative_stock, "{audit:?}");
        ensure!(audit.successes_without_order == 2, "{audit:?}");
        ensure!(audit.orders_without_success == 2, "{audit:?}");
        ensure!(of_audit(&audit) == Verdict::Oversold);

        // A clean lab audits as safe.
        db.prepare_lab(&seeds(&[5])).await?;
        let clean = db.audit(&[]).await?;
        ensure!(
            of_audit(&clean) == Verdict::Safe && clean.initial_stock == 5 && clean.final_stock == 5
        );
        Ok(())
    })
}
