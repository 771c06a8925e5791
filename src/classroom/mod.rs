//! `racelab classroom`: the whole room races for the last item. One server
//! (axum) holds the room: the projector page (`/`, with the teacher's
//! token), the student page (`/join`), the API and the live events. Each
//! round is a race of the SQL lab, run through the same machinery as
//! `racelab run`: a fresh lab (schema reset, seeded, the strategy's
//! `\setup`), each purchase one traced attempt of the strategy by the
//! lab's own buyer on its own connection, purchases made during the
//! countdown held and released together at its end (with the bots), the
//! normal audit, `verdict::decide`, and a normal result saved for `racelab
//! report`.
//!
//! - `plan`: what the command layer validated.
//! - `room`: the room's state machine (students, bots, rounds), the live
//!   reading of the lab, the events.
//! - `round`: one round's phase and cohorts; `books`: its buyers and
//!   what their purchases recorded.
//! - `purchase`: one purchase, from connection to booking.
//! - `finish`: closing a round: audit, result, verdict, save.
//! - `lane`: a closed round's swim-lane and its anomaly in words.
//! - `replaying`: an explore counterexample replayed one statement per
//!   click; `replay`: what the projector shows of it.
//! - `api`: HTTP; `assets`: the pages, scripts, styles and QR code, all
//!   compiled in.

mod api;
mod assets;
mod books;
mod finish;
mod lane;
pub mod plan;
mod purchase;
mod replay;
mod replaying;
mod room;
mod round;

use std::io::Write as _;
use std::sync::Arc;

use anyhow::Context as _;

use crate::db::Database;
use crate::engine::Control;
use plan::ClassroomPlan;
use room::{Room, Settings, Why};

/// Serve the classroom until Ctrl-C or SIGTERM.
pub fn run(plan: ClassroomPlan) -> anyhow::Result<()> {
    let control = Control::new();
    crate::engine::until_signal(&control, serve(plan, control.clone()))
}

async fn serve(plan: ClassroomPlan, control: Arc<Control>) -> anyhow::Result<()> {
    // Listen first: a port in use fails before a cluster is started.
    let listener = tokio::net::TcpListener::bind(plan.addr)
        .await
        .map_err(|e| {
            crate::error::bad_input(format!(
                "cannot listen on {}: {e}; pick another port with --port N (0: any free port)",
                plan.addr
            ))
        })?;
    let port = listener
        .local_addr()
        .context("reading the address racelab listens on")?
        .port();
    let db = Arc::new(Database::open(&plan.db).await?);
    let served = serve_on(&plan, listener, port, db.clone(), &control).await;
    let stopped = match Arc::try_unwrap(db) {
        Ok(db) => db.shutdown().await,
        // A purchase task given up on still holds it: dropping the last
        // reference stops the cluster.
        Err(db) => {
            drop(db);
            Ok(())
        }
    };
    served?;
    stopped.context("stopping the database")
}

async fn serve_on(
    plan: &ClassroomPlan,
    listener: tokio::net::TcpListener,
    port: u16,
    db: Arc<Database>,
    control: &Arc<Control>,
) -> anyhow::Result<()> {
    db.check_room(plan.db.max_connections, plan.max_buyers)
        .await?;
    let base = format!("http://{}:{port}", plan.url_host);
    let join_url = format!("{base}/join");
    let loopback = plan.addr.ip().is_loopback();
    let (room, jobs) = Room::new(
        db,
        Settings {
            strategies: plan.strategies.iter().cloned().map(Arc::new).collect(),
            join_url: join_url.clone(),
            loopback,
            max_buyers: plan.max_buyers,
            open_for: plan.open_for,
            max_tries: plan.max_tries,
            save_dir: plan.save_dir.clone(),
        },
        control.clone(),
    );
    {
        // The first two lines are the contract: the projector, the students.
        let mut out = std::io::stdout().lock();
        writeln!(out, "{base}/?token={}", room.token.reveal())?;
        writeln!(out, "{join_url}")?;
        out.flush()?;
    }
    eprintln!(
        "racelab classroom: open the first URL on the projector (it carries the teacher's token: keep it to yourself); students open the second, or scan the QR code the projector shows."
    );
    if plan.addr.ip().is_unspecified() {
        eprintln!(
            "warning: --bind {}: anyone on the network who can reach port {port} can join and buy (only the token's holder can start rounds or add bots)",
            plan.addr.ip()
        );
    } else if loopback {
        eprintln!(
            "listening on {} only: other machines cannot join; start with --bind 0.0.0.0 to let phones on the network in",
            plan.addr.ip()
        );
    }
    eprintln!("Ctrl-C stops it (a round still open is closed, audited and saved first).");
    let live = tokio::spawn(room.clone().live_reader());
    let app = api::router(room.clone());
    let closing = room.clone();
    let stop = control.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        stop.stopped().await;
        if closing.round_running() {
            let _ = closing.close_round(Why::Shutdown).await;
        }
    });
    // The lab's jobs run here, beside the server (see `room::LabJob`).
    let served = tokio::select! {
        biased;
        served = server => served.context("serving the classroom"),
        () = room.clone().work(jobs) => Ok(()),
    };
    live.abort();
    eprintln!("racelab classroom: stopped");
    served
}
