//! Lexing: splits a script into commands (SQL statements and meta-command
//! lines), respecting quotes, dollar quotes and comments, and turns `:name`
//! into bind placeholders. This is the script language, not SQL reading: what
//! a statement does is read once by sqlparser (`facts`), and what a
//! meta-command means is `parse`'s job.

use std::fmt::Write as _;

/// A lexing error at a 1-based line and column (in characters).
#[derive(Debug)]
pub(crate) struct LexError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

fn err(line: usize, col: usize, message: impl Into<String>) -> LexError {
    LexError {
        line,
        col,
        message: message.into(),
    }
}

/// One use of `:name`, where it was written.
#[derive(Debug, Clone)]
pub(crate) struct VarUse {
    pub name: String,
    pub line: usize,
    pub col: usize,
}

/// A `$n` the lexer wrote into a statement's SQL in place of a `:name`:
/// the only placeholders there are (a script cannot write `$1` of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placeholder {
    /// Byte offset of the `$` in the SQL sent.
    pub start: usize,
    /// Byte offset just past the last digit.
    pub end: usize,
    /// Which bound value it takes: 0 for `$1`.
    pub param: usize,
}

/// A SQL statement as written, and as it will be sent.
#[derive(Debug)]
pub(crate) struct SqlCmd {
    pub line: usize,
    pub col: usize,
    /// The line the statement ends on (its `;` or `\gset`).
    pub end_line: usize,
    /// The statement as written (without the final `;` or `\gset`).
    pub text: String,
    /// The statement to send: `:name` replaced by `$n`.
    pub sql: String,
    /// The variable bound to `$1`, `$2`, ... in order.
    pub params: Vec<String>,
    /// Where `sql` holds each `$n`, in order of position.
    pub placeholders: Vec<Placeholder>,
    /// Every variable use, in order, for load-time checks.
    pub uses: Vec<VarUse>,
    pub gset: Option<GsetCmd>,
}

/// A `\gset [prefix]` attached to a statement.
#[derive(Debug, Clone)]
pub(crate) struct GsetCmd {
    pub line: usize,
    pub col: usize,
    pub prefix: String,
}

/// A meta-command line: `\name args`.
#[derive(Debug)]
pub(crate) struct MetaCmd {
    pub line: usize,
    /// Column of the backslash.
    pub col: usize,
    pub name: String,
    /// The rest of the line, a trailing `--` comment removed.
    pub args: String,
    /// Column of the first character of `args`.
    pub args_col: usize,
}

#[derive(Debug)]
pub(crate) enum Command {
    Sql(SqlCmd),
    Meta(MetaCmd),
}

/// Where the scanner is inside SQL text. `Dollar`'s tag is kept beside it so
/// the state stays `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Normal,
    Str,
    EStr,
    QuotedIdent,
    Dollar,
    Block(u32),
}

/// What follows a `;` on its line.
enum Rest {
    End,
    Gset(GsetCmd),
    /// A block comment opens after the `;` and continues on the next line.
    OpenComment(u32, (usize, usize)),
    More,
}

/// The meta-commands `parse` knows, for "did you mean" suggestions here.
pub(crate) const META_COMMANDS: [&str; 12] = [
    "set", "if", "elif", "else", "endif", "sleep", "sold_out", "retry", "setup", "endsetup",
    "gset", "redis",
];

pub(crate) fn is_var_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

pub(crate) fn is_var_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Characters that can be part of an SQL identifier or number: a `'` or
/// `$` right after one does not start a quote.
fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

struct Lexer {
    out: Vec<Command>,
    state: State,
    tag: Vec<char>,
    /// Where the current quote or comment opened, for "unterminated" errors.
    open: (usize, usize),
    pending: Option<SqlCmd>,
}

/// Split `src` into commands.
pub(crate) fn lex(src: &str) -> Result<Vec<Command>, LexError> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let mut lx = Lexer {
        out: Vec::new(),
        state: State::Normal,
        tag: Vec::new(),
        open: (0, 0),
        pending: None,
    };
    for (idx, raw) in src.split('\n').enumerate() {
        let line = idx + 1;
        let text = raw.strip_suffix('\r').unwrap_or(raw);
        let chars: Vec<char> = text.chars().collect();
        if lx.state == State::Normal {
            if let Some(i) = chars.iter().position(|c| !c.is_whitespace()) {
                if chars[i] == '\\' {
                    lx.meta_line(&chars, i, line)?;
                    continue;
                }
            }
        }
        lx.sql_line(&chars, line)?;
    }
    let (l, c) = lx.open;
    match lx.state {
        State::Normal => {}
        State::Str | State::EStr => return Err(err(l, c, "unterminated quoted string")),
        State::QuotedIdent => return Err(err(l, c, "unterminated quoted identifier")),
        State::Dollar => {
            let tag: String = lx.tag.iter().collect();
            return Err(err(
                l,
                c,
                format!("unterminated dollar-quoted string (no closing {tag})"),
            ));
        }
        State::Block(_) => return Err(err(l, c, "unterminated /* comment")),
    }
    if let Some(p) = &lx.pending {
        return Err(not_terminated(p));
    }
    Ok(lx.out)
}

fn not_terminated(p: &SqlCmd) -> LexError {
    err(
        p.line,
        p.col,
        "SQL statement is not terminated: end its last line with `;`",
    )
}

impl Lexer {
    fn push(&mut self, c: char) {
        if let Some(p) = &mut self.pending {
            p.text.push(c);
            p.sql.push(c);
        }
    }

    fn push_chars(&mut self, cs: &[char]) {
        for &c in cs {
            self.push(c);
        }
    }

    fn finish(&mut self, gset: Option<GsetCmd>, line: usize) {
        if let Some(mut p) = self.pending.take() {
            p.end_line = line;
            p.text.truncate(p.text.trim_end().len());
            // Only trailing blanks go: every placeholder keeps its offsets.
            p.sql.truncate(p.sql.trim_end().len());
            p.gset = gset;
            self.out.push(Command::Sql(p));
        }
    }

    /// `:name` inside a pending statement: the same name gets the same `$n`.
    fn var(&mut self, name: String, line: usize, col: usize) {
        let Some(p) = &mut self.pending else { return };
        let n = match p.params.iter().position(|x| *x == name) {
            Some(k) => k + 1,
            None => {
                p.params.push(name.clone());
                p.params.len()
            }
        };
        let start = p.sql.len();
        let _ = write!(p.sql, "${n}");
        p.placeholders.push(Placeholder {
            start,
            end: p.sql.len(),
            param: n - 1,
        });
        p.text.push(':');
        p.text.push_str(&name);
        p.uses.push(VarUse { name, line, col });
    }

    fn meta_line(&mut self, chars: &[char], i: usize, line: usize) -> Result<(), LexError> {
        let start = i + 1;
        let mut j = start;
        while j < chars.len() && is_var_char(chars[j]) {
            j += 1;
        }
        if j == start {
            return Err(err(
                line,
                i + 1,
                "expected a meta-command name after `\\` (for example `\\set`)",
            ));
        }
        let name: String = chars[start..j].iter().collect();
        if name == "gset" {
            let g = parse_gset(chars, i, line)?;
            if self.pending.is_some() {
                self.finish(Some(g), line);
                return Ok(());
            }
            return match self.out.last_mut() {
                Some(Command::Sql(last)) if last.gset.is_none() => {
                    last.gset = Some(g);
                    Ok(())
                }
                Some(Command::Sql(_)) => Err(err(line, i + 1, "this query already has a `\\gset`")),
                _ => Err(err(
                    line,
                    i + 1,
                    "`\\gset` must follow a query, on its last line or the next",
                )),
            };
        }
        if let Some(p) = &self.pending {
            return Err(not_terminated(p));
        }
        let mut end = chars.len();
        // `\redis` arguments may quote a `--` (a Lua comment, a value).
        let quotes = name == "redis";
        let mut quote: Option<char> = None;
        for k in j..chars.len() {
            let c = chars[k];
            if quotes {
                match quote {
                    Some(q) if c == q => {
                        quote = None;
                        continue;
                    }
                    Some(_) => continue,
                    None if c == '\'' || c == '"' => {
                        quote = Some(c);
                        continue;
                    }
                    None => {}
                }
            }
            if c == '-' && chars.get(k + 1) == Some(&'-') {
                end = k;
                break;
            }
        }
        self.out.push(Command::Meta(MetaCmd {
            line,
            col: i + 1,
            name,
            args: chars[j..end].iter().collect(),
            args_col: j + 1,
        }));
        Ok(())
    }

    fn sql_line(&mut self, chars: &[char], line: usize) -> Result<(), LexError> {
        let n = chars.len();
        let mut i = 0;
        while i < n {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            match self.state {
                State::Normal => {
                    if c == '-' && next == Some('-') {
                        break;
                    }
                    if c == '/' && next == Some('*') {
                        self.state = State::Block(1);
                        self.open = (line, i + 1);
                        self.push_chars(&chars[i..i + 2]);
                        i += 2;
                        continue;
                    }
                    if c.is_whitespace() {
                        self.push(c);
                        i += 1;
                        continue;
                    }
                    if c == '\\' {
                        if self.pending.is_none() {
                            return Err(err(line, i + 1, "a meta-command must start its own line"));
                        }
                        let g = parse_gset(chars, i, line)?;
                        self.finish(Some(g), line);
                        return Ok(());
                    }
                    if c == ';' {
                        if self.pending.is_none() {
                            return Err(err(line, i + 1, "empty SQL statement (a stray `;`)"));
                        }
                        match rest_of_line(chars, i + 1, line)? {
                            Rest::End => self.finish(None, line),
                            Rest::Gset(g) => self.finish(Some(g), line),
                            Rest::OpenComment(depth, open) => {
                                self.finish(None, line);
                                self.state = State::Block(depth);
                                self.open = open;
                            }
                            Rest::More => {
                                return Err(err(
                                    line,
                                    i + 1,
                                    "`;` must end its line: write one SQL statement per line \
                                     (a statement may span several lines)",
                                ))
                            }
                        }
                        return Ok(());
                    }
                    if self.pending.is_none() {
                        self.pending = Some(SqlCmd {
                            line,
                            col: i + 1,
                            end_line: line,
                            text: String::new(),
                            sql: String::new(),
                            params: Vec::new(),
                            placeholders: Vec::new(),
                            uses: Vec::new(),
                            gset: None,
                        });
                    }
                    let prev = if i > 0 { Some(chars[i - 1]) } else { None };
                    match c {
                        '\'' => {
                            // E'...' allows backslash escapes; the E must not
                            // end a longer identifier.
                            let e = matches!(prev, Some('e' | 'E'))
                                && !(i > 1 && is_ident_char(chars[i - 2]));
                            self.state = if e { State::EStr } else { State::Str };
                            self.open = (line, if e { i } else { i + 1 });
                            self.push(c);
                        }
                        '"' => {
                            self.state = State::QuotedIdent;
                            self.open = (line, i + 1);
                            self.push(c);
                        }
                        '$' if !prev.is_some_and(is_ident_char)
                            && next.is_some_and(|d| d.is_ascii_digit()) =>
                        {
                            // Our `:name` placeholders are numbered `$1`..;
                            // a literal one would silently take their values.
                            return Err(err(
                                line,
                                i + 1,
                                "positional parameters like `$1` are not allowed: \
                                 use variables (`:name`), which are sent as parameters",
                            ));
                        }
                        '$' if !prev.is_some_and(is_ident_char) => {
                            if let Some(end) = dollar_tag(chars, i) {
                                self.tag = chars[i..=end].to_vec();
                                self.state = State::Dollar;
                                self.open = (line, i + 1);
                                self.push_chars(&chars[i..=end]);
                                i = end + 1;
                                continue;
                            }
                            self.push(c);
                        }
                        ':' if prev != Some(':') && next.is_some_and(is_var_start) => {
                            let start = i + 1;
                            let mut j = start;
                            while j < n && is_var_char(chars[j]) {
                                j += 1;
                            }
                            let name: String = chars[start..j].iter().collect();
                            self.var(name, line, i + 1);
                            i = j;
                            continue;
                        }
                        _ => self.push(c),
                    }
                    i += 1;
                }
                State::Str | State::EStr => {
                    self.push(c);
                    if c == '\\' && self.state == State::EStr {
                        if let Some(nc) = next {
                            self.push(nc);
                            i += 2;
                            continue;
                        }
                    }
                    if c == '\'' {
                        if next == Some('\'') {
                            self.push('\'');
                            i += 2;
                            continue;
                        }
                        self.state = State::Normal;
                    }
                    i += 1;
                }
                State::QuotedIdent => {
                    self.push(c);
                    if c == '"' {
                        if next == Some('"') {
                            self.push('"');
                            i += 2;
                            continue;
                        }
                        self.state = State::Normal;
                    }
                    i += 1;
                }
                State::Dollar => {
                    if chars[i..].starts_with(&self.tag) {
                        let len = self.tag.len();
                        self.push_chars(&chars[i..i + len]);
                        i += len;
                        self.state = State::Normal;
                        continue;
                    }
                    self.push(c);
                    i += 1;
                }
                State::Block(depth) => {
                    if c == '/' && next == Some('*') {
                        self.state = State::Block(depth + 1);
                        self.push_chars(&chars[i..i + 2]);
                        i += 2;
                    } else if c == '*' && next == Some('/') {
                        self.state = if depth <= 1 {
                            State::Normal
                        } else {
                            State::Block(depth - 1)
                        };
                        self.push_chars(&chars[i..i + 2]);
                        i += 2;
                    } else {
                        self.push(c);
                        i += 1;
                    }
                }
            }
        }
        self.push('\n');
        Ok(())
    }
}

/// If `chars[i]` (a `$`) opens a dollar quote `$tag$`, the index of the
/// closing `$` of the tag.
fn dollar_tag(chars: &[char], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if j < chars.len() && chars[j] == '$' {
        return Some(j);
    }
    if j >= chars.len() || !(chars[j].is_alphabetic() || chars[j] == '_') {
        return None;
    }
    while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
        j += 1;
    }
    (j < chars.len() && chars[j] == '$').then_some(j)
}

/// After a `;`: is the rest of the line blank, a comment, or `\gset`?
fn rest_of_line(chars: &[char], mut j: usize, line: usize) -> Result<Rest, LexError> {
    let mut depth = 0u32;
    let mut open = (0, 0);
    while j < chars.len() {
        let c = chars[j];
        let next = chars.get(j + 1).copied();
        if depth > 0 {
            if c == '/' && next == Some('*') {
                depth += 1;
                j += 2;
            } else if c == '*' && next == Some('/') {
                depth -= 1;
                j += 2;
            } else {
                j += 1;
            }
            continue;
        }
        if c.is_whitespace() {
            j += 1;
        } else if c == '-' && next == Some('-') {
            return Ok(Rest::End);
        } else if c == '/' && next == Some('*') {
            depth = 1;
            open = (line, j + 1);
            j += 2;
        } else if c == '\\' {
            return Ok(Rest::Gset(parse_gset(chars, j, line)?));
        } else {
            return Ok(Rest::More);
        }
    }
    Ok(if depth > 0 {
        Rest::OpenComment(depth, open)
    } else {
        Rest::End
    })
}

/// `\gset [prefix]` starting at `chars[i]` (the backslash), up to the end of
/// the line (a trailing `--` comment is allowed).
fn parse_gset(chars: &[char], i: usize, line: usize) -> Result<GsetCmd, LexError> {
    let start = i + 1;
    let mut j = start;
    while j < chars.len() && is_var_char(chars[j]) {
        j += 1;
    }
    let word: String = chars[start..j].iter().collect();
    if word != "gset" {
        let msg = if word.is_empty() {
            "expected `\\gset` after the SQL statement".to_string()
        } else if META_COMMANDS.contains(&word.as_str()) {
            format!("`\\{word}` must start its own line (only `\\gset` may follow SQL)")
        } else {
            format!(
                "unknown meta-command `\\{word}`{}",
                crate::suggest::did_you_mean("\\", &word, META_COMMANDS.iter().copied())
            )
        };
        return Err(err(line, i + 1, msg));
    }
    while j < chars.len() && chars[j].is_whitespace() {
        j += 1;
    }
    let mut prefix = String::new();
    if j < chars.len() && is_var_start(chars[j]) {
        while j < chars.len() && is_var_char(chars[j]) {
            prefix.push(chars[j]);
            j += 1;
        }
    }
    while j < chars.len() && chars[j].is_whitespace() {
        j += 1;
    }
    if j < chars.len() && !(chars[j] == '-' && chars.get(j + 1) == Some(&'-')) {
        return Err(err(
            line,
            j + 1,
            "unexpected text after `\\gset` (it takes an optional variable-name prefix)",
        ));
    }
    Ok(GsetCmd {
        line,
        col: i + 1,
        prefix,
    })
}
