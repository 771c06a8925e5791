//! No import circle between the files of one folder either (STYLE 18).
//! For every folder under `src/`, a graph of its children (each `x.rs`,
//! and each subfolder, whose files count as one) with an edge where a
//! child names a sibling (`super::y`, `crate::folder::y`, `use` groups
//! included). The folder's face (`mod.rs`, or `folder.rs` beside it) is
//! its door, no node: it declares its children, re-exports them and may
//! drive them, and a child may name what it defines. So a circle runs
//! between siblings, and where one does the shared part moves down into a
//! module both can name.

use std::collections::BTreeMap;
use std::path::Path;

use super::{describe, find_cycle, rust_files, source, src, Graph};

/// Folders whose circle is known and being taken apart on its own: each
/// is reported, not failed. An entry whose circle is gone fails the test,
/// so that it leaves this list as soon as it can.
const KNOWN_CIRCLES: &[&str] = &[];

/// The graph of each folder's children, by the folder's path from the
/// crate (`src/report`); `root` is the crate's `src/`.
fn folder_graphs(root: &Path) -> BTreeMap<String, Graph> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let mut graphs: BTreeMap<String, Graph> = BTreeMap::new();
    for file in &files {
        let module = source::module_path(root, file);
        let text = std::fs::read_to_string(file).expect("readable source");
        let named = source::named_paths(&source::code_only(&text), &module);
        let shown = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        // The file is inside child `module[k]` of folder `module[..k]`,
        // for every folder below the crate root that holds it.
        for k in 1..module.len() {
            let folder = &module[..k];
            let key = format!("src/{}", folder.join("/"));
            let children = children(&root.join(folder.join("/")));
            let graph = graphs.entry(key).or_default();
            let from = &module[k];
            graph.entry(from.clone()).or_default();
            for path in &named {
                let Some(to) = path.get(k).filter(|_| path.starts_with(folder)) else {
                    continue;
                };
                if to != from && children.contains(to) {
                    graph
                        .entry(from.clone())
                        .or_default()
                        .entry(to.clone())
                        .or_default()
                        .insert(shown.clone());
                }
            }
        }
    }
    graphs
}

/// The children of a folder: its `.rs` files but the face, and its
/// subfolders.
fn children(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            if p.is_dir() {
                return p.file_name()?.to_str().map(str::to_string);
            }
            let stem = p.file_stem()?.to_str()?;
            (p.extension().is_some_and(|e| e == "rs") && stem != "mod").then(|| stem.to_string())
        })
        .collect()
}

/// Each folder with a circle, and what ties it.
fn circles(graphs: &BTreeMap<String, Graph>) -> BTreeMap<String, String> {
    graphs
        .iter()
        .filter_map(|(folder, g)| Some((folder.clone(), describe(g, &find_cycle(g)?))))
        .collect()
}

#[test]
fn no_folder_has_an_import_circle() {
    let graphs = folder_graphs(&src());
    assert!(graphs.len() >= 8, "read only {} folders", graphs.len());
    let found = circles(&graphs);
    let mut unknown = Vec::new();
    for (folder, circle) in &found {
        if KNOWN_CIRCLES.contains(&folder.as_str()) {
            eprintln!("known import circle in {folder}, being taken apart: {circle}");
        } else {
            unknown.push(format!("{folder}: {circle}"));
        }
    }
    assert!(
        unknown.is_empty(),
        "import circles between the files of a folder (move the shared part into a module \
         both can name):\n{}",
        unknown.join("\n")
    );
    let gone: Vec<&str> = KNOWN_CIRCLES
        .iter()
        .copied()
        .filter(|f| !found.contains_key(*f))
        .collect();
    assert!(
        gone.is_empty(),
        "no circle left in {}: take it off KNOWN_CIRCLES in src/layers/folders.rs",
        gone.join(", ")
    );
}

#[test]
fn a_planted_circle_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |path: &str, text: &str| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "pub mod a;\npub mod b;\n");
    // The face names its children and they name it: no circle, the face
    // is the folder's door.
    write(
        "a/mod.rs",
        "mod x;\nmod y;\nmod z;\nmod deep;\npub use x::X;\npub fn f() { y::g() }\n",
    );
    write(
        "a/x.rs",
        "use super::f;\nuse super::y::Y;\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
    );
    write("a/y.rs", "pub struct Y;\npub fn g() { crate::a::z::h() }\n");
    write(
        "a/z.rs",
        "pub fn h() {}\n// super::x::X in a comment\nfn s() -> &'static str { \"super::x\" }\n",
    );
    write("a/deep/mod.rs", "mod k;\n");
    write(
        "a/deep/k.rs",
        "use super::super::x::X;\nuse super::super::z;\n",
    );
    write("b/mod.rs", "use crate::a::{x, y::Y};\n");
    let graphs = folder_graphs(root);
    assert_eq!(
        graphs.keys().map(String::as_str).collect::<Vec<_>>(),
        ["src/a", "src/a/deep"]
    );
    assert_eq!(circles(&graphs), BTreeMap::new());
    let a = &graphs["src/a"];
    let edges: Vec<String> = a
        .iter()
        .flat_map(|(from, to)| to.keys().map(move |t| format!("{from}->{t}")))
        .collect();
    assert_eq!(edges, ["deep->x", "deep->z", "x->y", "y->z"]);

    // Plant the circle: z names x, which names y, which names z.
    write("a/z.rs", "pub fn h() { let _ = crate::a::{x::X}; }\n");
    let found = circles(&folder_graphs(root));
    assert_eq!(found.len(), 1, "{found:?}");
    let circle = &found["src/a"];
    assert_eq!(
        circle,
        "x -> y -> z -> x\n  x -> y: a/x.rs\n  y -> z: a/y.rs\n  z -> x: a/z.rs"
    );
}
