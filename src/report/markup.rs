//! Text inside HTML, SVG and XML (the HTML report, its swim-lane
//! diagrams, JUnit): one escaper that is right for all three, for element
//! text and for attribute values in either kind of quotes.

/// `s` made safe as markup text or an attribute value: `&`, `<`, `>`,
/// `"` and `'` as entities; the characters XML 1.0 does not allow at all
/// (C0 controls other than tab, newline and carriage return, U+FFFE and
/// U+FFFF) dropped, since no escape can carry them.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn everything_markup_reads_is_escaped() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn characters_xml_forbids_are_dropped() {
        assert_eq!(escape("a\u{0}b\u{1b}[0mc\u{fffe}"), "ab[0mc");
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
