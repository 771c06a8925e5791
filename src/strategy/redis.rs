//! The `\redis` meta-command: its arguments read once at load time into a
//! `RedisCmd` (words, bound variables, quoted strings, key templates), and
//! which of a command's arguments are keys. Running it is `interp`'s job.
//!
//! Keys are always under racelab's prefix: the script writes `stock:{:product}`
//! and racelab sends `<prefix>stock:42`. Only commands whose key positions
//! racelab knows are accepted, so a script cannot reach a key outside it.

/// One piece of a key or word template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Lit(String),
    /// `{:name}`: the variable's value, as text.
    Var(usize),
}

/// One argument of a `\redis` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    /// A word or quoted string, sent as written.
    Lit(String),
    /// `:name` alone: the variable's value (integers as their digits).
    Var(usize),
    /// A word with `{:name}` parts.
    Template(Vec<Part>),
}

/// What a `\redis` command does to the data flow: the one reading of a
/// command's name and words, which `explain`'s data flow and its notes
/// (`RedisCmd::note`) both take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RedisEffect {
    /// An atomic counter step (DECRBY, INCRBY, ...): its reply is this
    /// buyer's own, no other buyer gets the same.
    Count(Step),
    /// A read (GET, HGET): its reply is not atomic with anything after it.
    Read,
    /// `SET key value NX [PX ttl]`: a lock, held while the reply is not nil,
    /// until its TTL runs out.
    Lock { ttl: Option<String> },
    /// A write of variables (`SET key :value`); `hash` for a field of a
    /// hash (`HSET key field :value`).
    Write { from: Vec<usize>, hash: bool },
    /// EVAL, EVALSHA: a Lua script, run by Redis as one atomic step;
    /// racelab does not read it.
    Script,
    /// WATCH: a later EXEC fails if a watched key changed.
    Watch,
    /// MULTI: queues the commands up to EXEC.
    Multi,
    /// EXEC: runs the queued commands, or replies nil after a WATCH failed.
    Exec,
    /// Anything else: racelab does not read it.
    Opaque,
}

/// Which way a counter step goes, as strategies use it: DECR, DECRBY and
/// HINCRBY take units, INCR and INCRBY give them back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Down,
    Up,
}

/// A parsed `\redis` line.
#[derive(Debug, Clone)]
pub(crate) struct RedisCmd {
    pub line: usize,
    /// The command name, upper case.
    pub name: String,
    pub args: Vec<Arg>,
    /// Which of `args` are keys (they get the prefix).
    pub keys: Vec<bool>,
    /// `\gset NAME`: the variable the reply is stored in.
    pub into: Option<usize>,
    /// The line as written, for traces.
    pub display: String,
}

/// Where a command's keys are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    None,
    First,
    All,
    /// EVAL / EVALSHA: script, numkeys, then numkeys keys.
    Eval,
}

/// The commands a strategy may send, with where their keys are.
const COMMANDS: &[(&str, Keys)] = &[
    ("GET", Keys::First),
    ("SET", Keys::First),
    ("SETNX", Keys::First),
    ("GETSET", Keys::First),
    ("GETDEL", Keys::First),
    ("INCR", Keys::First),
    ("DECR", Keys::First),
    ("INCRBY", Keys::First),
    ("DECRBY", Keys::First),
    ("EXPIRE", Keys::First),
    ("PEXPIRE", Keys::First),
    ("TTL", Keys::First),
    ("PTTL", Keys::First),
    ("PERSIST", Keys::First),
    ("HGET", Keys::First),
    ("HSET", Keys::First),
    ("HINCRBY", Keys::First),
    ("HDEL", Keys::First),
    ("LPUSH", Keys::First),
    ("RPUSH", Keys::First),
    ("LPOP", Keys::First),
    ("RPOP", Keys::First),
    ("LLEN", Keys::First),
    ("SADD", Keys::First),
    ("SREM", Keys::First),
    ("SCARD", Keys::First),
    ("SISMEMBER", Keys::First),
    ("DEL", Keys::All),
    ("EXISTS", Keys::All),
    ("WATCH", Keys::All),
    ("UNWATCH", Keys::None),
    ("MULTI", Keys::None),
    ("EXEC", Keys::None),
    ("DISCARD", Keys::None),
    ("PING", Keys::None),
    ("EVAL", Keys::Eval),
    ("EVALSHA", Keys::Eval),
];

/// The names of the commands a strategy may send (lower case), for a
/// server that confines racelab to them (an ACL user: see `db::redis`).
pub fn command_names() -> impl Iterator<Item = String> {
    COMMANDS.iter().map(|(name, _)| name.to_lowercase())
}

/// A token of a `\redis` line with its 1-based column.
struct Tok {
    col: usize,
    text: String,
    quoted: bool,
}

/// Split the arguments of a `\redis` line into words and quoted strings.
/// Inside '...' or "...", a doubled quote is the quote itself.
fn tokens(args: &str, args_col: usize) -> Result<Vec<Tok>, (usize, String)> {
    let chars: Vec<char> = args.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let col = args_col + i;
        if c == '\'' || c == '"' {
            let mut text = String::new();
            let mut j = i + 1;
            loop {
                match chars.get(j) {
                    None => return Err((col, "unterminated quoted string".into())),
                    Some(&q) if q == c && chars.get(j + 1) == Some(&c) => {
                        text.push(c);
                        j += 2;
                    }
                    Some(&q) if q == c => break,
                    Some(&o) => {
                        text.push(o);
                        j += 1;
                    }
                }
            }
            if chars.get(j + 1).is_some_and(|n| !n.is_whitespace()) {
                return Err((
                    args_col + j + 1,
                    "a quoted string must be followed by a space".into(),
                ));
            }
            out.push(Tok {
                col,
                text,
                quoted: true,
            });
            i = j + 1;
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() {
                i += 1;
            }
            out.push(Tok {
                col,
                text: chars[start..i].iter().collect(),
                quoted: false,
            });
        }
    }
    Ok(out)
}

/// A variable use inside a `\redis` line: its name and column.
pub(crate) type Use = (String, usize);

/// Read a word: `:name` alone, a template with `{:name}` parts, or a literal.
fn word(
    t: &Tok,
    slot: &mut dyn FnMut(&str) -> usize,
    uses: &mut Vec<Use>,
) -> Result<Arg, (usize, String)> {
    if t.quoted {
        return Ok(Arg::Lit(t.text.clone()));
    }
    let var_name = |s: &str| {
        let mut cs = s.chars();
        cs.next().is_some_and(super::lex::is_var_start) && cs.all(super::lex::is_var_char)
    };
    if let Some(name) = t.text.strip_prefix(':') {
        if !var_name(name) {
            return Err((
                t.col,
                format!("`{}` is not a variable: write `:name`", t.text),
            ));
        }
        uses.push((name.to_string(), t.col));
        return Ok(Arg::Var(slot(name)));
    }
    if !t.text.contains('{') {
        return Ok(Arg::Lit(t.text.clone()));
    }
    let mut parts = Vec::new();
    let mut rest = t.text.as_str();
    let mut offset = 0;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').map(|c| open + c).ok_or_else(|| {
            (
                t.col + offset + rest[..open].chars().count(),
                "`{` without a closing `}`: write `{:name}`".to_string(),
            )
        })?;
        let inner = &rest[open + 1..close];
        let col = t.col + offset + rest[..open].chars().count();
        let name = inner
            .strip_prefix(':')
            .filter(|n| var_name(n))
            .ok_or_else(|| {
                (
                    col,
                    format!("`{{{inner}}}` is not a variable: write `{{:name}}`"),
                )
            })?;
        if open > 0 {
            parts.push(Part::Lit(rest[..open].to_string()));
        }
        uses.push((name.to_string(), col + 1));
        parts.push(Part::Var(slot(name)));
        offset += rest[..=close].chars().count();
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Lit(rest.to_string()));
    }
    Ok(Arg::Template(parts))
}

/// Parse the arguments of a `\redis` line. `slot` resolves a variable name
/// to its slot; `uses` collects variable uses for the unknown-variable
/// check; the `\gset` target's name is returned beside the command.
pub(crate) fn parse(
    line: usize,
    args: &str,
    args_col: usize,
    slot: &mut dyn FnMut(&str) -> usize,
    uses: &mut Vec<Use>,
) -> Result<(RedisCmd, Option<String>), (usize, String)> {
    let mut toks = tokens(args, args_col)?;
    let mut into_name = None;
    if let Some(pos) = toks.iter().position(|t| !t.quoted && t.text == "\\gset") {
        let after = &toks[pos + 1..];
        match after {
            [t] if !t.quoted
                && t.text.chars().next().is_some_and(super::lex::is_var_start)
                && t.text.chars().all(super::lex::is_var_char) =>
            {
                into_name = Some(t.text.clone())
            }
            _ => {
                let col = after.first().map_or(toks[pos].col, |t| t.col);
                return Err((
                    col,
                    "`\\gset` at the end of a `\\redis` line takes one variable name: `\\gset name`"
                        .into(),
                ));
            }
        }
        toks.truncate(pos);
    }
    let Some(first) = toks.first() else {
        return Err((
            args_col,
            "`\\redis` needs a command: `\\redis COMMAND ARG ... [\\gset name]`".into(),
        ));
    };
    let name = first.text.to_ascii_uppercase();
    let Some(&(_, keys)) = COMMANDS.iter().find(|(n, _)| *n == name) else {
        let known = COMMANDS.iter().map(|(n, _)| *n);
        let hint = crate::suggest::did_you_mean("", &name, known);
        return Err((
            first.col,
            format!(
                "unknown or unsupported Redis command `{}`{hint} (racelab sends only commands \
                 whose keys it can keep under its prefix; see the README)",
                first.text
            ),
        ));
    };
    let rest = &toks[1..];
    let mut out = Vec::with_capacity(rest.len());
    for t in rest {
        out.push(word(t, slot, uses)?);
    }
    let mut key_flags = vec![false; out.len()];
    match keys {
        Keys::None => {}
        Keys::First => {
            if out.is_empty() {
                return Err((first.col, format!("`{name}` needs a key")));
            }
            key_flags[0] = true;
        }
        Keys::All => {
            if out.is_empty() {
                return Err((first.col, format!("`{name}` needs at least one key")));
            }
            key_flags.iter_mut().for_each(|k| *k = true);
        }
        Keys::Eval => {
            let n = match (rest.get(1), out.get(1)) {
                (Some(t), Some(Arg::Lit(s))) => s.parse::<usize>().map_err(|_| {
                    (
                        t.col,
                        format!("`{name}` needs the number of keys as a plain integer here"),
                    )
                })?,
                (Some(t), _) => {
                    return Err((
                        t.col,
                        format!("`{name}` needs the number of keys as a plain integer here"),
                    ))
                }
                (None, _) => {
                    return Err((
                        first.col,
                        format!("`{name}` needs a script and the number of keys: `{name} script numkeys key ... arg ...`"),
                    ))
                }
            };
            if out.len() < 2 + n {
                return Err((
                    rest[1].col,
                    format!("`{name}` says {n} keys but {} follow", out.len() - 2),
                ));
            }
            key_flags[2..2 + n].iter_mut().for_each(|k| *k = true);
        }
    }
    Ok((
        RedisCmd {
            line,
            name,
            args: out,
            keys: key_flags,
            into: None,
            display: format!("\\redis {}", args.trim()),
        },
        into_name,
    ))
}

impl RedisCmd {
    /// What `explain` says about this command: a sentence per effect.
    pub fn note(&self) -> String {
        match self.effect() {
            RedisEffect::Lock { ttl: Some(t) } => format!(
                "Redis lock: SET NX with a TTL of {t}; it expires while a slow holder still runs, and then a second buyer holds it too (safe only while the body stays under the TTL)"
            ),
            RedisEffect::Lock { ttl: None } => "Redis lock: SET NX without a TTL; a holder that dies never releases it".into(),
            RedisEffect::Write { hash: false, .. } => "Redis SET: atomic by itself, but a value computed from an earlier GET is a lost update waiting to happen (not atomic with that read)"
                .into(),
            RedisEffect::Read => "Redis read: any decision or write based on it is not atomic with it".into(),
            RedisEffect::Count(Step::Down) => "atomic Redis decrement: no two buyers get the same unit; the reply says whether the counter went below zero"
                .into(),
            RedisEffect::Count(Step::Up) => "atomic Redis increment: after a DECRBY that went below zero, a compensation giving the units back"
                .into(),
            RedisEffect::Script => "Lua script: Redis runs it as one atomic step (nothing interleaves); a release that compares a token before DEL frees only its own lock"
                .into(),
            RedisEffect::Watch => "WATCH: a later EXEC fails (nil) if a watched key changed; test it and \\retry".into(),
            RedisEffect::Multi => "MULTI: queue the next commands; EXEC runs them together".into(),
            RedisEffect::Exec => "EXEC: runs the queued commands atomically, or replies nil when a watched key changed".into(),
            RedisEffect::Write { hash: true, .. } | RedisEffect::Opaque => {
                format!("Redis {}: one atomic command", self.name)
            }
        }
    }

    /// The key templates this command names (after the prefix).
    pub(crate) fn key_args(&self) -> impl Iterator<Item = &Arg> {
        self.args
            .iter()
            .zip(&self.keys)
            .filter(|(_, k)| **k)
            .map(|(a, _)| a)
    }

    /// Whether a literal word among the arguments is `w` (any case).
    fn has_word(&self, w: &str) -> bool {
        self.args
            .iter()
            .any(|a| matches!(a, Arg::Lit(l) if l.eq_ignore_ascii_case(w)))
    }

    /// The TTL a `PX`/`EX` argument gives, as text.
    fn ttl(&self) -> Option<String> {
        self.args.iter().enumerate().find_map(|(i, a)| match a {
            Arg::Lit(l) if l.eq_ignore_ascii_case("PX") || l.eq_ignore_ascii_case("EX") => {
                let unit = if l.eq_ignore_ascii_case("PX") {
                    "ms"
                } else {
                    "s"
                };
                Some(match self.args.get(i + 1) {
                    Some(Arg::Lit(n)) => format!("{n} {unit}"),
                    _ => format!("a variable TTL in {unit}"),
                })
            }
            _ => None,
        })
    }

    /// What the command does, as the data flow of `explain` reads it.
    pub(crate) fn effect(&self) -> RedisEffect {
        match self.name.as_str() {
            "DECR" | "DECRBY" | "HINCRBY" => RedisEffect::Count(Step::Down),
            "INCR" | "INCRBY" => RedisEffect::Count(Step::Up),
            "GET" | "HGET" | "MGET" => RedisEffect::Read,
            "SET" if self.has_word("NX") => RedisEffect::Lock { ttl: self.ttl() },
            "SET" | "HSET" => RedisEffect::Write {
                from: self
                    .args
                    .iter()
                    .zip(&self.keys)
                    .filter(|(_, key)| !**key)
                    .filter_map(|(a, _)| match a {
                        Arg::Var(v) => Some(*v),
                        _ => None,
                    })
                    .collect(),
                hash: self.name == "HSET",
            },
            "EVAL" | "EVALSHA" => RedisEffect::Script,
            "WATCH" => RedisEffect::Watch,
            "MULTI" => RedisEffect::Multi,
            "EXEC" => RedisEffect::Exec,
            _ => RedisEffect::Opaque,
        }
    }

    /// Whether every buyer of a product names the same key: no key part
    /// is the buyer's or the attempt's number.
    pub(crate) fn key_is_shared(&self) -> bool {
        let own = [super::vars::BUYER, super::vars::ATTEMPT];
        self.key_args().all(|a| match a {
            Arg::Var(v) => !own.contains(v),
            Arg::Template(parts) => parts
                .iter()
                .all(|p| !matches!(p, Part::Var(v) if own.contains(v))),
            Arg::Lit(_) => true,
        })
    }

    /// Whether this command names the stock key `stock:{:product}`.
    pub(crate) fn names_stock_key(&self) -> bool {
        let stock = Arg::Template(vec![
            Part::Lit("stock:".into()),
            Part::Var(super::vars::PRODUCT),
        ]);
        self.key_args().any(|a| *a == stock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<(RedisCmd, Option<String>), (usize, String)> {
        let mut names: Vec<String> = super::super::BUILTIN_VARS
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut slot = |n: &str| match names.iter().position(|v| v == n) {
            Some(i) => i,
            None => {
                names.push(n.to_string());
                names.len() - 1
            }
        };
        let mut uses = Vec::new();
        parse(1, s, 8, &mut slot, &mut uses)
    }

    #[test]
    fn keys_templates_variables_and_gset() {
        let (c, into) = p("decrby stock:{:product} :qty \\gset left").unwrap();
        assert_eq!(c.name, "DECRBY");
        assert_eq!(into.as_deref(), Some("left"));
        assert_eq!(c.keys, vec![true, false]);
        assert!(c.names_stock_key());
        assert_eq!(c.args[1], Arg::Var(super::super::QTY));
        let (c, _) = p("EVAL 'return redis.call(''GET'', KEYS[1])' 1 lock:{:product} x").unwrap();
        assert_eq!(c.keys, vec![false, false, true, false]);
        assert_eq!(
            c.args[0],
            Arg::Lit("return redis.call('GET', KEYS[1])".into())
        );
        assert!(!c.names_stock_key());
        let (c, _) = p("SET a{:buyer}b:{:qty} 1 NX PX 50").unwrap();
        assert_eq!(c.keys, vec![true, false, false, false, false]);
    }

    #[test]
    fn errors_point_at_the_column() {
        assert_eq!(p("FLUSHALL").unwrap_err().0, 8);
        assert!(p("GTE x").unwrap_err().1.contains("`GET`"));
        assert_eq!(p("GET k:{:product").unwrap_err().0, 14);
        assert_eq!(p("GET k:{product}").unwrap_err().0, 14);
        assert_eq!(p("GET 'abc").unwrap_err().0, 12);
        assert_eq!(p("EVAL 's' n k").unwrap_err().0, 17);
        assert!(p("EVAL 's' 2 k").unwrap_err().1.contains("2 keys"));
        assert_eq!(p("GET x \\gset").unwrap_err().0, 14);
        assert_eq!(p("GET").unwrap_err().0, 8);
        assert_eq!(p("").unwrap_err().0, 8);
        assert_eq!(p("GET :").unwrap_err().0, 12);
    }

    #[test]
    fn notes_follow_the_effect() {
        use RedisEffect::*;
        let qty = super::super::QTY;
        let lock = |ttl: Option<&str>| Lock {
            ttl: ttl.map(str::to_string),
        };
        for (line, effect, note) in [
            (
                "SET k 1 NX PX 50",
                lock(Some("50 ms")),
                "Redis lock: SET NX with a TTL of 50 ms;",
            ),
            (
                "SET k 1 nx",
                lock(None),
                "Redis lock: SET NX without a TTL;",
            ),
            (
                "SET k :qty",
                Write {
                    from: vec![qty],
                    hash: false,
                },
                "Redis SET: atomic by itself",
            ),
            (
                "HSET k f :qty",
                Write {
                    from: vec![qty],
                    hash: true,
                },
                "Redis HSET: one atomic command",
            ),
            ("HGET k f", Read, "Redis read:"),
            (
                "DECRBY k :qty",
                Count(Step::Down),
                "atomic Redis decrement:",
            ),
            (
                "HINCRBY k f -1",
                Count(Step::Down),
                "atomic Redis decrement:",
            ),
            ("INCRBY k :qty", Count(Step::Up), "atomic Redis increment:"),
            ("EVAL 's' 1 k", Script, "Lua script:"),
            ("WATCH k", Watch, "WATCH:"),
            ("MULTI", Multi, "MULTI:"),
            ("EXEC", Exec, "EXEC:"),
            ("DEL k", Opaque, "Redis DEL: one atomic command"),
        ] {
            let (c, _) = p(line).unwrap();
            assert_eq!(c.effect(), effect, "{line}");
            assert!(c.note().starts_with(note), "{line}: {}", c.note());
            assert!(
                !c.note().contains(char::is_control),
                "{line}: {:?}",
                c.note()
            );
        }
    }
}
