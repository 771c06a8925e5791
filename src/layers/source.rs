//! Reading Rust source as the layering tests need it: the code without its
//! comments and literals (`code_only`), the module a file is
//! (`module_path`), and every path it names from `crate::`, `super::` or
//! `self::`, resolved to a path from the crate root (`named_paths`), with
//! `use` groups expanded and inline modules (`mod tests { .. }`) followed,
//! so `use super::*` in a test module is the file itself, not its folder.

use std::path::Path;

/// The source with comments, string and character literals blanked out
/// (so that `crate::x` in a doc comment or a message is no dependency).
pub fn code_only(text: &str) -> String {
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

/// The module path of a source file under `root` (the crate's `src/`):
/// `a/b.rs` and `a/b/mod.rs` are `[a, b]`; `lib.rs` and `main.rs` are `[]`.
pub fn module_path(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).unwrap_or(file);
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.strip_suffix(".rs").unwrap_or(&last).to_string();
        if !(stem == "mod" || (parts.is_empty() && (stem == "lib" || stem == "main"))) {
            parts.push(stem);
        }
    }
    parts
}

/// Every path `code` (already `code_only`) names from the crate root,
/// `super` or `self`, resolved against `module` (the file's module path):
/// `use crate::{a, b::{c, d}}` in any file names `[a]`, `[b, c]`, `[b, d]`;
/// `super::x` in `a/b.rs` names `[a, x]`. Paths from `$crate` (macros)
/// and from other crates are not the crate's own.
pub fn named_paths(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut found = Vec::new();
    // Inline modules open at a brace depth: (name, depth).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut pending_mod: Option<String> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            depth += 1;
            if let Some(name) = pending_mod.take() {
                inline.push((name, depth));
            }
            i += 1;
            continue;
        }
        if c == '}' {
            if inline.last().is_some_and(|(_, d)| *d == depth) {
                inline.pop();
            }
            depth = depth.saturating_sub(1);
            i += 1;
            continue;
        }
        if c == ';' {
            pending_mod = None;
        }
        if !ident(c) || (i > 0 && (ident(chars[i - 1]) || chars[i - 1] == '$')) {
            i += 1;
            continue;
        }
        let word = word_at(&chars, i);
        let after = i + word.chars().count();
        if word == "mod" {
            let (name, end) = next_word(&chars, after);
            if !name.is_empty() {
                pending_mod = Some(name);
            }
            i = end;
            continue;
        }
        let preceded_by_path = i >= 2 && chars[i - 1] == ':' && chars[i - 2] == ':';
        let followed_by_path = chars.get(after) == Some(&':') && chars.get(after + 1) == Some(&':');
        if matches!(word.as_str(), "crate" | "super" | "self")
            && followed_by_path
            && !preceded_by_path
        {
            let mut here: Vec<String> = module.to_vec();
            here.extend(inline.iter().map(|(n, _)| n.clone()));
            let mut paths = Vec::new();
            let end = tree(&chars, i, Vec::new(), &mut paths);
            for p in paths {
                if let Some(abs) = resolve(&here, &p) {
                    found.push(abs);
                }
            }
            i = end.max(after);
            continue;
        }
        i = after;
    }
    found
}

fn word_at(chars: &[char], at: usize) -> String {
    chars[at..]
        .iter()
        .take_while(|c| c.is_alphanumeric() || **c == '_')
        .collect()
}

/// The next word after `from` (skipping white space), and where it ends.
fn next_word(chars: &[char], from: usize) -> (String, usize) {
    let mut i = from;
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    let w = word_at(chars, i);
    let end = i + w.chars().count();
    (w, end)
}

/// Read a path or `use` tree at `at` into `out` (groups expanded, each
/// path's segments after `prefix`); returns where it ends.
fn tree(chars: &[char], at: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix;
    let mut i = at;
    loop {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if chars.get(i) == Some(&'{') {
            i += 1;
            loop {
                while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                    i += 1;
                }
                match chars.get(i) {
                    None => return i,
                    Some('}') => return i + 1,
                    _ => {}
                }
                i = tree(chars, i, path.clone(), out);
                // Skip what follows an item (`as Name`) up to `,` or `}`.
                while i < chars.len() && chars[i] != ',' && chars[i] != '}' {
                    i += 1;
                }
            }
        }
        let w = word_at(chars, i);
        if w.is_empty() {
            // A glob (`*`) or the end of the path.
            out.push(path);
            return i;
        }
        i += w.chars().count();
        path.push(w);
        if chars.get(i) == Some(&':') && chars.get(i + 1) == Some(&':') {
            i += 2;
        } else {
            out.push(path);
            return i;
        }
    }
}

/// A path as written, from `crate`, `super` or `self`, as a path from the
/// crate root; `None` when it climbs above it.
fn resolve(here: &[String], path: &[String]) -> Option<Vec<String>> {
    let (first, rest) = path.split_first()?;
    match first.as_str() {
        "crate" => Some(rest.to_vec()),
        "self" => Some(here.iter().chain(rest).cloned().collect()),
        "super" => {
            let mut base = here.to_vec();
            base.pop()?;
            let mut rest = rest;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
            Some(base.into_iter().chain(rest.iter().cloned()).collect())
        }
        _ => None,
    }
}

/// Whether code names the crate `name` as a path (`name::`), not as part
/// of a longer word or a path of the crate's own.
pub fn names_crate(code: &str, name: &str) -> bool {
    let pattern = format!("{name}::");
    code.match_indices(&pattern).any(|(at, _)| {
        !code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(code: &str, module: &[&str]) -> Vec<String> {
        let module: Vec<String> = module.iter().map(|s| s.to_string()).collect();
        named_paths(&code_only(code), &module)
            .into_iter()
            .map(|p| p.join("::"))
            .collect()
    }

    #[test]
    fn comments_and_literals_are_no_paths() {
        let code =
            "use crate::a::X;\n// crate::b in a comment\n/* crate::b */ let s = \"crate::b\";\n\
                    let r = r#\"crate::b\"#; let q = '\"'; fn f<'x>() {}\n\
                    use crate::{c, d::{Y, Z as W}, e::*};\nlet v = crate::f::g();\n\
                    let w = mycrate::b::g(); let m = $crate::b::h;";
        assert_eq!(paths(code, &[]), ["a::X", "c", "d::Y", "d::Z", "e", "f::g"]);
    }

    #[test]
    fn super_and_self_resolve_from_the_file() {
        assert_eq!(
            paths(
                "use super::y::Y; use self::z::Z; use super::super::t;",
                &["a", "x"]
            ),
            ["a::y::Y", "a::x::z::Z", "t"]
        );
        // In a face (`a/mod.rs`, module `[a]`), super is the parent.
        assert_eq!(paths("use super::b::B;", &["a"]), ["b::B"]);
        // Climbing above the crate root is no path of the crate's.
        assert!(paths("use super::super::q;", &["a"]).is_empty());
    }

    #[test]
    fn inline_modules_are_followed() {
        let code = "fn f() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::y::g;\n    fn t() { let _ = 1; }\n}\nuse super::z::Z;";
        assert_eq!(paths(code, &["a", "x"]), ["a::x", "a::y::g", "a::z::Z"]);
    }

    #[test]
    fn module_paths_of_files() {
        let root = Path::new("/src");
        let of = |f: &str| module_path(root, Path::new(f)).join("::");
        assert_eq!(of("/src/lib.rs"), "");
        assert_eq!(of("/src/a.rs"), "a");
        assert_eq!(of("/src/a/mod.rs"), "a");
        assert_eq!(of("/src/a/b.rs"), "a::b");
        assert_eq!(of("/src/a/b/mod.rs"), "a::b");
    }

    #[test]
    fn crates_are_named_as_paths() {
        assert!(names_crate("use sqlx::PgConnection;", "sqlx"));
        assert!(!names_crate(
            "use mysqlx::X; let a = crate::sqlx::y;",
            "sqlx"
        ));
    }
}
