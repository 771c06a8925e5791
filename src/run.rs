//! The pipeline: one repetition loop for every kind of target. For each
//! target (a strategy on the SQL lab, an HTTP service) and each
//! repetition: prepare the lab and read the truth before (`Target::
//! prepare`), race the buyers on the target's lanes (`engine::race_with`),
//! audit and describe what was raced (`Target::finish`), decide the verdict
//! (`verdict::decide`), and save the result at once. A stop (signal, server
//! failure) ends the loop early, keeping the partial result of the race it
//! interrupted. What differs between target kinds is behind `Target`; the
//! loop, the progress, the statuses, the verdict and the saving are here,
//! once.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::db::Audit;
use crate::engine::{self, Control, Lanes, ProductPicker, RaceConfig, RaceOutput, Stop};
use crate::error::Interrupted;
use crate::report::progress::{Display, Goal, Progress, Task};
use crate::report::{save, Output};
use crate::result::{
    DatabaseInfo, OpenLoopInfo, RaceRecord, RunResult, ScenarioInfo, Status, Subject,
};
use crate::scenario::Scenario;
use crate::timings;

/// What every repetition of every target shares: the workload as the
/// buyers race it and the run's own settings. Built by `plan`.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The workload. A target without think time or a pool of its own (an
    /// HTTP service) has them at 0 here.
    pub scenario: Scenario,
    /// Tries per attempt (an HTTP request is sent once: 1).
    pub max_tries: u32,
    /// The seed of the first repetition; repetition `r` uses `seed + r - 1`.
    pub seed: u64,
    /// Repetitions of each target.
    pub repeat: u32,
    /// Record every statement of every attempt (`--trace`).
    pub trace: bool,
    /// `--retry-unknown`: resubmissions of an unknown attempt (0: none).
    pub retry_unknown: u32,
    /// `--no-progress`: how long a race may go without an attempt finishing.
    pub no_progress: Duration,
}

impl Pipeline {
    /// The seed of repetition `repetition` (1-based).
    pub fn seed_of(&self, repetition: u32) -> u64 {
        self.seed.wrapping_add(u64::from(repetition) - 1)
    }

    /// What the engine needs for one race.
    pub fn race_config(&self, seed: u64) -> RaceConfig {
        let sc = &self.scenario;
        RaceConfig {
            buyers: sc.buyers,
            attempts_per_buyer: sc.attempts_per_buyer,
            duration: (sc.duration_s > 0.0).then(|| Duration::from_secs_f64(sc.duration_s)),
            quantity: sc.quantity,
            think_ms: sc.think_ms,
            think_jitter_ms: sc.think_jitter_ms,
            products: ProductPicker::new(sc.products, sc.product_skew),
            connections: sc.connections,
            max_tries: self.max_tries,
            seed,
            trace: self.trace,
            track_contention: true,
            rate: (sc.rate_per_s > 0.0).then_some(sc.rate_per_s),
            retry_unknown: self.retry_unknown,
            no_progress: Some(self.no_progress),
        }
    }
}

/// The buyers' lane type of a target.
pub type Lane<T> = <<T as Target>::Lanes as Lanes>::Lane;

/// One kind of thing racelab races. The pipeline calls, per repetition:
/// `prepare`, then races the buyers on `lanes`, then `finish`.
///
/// A new target kind (Redis, a replayed schedule, ...) implements this
/// and its `engine::Lanes`; the loop, statuses, verdict, saving and
/// signals come with the pipeline.
pub trait Target {
    /// The lanes the buyers race on.
    type Lanes: Lanes;
    /// What `prepare` learned before the race and `finish` needs after it
    /// (the truth's first reading, a running `--watch` sampler).
    type Before;

    /// What is raced, as the progress bar names it.
    fn label(&self) -> &str;

    /// Ready the lab for one race (a fresh lab and the strategy's
    /// `\setup`; the service's reset) and read what the audit compares
    /// with afterwards.
    fn prepare(&self) -> impl Future<Output = anyhow::Result<Self::Before>>;

    /// The buyers' lanes for one race.
    fn lanes(&self) -> Arc<Self::Lanes>;

    /// Whether the buyers may connect while `prepare` runs: only where
    /// opening a lane sends nothing the target could count (a database
    /// connection does; an HTTP warm-up request must wait for the truth's
    /// checks).
    fn connect_while_preparing(&self) -> bool {
        false
    }

    /// After the race: audit against the truth and say what was raced.
    /// `Raced` carries the race and offers the shared parts (the audit
    /// policy, the assembly of the result).
    fn finish(
        &self,
        raced: Raced<Lane<Self>>,
        before: Self::Before,
    ) -> impl Future<Output = anyhow::Result<RunResult>>;
}

/// One race as the pipeline saw it, handed to `Target::finish`.
pub struct Raced<L> {
    pub started_at: String,
    pub repetition: u32,
    /// The scenario as raced, with the run's settings (`timeout_ms` is the
    /// target's to fill in).
    pub scenario: ScenarioInfo,
    pub output: RaceOutput,
    /// The lanes the engine handed back (see `Lanes::finished`).
    pub lanes: Vec<L>,
    pub status: Status,
    pub status_reason: Option<String>,
}

impl<L> Raced<L> {
    /// Whether the race ran to its end (not stopped by a signal or a failure).
    pub fn completed(&self) -> bool {
        self.status == Status::Completed
    }

    /// Mark the run aborted, with why (e.g. a target that answered nothing).
    pub fn abort(&mut self, why: String) {
        self.status = Status::Aborted;
        self.status_reason = Some(why);
    }

    /// The audit policy, the same for every target: an audit that failed
    /// after a completed race fails the run (`doing` says what failed);
    /// after a stop, the partial result goes on without an audit and its
    /// reason says why.
    pub fn audited(
        &mut self,
        audit: anyhow::Result<Audit>,
        doing: &'static str,
    ) -> anyhow::Result<Option<Audit>> {
        match audit {
            Ok(a) => Ok(Some(a)),
            Err(e) if self.completed() => Err(e.context(doing)),
            Err(e) => {
                let why = self.status_reason.take().unwrap_or_default();
                self.status_reason = Some(format!("{why}; the audit could not run: {e:#}"));
                Ok(None)
            }
        }
    }

    /// The result of the race (its verdict is the pipeline's to decide).
    pub fn result(
        mut self,
        audit: Option<Audit>,
        subject: Subject,
        database: Option<DatabaseInfo>,
    ) -> RunResult {
        let record = RaceRecord {
            started_at: self.started_at,
            scenario: self.scenario,
            repetition: self.repetition,
            status: self.status,
            status_reason: self.status_reason,
            audit,
            wall: self.output.wall,
            contention: self.output.contention,
            client_cpu: Some(self.output.client_cpu),
            open_loop: self.output.open_loop.as_ref().map(OpenLoopInfo::of),
        };
        RunResult::assemble(record, &mut self.output.tally, subject, database)
    }
}

/// Race every target `pipeline.repeat` times, in order. Returns what
/// finished; a stop ends the loop early with the partial result of the
/// race it interrupted, and a stop before any race finished is the error
/// `Interrupted`.
pub async fn execute<T: Target>(
    targets: &[T],
    pipeline: &Pipeline,
    output: &Output,
    control: &Arc<Control>,
) -> anyhow::Result<Vec<RunResult>> {
    let mut results = Vec::new();
    let races = targets.len() as u64 * u64::from(pipeline.repeat);
    let progress = Progress::start(Display::detect(output.quiet), Some(races));
    'targets: for target in targets {
        for repetition in 1..=pipeline.repeat {
            if control.is_stopped() {
                break 'targets;
            }
            match race_once(target, repetition, pipeline, control, &progress).await? {
                Some(result) => {
                    progress.step_done();
                    if let Some(dir) = &output.save_dir {
                        let path = save::save(dir, &result)?;
                        if !output.quiet {
                            progress.println(&format!("saved {}", path.display()));
                        }
                    }
                    results.push(result);
                }
                None => break 'targets,
            }
        }
    }
    if results.is_empty() {
        if let Some(Stop::Interrupted(signal)) = control.reason() {
            return Err(Interrupted { signal }.into());
        }
    }
    Ok(results)
}

/// One repetition of one target; None when a signal stopped it before the
/// buyers were released (nothing to report).
async fn race_once<T: Target>(
    target: &T,
    repetition: u32,
    pipeline: &Pipeline,
    control: &Arc<Control>,
    progress: &Progress,
) -> anyhow::Result<Option<RunResult>> {
    let started_at = now_rfc3339();
    let seed = pipeline.seed_of(repetition);
    let config = pipeline.race_config(seed);
    let lanes = target.lanes();
    let label = if pipeline.repeat > 1 {
        format!("{} run {repetition}/{}", target.label(), pipeline.repeat)
    } else {
        target.label().to_string()
    };
    let c = control.clone();
    progress.show(Task::new(
        format!("connecting buyers for {label}"),
        "connections",
        move || {
            let total = c.opening.load(Ordering::Relaxed);
            let done = c.opened.load(Ordering::Relaxed);
            (
                done,
                if total > 0 {
                    Goal::Count(total)
                } else {
                    Goal::Open
                },
            )
        },
    ));
    // The buyers connect while the lab is readied where neither needs the
    // other.
    let (before, opened) = if target.connect_while_preparing() {
        tokio::join!(target.prepare(), engine::open(&*lanes, &config, control))
    } else {
        let before = target.prepare().await?;
        (Ok(before), engine::open(&*lanes, &config, control).await)
    };
    let before = before?;
    let opened = match opened {
        Ok(opened) => opened,
        Err(e) if e.is::<Interrupted>() => return Ok(None),
        Err(e) => return Err(e),
    };
    let sc = &pipeline.scenario;
    let goal = match config.duration {
        Some(d) => Goal::Time(d),
        None => Goal::Count(u64::from(sc.buyers) * u64::from(sc.attempts_per_buyer)),
    };
    control.done.store(0, Ordering::Relaxed);
    let c = control.clone();
    progress.show(Task::new(
        format!("racing {label}"),
        "attempts",
        move || (c.done.load(Ordering::Relaxed), goal),
    ));
    let raced = engine::race_opened(lanes, opened, config, control.clone()).await;
    progress.clear();
    let (race, lanes) = match raced {
        Ok(raced) => raced,
        Err(e) if e.is::<Interrupted>() => return Ok(None),
        Err(e) => return Err(e),
    };
    timings::record("open buyer connections", race.connect);
    timings::record("race", race.wall);
    let (status, status_reason) = status_of(control);
    let raced = Raced {
        started_at,
        repetition,
        scenario: ScenarioInfo::of(sc, pipeline.max_tries, seed, 0),
        output: race,
        lanes,
        status,
        status_reason,
    };
    let mut result = timings::time("audit and result", target.finish(raced, before)).await?;
    result.verdict = crate::verdict::decide(&result);
    Ok(Some(result))
}

/// How a race ended, from its control: the result's `status` and `status_reason`.
pub fn status_of(control: &Control) -> (Status, Option<String>) {
    match control.reason() {
        None => (Status::Completed, None),
        Some(Stop::Interrupted(sig)) => (
            Status::Interrupted,
            Some(Interrupted { signal: sig }.to_string()),
        ),
        Some(Stop::Aborted(why)) => (Status::Aborted, Some(why)),
    }
}

/// Now, RFC 3339 in UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&format)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}
