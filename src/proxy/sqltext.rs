//! The little the recorder reads of SQL text itself: where the statements
//! of a simple Query end (top-level `;`, with quotes, dollar quotes and
//! comments respected), a statement's first keyword, and the password
//! literals of role statements, which are replaced before anything is
//! recorded. Everything else about a statement is read by the statement
//! model (`strategy::facts`), from the recorded text, after the race.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

/// What replaces a password literal.
pub const REDACTED: &str = "'***'";

/// The statements of a Query's text, trimmed, empty ones dropped.
pub fn split(sql: &str) -> Vec<&str> {
    if memchr::memchr(b';', sql.as_bytes()).is_none() {
        let t = sql.trim();
        return if t.is_empty() { Vec::new() } else { vec![t] };
    }
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' => {
                // E'..' strings take backslash escapes.
                let escapes = i > 0 && matches!(b[i - 1], b'e' | b'E') && !word_before(b, i - 1);
                i = skip_quoted(b, i, b'\'', escapes);
            }
            b'"' => i = skip_quoted(b, i, b'"', false),
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = memchr::memchr(b'\n', &b[i..]).map_or(b.len(), |n| i + n + 1);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_block_comment(b, i),
            b'$' if !word_before(b, i) => i = skip_dollar(b, i),
            b';' => {
                let s = sql[start..i].trim();
                if !s.is_empty() {
                    out.push(s);
                }
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    let s = sql[start..].trim();
    if !s.is_empty() {
        out.push(s);
    }
    out
}

/// Whether the byte before `i` continues an identifier (so `$` is part
/// of a name like `a$b`, and `e'` is no E-string in `name'`).
fn word_before(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b'$')
}

fn skip_quoted(b: &[u8], open: usize, q: u8, escapes: bool) -> usize {
    let mut i = open + 1;
    while i < b.len() {
        if escapes && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

fn skip_block_comment(b: &[u8], open: usize) -> usize {
    let mut depth = 0;
    let mut i = open;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// `$tag$ ... $tag$` (or a `$1` parameter, which is skipped as itself).
fn skip_dollar(b: &[u8], open: usize) -> usize {
    let mut j = open + 1;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
        j += 1;
    }
    if b.get(j) != Some(&b'$') || b[open + 1..j].first().is_some_and(u8::is_ascii_digit) {
        return j.max(open + 1);
    }
    let tag = &b[open..=j];
    let body = j + 1;
    let mut k = body;
    while k + tag.len() <= b.len() {
        if &b[k..k + tag.len()] == tag {
            return k + tag.len();
        }
        k += 1;
    }
    b.len()
}

/// The statement's first keyword, upper-cased (comments, whitespace and
/// opening parentheses skipped).
pub fn first_word(sql: &str) -> Option<String> {
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            c if c.is_ascii_whitespace() || c == b'(' => i += 1,
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = memchr::memchr(b'\n', &b[i..]).map_or(b.len(), |n| i + n + 1);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_block_comment(b, i),
            c if c.is_ascii_alphabetic() => {
                let end = b[i..]
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                    .map_or(b.len(), |n| i + n);
                return Some(sql[i..end].to_ascii_uppercase());
            }
            _ => return None,
        }
    }
    None
}

/// The SQL with every string literal that follows the word PASSWORD
/// replaced by `'***'`, for statements that can carry one (CREATE, ALTER:
/// roles, users, user mappings); any other statement is returned as is.
pub fn redact(sql: &str) -> std::borrow::Cow<'_, str> {
    if !matches!(first_word(sql).as_deref(), Some("CREATE" | "ALTER")) {
        return sql.into();
    }
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        // Unreadable: keep nothing of it that could be a secret.
        return format!(
            "{} ... (not recorded: unreadable)",
            first_word(sql).unwrap_or_default()
        )
        .into();
    };
    let mut out = String::with_capacity(sql.len());
    let mut after_password = false;
    let mut changed = false;
    for t in &tokens {
        let literal = matches!(
            t,
            Token::SingleQuotedString(_)
                | Token::EscapedStringLiteral(_)
                | Token::DollarQuotedString(_)
                | Token::NationalStringLiteral(_)
                | Token::UnicodeStringLiteral(_)
        );
        if after_password && literal {
            out.push_str(REDACTED);
            changed = true;
            after_password = false;
            continue;
        }
        match t {
            Token::Whitespace(_) => {}
            Token::Word(w) => after_password = w.value.eq_ignore_ascii_case("password"),
            _ => after_password = false,
        }
        out.push_str(&t.to_string());
    }
    if changed {
        out.into()
    } else {
        sql.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_respects_quotes_and_comments() {
        assert_eq!(split("SELECT 1"), vec!["SELECT 1"]);
        assert_eq!(
            split("BEGIN; SELECT 1;\n COMMIT;"),
            vec!["BEGIN", "SELECT 1", "COMMIT"]
        );
        assert_eq!(
            split("SELECT ';'; SELECT 2"),
            vec!["SELECT ';'", "SELECT 2"]
        );
        assert_eq!(split("SELECT 'it''s;'"), vec!["SELECT 'it''s;'"]);
        assert_eq!(split("SELECT E'a\\';b'; X"), vec!["SELECT E'a\\';b'", "X"]);
        assert_eq!(
            split("SELECT \"a;b\" FROM t"),
            vec!["SELECT \"a;b\" FROM t"]
        );
        assert_eq!(
            split("SELECT 1 -- ;\n; SELECT 2"),
            vec!["SELECT 1 -- ;", "SELECT 2"]
        );
        assert_eq!(
            split("SELECT /* ; /* ; */ */ 1; Y"),
            vec!["SELECT /* ; /* ; */ */ 1", "Y"]
        );
        assert_eq!(
            split("DO $x$ BEGIN PERFORM 1; END $x$; SELECT $1"),
            vec!["DO $x$ BEGIN PERFORM 1; END $x$", "SELECT $1"]
        );
        assert_eq!(split(" ; ;"), Vec::<&str>::new());
    }

    #[test]
    fn first_words() {
        assert_eq!(
            first_word("  /* c */ -- x\n (select 1)").as_deref(),
            Some("SELECT")
        );
        assert_eq!(first_word("alter role a").as_deref(), Some("ALTER"));
        assert_eq!(first_word("").as_deref(), None);
    }

    #[test]
    fn passwords_are_redacted() {
        let r = redact("ALTER ROLE ann WITH LOGIN PASSWORD 'hunter2' VALID UNTIL 'infinity'");
        assert!(!r.contains("hunter2"), "{r}");
        assert!(r.contains("PASSWORD '***'"), "{r}");
        assert!(r.contains("'infinity'"), "{r}");
        let r = redact("create user bob password $$s3cret$$");
        assert!(!r.contains("s3cret"), "{r}");
        let r = redact("CREATE USER MAPPING FOR u SERVER s OPTIONS (user 'u', password 'pw')");
        assert!(!r.contains("'pw'"), "{r}");
        // Not a role statement: untouched, even with the word in it.
        let q = "SELECT 'password' AS password, 'x'";
        assert_eq!(redact(q), q);
        assert_eq!(redact("CREATE TABLE t (a int)"), "CREATE TABLE t (a int)");
    }
}
