//! The race, for any kind of target: open every buyer's lane (the
//! target's `Lanes`), hold the buyers at a barrier, release them together,
//! and run one attempt loop per buyer until its attempts are made, the time
//! is up, or the run is stopped. Returns raw tallies and timings, and the
//! evidence that the buyers contended (`contention`); knows nothing about
//! printing, and names no driver or protocol: a target's lanes make the
//! attempts (`lab::lanes` for the SQL lab, `http::lane` for a service).
//!
//! - `lanes`: the seam, `Lanes` and `Attempt`, that a target kind implements.
//! - `config`: what one race is asked to do.
//! - `race`: one race: lanes opened, buyers spawned and released, merged.
//! - `buyer`: one buyer's task and the one attempt loop.
//! - `control`: stopping (signals, failures) and waiting on set-up tasks.
//! - `runtime`: the async runtime, signals, CPU time.
//! - `arrivals` (the open loop's schedule), `contention`, `pick`
//!   (products), `tally` (outcomes and latency).

mod arrivals;
mod buyer;
mod config;
pub mod contention;
mod control;
mod lanes;
pub mod limits;
pub mod pick;
mod race;
mod runtime;
pub mod tally;

pub use arrivals::{Lag, OpenLoop, LATE_AFTER};
pub use buyer::AttemptTrace;
pub use config::RaceConfig;
pub use contention::Contention;
pub use control::{join_unless_stopped, Control, Stop};
pub use lanes::{Attempt, Lanes};
pub use pick::ProductPicker;
pub use race::{open, race_opened, race_with, Opened, RaceOutput};
pub use runtime::{process_cpu, runtime, until_signal};
pub use tally::{Latency, Tally};
