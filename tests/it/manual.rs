//! `racelab man` and `racelab completions`: the manual page renders with
//! man(1), and the bash completion script completes subcommands and flags
//! when bash runs it.

use std::io::Write as _;
use std::process::{Command, Stdio};

use libtest_mimic::{Failed, Trial};

use crate::cli::{racelab, stderr, stdout};

pub fn tests() -> Vec<Trial> {
    vec![
        crate::common::test("manual::man_renders_with_man_l", man_renders),
        crate::common::test("manual::man_of_a_subcommand", man_of_a_subcommand),
        crate::common::test("manual::man_of_no_such_command", man_of_no_such_command),
        crate::common::test(
            "manual::bash_completes_subcommands_and_flags",
            bash_completes,
        ),
        crate::common::test("manual::completions_for_every_shell", every_shell),
    ]
}

/// `racelab man [COMMAND]`'s roff, rendered by `man -l -` as plain text.
fn rendered(args: &[&str]) -> Result<String, Failed> {
    let out = racelab().arg("man").args(args).output()?;
    if !out.status.success() {
        return Err(format!("racelab man {args:?}: {}", stderr(&out)).into());
    }
    let mut man = Command::new("man")
        .args(["-l", "-"])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("man(1) (install man-db): {e}"))?;
    man.stdin
        .take()
        .ok_or("man's stdin")?
        .write_all(&out.stdout)?;
    let page = man.wait_with_output()?;
    let warnings = String::from_utf8_lossy(&page.stderr).to_string();
    if !page.status.success() || !warnings.is_empty() {
        return Err(format!("man -l refused the page: {warnings}").into());
    }
    Ok(String::from_utf8_lossy(&page.stdout).to_string())
}

fn man_renders() -> Result<(), Failed> {
    let page = rendered(&[])?;
    for needle in [
        "NAME",
        "racelab - A race-condition lab",
        "SYNOPSIS",
        "racelab-run(1)",
        "racelab-explore(1)",
        "racelab-completions(1)",
    ] {
        if !page.contains(needle) {
            return Err(format!("the page lacks {needle:?}:\n{page}").into());
        }
    }
    // The hidden `schema` command is not advertised.
    if page.contains("racelab-schema") {
        return Err("the hidden schema command is on the page".into());
    }
    Ok(())
}

fn man_of_a_subcommand() -> Result<(), Failed> {
    let page = rendered(&["run"])?;
    for needle in ["racelab-run - Race one strategy", "--strategy", "--buyers"] {
        if !page.contains(needle) {
            return Err(format!("racelab-run(1) lacks {needle:?}:\n{page}").into());
        }
    }
    Ok(())
}

fn man_of_no_such_command() -> Result<(), Failed> {
    let out = racelab().args(["man", "rnu"]).output()?;
    let err = stderr(&out);
    if out.status.code() != Some(2) || err.lines().count() != 1 {
        return Err(format!("exit {:?}, stderr {err:?}", out.status.code()).into());
    }
    if !err.contains("man rnu: no such command") || !err.contains("run") {
        return Err(format!("no suggestion in {err:?}").into());
    }
    Ok(())
}

/// What bash's completion for racelab offers for `line` (the word under
/// the cursor is the last one).
fn complete(script: &str, words: &[&str]) -> Result<Vec<String>, Failed> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "{script}\nCOMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE=\"${{COMP_WORDS[*]}}\"; \
         COMP_POINT=${{#COMP_LINE}}; _racelab racelab \"${{COMP_WORDS[$COMP_CWORD]}}\" \
         \"${{COMP_WORDS[$((COMP_CWORD-1))]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        words = quoted.join(" "),
        cword = words.len() - 1,
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &program])
        .output()?;
    if !out.status.success() {
        return Err(format!("bash: {}", stderr(&out)).into());
    }
    Ok(stdout(&out).lines().map(|l| l.trim().to_string()).collect())
}

fn bash_completes() -> Result<(), Failed> {
    let out = racelab().args(["completions", "bash"]).output()?;
    if !out.status.success() {
        return Err(stderr(&out).into());
    }
    let script = stdout(&out);
    let subcommands = complete(&script, &["racelab", "ex"])?;
    if !(subcommands.contains(&"explore".to_string())
        && subcommands.contains(&"explain".to_string()))
    {
        return Err(format!("`racelab ex<TAB>` offered {subcommands:?}").into());
    }
    let flags = complete(&script, &["racelab", "run", "--str"])?;
    if flags != ["--strategy"] {
        return Err(format!("`racelab run --str<TAB>` offered {flags:?}").into());
    }
    let values = complete(&script, &["racelab", "completions", "z"])?;
    if values != ["zsh"] {
        return Err(format!("`racelab completions z<TAB>` offered {values:?}").into());
    }
    Ok(())
}

fn every_shell() -> Result<(), Failed> {
    for (shell, marker) in [
        ("bash", "complete -F _racelab"),
        ("zsh", "#compdef racelab"),
        ("fish", "complete -c racelab"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = racelab().args(["completions", shell]).output()?;
        if !out.status.success() || !stdout(&out).contains(marker) {
            return Err(format!("completions {shell}: {}", stderr(&out)).into());
        }
    }
    let out = racelab().args(["completions", "tcsh"]).output()?;
    if out.status.code() != Some(2) {
        return Err(format!("completions tcsh exited {:?}", out.status.code()).into());
    }
    Ok(())
}
