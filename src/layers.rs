//! The dependency graph of the crate's top-level modules (the `pub mod`s
//! of `lib.rs`; a module's submodules count as the module), read from the
//! source: every `crate::<module>` path (`use crate::{a, b::c}` groups
//! included) outside comments and string literals is an edge. The tests
//! fail, naming the files, when the graph has a cycle or a layer reaches
//! up: dependencies point one way (STYLE 17).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Edges: module -> module it names -> the files that name it.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level modules, from `lib.rs`.
fn modules() -> BTreeSet<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("src/lib.rs");
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .filter_map(|l| l.strip_suffix(';'))
        .map(str::to_string)
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source with comments, string and character literals blanked out
/// (so that `crate::x` in a doc comment or a message is no dependency).
fn code_only(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
            continue;
        }
        // Raw strings: r"..", r#".."#, br"..".
        let prev_ident = i > 0 && ident(b[i - 1]);
        if c == 'r' && !prev_ident || (c == 'b' && next == Some('r') && !prev_ident) {
            let mut j = if c == 'b' { i + 2 } else { i + 1 };
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) == Some(&'"') {
                j += 1;
                loop {
                    if j >= b.len() {
                        break;
                    }
                    if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j;
                continue;
            }
        }
        if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
            continue;
        }
        if c == '\'' {
            // A character literal ('x', '\n', '\''), or a lifetime ('a).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
                continue;
            }
            if b.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// The top-level modules a piece of code names through `crate::`.
fn named(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let word = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let tail = rest.trim_start();
        if let Some(group) = tail.strip_prefix('{') {
            // `crate::{a, b::c, d::{e, f}}`: the first word of each item at
            // the outer level.
            let mut depth = 0;
            let mut start = true;
            for (k, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && !c.is_whitespace() => {
                        found.insert(word(&group[k..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(word(tail));
        }
    }
    found.retain(|m| modules.contains(m));
    found
}

/// The module a source file belongs to (None for the crate root files).
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

fn graph() -> Graph {
    let modules = modules();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut g = Graph::new();
    for m in &modules {
        g.entry(m.clone()).or_default();
    }
    for file in files {
        let Some(from) = module_of(&file) else {
            continue;
        };
        if !modules.contains(&from) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable source");
        let shown = file.strip_prefix(src()).unwrap().display().to_string();
        for to in named(&code_only(&text), &modules) {
            if to != from {
                g.entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(shown.clone());
            }
        }
    }
    g
}

/// A cycle of the graph, if it has one: `[a, b, c, a]`.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        g: &Graph,
        m: &str,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(m.to_string(), Mark::Open);
        path.push(m.to_string());
        for next in g.get(m).into_iter().flat_map(|e| e.keys()) {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let from = path.iter().position(|p| p == next).expect("on the path");
                    let mut cycle = path[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(g, next, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(m.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for m in g.keys() {
        if marks.get(m).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(c) = visit(g, m, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// A cycle as the edges that make it, each with the files behind it.
fn describe(g: &Graph, cycle: &[String]) -> String {
    let mut out = cycle.join(" -> ");
    for pair in cycle.windows(2) {
        let files: Vec<&str> = g[&pair[0]][&pair[1]].iter().map(String::as_str).collect();
        out.push_str(&format!(
            "\n  {} -> {}: {}",
            pair[0],
            pair[1],
            files.join(", ")
        ));
    }
    out
}

#[test]
fn the_top_level_modules_have_no_import_cycle() {
    let g = graph();
    assert!(g.len() >= 20, "read only {} modules", g.len());
    if let Some(cycle) = find_cycle(&g) {
        panic!(
            "import cycle between top-level modules: {}",
            describe(&g, &cycle)
        );
    }
}

#[test]
fn lower_layers_never_name_the_layers_above() {
    let g = graph();
    let above_domain = [
        "commands", "cli", "plan", "run", "lab", "http", "shop", "report", "verdict", "result",
        "trace", "explain", "watch", "explore",
    ];
    let rules: &[(&str, &[&str])] = &[
        ("strategy", &above_domain),
        ("scenario", &above_domain),
        ("engine", &above_domain),
        ("db", &above_domain),
        ("error", &["strategy", "scenario", "engine", "db", "cli"]),
        (
            "report",
            &[
                "commands", "cli", "plan", "run", "lab", "http", "shop", "explore",
            ],
        ),
        (
            "verdict",
            &["commands", "cli", "plan", "run", "lab", "http", "report"],
        ),
        (
            "result",
            &[
                "commands", "cli", "plan", "run", "lab", "http", "report", "verdict",
            ],
        ),
        ("run", &["commands", "cli", "plan", "lab", "http"]),
        ("lab", &["commands", "cli", "plan"]),
        ("http", &["commands", "cli", "plan", "lab"]),
        ("explore", &["commands", "cli", "lab", "http"]),
    ];
    let mut broken = Vec::new();
    for (from, never) in rules {
        for to in *never {
            if let Some(files) = g.get(*from).and_then(|e| e.get(*to)) {
                let files: Vec<&str> = files.iter().map(String::as_str).collect();
                broken.push(format!("{from} -> {to} ({})", files.join(", ")));
            }
        }
    }
    assert!(broken.is_empty(), "layers reach up: {}", broken.join("; "));
}

#[test]
fn the_reader_sees_paths_not_words() {
    let modules: BTreeSet<String> = ["a", "b", "c", "d", "e"].map(String::from).into();
    let code = code_only(
        "use crate::a::X;\n// crate::b in a comment\n/* crate::b */ let s = \"crate::b\";\n\
         let r = r#\"crate::b\"#; let q = '\"'; fn f<'x>() {}\n\
         use crate::{c, d::{Y, Z}};\nlet v = crate::e::f();\nlet w = mycrate::b::g();",
    );
    let found: Vec<String> = named(&code, &modules).into_iter().collect();
    assert_eq!(found, ["a", "c", "d", "e"]);
    let mut g = Graph::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        g.entry(from.into())
            .or_default()
            .entry(to.into())
            .or_default()
            .insert(format!("{from}.rs"));
    }
    let cycle = find_cycle(&g).expect("a cycle");
    assert_eq!(cycle, ["a", "b", "c", "a"]);
    assert_eq!(
        describe(&g, &cycle),
        "a -> b -> c -> a\n  a -> b: a.rs\n  b -> c: b.rs\n  c -> a: c.rs"
    );
    g.get_mut("c").unwrap().remove("a");
    assert_eq!(find_cycle(&g), None);
}
