//! Request body templates: `{{buyer}}`, `{{attempt}}`, `{{qty}}` and
//! `{{product}}`, parsed once per run and rendered per request. Values are
//! JSON-escaped when substituted, so a template like `"{{buyer}}"` stays a
//! valid JSON string whatever the buyer's name holds.

use crate::error::bad_input;

/// A placeholder a template may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    Buyer,
    Attempt,
    Qty,
    Product,
}

const VARS: [(&str, Var); 4] = [
    ("buyer", Var::Buyer),
    ("attempt", Var::Attempt),
    ("qty", Var::Qty),
    ("product", Var::Product),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

/// A parsed body template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// The values of one request.
#[derive(Debug, Clone, Copy)]
pub struct Values<'a> {
    pub buyer: &'a str,
    pub attempt: i64,
    pub qty: i64,
    pub product: i64,
}

impl Template {
    /// Parse `text`; an unknown or unclosed `{{...}}` is bad input naming it.
    pub fn parse(text: &str) -> anyhow::Result<Template> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(bad_input(format!(
                    "--body: `{{{{` at byte {} is not closed by `}}}}`",
                    text.len() - rest.len() + open
                )));
            };
            let name = after[..close].trim();
            let Some((_, var)) = VARS.iter().find(|(n, _)| *n == name) else {
                return Err(bad_input(format!(
                    "--body: unknown placeholder {{{{{name}}}}}; use {{{{buyer}}}}, {{{{attempt}}}}, {{{{qty}}}} or {{{{product}}}}"
                )));
            };
            parts.push(Part::Var(*var));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// The body for one request, appended to `out` (cleared first).
    pub fn render_into(&self, v: &Values<'_>, out: &mut String) {
        use std::fmt::Write;
        out.clear();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(Var::Buyer) => escape_into(v.buyer, out),
                Part::Var(Var::Attempt) => {
                    let _ = write!(out, "{}", v.attempt);
                }
                Part::Var(Var::Qty) => {
                    let _ = write!(out, "{}", v.qty);
                }
                Part::Var(Var::Product) => {
                    let _ = write!(out, "{}", v.product);
                }
            }
        }
    }

    pub fn render(&self, v: &Values<'_>) -> String {
        let mut s = String::new();
        self.render_into(v, &mut s);
        s
    }

    /// Whether a `{{buyer}}` stands outside quotes: its value is text (the
    /// `--buyer-name`), so there it makes JSON only if the name is a number.
    pub fn has_unquoted_buyer(&self) -> bool {
        self.parts.iter().enumerate().any(|(i, p)| {
            *p == Part::Var(Var::Buyer)
                && !matches!(i.checked_sub(1).map(|j| &self.parts[j]), Some(Part::Text(t)) if t.ends_with('"'))
        })
    }
}

/// `s` as the inside of a JSON string (no surrounding quotes).
pub fn escape_into(s: &str, out: &mut String) {
    use std::fmt::Write;
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

    fn values(buyer: &str) -> Values<'_> {
        Values {
            buyer,
            attempt: 7,
            qty: 2,
            product: 3,
        }
    }

    #[test]
    fn substitutes_every_placeholder() {
        let t = Template::parse(
            r#"{"buyer": {{buyer}}, "attempt": {{ attempt }}, "qty": {{qty}}, "product": {{product}}}"#,
        )
        .unwrap();
        assert_eq!(
            t.render(&values("12")),
            r#"{"buyer": 12, "attempt": 7, "qty": 2, "product": 3}"#
        );
    }

    #[test]
    fn quotes_and_control_characters_are_escaped() {
        let t = Template::parse(r#"{"name": "{{buyer}}"}"#).unwrap();
        let body = t.render(&values("O\"Brien \\ 5\n\u{1}"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["name"], "O\"Brien \\ 5\n\u{1}");
    }

    #[test]
    fn an_unquoted_buyer_is_seen() {
        for (text, unquoted) in [
            (r#"{"b": {{buyer}}}"#, true),
            (r#"{{buyer}}"#, true),
            (r#"{"b": "{{buyer}}", "q": {{qty}}}"#, false),
            (r#"{"q": {{qty}}}"#, false),
        ] {
            let t = Template::parse(text).unwrap();
            assert_eq!(t.has_unquoted_buyer(), unquoted, "{text}");
        }
    }

    #[test]
    fn bad_placeholders_are_bad_input() {
        for bad in ["{{buyer", "{{nope}}", "x {{ }} y"] {
            let e = Template::parse(bad).unwrap_err();
            assert!(e.is::<crate::error::BadInput>(), "{bad}: {e}");
            assert!(e.to_string().starts_with("--body:"), "{e}");
        }
        assert_eq!(
            Template::parse("plain").unwrap().render(&values("1")),
            "plain"
        );
        assert_eq!(Template::parse("").unwrap().render(&values("1")), "");
    }
}
