//! `racelab db start|status|url|stop`: the kept cluster.

use crate::cli::DbCommand;

pub fn main(_command: DbCommand) -> anyhow::Result<()> {
    anyhow::bail!("racelab db: wired to the database layer below")
}
