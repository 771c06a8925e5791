//! Request templates: `{{name}}` placeholders in a URL, a header value or a
//! body, parsed once per run against the names known where the template
//! stands, and rendered per request from the buyer's values. Each value is
//! escaped for where it lands: percent-encoded in a URL (and a form body),
//! JSON-escaped inside a JSON string, as is elsewhere. An unknown name is
//! bad input naming where it stands, with the closest known name.

use std::fmt::Write as _;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::error::bad_input;

/// The built-in variables, in the first slots of every buyer's values.
pub const BUYER: usize = 0;
pub const ATTEMPT: usize = 1;
pub const QTY: usize = 2;
pub const PRODUCT: usize = 3;
pub const BUILT_IN: [&str; 4] = ["buyer", "attempt", "qty", "product"];

/// Everything but RFC 3986's unreserved characters is encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The variable names of a run, by slot: the built-ins, then the users
/// file's columns, the flow's own variables, and what steps extract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names(Vec<String>);

impl Default for Names {
    fn default() -> Names {
        Names(BUILT_IN.iter().map(|s| s.to_string()).collect())
    }
}

impl Names {
    /// The slot of `name`, added when new.
    pub fn slot(&mut self, name: &str) -> usize {
        match self.find(name) {
            Some(i) => i,
            None => {
                self.0.push(name.to_string());
                self.0.len() - 1
            }
        }
    }

    pub fn find(&self, name: &str) -> Option<usize> {
        self.0.iter().position(|n| n == name)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn name(&self, slot: usize) -> &str {
        &self.0[slot]
    }
}

/// Where a template stands, which says how values are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// A URL: values percent-encoded.
    Url,
    /// A header value: values as they are (a value that cannot stand in a
    /// header fails that request).
    Header,
    /// A JSON body: values JSON-escaped inside strings, as they are outside.
    Json,
    /// An `application/x-www-form-urlencoded` body: values percent-encoded.
    Form,
    /// Any other body: values as they are.
    Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    Percent,
    JsonString,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var { slot: usize, escape: Escape },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parse `text` standing at `place` (`--body`, `step "cart", headers.X`)
    /// in `context`; only slots below `known` (and names `known` allows)
    /// may be used.
    pub fn parse(
        text: &str,
        place: &str,
        context: Context,
        names: &Names,
        known: usize,
    ) -> anyhow::Result<Template> {
        let mut parts = Vec::new();
        let mut rest = text;
        // Whether the text so far leaves a JSON string open.
        let mut in_string = false;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                in_string = json_string_open(&rest[..open], in_string);
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(bad_input(format!(
                    "{place}: `{{{{` at byte {} is not closed by `}}}}`",
                    text.len() - rest.len() + open
                )));
            };
            let name = after[..close].trim();
            let slot = names.find(name).filter(|s| *s < known);
            let Some(slot) = slot else {
                return Err(unknown(place, name, names, known));
            };
            let escape = match context {
                Context::Url | Context::Form => Escape::Percent,
                Context::Json if in_string => Escape::JsonString,
                Context::Json | Context::Header | Context::Raw => Escape::None,
            };
            parts.push(Part::Var { slot, escape });
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// A template of plain text.
    pub fn text(text: &str) -> Template {
        Template {
            parts: vec![Part::Text(text.to_string())],
        }
    }

    /// Whether it has any placeholder.
    pub fn has_vars(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Var { .. }))
    }

    /// The slots it uses.
    pub fn slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Var { slot, .. } => Some(*slot),
            Part::Text(_) => None,
        })
    }

    /// Render with `values` (by slot) into `out` (cleared first).
    pub fn render_into(&self, values: &[String], out: &mut String) {
        out.clear();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var { slot, escape } => {
                    let v = values.get(*slot).map_or("", String::as_str);
                    match escape {
                        Escape::None => out.push_str(v),
                        Escape::Percent => {
                            let _ = write!(out, "{}", utf8_percent_encode(v, COMPONENT));
                        }
                        Escape::JsonString => escape_into(v, out),
                    }
                }
            }
        }
    }

    pub fn render(&self, values: &[String]) -> String {
        let mut s = String::new();
        self.render_into(values, &mut s);
        s
    }

    /// Whether a `{{buyer}}` stands outside a JSON string: its value is
    /// text (the `--buyer-name`), so there it makes JSON only if the name
    /// is a number.
    pub fn has_unquoted_buyer(&self) -> bool {
        self.parts.iter().any(|p| {
            matches!(p, Part::Var { slot, escape } if *slot == BUYER && *escape != Escape::JsonString)
        })
    }
}

/// Whether a JSON string is open after `text`, given whether one was open
/// before it.
fn json_string_open(text: &str, mut open: bool) -> bool {
    let mut escaped = false;
    for c in text.chars() {
        if open {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                open = false;
            }
        } else if c == '"' {
            open = true;
        }
    }
    open
}

fn unknown(place: &str, name: &str, names: &Names, known: usize) -> anyhow::Error {
    if name.is_empty() {
        return bad_input(format!("{place}: an empty placeholder {{{{}}}}"));
    }
    let known_names: Vec<&str> = names.0[..known.min(names.len())]
        .iter()
        .map(String::as_str)
        .collect();
    let hint = match crate::suggest::closest(name, known_names.iter().copied()) {
        Some(c) => format!("did you mean {{{{{c}}}}}? "),
        None => String::new(),
    };
    let later = if names.find(name).is_some() {
        " (it is set by a later step: a step may use only what the steps before it extract)"
    } else {
        ""
    };
    bad_input(format!(
        "{place}: unknown variable {{{{{name}}}}}{later}; {hint}known here: {}",
        known_names
            .iter()
            .map(|n| format!("{{{{{n}}}}}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// `s` as a URL carries it.
pub fn percent_encoded(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// `s` as the inside of a JSON string (no surrounding quotes).
pub fn escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(buyer: &str) -> Vec<String> {
        vec![
            buyer.into(),
            "7".into(),
            "2".into(),
            "3".into(),
            "a b/c?&".into(),
        ]
    }

    fn names() -> Names {
        let mut n = Names::default();
        n.slot("token");
        n
    }

    fn parse(text: &str, ctx: Context) -> anyhow::Result<Template> {
        let n = names();
        Template::parse(text, "--body", ctx, &n, n.len())
    }

    #[test]
    fn substitutes_every_placeholder() {
        let t = parse(
            r#"{"buyer": {{buyer}}, "attempt": {{ attempt }}, "qty": {{qty}}, "product": {{product}}}"#,
            Context::Json,
        )
        .unwrap();
        assert_eq!(
            t.render(&values("12")),
            r#"{"buyer": 12, "attempt": 7, "qty": 2, "product": 3}"#
        );
    }

    #[test]
    fn values_are_escaped_for_where_they_land() {
        let t = parse(r#"{"name": "{{buyer}}", "t": "x{{token}}"}"#, Context::Json).unwrap();
        let body = t.render(&values("O\"Brien \\ 5\n\u{1}"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["name"], "O\"Brien \\ 5\n\u{1}");
        assert_eq!(v["t"], "xa b/c?&");
        let url = parse("/users/{{token}}/cart?b={{buyer}}", Context::Url).unwrap();
        assert_eq!(
            url.render(&values("é 1")),
            "/users/a%20b%2Fc%3F%26/cart?b=%C3%A9%201"
        );
        let header = parse("Bearer {{token}}", Context::Header).unwrap();
        assert_eq!(header.render(&values("1")), "Bearer a b/c?&");
        // A quote escaped inside a string does not close it.
        let t = parse(r#"{"a": "x\"{{token}}"}"#, Context::Json).unwrap();
        assert!(serde_json::from_str::<serde_json::Value>(&t.render(&values("1"))).is_ok());
    }

    #[test]
    fn an_unquoted_buyer_is_seen() {
        for (text, unquoted) in [
            (r#"{"b": {{buyer}}}"#, true),
            (r#"{{buyer}}"#, true),
            (r#"{"b": "{{buyer}}", "q": {{qty}}}"#, false),
            (r#"{"q": {{qty}}}"#, false),
        ] {
            let t = parse(text, Context::Json).unwrap();
            assert_eq!(t.has_unquoted_buyer(), unquoted, "{text}");
        }
    }

    #[test]
    fn unknown_names_are_bad_input_with_a_hint() {
        for bad in ["{{buyer", "{{nope}}", "x {{ }} y"] {
            let e = parse(bad, Context::Raw).unwrap_err();
            assert!(e.is::<crate::error::BadInput>(), "{bad}: {e}");
            assert!(e.to_string().starts_with("--body:"), "{e}");
        }
        let e = parse("{{tokn}}", Context::Raw).unwrap_err().to_string();
        assert!(e.contains("did you mean {{token}}?"), "{e}");
        // A name a later step sets is not known yet.
        let n = names();
        let e = Template::parse("{{token}}", "step \"a\", body", Context::Raw, &n, 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("set by a later step"), "{e}");
        assert_eq!(
            parse("plain", Context::Raw).unwrap().render(&values("1")),
            "plain"
        );
        assert_eq!(parse("", Context::Raw).unwrap().render(&values("1")), "");
    }
}
