//! The layering, read from the source: dependencies point one way
//! (STYLE 17, DESIGN §2). Two graphs:
//!
//! - the top-level modules (the `pub mod`s of `lib.rs`; a module's
//!   submodules count as the module): every path a file names from the
//!   crate root, `super` or `self` (`use crate::{a, b::c}` groups included)
//!   outside comments and literals is an edge. The tests fail, naming the
//!   files, when the graph has a cycle or a layer reaches up.
//! - the files of each folder (`folders`): no circle between them either.
//!
//! - `source`: reading the source (comments and literals out, paths
//!   resolved).
//! - `folders`: the graph of each folder's files.

mod folders;
mod source;

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

/// The graph of the top-level modules: an edge from a module to each
/// other module its files name.
fn graph() -> Graph {
    let modules = modules();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut g = Graph::new();
    for m in &modules {
        g.entry(m.clone()).or_default();
    }
    for file in files {
        let module = source::module_path(&src(), &file);
        let Some(from) = module.first().filter(|m| modules.contains(*m)) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("readable source");
        let shown = file.strip_prefix(src()).unwrap().display().to_string();
        for path in source::named_paths(&source::code_only(&text), &module) {
            let Some(to) = path.first().filter(|m| modules.contains(*m) && *m != from) else {
                continue;
            };
            g.entry(from.clone())
                .or_default()
                .entry(to.clone())
                .or_default()
                .insert(shown.clone());
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
        "commands",
        "cli",
        "plan",
        "run",
        "lab",
        "http",
        "shop",
        "report",
        "verdict",
        "result",
        "trace",
        "explain",
        "watch",
        "explore",
        "classroom",
        "service",
    ];
    let rules: &[(&str, &[&str])] = &[
        ("strategy", &above_domain),
        ("scenario", &above_domain),
        // The engine races any target's lanes: it names no target, no
        // driver and no script (see `the_engine_names_no_driver`).
        (
            "engine",
            &[
                "commands", "cli", "plan", "run", "lab", "http", "shop", "report", "verdict",
                "result", "trace", "explain", "explore", "db", "strategy", "scenario",
            ],
        ),
        ("db", &above_domain),
        ("proxy", &above_domain),
        ("service", &["commands", "cli", "plan"]),
        ("error", &["strategy", "scenario", "engine", "db", "cli"]),
        (
            "report",
            &[
                "commands",
                "cli",
                "plan",
                "run",
                "lab",
                "http",
                "shop",
                "explore",
                "classroom",
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
        (
            "run",
            &["commands", "cli", "plan", "lab", "http", "classroom"],
        ),
        ("lab", &["commands", "cli", "plan", "classroom"]),
        ("http", &["commands", "cli", "plan", "lab", "classroom"]),
        ("explore", &["commands", "cli", "lab", "http", "classroom"]),
        ("classroom", &["commands", "cli"]),
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

/// The crates that speak to a database or a cache: the SQL lab's, never
/// the engine's.
const DRIVERS: [&str; 2] = ["sqlx", "redis"];

#[test]
fn the_engine_names_no_driver() {
    let mut files = Vec::new();
    rust_files(&src().join("engine"), &mut files);
    assert!(files.len() >= 3, "read only {} engine files", files.len());
    let mut named = Vec::new();
    for file in files {
        let code = source::code_only(&std::fs::read_to_string(&file).expect("readable source"));
        for driver in DRIVERS {
            if source::names_crate(&code, driver) {
                named.push(format!("{} names {driver}", file.display()));
            }
        }
    }
    assert!(named.is_empty(), "{}", named.join("; "));
}

#[test]
fn a_cycle_is_found_and_told_with_its_files() {
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
