//! Helpers shared by the integration tests: the shared server, a runtime
//! per test, trial construction (through `harness`), a port that refuses
//! connections, and the leftover check.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::OnceLock;

use libtest_mimic::{Failed, Trial};
use racelab::db::{bins, proc, Cluster, ClusterOptions, DbOptions, Dirs};

pub use crate::harness::{
    in_ci, test, wait_output, wait_status, wait_until, waiting_for, Drained, Lines, OutputWithin,
    CHILD_LIMIT, PIPE_GRACE,
};

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

/// Run a future to completion on a fresh single-threaded runtime, within
/// `CHILD_LIMIT` (a query the server never answers fails the test, named).
pub fn block_on<F: Future>(f: F) -> F::Output {
    let _w = waiting_for("a future on the test's runtime (a query, most likely)");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(async { tokio::time::timeout(CHILD_LIMIT, f).await })
        .unwrap_or_else(|_| panic!("not done within {} s", CHILD_LIMIT.as_secs()))
}

/// A trial from a test returning `anyhow::Result`; the error chain is the
/// failure message. Like `test`, under the harness's watchdog.
pub fn trial(name: &str, f: impl FnOnce() -> anyhow::Result<()> + Send + 'static) -> Trial {
    test(name, move || {
        f().map_err(|e| Failed::from(format!("{e:#}")))
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
            // Idle until killed (the test that started this kills it).
            loop {
                std::thread::park();
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

/// What this run of the suite left behind, by name: its own cluster
/// directories (`cluster-<our pid>-*`) and test roots (`test-*-<our pid>`)
/// in the temp area, and postgres, pgbouncer or redis-server processes that
/// are still our children (racelabs that exited leave theirs to us, a
/// subreaper). Another run's directories and servers (other pids, other
/// parents) are not ours and not looked at, so a crashed earlier run, or
/// one running beside this one, never fails this one.
pub fn leftovers() -> Vec<String> {
    let me = std::process::id();
    let mut found = Vec::new();
    let root: PathBuf = racelab::db::paths::default_temp_root();
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if owned_by(&name, me) {
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
            if !matches!(
                comm.as_deref(),
                Some("postgres" | "pgbouncer" | "redis-server")
            ) || !proc::alive(pid)
            {
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

/// Whether a temp-area entry named `name` belongs to the suite run `me`.
pub fn owned_by(name: &str, me: u32) -> bool {
    name.starts_with(&format!("cluster-{me}-"))
        || (name.starts_with("test-") && name.ends_with(&format!("-{me}")))
}

/// A TCP port on 127.0.0.1 that refuses connections for as long as this
/// lives: a socket bound to it that never listens. The port stays ours, so
/// nobody else can start listening there meanwhile (binding port 0 and
/// closing the socket would leave it free for anyone).
pub struct RefusingPort {
    fd: std::os::fd::OwnedFd,
    pub port: u16,
}

impl RefusingPort {
    pub fn new() -> std::io::Result<RefusingPort> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: plain socket calls on a descriptor owned here; the
        // address structs are zeroed and filled with valid values.
        unsafe {
            let raw = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            if raw < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = std::os::fd::OwnedFd::from_raw_fd(raw);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            if libc::bind(fd.as_raw_fd(), std::ptr::addr_of!(addr).cast(), len) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut bound: libc::sockaddr_in = std::mem::zeroed();
            let mut blen = len;
            if libc::getsockname(
                fd.as_raw_fd(),
                std::ptr::addr_of_mut!(bound).cast(),
                &mut blen,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(RefusingPort {
                port: u16::from_be(bound.sin_port),
                fd,
            })
        }
    }
}
