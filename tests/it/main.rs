//! The one integration-test binary (`harness = false`, libtest-mimic).
//!
//! It starts ONE embedded PostgreSQL cluster for the whole binary, exposes
//! its URL through `common::server_url()`, runs every module's trials (each
//! test uses its own schema on that server), stops the cluster, and checks
//! that nothing the suite started is left running or on disk.
//!
//! Every trial is built with `common::test` or `common::trial` (see
//! `harness`): it runs under a watchdog (`RACELAB_TRIAL_LIMIT_S`, failing
//! with what it was waiting for) and is timed (`RACELAB_TEST_TIMES=1`
//! prints every trial's wall time, slowest first). A trial built any other
//! way is refused before anything runs.
//!
//! Adding a module: `mod foo;` below and one `trials.extend(foo::tests());`.

mod badinput;
mod bounds;
mod browser;
mod classroom;
mod cli;
mod cmd;
mod common;
mod db;
mod dbcmd;
mod explore;
mod explore_service;
mod faults;
mod harness;
mod http;
mod http2;
mod http_flows;
mod interp;
mod manual;
mod nemesis;
mod openloop;
mod output;
mod pgbouncer;
mod proxy;
mod redis;
mod run;
mod safety;
mod serve;
mod strategy;
mod teach;
mod tricky;
mod truth;
mod verdicts;

use std::process::ExitCode;

use libtest_mimic::{Arguments, Trial};

/// Trials run after the rest, one at a time (see `main`).
const ALONE: &[&str] = &["redis::lock_safe_within_its_ttl_oversells_past_it"];

fn main() -> ExitCode {
    // Some tests re-run this binary as a helper process (e.g. one that holds
    // a cluster until it is killed); that mode runs no trials.
    if let Some(code) = common::run_helper_if_asked() {
        return code;
    }
    let args = Arguments::from_args();
    harness::started();
    // Servers orphaned by a killed helper process become our children, so
    // the tests reap them instead of leaving zombies for init to collect.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };

    let mut trials: Vec<Trial> = Vec::new();
    trials.extend(db::tests());
    trials.extend(dbcmd::tests());
    trials.extend(interp::tests());
    trials.extend(strategy::tests());
    trials.extend(run::tests());
    trials.extend(teach::tests());
    trials.extend(tricky::tests());
    trials.extend(truth::tests());
    trials.extend(http::tests());
    trials.extend(http2::tests());
    trials.extend(serve::tests());
    trials.extend(http_flows::tests());
    trials.extend(badinput::tests());
    trials.extend(manual::tests());
    trials.extend(faults::tests());
    trials.extend(nemesis::tests());
    trials.extend(explore::tests());
    trials.extend(verdicts::tests());
    trials.extend(redis::tests());
    trials.extend(openloop::tests());
    trials.extend(pgbouncer::tests());
    trials.extend(output::tests());
    trials.extend(cmd::tests());
    trials.extend(safety::tests());
    trials.extend(bounds::tests());
    trials.extend(classroom::tests());
    trials.extend(proxy::tests());
    trials.extend(explore_service::tests());
    trials.extend(harness::tests());

    let unwatched = harness::unwatched(&trials);
    if !unwatched.is_empty() {
        eprintln!(
            "error: these trials were not built with common::test or common::trial, so no watchdog \
             bounds them: {unwatched:?}"
        );
        return ExitCode::FAILURE;
    }

    if args.list {
        return libtest_mimic::run(&args, trials).exit_code();
    }

    let server = match common::start_shared_server() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: could not start the shared test server: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // Trials whose verdict rests on timing the machine must not steal from
    // (a lock's TTL against its holder's pace) run after the others, one
    // at a time.
    let (alone, together): (Vec<Trial>, Vec<Trial>) =
        trials.into_iter().partition(|t| ALONE.contains(&t.name()));
    let mut conclusion = libtest_mimic::run(&args, together);
    let one_at_a_time = Arguments {
        test_threads: Some(1),
        ..args.clone()
    };
    let after = libtest_mimic::run(&one_at_a_time, alone);
    conclusion.num_failed += after.num_failed;
    http_flows::stop_shop();
    let stopped = server.shutdown();
    if let Err(e) = &stopped {
        eprintln!("error: could not stop the shared test server: {e:#}");
    }
    harness::print_times(harness::started().elapsed());
    let leftovers = common::leftovers();
    for l in &leftovers {
        eprintln!("error: the suite left behind {l}");
    }
    if stopped.is_err() || !leftovers.is_empty() {
        return ExitCode::FAILURE;
    }
    conclusion.exit_code()
}
