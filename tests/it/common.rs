//! Helpers shared by the integration tests: the shared server, a runtime
//! per test, trial construction, and the leftover check.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::OnceLock;

use libtest_mimic::{Failed, Trial};
use racelab::db::{bins, proc, Cluster, ClusterOptions, DbOptions, Dirs};

static SERVER_URL: OnceLock<String> = OnceLock::new();

/// Start the suite's shared cluster and publish its URL.
pub fn start_shared_server() -> anyhow::Result<Cluster> {
    let bins = bins::find_server_bins(None)?;
    let mut opts = ClusterOptions::new(bins, &Dirs::from_env()?)?;
    // Room for a 500-buyer race beside other tests running at once.
    opts.max_connections = 1200;
    // The tests reach it as an external server: over TCP, with its password.
    opts.tcp = true;
    let cluster = Cluster::start(&opts)?;
    let url = cluster.url().expect("a cluster started with tcp has a URL");
    let _ = SERVER_URL.set(url.expose().to_string());
    Ok(cluster)
}

/// The shared server's URL (TCP, superuser `postgres` with the cluster's
/// password, database `postgres`).
pub fn server_url() -> &'static str {
    SERVER_URL
        .get()
        .expect("the shared server is started by main before any test runs")
}

/// `DbOptions` for the shared server with the lab in `schema`.
pub fn external_options(schema: &str) -> DbOptions {
    DbOptions {
        database_url: Some(server_url().to_string()),
        schema: schema.to_string(),
        ..DbOptions::default()
    }
}

/// Run a future to completion on a fresh single-threaded runtime.
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// A trial from a test returning `anyhow::Result`; the error chain is the
/// failure message.
pub fn trial(name: &str, test: fn() -> anyhow::Result<()>) -> Trial {
    Trial::test(name, move || {
        test().map_err(|e| Failed::from(format!("{e:#}")))
    })
}

/// The default directories with a private, fresh state directory (so no
/// test sees a developer's kept cluster, nor another test's).
pub fn dirs_with_private_state() -> anyhow::Result<(Dirs, tempfile::TempDir)> {
    let state = tempfile::tempdir()?;
    let mut dirs = Dirs::from_env()?;
    dirs.state_dir = state.path().to_path_buf();
    Ok((dirs, state))
}

/// Cluster options for a test's own throwaway cluster, which tests reach
/// as an external server (over TCP, with its password: `cluster_url`).
pub fn cluster_options() -> anyhow::Result<ClusterOptions> {
    let mut o = ClusterOptions::new(bins::find_server_bins(None)?, &Dirs::from_env()?)?;
    o.max_connections = 20;
    o.tcp = true;
    Ok(o)
}

/// The TCP URL (with its password) of a test's own cluster.
pub fn cluster_url(c: &Cluster) -> String {
    c.url()
        .expect("test clusters listen on TCP")
        .expose()
        .to_string()
}

/// The environment variable that turns this binary into a helper process.
pub const HELPER_ENV: &str = "RACELAB_IT_HELPER";

/// Helper modes, selected by `RACELAB_IT_HELPER`:
/// - `hold-cluster:<temp_root>`: start a cluster there, print
///   `<postmaster pid> <cluster dir>` on stdout, then sleep until killed.
pub fn run_helper_if_asked() -> Option<std::process::ExitCode> {
    let mode = std::env::var(HELPER_ENV).ok()?;
    let result = (|| -> anyhow::Result<()> {
        if let Some(root) = mode.strip_prefix("hold-cluster:") {
            let mut opts = cluster_options()?;
            opts.temp_root = PathBuf::from(root);
            let c = Cluster::start(&opts)?;
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{} {}", c.pid(), c.dir().display())?;
            out.flush()?;
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
        anyhow::bail!("unknown helper mode {mode:?}")
    })();
    Some(match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("helper failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    })
}

/// What the suite left behind: cluster directories of this process in the
/// temp area, and postgres or pgbouncer processes that are still our
/// children (racelabs that exited leave theirs to us, a subreaper).
pub fn leftovers() -> Vec<String> {
    let me = std::process::id();
    let mut found = Vec::new();
    let root: PathBuf = racelab::db::paths::default_temp_root();
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("cluster-{me}-")) || name.starts_with("test-") {
                found.push(format!("directory {}", e.path().display()));
            }
        }
    }
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let comm = proc::comm(pid);
            if !matches!(comm.as_deref(), Some("postgres" | "pgbouncer")) || !proc::alive(pid) {
                continue;
            }
            let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s[s.rfind(')')? + 1..]
                        .split_whitespace()
                        .nth(1)?
                        .parse::<u32>()
                        .ok()
                });
            if ppid == Some(me) {
                found.push(format!("{} process {pid}", comm.unwrap_or_default()));
            }
        }
    }
    found
}
