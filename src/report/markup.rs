//! Text inside HTML, SVG and XML (the HTML report, its swim-lane
//! diagrams, JUnit): one escaper that is right for all three, for element
//! text and for attribute values in either kind of quotes. Text coloured
//! for a terminal (an error message, a script shown highlighted) loses its
//! escape sequences, which mean nothing in markup.

/// `s` made safe as markup text or an attribute value: `&`, `<`, `>`,
/// `"` and `'` as entities; the characters XML 1.0 does not allow at all
/// dropped (see `xml_chars`), since no escape can carry them.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in xml_chars(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` without terminal escape sequences and without the characters XML
/// 1.0 does not allow at all (C0 controls other than tab, newline and
/// carriage return; U+FFFE and U+FFFF), for a writer that escapes the
/// rest itself.
pub fn xml_chars(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // A control sequence (ESC [, parameters, a final character in
            // @..~), or ESC and the one character it escapes.
            if chars.next() == Some('[') {
                for n in chars.by_ref() {
                    if ('@'..='~').contains(&n) {
                        break;
                    }
                }
            }
            continue;
        }
        if allowed(c) {
            out.push(c);
        }
    }
    out
}

/// Whether XML 1.0 allows `c` in a document.
fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || !(c < ' ' || c == '\u{fffe}' || c == '\u{ffff}')
}

#[cfg(test)]
mod tests {
    use super::{escape, xml_chars};

    #[test]
    fn everything_markup_reads_is_escaped() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn characters_xml_forbids_are_dropped() {
        assert_eq!(escape("a\u{0}b\u{1b}[0mc\u{fffe}"), "abc");
        assert_eq!(escape("\u{1b}[1;31mred\u{1b}[0m"), "red");
        assert_eq!(xml_chars("a<\u{0}\u{ffff}>"), "a<>");
        assert_eq!(escape("tab\tline\ncr\r"), "tab\tline\ncr\r");
        assert_eq!(escape("ünïcödé ✓"), "ünïcödé ✓");
    }

    #[test]
    fn what_it_makes_parses_as_xml() {
        let nasty = "it's <b> & \"q\" \u{7}bell \u{0}nul";
        let doc = format!("<r a=\"{0}\" b='{0}'>{0}</r>", escape(nasty));
        let parsed = roxmltree::Document::parse(&doc).expect("well-formed XML");
        let want = "it's <b> & \"q\" bell nul";
        assert_eq!(parsed.root_element().attribute("a"), Some(want));
        assert_eq!(parsed.root_element().attribute("b"), Some(want));
        assert_eq!(parsed.root_element().text(), Some(want));
    }
}
