//! `--users FILE`: one row per buyer (buyer n takes row n), every column a
//! template variable. CSV with a header row, or JSON Lines (one object a
//! line). Every value is a secret: it goes into requests and nowhere else.

use std::path::Path;

use super::secret::Secret;
use crate::error::bad_input;

/// The users file, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct Users {
    pub columns: Vec<String>,
    rows: Vec<Vec<Secret>>,
    /// `--users-cycle`: buyers past the last row start again at the first.
    pub cycle: bool,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Users({:?}, {} rows)", self.columns, self.rows.len())
    }
}

impl Users {
    /// Read `path`: JSON Lines when its first non-blank character is `{`,
    /// CSV otherwise.
    pub fn load(path: &Path, cycle: bool) -> anyhow::Result<Users> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad_input(format!("--users {}: {e}", path.display())))?;
        let shown = path.display().to_string();
        let (columns, rows) = if text.trim_start().starts_with('{') {
            json_lines(&shown, &text)?
        } else {
            csv(&shown, &text)?
        };
        if rows.is_empty() {
            return Err(bad_input(format!("--users {shown}: no user in it")));
        }
        for c in &columns {
            let ok = !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_alphanumeric() || ch == '_' || ch == '-');
            if !ok {
                return Err(bad_input(format!(
                    "--users {shown}: the column {c:?} cannot be a variable name \
                     (letters, digits, `_` and `-`)"
                )));
            }
            if crate::http::template::BUILT_IN.contains(&c.as_str()) {
                return Err(bad_input(format!(
                    "--users {shown}: the column {c:?} is a built-in variable ({{{{{c}}}}}); rename it"
                )));
            }
        }
        let rows = rows
            .into_iter()
            .map(|r| r.into_iter().map(Secret::new).collect())
            .collect();
        Ok(Users {
            columns,
            rows,
            cycle,
        })
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Fewer rows than buyers is bad input unless they cycle.
    pub fn check_buyers(&self, buyers: u32) -> anyhow::Result<()> {
        if !self.cycle && (buyers as usize) > self.rows.len() {
            return Err(bad_input(format!(
                "--users has {} users for {buyers} buyers (buyer n takes row n): add users, \
                 race fewer buyers (--buyers {}), or let buyers share them (--users-cycle)",
                self.rows.len(),
                self.rows.len()
            )));
        }
        Ok(())
    }

    /// Buyer `n`'s (1-based) row.
    pub fn row(&self, buyer: u32) -> &[Secret] {
        let i = (buyer.max(1) as usize - 1) % self.rows.len();
        &self.rows[i]
    }
}

fn json_lines(shown: &str, text: &str) -> anyhow::Result<(Vec<String>, Vec<Vec<String>>)> {
    let mut columns: Vec<String> = Vec::new();
    let mut objects = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            // The parser's message quotes no input, so no value leaks here.
            bad_input(format!(
                "--users {shown}:{}: not a JSON object ({e})",
                i + 1
            ))
        })?;
        let serde_json::Value::Object(map) = v else {
            return Err(bad_input(format!(
                "--users {shown}:{}: each line must be a JSON object",
                i + 1
            )));
        };
        for k in map.keys() {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
        objects.push((i + 1, map));
    }
    let mut rows = Vec::new();
    for (line, map) in objects {
        let mut row = Vec::new();
        for c in &columns {
            row.push(match map.get(c) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                Some(serde_json::Value::Bool(b)) => b.to_string(),
                _ => {
                    return Err(bad_input(format!(
                        "--users {shown}:{line}: `{c}` is missing, null or not a string or number"
                    )))
                }
            });
        }
        rows.push(row);
    }
    Ok((columns, rows))
}

/// RFC 4180: fields separated by commas, optionally in double quotes
/// (`""` for a quote inside), records by CRLF or LF.
fn csv(shown: &str, text: &str) -> anyhow::Result<(Vec<String>, Vec<Vec<String>>)> {
    let mut records: Vec<(usize, Vec<String>)> = Vec::new();
    let mut field = String::new();
    let mut record = Vec::new();
    let mut chars = text.chars().peekable();
    let (mut line, mut start_line, mut quoted, mut was_quoted) = (1, 1, false, false);
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => {
                    line += usize::from(c == '\n');
                    field.push(c);
                }
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => {
                quoted = true;
                was_quoted = true;
            }
            ',' => {
                record.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                if !(record.is_empty() && field.is_empty() && !was_quoted) {
                    record.push(std::mem::take(&mut field));
                    records.push((start_line, std::mem::take(&mut record)));
                }
                was_quoted = false;
                line += 1;
                start_line = line;
            }
            c => field.push(c),
        }
    }
    if quoted {
        return Err(bad_input(format!(
            "--users {shown}:{start_line}: a quoted field is not closed"
        )));
    }
    if !(record.is_empty() && field.is_empty() && !was_quoted) {
        record.push(field);
        records.push((start_line, record));
    }
    let mut records = records.into_iter();
    let Some((_, header)) = records.next() else {
        return Err(bad_input(format!(
            "--users {shown}: empty; the first line names the columns, e.g. user,password"
        )));
    };
    let columns: Vec<String> = header.iter().map(|h| h.trim().to_string()).collect();
    let mut rows = Vec::new();
    for (line, r) in records {
        if r.len() != columns.len() {
            return Err(bad_input(format!(
                "--users {shown}:{line}: {} fields where the header names {}",
                r.len(),
                columns.len()
            )));
        }
        rows.push(r);
    }
    Ok((columns, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn csv_and_json_lines_give_the_same_users() {
        let csv = write("user,password\r\nann,\"p,\"\"1\"\"\"\nbob,pw2\n");
        let jl = write("{\"user\": \"ann\", \"password\": \"p,\\\"1\\\"\"}\n\n{\"user\": \"bob\", \"password\": \"pw2\"}\n");
        for f in [&csv, &jl] {
            let u = Users::load(f.path(), false).unwrap();
            let col = |name: &str| u.columns.iter().position(|c| c == name).unwrap();
            assert_eq!(u.columns.len(), 2);
            assert_eq!(u.row(1)[col("user")].expose(), "ann");
            assert_eq!(u.row(1)[col("password")].expose(), "p,\"1\"");
            assert_eq!(u.row(2)[col("password")].expose(), "pw2");
            assert!(u.check_buyers(2).is_ok());
            let e = u.check_buyers(3).unwrap_err().to_string();
            assert!(e.contains("--users-cycle"), "{e}");
        }
        let u = Users::load(csv.path(), true).unwrap();
        assert!(u.check_buyers(3).is_ok());
        let row: Vec<&str> = u.row(3).iter().map(Secret::expose).collect();
        assert_eq!(row, ["ann", "p,\"1\""]);
        assert_eq!(u.columns, ["user", "password"]);
    }

    #[test]
    fn bad_files_name_the_line_and_never_a_value() {
        let short = write("user,password\nann,secret-1\nbob\n");
        let e = Users::load(short.path(), false).unwrap_err().to_string();
        assert!(e.contains(":3: 1 fields where the header names 2"), "{e}");
        assert!(!e.contains("secret-1"));
        let builtin = write("buyer,password\n1,x\n");
        let e = Users::load(builtin.path(), false).unwrap_err().to_string();
        assert!(e.contains("built-in"), "{e}");
        let missing = write("{\"user\": \"a\"}\n{\"other\": \"b\"}\n");
        let e = Users::load(missing.path(), false).unwrap_err().to_string();
        assert!(e.contains(":1: `other` is missing"), "{e}");
    }
}
