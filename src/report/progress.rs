//! Progress on stderr while racelab works: what it is doing, how far it
//! got, the rate and the time left. On a terminal as bars (indicatif);
//! without one (a CI log) as a plain line every few seconds
//! (`RACELAB_PROGRESS_INTERVAL` seconds, 5 by default); nothing with
//! `--quiet`. Stdout is never touched: it carries the result.
//!
//! A `Progress` is one display for a whole command. It shows one `Task` at
//! a time (connecting buyers, a race, exploring schedules) and, when the
//! command runs several steps (`compare`, `--repeat`), how many are done.
//! A task is read through a probe, a closure over the counters its worker
//! already keeps (one atomic load each); the display runs on its own
//! thread, so nothing on the hot path waits for it.

use std::io::{IsTerminal, Write as _};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{fmt_count, fmt_rate};

/// How often a line is printed without a terminal, unless
/// `RACELAB_PROGRESS_INTERVAL` says otherwise: a 12-second race prints two.
pub const LINE_EVERY: Duration = Duration::from_secs(5);

/// How often the bars are redrawn on a terminal.
const BAR_EVERY: Duration = Duration::from_millis(100);

/// How progress shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Display {
    /// `--quiet`: nothing.
    Off,
    /// stderr is a terminal: bars, redrawn in place.
    Bars,
    /// stderr is a file or a pipe: a line every so often.
    Lines(Duration),
}

impl Display {
    /// Bars on a terminal, lines elsewhere, nothing when `quiet`.
    pub fn detect(quiet: bool) -> Display {
        if quiet {
            Display::Off
        } else if std::io::stderr().is_terminal() {
            Display::Bars
        } else {
            Display::Lines(line_interval(
                std::env::var("RACELAB_PROGRESS_INTERVAL").ok().as_deref(),
            ))
        }
    }
}

/// The interval between progress lines: `RACELAB_PROGRESS_INTERVAL`
/// seconds when it holds a positive number, else `LINE_EVERY`.
pub fn line_interval(setting: Option<&str>) -> Duration {
    setting
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
        .map_or(LINE_EVERY, Duration::from_secs_f64)
}

/// How far a task has to go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// No end known: a count and a rate.
    Open,
    /// This many units in all (attempts of a fixed-attempts race, buyers
    /// to connect).
    Count(u64),
    /// About this many (an estimate: explore's space of schedules).
    About(u64),
    /// Until this much time has passed (`--duration`).
    Time(Duration),
}

/// A probe: the units done so far and the goal, read by the display.
type Probe = Box<dyn Fn() -> (u64, Goal) + Send>;

/// One thing racelab is doing, as the display shows it.
pub struct Task {
    /// What, e.g. "naive run 2/3: racing".
    pub what: String,
    /// The unit counted, plural ("attempts", "buyers", "schedules").
    pub unit: &'static str,
    probe: Probe,
}

impl Task {
    pub fn new(
        what: impl Into<String>,
        unit: &'static str,
        probe: impl Fn() -> (u64, Goal) + Send + 'static,
    ) -> Task {
        Task {
            what: what.into(),
            unit,
            probe: Box::new(probe),
        }
    }
}

/// Where a task stands, in words and as a share of its goal.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// How far, the rate and the time left, e.g. "10,412 of 30,000
    /// attempts (34%), 12,400 attempts/s, ETA 1.6 s".
    pub text: String,
    /// Done as a share of the goal, 0 to 1; None for an open goal.
    pub fraction: Option<f64>,
}

/// Read a task that has done `done` units of `unit` in `elapsed`.
pub fn reading(done: u64, goal: Goal, unit: &str, elapsed: Duration) -> Reading {
    let secs = elapsed.as_secs_f64();
    // A rate over less than half a second is noise.
    let rate = (secs >= 0.5).then(|| done as f64 / secs);
    let rate_text = rate.map(|r| format!("{} {unit}/s", fmt_rate(r)));
    let eta_of = |left: f64| match rate {
        Some(r) if r > 0.0 => Some(left / r),
        _ => None,
    };
    let (mut parts, fraction, eta) = match goal {
        Goal::Open => (
            vec![format!("{} {}", fmt_count(done), noun(done, unit))],
            None,
            None,
        ),
        Goal::Count(total) | Goal::About(total) => {
            // An estimate that was passed is no goal any more.
            let total = total.max(done);
            let about = if matches!(goal, Goal::About(_)) {
                "about "
            } else {
                ""
            };
            let fraction = if total == 0 {
                1.0
            } else {
                done as f64 / total as f64
            };
            (
                vec![format!(
                    "{} of {about}{} {} ({:.0}%)",
                    fmt_count(done),
                    fmt_count(total),
                    noun(total, unit),
                    (fraction * 100.0).floor()
                )],
                Some(fraction),
                eta_of(total.saturating_sub(done) as f64),
            )
        }
        Goal::Time(length) => {
            let total = length.as_secs_f64();
            let fraction = if total > 0.0 {
                (secs / total).min(1.0)
            } else {
                1.0
            };
            (
                vec![
                    format!("{} of {}", fmt_secs(secs.min(total)), fmt_secs(total)),
                    format!("{} {}", fmt_count(done), noun(done, unit)),
                ],
                Some(fraction),
                Some((total - secs).max(0.0)),
            )
        }
    };
    parts.extend(rate_text);
    if let Some(eta) = eta {
        parts.push(format!("ETA {}", fmt_secs(eta)));
    }
    Reading {
        text: parts.join(", "),
        fraction,
    }
}

/// The unit (a regular plural, "attempts") as `n` of it reads: "1
/// attempt", "0 attempts".
fn noun(n: u64, plural: &str) -> &str {
    match plural.strip_suffix('s') {
        Some(one) if n == 1 => one,
        _ => plural,
    }
}

/// Seconds as a person reads a time left: "0.4 s", "12 s", "3 min 05 s",
/// "2 h 10 min".
pub fn fmt_secs(secs: f64) -> String {
    let secs = secs.max(0.0);
    if secs < 10.0 {
        format!("{secs:.1} s")
    } else if secs < 60.0 {
        format!("{secs:.0} s")
    } else if secs < 3600.0 {
        let s = secs.round() as u64;
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        let m = (secs / 60.0).round() as u64;
        format!("{} h {:02} min", m / 60, m % 60)
    }
}

/// The steps of a command that runs several (races of `compare` and
/// `--repeat`).
#[derive(Debug, Clone, Copy)]
struct Steps {
    done: u64,
    total: u64,
    started: Instant,
    /// When the last step ended (the start, before any).
    last: Instant,
}

impl Steps {
    /// "race 4/9, ETA 40 s": the step under way and the time the rest
    /// should take at the pace so far.
    fn text(&self) -> String {
        let current = (self.done + 1).min(self.total);
        let mut s = format!("race {current}/{}", self.total);
        if self.done > 0 {
            // The steps done took `per` each; the one under way has
            // already spent some of its own.
            let per = self.last.duration_since(self.started).as_secs_f64() / self.done as f64;
            let current = self.last.elapsed().as_secs_f64().min(per);
            let left = per * (self.total - self.done) as f64 - current;
            s.push_str(&format!(", ETA {}", fmt_secs(left)));
        }
        s
    }
}

/// What the display thread reads.
#[derive(Default)]
struct State {
    task: Option<Active>,
    steps: Option<Steps>,
    /// Bumped on every new task, so the bars know to restyle.
    generation: u64,
}

struct Active {
    task: Task,
    since: Instant,
}

/// The progress display of one command; stops when dropped.
pub struct Progress {
    inner: Option<Inner>,
}

struct Inner {
    state: Arc<Mutex<State>>,
    stop: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
    bars: Option<MultiProgress>,
}

impl Progress {
    /// A display of `display` kind; `steps`: how many races the command
    /// runs, when it is more than one.
    pub fn start(display: Display, steps: Option<u64>) -> Progress {
        let state = Arc::new(Mutex::new(State {
            steps: steps.filter(|&n| n > 1).map(|total| Steps {
                done: 0,
                total,
                started: Instant::now(),
                last: Instant::now(),
            }),
            ..State::default()
        }));
        let (stop, stopped) = mpsc::channel();
        let (thread, bars) = match display {
            Display::Off => return Progress { inner: None },
            Display::Lines(every) => {
                let state = state.clone();
                let thread = std::thread::Builder::new()
                    .name("racelab-progress".into())
                    .spawn(move || lines(&state, &stopped, every));
                (thread, None)
            }
            Display::Bars => {
                let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
                let (state, m) = (state.clone(), multi.clone());
                let thread = std::thread::Builder::new()
                    .name("racelab-progress".into())
                    .spawn(move || bars(&state, &stopped, &m));
                (thread, Some(multi))
            }
        };
        Progress {
            // Without a thread there is no display, and nothing else lost.
            inner: thread.ok().map(|thread| Inner {
                state,
                stop,
                thread: Some(thread),
                bars,
            }),
        }
    }

    /// No display at all.
    pub fn off() -> Progress {
        Progress { inner: None }
    }

    fn with_state(&self, f: impl FnOnce(&mut State)) {
        if let Some(inner) = &self.inner {
            f(&mut inner.state.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }

    /// Show `task` from now on, in place of any other.
    pub fn show(&self, task: Task) {
        self.with_state(|s| {
            s.task = Some(Active {
                task,
                since: Instant::now(),
            });
            s.generation += 1;
        });
    }

    /// Show no task (between tasks).
    pub fn clear(&self) {
        self.with_state(|s| {
            s.task = None;
            s.generation += 1;
        });
    }

    /// One more step (race) is done.
    pub fn step_done(&self) {
        self.with_state(|s| {
            if let Some(steps) = &mut s.steps {
                steps.done = (steps.done + 1).min(steps.total);
                steps.last = Instant::now();
            }
        });
    }

    /// Print a line on stderr without tearing the bars.
    pub fn println(&self, line: &str) {
        match self.inner.as_ref().and_then(|i| i.bars.as_ref()) {
            Some(m) => m.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(inner) = &mut self.inner {
            let _ = inner.stop.send(());
            if let Some(t) = inner.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Without a terminal: one line every `every`, while a task is under way.
fn lines(state: &Mutex<State>, stopped: &mpsc::Receiver<()>, every: Duration) {
    loop {
        match stopped.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let line = {
            let s = state.lock().unwrap_or_else(|p| p.into_inner());
            let Some(active) = &s.task else { continue };
            let (done, goal) = (active.task.probe)();
            let r = reading(done, goal, active.task.unit, active.since.elapsed());
            let steps = s
                .steps
                .map(|st| format!("[{}] ", st.text()))
                .unwrap_or_default();
            format!("racelab: {steps}{}: {}", active.task.what, r.text)
        };
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }
}

/// The scale of a bar: a fraction of 1 in thousandths.
const SCALE: u64 = 1_000;

/// On a terminal: a bar for the task and, over several races, one for them.
fn bars(state: &Mutex<State>, stopped: &mpsc::Receiver<()>, multi: &MultiProgress) {
    let steps_bar = {
        let s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.steps.map(|st| {
            let bar = multi.add(ProgressBar::new(st.total));
            bar.set_style(style("{prefix:>20} [{bar:30}] {pos}/{len} {msg}"));
            bar.set_prefix("races");
            bar
        })
    };
    let task_bar = multi.add(ProgressBar::new(SCALE));
    // The task and kind (bar or spinner) the bar is styled for: a goal
    // learnt after the task began (the buyers to connect) turns a spinner
    // into a bar.
    let mut shown = None;
    loop {
        {
            let s = state.lock().unwrap_or_else(|p| p.into_inner());
            if let (Some(bar), Some(st)) = (&steps_bar, &s.steps) {
                let eta = st.text();
                let eta = eta.split_once(", ").map_or("", |(_, e)| e).to_string();
                let _ = bar.clone().with_position(st.done).with_message(eta);
                bar.tick();
            }
            match &s.task {
                None if shown != Some((s.generation, None)) => {
                    task_bar.set_style(style("{prefix}"));
                    task_bar.set_prefix("");
                    shown = Some((s.generation, None));
                }
                None => {}
                Some(active) => {
                    let (done, goal) = (active.task.probe)();
                    let r = reading(done, goal, active.task.unit, active.since.elapsed());
                    // Everything is set without drawing (the `with_`
                    // setters), then drawn once: a new task never shows
                    // under the last one's words.
                    let mut bar = task_bar.clone();
                    let now = (s.generation, Some(r.fraction.is_some()));
                    if shown != Some(now) {
                        bar.set_style(style(if r.fraction.is_some() {
                            "{prefix:>20} [{bar:30}] {msg}"
                        } else {
                            "{prefix:>20} {spinner} {msg}"
                        }));
                        bar = bar.with_prefix(active.task.what.clone());
                        shown = Some(now);
                    }
                    let at = r.fraction.map_or(0, |f| (f * SCALE as f64) as u64);
                    let _ = bar.with_position(at.min(SCALE)).with_message(r.text);
                    task_bar.tick();
                }
            }
        }
        match stopped.recv_timeout(BAR_EVERY) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => break,
        }
    }
    task_bar.finish_and_clear();
    if let Some(bar) = steps_bar {
        bar.finish_and_clear();
    }
    let _ = multi.clear();
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("a valid progress template")
        .progress_chars("=> ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_attempts_read_with_total_rate_and_eta() {
        let r = reading(
            10_412,
            Goal::Count(30_000),
            "attempts",
            Duration::from_secs(2),
        );
        assert_eq!(
            r.text,
            "10,412 of 30,000 attempts (34%), 5,210 attempts/s, ETA 3.8 s"
        );
        assert!((r.fraction.unwrap() - 0.347).abs() < 0.001);
    }

    #[test]
    fn a_timed_race_reads_as_time_with_its_count() {
        let r = reading(
            61_234,
            Goal::Time(Duration::from_secs(12)),
            "attempts",
            Duration::from_secs(5),
        );
        assert_eq!(
            r.text,
            "5.0 s of 12 s, 61,234 attempts, 12,200 attempts/s, ETA 7.0 s"
        );
    }

    #[test]
    fn an_estimate_says_about_and_never_goes_past_all() {
        let r = reading(120, Goal::About(690), "schedules", Duration::from_secs(4));
        assert_eq!(
            r.text,
            "120 of about 690 schedules (17%), 30 schedules/s, ETA 19 s"
        );
        let past = reading(700, Goal::About(690), "schedules", Duration::from_secs(4));
        assert!(
            past.text.starts_with("700 of about 700 schedules (100%)"),
            "{}",
            past.text
        );
    }

    #[test]
    fn no_rate_before_half_a_second() {
        let r = reading(3, Goal::Count(10), "buyers", Duration::from_millis(100));
        assert_eq!(r.text, "3 of 10 buyers (30%)");
        let open = reading(5, Goal::Open, "attempts", Duration::from_secs(1));
        assert_eq!(open.text, "5 attempts, 5 attempts/s");
        assert_eq!(open.fraction, None);
        let one = reading(
            1,
            Goal::Time(Duration::from_secs(2)),
            "attempts",
            Duration::ZERO,
        );
        assert_eq!(one.text, "0.0 s of 2.0 s, 1 attempt, ETA 2.0 s");
        let of_one = reading(0, Goal::Count(1), "connections", Duration::ZERO);
        assert_eq!(of_one.text, "0 of 1 connection (0%)");
    }

    #[test]
    fn the_default_interval_prints_two_lines_in_a_twelve_second_race() {
        let every = line_interval(None);
        assert_eq!(every, LINE_EVERY);
        assert!(12.0 / every.as_secs_f64() >= 2.0);
        assert_eq!(line_interval(Some("0.5")), Duration::from_millis(500));
        for bad in ["0", "-1", "x", "inf"] {
            assert_eq!(line_interval(Some(bad)), LINE_EVERY, "{bad}");
        }
    }

    #[test]
    fn times_left_read_well() {
        assert_eq!(fmt_secs(0.42), "0.4 s");
        assert_eq!(fmt_secs(42.4), "42 s");
        assert_eq!(fmt_secs(185.0), "3 min 05 s");
        assert_eq!(fmt_secs(7_800.0), "2 h 10 min");
    }

    #[test]
    fn the_races_eta_counts_down_during_a_race() {
        // One race of three took 15 s; the second has run 5 s of its own.
        let now = Instant::now();
        let ago = |s| now.checked_sub(Duration::from_secs(s)).expect("a past");
        let steps = Steps {
            done: 1,
            total: 3,
            started: ago(20),
            last: ago(5),
        };
        let text = steps.text();
        assert!(
            text == "race 2/3, ETA 25 s" || text == "race 2/3, ETA 24 s",
            "{text}"
        );
        // A race running longer than the others is not counted below zero.
        let late = Steps {
            last: ago(19),
            started: ago(20),
            ..steps
        };
        assert_eq!(late.text(), "race 2/3, ETA 1.0 s");
    }

    #[test]
    fn lines_show_the_task_and_the_races() {
        // The line thread itself, with a short interval: its lines go to
        // stderr, so this checks it starts, reads and stops cleanly.
        let p = Progress::start(Display::Lines(Duration::from_millis(10)), Some(3));
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let c = count.clone();
        p.show(Task::new("naive: racing", "attempts", move || {
            (
                c.load(std::sync::atomic::Ordering::Relaxed),
                Goal::Count(10),
            )
        }));
        count.store(5, std::sync::atomic::Ordering::Relaxed);
        p.step_done();
        let steps = p
            .inner
            .as_ref()
            .unwrap()
            .state
            .lock()
            .unwrap()
            .steps
            .unwrap();
        assert_eq!(steps.done, 1);
        assert!(
            steps.text().starts_with("race 2/3, ETA "),
            "{}",
            steps.text()
        );
        drop(p);
    }
}
