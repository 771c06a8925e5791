//! The harness around every trial: a watchdog that fails a trial still
//! running after its time limit (naming what it was waiting for), each
//! trial's wall time (printed, slowest first, when `RACELAB_TEST_TIMES` is
//! set), and the waits a trial may make: for a state with a deadline
//! (`wait_until`), for a line from a child (`Lines`), for a child to exit
//! (`OutputWithin`). Nothing here sleeps to synchronise: every wait polls
//! or blocks for a named state and fails loudly at its deadline.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use libtest_mimic::{Failed, Trial};

/// Whether the suite runs in CI: `CI` set to anything but empty, `false`
/// or `0` (the one definition; `.ci/run` uses the same).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| {
        let v = v.trim();
        !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false"))
    })
}

/// A trial still running after this long fails (override with
/// `RACELAB_TRIAL_LIMIT_S`): well above the slowest trial on a 2-core
/// machine under a load average of 20 (about 5 minutes), well below CI's
/// own limit, so that a hang fails with what it waited for instead of
/// holding CI until it is killed.
const DEFAULT_TRIAL_LIMIT: Duration = Duration::from_secs(900);

fn trial_limit() -> Duration {
    std::env::var("RACELAB_TRIAL_LIMIT_S")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map_or(DEFAULT_TRIAL_LIMIT, Duration::from_secs)
}

/// How long one child process may run before the trial kills it.
pub const CHILD_LIMIT: Duration = Duration::from_secs(600);

/// The names of the trials built by `test` (`main` refuses any other).
static BUILT: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
/// Each finished trial's name, wall time and whether it passed.
static TIMES: Mutex<Vec<(String, Duration, bool)>> = Mutex::new(Vec::new());

/// What the trial on this thread is waiting for now (a stack: a wait may
/// wrap another).
type Waits = Arc<Mutex<Vec<String>>>;

thread_local! {
    static WAITS: RefCell<Option<Waits>> = const { RefCell::new(None) };
}

/// Marks what the current trial waits for until dropped.
pub struct Waiting {
    waits: Option<Waits>,
}

/// Say what the current trial waits for, until the guard is dropped: the
/// watchdog names it if the trial runs out of time meanwhile.
pub fn waiting_for(what: impl Into<String>) -> Waiting {
    let waits = WAITS.with(|w| w.borrow().clone());
    if let Some(w) = &waits {
        w.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what.into());
    }
    Waiting { waits }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(w) = &self.waits {
            w.lock().unwrap_or_else(|e| e.into_inner()).pop();
        }
    }
}

/// A trial from a test returning libtest-mimic's `Result`, run on its own
/// thread under the watchdog and timed.
pub fn test<F>(name: impl Into<String>, f: F) -> Trial
where
    F: FnOnce() -> Result<(), Failed> + Send + 'static,
{
    let name = name.into();
    BUILT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name.clone());
    let label = name.clone();
    Trial::test(name, move || {
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            watched(&label, trial_limit(), f)
        }));
        let passed = matches!(outcome, Ok(Ok(())));
        record(&label, started.elapsed(), passed);
        match outcome {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The trials among `trials` not built by `test` (so without a watchdog).
pub fn unwatched(trials: &[Trial]) -> Vec<String> {
    let built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    trials
        .iter()
        .filter(|t| !built.contains(t.name()))
        .map(|t| t.name().to_string())
        .collect()
}

/// Run `f` on a thread of its own; fail if it is still running after
/// `limit`, naming what it was waiting for. A panic is passed on as it
/// is (libtest-mimic reports it).
fn watched<F>(name: &str, limit: Duration, f: F) -> Result<(), Failed>
where
    F: FnOnce() -> Result<(), Failed> + Send + 'static,
{
    let waits: Waits = Arc::default();
    let (done, result) = mpsc::channel();
    let spawned = {
        let waits = waits.clone();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                WAITS.with(|w| *w.borrow_mut() = Some(waits));
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
                let _ = done.send(r);
            })
    };
    if let Err(e) = spawned {
        return Err(format!("could not start the trial's thread: {e}").into());
    }
    match result.recv_timeout(limit) {
        Ok(Ok(r)) => r,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(RecvTimeoutError::Timeout) => {
            let stack = waits.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let what = match stack.last() {
                Some(w) => format!("it was waiting for {w}"),
                None => "it was in its own code, in no harness wait".to_string(),
            };
            Err(format!(
                "{name} did not finish within {:.1} s (RACELAB_TRIAL_LIMIT_S); {what}",
                limit.as_secs_f64()
            )
            .into())
        }
        Err(RecvTimeoutError::Disconnected) => Err("the trial's thread vanished".into()),
    }
}

fn record(name: &str, took: Duration, passed: bool) {
    if timing_asked() {
        eprintln!("  [{:8.3} s] {name}", took.as_secs_f64());
    }
    TIMES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((name.to_string(), took, passed));
}

fn timing_asked() -> bool {
    std::env::var("RACELAB_TEST_TIMES").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// With `RACELAB_TEST_TIMES` set: every trial's wall time, slowest first.
pub fn print_times(total: Duration) {
    if !timing_asked() {
        return;
    }
    let mut times = TIMES.lock().unwrap_or_else(|e| e.into_inner()).clone();
    times.sort_by_key(|t| std::cmp::Reverse(t.1));
    eprintln!(
        "\ntrial times, slowest first ({} trials, {:.1} s of trial time, {:.1} s wall):",
        times.len(),
        times.iter().map(|t| t.1.as_secs_f64()).sum::<f64>(),
        total.as_secs_f64()
    );
    for (name, took, passed) in &times {
        let mark = if *passed { "" } else { "  FAILED" };
        eprintln!("{:9.3} s  {name}{mark}", took.as_secs_f64());
    }
}

/// Poll `probe` until it yields a value; fail at `limit` naming `what`.
/// The pause between probes grows from 1 ms to 50 ms: it paces the
/// polling, it does not stand in for the state.
pub fn wait_until<T>(
    what: &str,
    limit: Duration,
    mut probe: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let _w = waiting_for(what);
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(v) = probe()? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("waited {} s for {what}, in vain", limit.as_secs_f64());
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// A child's output, read line by line on a thread of its own (so that the
/// child never blocks on a full pipe), each read bounded by a deadline.
pub struct Lines {
    rx: Receiver<String>,
    what: String,
}

impl Lines {
    /// Read `pipe` (a child's stdout or stderr) named `what` in messages.
    pub fn of(pipe: impl Read + Send + 'static, what: &str) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            what: what.to_string(),
        }
    }

    /// The next line, within `limit`; an error at the deadline or at the
    /// end of the output.
    pub fn next_within(&self, limit: Duration) -> anyhow::Result<String> {
        let _w = waiting_for(format!("a line from {}", self.what));
        match self.rx.recv_timeout(limit) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => anyhow::bail!(
                "{} printed no line within {} s",
                self.what,
                limit.as_secs_f64()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                anyhow::bail!("{} closed its output", self.what)
            }
        }
    }

    /// Lines until `pick` returns a value for one, all within `limit`; the
    /// lines seen are in the error when none does.
    pub fn find<T>(
        &self,
        what: &str,
        limit: Duration,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> anyhow::Result<T> {
        let _w = waiting_for(format!("{what} from {}", self.what));
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.rx.recv_timeout(left) {
                Ok(line) => line,
                Err(e) => anyhow::bail!(
                    "{} {} before {what}; it printed: {seen:?}",
                    self.what,
                    if e == RecvTimeoutError::Timeout {
                        format!("printed nothing more for {} s", limit.as_secs_f64())
                    } else {
                        "closed its output".to_string()
                    }
                ),
            };
            if let Some(v) = pick(&line) {
                return Ok(v);
            }
            seen.push(line);
        }
    }

    /// Keep reading (and dropping) the rest, so the child never blocks.
    pub fn drain(self) {
        std::thread::spawn(move || self.rx.iter().for_each(drop));
    }
}

/// `Command::output` with a deadline: the child is killed (SIGKILL) and
/// an error returned when it has not exited within the limit. As with
/// `output`, stdin is /dev/null (a test that feeds stdin spawns the child
/// itself and waits with `wait_output`).
pub trait OutputWithin {
    fn output_within(&mut self, limit: Duration) -> std::io::Result<Output>;
    /// `output_within(CHILD_LIMIT)`.
    fn output_bounded(&mut self) -> std::io::Result<Output> {
        self.output_within(CHILD_LIMIT)
    }
}

impl OutputWithin for Command {
    fn output_within(&mut self, limit: Duration) -> std::io::Result<Output> {
        let what = describe(self);
        let child = self
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        wait_output(child, &what, limit)
    }
}

/// The program and its arguments, for messages.
pub fn describe(cmd: &Command) -> String {
    let program = std::path::Path::new(cmd.get_program())
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!("`{program} {}`", args.join(" "))
}

/// A child's pipe read to its end on a thread of its own from the start
/// (so the child never blocks on a full pipe), its bytes taken with a
/// deadline (a grandchild that kept the pipe open must not hang the test).
pub struct Drained(Receiver<Vec<u8>>);

impl Drained {
    pub fn of(pipe: Option<impl Read + Send + 'static>) -> Drained {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            let _ = tx.send(buf);
        });
        Drained(rx)
    }

    /// Everything read, once the pipe has closed (within `limit`).
    pub fn take(&self, limit: Duration) -> std::io::Result<Vec<u8>> {
        let _w = waiting_for("a child's pipe to close");
        self.0.recv_timeout(limit).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "a pipe stayed open {} s after its child exited",
                    limit.as_secs_f64()
                ),
            )
        })
    }
}

/// How long a pipe may stay open after its child has exited.
pub const PIPE_GRACE: Duration = Duration::from_secs(30);

/// Wait for `child` (stdout and stderr piped) to exit within `limit`,
/// collecting its output; killed and an error at the deadline.
pub fn wait_output(mut child: Child, what: &str, limit: Duration) -> std::io::Result<Output> {
    let _w = waiting_for(format!("{what} to exit"));
    let out = Drained::of(child.stdout.take());
    let err = Drained::of(child.stderr.take());
    let status = match wait_status(&mut child, limit)? {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{what} did not exit within {} s", limit.as_secs_f64()),
            ));
        }
    };
    Ok(Output {
        status,
        stdout: out.take(PIPE_GRACE)?,
        stderr: err.take(PIPE_GRACE)?,
    })
}

/// The child's exit status within `limit`, or `None` at the deadline.
pub fn wait_status(child: &mut Child, limit: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(Some(s));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// When the suite started (for the total in `print_times`).
pub fn started() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// The harness's own trials: each wait fails at its deadline, loudly.
pub fn tests() -> Vec<Trial> {
    vec![
        crate::common::trial(
            "harness::the_watchdog_fails_a_hung_trial_naming_its_wait",
            watchdog_names_the_wait,
        ),
        crate::common::trial(
            "harness::a_wait_fails_at_its_deadline",
            wait_fails_at_deadline,
        ),
        crate::common::trial(
            "harness::a_silent_or_lingering_child_is_bounded",
            child_is_bounded,
        ),
    ]
}

fn watchdog_names_the_wait() -> anyhow::Result<()> {
    let (release, held) = mpsc::channel::<()>();
    let started = Instant::now();
    let r = watched("hung", Duration::from_millis(300), move || {
        let _w = waiting_for("the release that never comes");
        let _ = held.recv();
        Ok(())
    });
    let took = started.elapsed();
    let _ = release.send(());
    let msg = r
        .err()
        .and_then(|f| f.message().map(str::to_string))
        .ok_or_else(|| anyhow::anyhow!("a hung trial passed"))?;
    anyhow::ensure!(
        msg.contains("within 0.3 s") && msg.contains("waiting for the release that never comes"),
        "{msg}"
    );
    anyhow::ensure!(took >= Duration::from_millis(300), "failed early: {took:?}");
    // A trial that finishes in time passes, and its error is its own.
    let r = watched("quick", Duration::from_secs(60), || Err("its own".into()));
    anyhow::ensure!(
        r.err().and_then(|f| f.message().map(str::to_string)) == Some("its own".into()),
        "the watchdog changed a trial's own failure"
    );
    Ok(())
}

fn wait_fails_at_deadline() -> anyhow::Result<()> {
    let mut probes = 0;
    let e = wait_until(
        "a state that never comes",
        Duration::from_millis(100),
        || {
            probes += 1;
            Ok(None::<()>)
        },
    )
    .err()
    .ok_or_else(|| anyhow::anyhow!("a wait for nothing succeeded"))?;
    anyhow::ensure!(e.to_string().contains("a state that never comes"), "{e}");
    anyhow::ensure!(probes >= 2, "probed only {probes} times");
    let mut n = 0;
    let got = wait_until("the third probe", Duration::from_secs(10), || {
        n += 1;
        Ok((n == 3).then_some(n))
    })?;
    anyhow::ensure!(got == 3);
    Ok(())
}

fn child_is_bounded() -> anyhow::Result<()> {
    // A child that prints nothing: the read fails at its deadline.
    let mut cat = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let lines = Lines::of(cat.stdout.take().expect("piped"), "a silent cat");
    let e = lines
        .find("a greeting", Duration::from_millis(100), |l| {
            Some(l.to_string())
        })
        .err()
        .ok_or_else(|| anyhow::anyhow!("read a line from a silent child"))?;
    anyhow::ensure!(
        e.to_string().contains("a silent cat") && e.to_string().contains("a greeting"),
        "{e}"
    );
    cat.kill()?;
    cat.wait()?;
    // A child that does not exit is killed at the deadline.
    let mut sleeper = Command::new("sleep");
    sleeper.arg("600");
    let e = sleeper
        .output_within(Duration::from_millis(100))
        .err()
        .ok_or_else(|| anyhow::anyhow!("a 600 s sleep exited within 100 ms"))?;
    anyhow::ensure!(e.to_string().contains("`sleep 600`"), "{e}");
    // One that does is collected whole.
    let out = Command::new("sh")
        .args(["-c", "echo out; echo err >&2; exit 3"])
        .output_within(Duration::from_secs(60))?;
    anyhow::ensure!(out.status.code() == Some(3));
    anyhow::ensure!(out.stdout == b"out\n" && out.stderr == b"err\n");
    Ok(())
}
