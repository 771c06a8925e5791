//! `racelab report FILES -o OUT`: saved result files (runs and
//! explorations) as one self-contained HTML page.

use crate::cli::ReportArgs;

pub fn report(args: &ReportArgs) -> anyhow::Result<()> {
    crate::report::save::check_output_file("-o", &args.output)?;
    let held = crate::report::html::write(&args.files, &args.output)?;
    crate::report::emit(&format!("wrote {} ({held})\n", args.output.display()));
    Ok(())
}
