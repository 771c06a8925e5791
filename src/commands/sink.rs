//! The results sink: what every command that produces results (`run`,
//! `compare`, `http`, `explore`) does with them once they exist, in one
//! order. `write`: show them (the table or the JSON on stdout), save the
//! result files not saved yet, write the `--trace FILE` events and the
//! `--junit` report. `conclude`: turn an interrupt, an abort or a broken
//! `--expect` into the error `main` maps to an exit code (DESIGN §8).
//! What differs between the commands is their `Results`; the tail is here,
//! once.

use crate::engine::{Control, Stop};
use crate::error::{ExpectationFailed, Interrupted};
use crate::report::{save, Output};
use crate::trace::Timeline;

/// Finished results, as the sink needs them.
pub trait Results {
    /// Print the results on stdout (`output` says how: the table or JSON).
    fn show(&self, output: &Output);

    /// Result files still to write, as (file name, JSON). A race saved
    /// each run as it finished (`run::execute`), so that a later failure
    /// loses none; an exploration has one result, saved here.
    fn unsaved(&self) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        Ok(Vec::new())
    }

    /// The analysed traces for `--trace FILE`, each with its repetition;
    /// `None` when nothing was traced (no file is written).
    fn timelines(&self) -> Option<Vec<(&Timeline, u32)>>;

    /// The `--junit` report.
    fn junit(&self) -> String;

    /// Why the run was aborted, if it was.
    fn aborted(&self) -> Option<String>;

    /// Why what was expected (`--expect`, a `--baseline`) did not hold.
    fn failed(&self) -> Option<String>;
}

/// Show the results and write every file asked for.
pub fn write(results: &impl Results, output: &Output) -> anyhow::Result<()> {
    results.show(output);
    if let Some(dir) = &output.save_dir {
        for (name, json) in results.unsaved()? {
            let path = dir.join(name);
            save::write_atomic(&path, &json)?;
            output.note(&format!("saved {}", path.display()));
        }
    }
    if let (Some(path), Some(timelines)) = (&output.trace_file, results.timelines()) {
        crate::trace::write_jsonl(path, &timelines)?;
        output.note(&format!("wrote the trace to {}", path.display()));
    }
    if let Some(path) = &output.junit {
        save::write_atomic(path, results.junit().as_bytes())?;
        output.note(&format!("wrote JUnit report {}", path.display()));
    }
    Ok(())
}

/// The error `main` maps to an exit code, if any: an interrupt (130/143),
/// an aborted run (3), then what was expected and did not hold (1).
pub fn conclude(results: &impl Results, control: &Control) -> anyhow::Result<()> {
    if let Some(Stop::Interrupted(signal)) = control.reason() {
        return Err(Interrupted { signal }.into());
    }
    if let Some(why) = results.aborted() {
        anyhow::bail!("the run was aborted: {why} (partial result above)");
    }
    match results.failed() {
        Some(why) => Err(ExpectationFailed(why).into()),
        None => Ok(()),
    }
}
