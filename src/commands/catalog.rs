//! `racelab list` and `racelab show`: what strategies and scenarios exist,
//! and a strategy's script, highlighted on a terminal.

use std::fmt::Write;
use std::path::Path;

use crate::scenario::{self, Scenario};
use crate::strategy;

/// `racelab list`.
pub fn list() -> anyhow::Result<()> {
    crate::report::emit(&listing());
    Ok(())
}

/// `racelab show STRATEGY`.
pub fn show(spec: &str) -> anyhow::Result<()> {
    crate::report::emit(&script(spec, crate::report::stdout_color())?);
    Ok(())
}

/// The catalog: built-ins, then files in ./strategies and ./scenarios that
/// are not built-ins.
pub fn listing() -> String {
    let mut out = String::from("Strategies (racelab run --strategy NAME):\n");
    for (name, source) in strategy::builtins() {
        let _ = writeln!(
            out,
            "  {name:<18} {}",
            first_sentence(&strategy::description(source))
        );
    }
    let local = local_files("strategies", "sql", |stem| {
        strategy::builtins().iter().any(|(n, _)| *n == stem)
    });
    if !local.is_empty() {
        out.push_str("\nLocal strategies (./strategies):\n");
        for (_, path) in local {
            let desc = std::fs::read_to_string(&path)
                .map(|s| first_sentence(&strategy::description(&s)))
                .unwrap_or_else(|e| format!("(unreadable: {e})"));
            let _ = writeln!(out, "  {:<18} {desc}", format!("./{}", path.display()));
        }
    }
    out.push_str("\nScenarios (racelab run --scenario NAME):\n");
    for (name, _) in scenario::builtins() {
        let desc = Scenario::load(name)
            .map(|s| s.description)
            .unwrap_or_default();
        let _ = writeln!(out, "  {name:<18} {desc}");
    }
    let local = local_files("scenarios", "toml", |stem| {
        scenario::builtins().iter().any(|(n, _)| *n == stem)
    });
    if !local.is_empty() {
        out.push_str("\nLocal scenarios (./scenarios):\n");
        for (_, path) in local {
            let shown = format!("./{}", path.display());
            let desc = match Scenario::load(&shown) {
                Ok(s) => s.description,
                Err(e) => format!("(invalid: {e})"),
            };
            let _ = writeln!(out, "  {shown:<18} {desc}");
        }
    }
    out
}

/// `(stem, path)` of `dir/*.ext` whose stem is not a built-in.
fn local_files(
    dir: &str,
    ext: &str,
    builtin: impl Fn(&str) -> bool,
) -> Vec<(String, std::path::PathBuf)> {
    let Ok(entries) = std::fs::read_dir(Path::new(dir)) else {
        return Vec::new();
    };
    let mut files: Vec<(String, std::path::PathBuf)> = entries
        .filter_map(|e| e.ok())
        .map(|e| Path::new(dir).join(e.file_name()))
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .filter_map(|p| {
            let stem = p.file_stem()?.to_str()?.to_string();
            (!builtin(&stem)).then_some((stem, p))
        })
        .collect();
    files.sort();
    files
}

fn first_sentence(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    match line.find(". ") {
        Some(i) => line[..=i].to_string(),
        None => line.to_string(),
    }
}

/// The script of a strategy; highlighted when `color`.
pub fn script(spec: &str, color: bool) -> anyhow::Result<String> {
    let s = strategy::load(spec)?;
    let mut text = s.source.clone();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(if color { highlight(&text) } else { text })
}

/// Comments dim, meta-commands cyan, variables yellow.
pub fn highlight(source: &str) -> String {
    let mut out = String::with_capacity(source.len() * 2);
    for line in source.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("--") {
            let _ = writeln!(out, "\x1b[2m{line}\x1b[0m");
        } else if trimmed.starts_with('\\') {
            let _ = writeln!(out, "\x1b[36m{}\x1b[0m", color_vars(line, "\x1b[36m"));
        } else {
            let _ = writeln!(out, "{}", color_vars(line, ""));
        }
    }
    out
}

fn color_vars(line: &str, resume: &str) -> String {
    let mut out = String::with_capacity(line.len() + 16);
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let prev_colon = i > 0 && chars[i - 1] == ':';
        let next_ident = chars
            .get(i + 1)
            .is_some_and(|n| n.is_ascii_alphabetic() || *n == '_');
        if c == ':' && !prev_colon && next_ident {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            let _ = write!(out, "\x1b[33m{name}\x1b[0m{resume}");
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}
