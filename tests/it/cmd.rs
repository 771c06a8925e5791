//! The trycmd cases of tests/cmd/: CLI text that needs no server (bad
//! input and its one line, the catalog, a report's summary), each a TOML
//! file holding the arguments, the expected stdout and stderr, and the
//! exit code. `TRYCMD=overwrite` rewrites them after a deliberate change.

use libtest_mimic::Trial;

pub fn tests() -> Vec<Trial> {
    vec![crate::common::test("cmd::cases", || {
        let cases = std::panic::catch_unwind(|| {
            trycmd::TestCases::new()
                .register_bin(
                    "racelab",
                    std::path::Path::new(env!("CARGO_BIN_EXE_racelab")),
                )
                .case("tests/cmd/*.toml");
        });
        cases.map_err(|_| "a trycmd case failed (see above)".into())
    })]
}
