//! `racelab list` and `racelab show`: what strategies and scenarios exist
//! (as text, or as JSON with `--json`: docs/cli.schema.json), and a
//! strategy's script, highlighted on a terminal.

use std::fmt::Write;
use std::path::Path;

use serde::Serialize;

use crate::scenario::{self, Scenario};
use crate::strategy;

/// `racelab list`.
pub fn list(json: bool) -> anyhow::Result<()> {
    let catalog = catalog();
    if json {
        let text = serde_json::to_string_pretty(&catalog).expect("the catalog serializes");
        crate::report::emit(&format!("{text}\n"));
    } else {
        crate::report::emit(&listing(&catalog, crate::report::columns(false)));
    }
    Ok(())
}

/// `racelab show STRATEGY`.
pub fn show(spec: &str) -> anyhow::Result<()> {
    crate::report::emit(&script(spec, crate::report::stdout_color())?);
    Ok(())
}

/// What `racelab list` shows (`--json`: docs/cli.schema.json).
#[derive(Debug, Serialize)]
pub struct Catalog {
    pub strategies: Vec<Entry>,
    pub scenarios: Vec<Entry>,
}

/// One strategy or scenario.
#[derive(Debug, Serialize)]
pub struct Entry {
    /// What `--strategy` or `--scenario` takes.
    pub name: String,
    /// `builtin`, or the path of the local file (./strategies, ./scenarios).
    pub source: String,
    /// The description's first sentence, whole.
    pub summary: String,
    /// The whole description.
    pub description: String,
    /// Why a local file cannot be used as it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A scenario's workload (absent for strategies and invalid files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenario: Option<Scenario>,
}

impl Entry {
    fn new(name: &str, source: String, description: String) -> Entry {
        Entry {
            summary: summary(name, &description),
            name: name.to_string(),
            source,
            description,
            error: None,
            scenario: None,
        }
    }

    fn broken(name: &str, source: String, error: String) -> Entry {
        Entry {
            error: Some(error),
            ..Entry::new(name, source, String::new())
        }
    }
}

/// The catalog: built-ins, then files in ./strategies and ./scenarios that
/// are not built-ins (a local strategy is run by its name, a local
/// scenario by its path).
pub fn catalog() -> Catalog {
    let mut strategies: Vec<Entry> = strategy::builtins()
        .iter()
        .map(|(name, source)| Entry::new(name, "builtin".into(), strategy::description(source)))
        .collect();
    let local = local_files("strategies", "sql", |stem| {
        strategy::builtins().iter().any(|(n, _)| *n == stem)
    });
    for (stem, path) in local {
        let shown = format!("./{}", path.display());
        strategies.push(match strategy::load(&shown) {
            Ok(s) => Entry::new(&stem, shown, s.description.clone()),
            Err(e) => {
                let first = format!("{e:#}").lines().next().unwrap_or("").to_string();
                Entry::broken(&stem, shown, first)
            }
        });
    }
    let mut scenarios: Vec<Entry> = Vec::new();
    for (name, _) in scenario::builtins() {
        scenarios.push(match Scenario::load(name) {
            Ok(s) => Entry {
                scenario: Some(s.clone()),
                ..Entry::new(name, "builtin".into(), s.description)
            },
            Err(e) => Entry::broken(name, "builtin".into(), e.to_string()),
        });
    }
    let local = local_files("scenarios", "toml", |stem| {
        scenario::builtins().iter().any(|(n, _)| *n == stem)
    });
    for (_, path) in local {
        let shown = format!("./{}", path.display());
        scenarios.push(match Scenario::load(&shown) {
            Ok(s) => Entry {
                scenario: Some(s.clone()),
                ..Entry::new(&shown, shown.clone(), s.description)
            },
            Err(e) => {
                let e = e.to_string();
                let why = e.strip_prefix(&format!("{shown}: ")).unwrap_or(&e);
                Entry::broken(&shown, shown.clone(), why.to_string())
            }
        });
    }
    Catalog {
        strategies,
        scenarios,
    }
}

/// The catalog as text, each summary wrapped to `columns` beside its name.
pub fn listing(c: &Catalog, columns: Option<usize>) -> String {
    let mut out = String::new();
    let sections = [
        (
            "Strategies (racelab run --strategy NAME):",
            "Local strategies (./strategies; racelab run --strategy NAME):",
            &c.strategies,
        ),
        (
            "Scenarios (racelab run --scenario NAME):",
            "Local scenarios (./scenarios; racelab run --scenario PATH):",
            &c.scenarios,
        ),
    ];
    for (i, (builtin, local, entries)) in sections.into_iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "{builtin}");
        let mut in_local = false;
        for e in entries {
            if e.source != "builtin" && !in_local {
                in_local = true;
                let _ = writeln!(out, "\n{local}");
            }
            let text = match &e.error {
                Some(err) => format!("(cannot be used: {err})"),
                None => e.summary.clone(),
            };
            out.push_str(&crate::report::wrap_indent(
                &format!("  {:<18} {text}\n", e.name),
                columns,
                21,
            ));
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

/// The first sentence of a description, whole (it may span lines),
/// without a leading "name: ".
fn summary(name: &str, description: &str) -> String {
    let paragraph: Vec<&str> = description
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect();
    let text = paragraph.join(" ");
    let text = text.strip_prefix(&format!("{name}: ")).unwrap_or(&text);
    let mut end = text.len();
    for (i, c) in text.char_indices() {
        if !matches!(c, '.' | '!' | '?') {
            continue;
        }
        let after = &text[i + 1..];
        let word = text[..i].rsplit(' ').next().unwrap_or("");
        // "e.g.", "..." and the like end no sentence.
        let abbreviation =
            matches!(word, "e.g" | "i.e" | "etc" | "vs" | "cf") || word.ends_with('.');
        if (after.is_empty() || after.starts_with(' ')) && !abbreviation {
            end = i + 1;
            break;
        }
    }
    let sentence = &text[..end];
    let mut chars = sentence.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_is_the_whole_first_sentence() {
        let d = "for-update: the naive purchase, but the read takes a row lock (SELECT ...\n\
                 FOR UPDATE), so the next buyer waits, e.g. on a hot row. Safe: no stale read.";
        assert_eq!(
            summary("for-update", d),
            "The naive purchase, but the read takes a row lock (SELECT ... FOR UPDATE), so the \
             next buyer waits, e.g. on a hot row."
        );
        assert_eq!(summary("x", "x: no full stop"), "No full stop");
        assert_eq!(summary("x", ""), "");
    }
}
