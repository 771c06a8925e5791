//! Secrets as data with a type (STYLE 22): a password, a token, a URL that
//! may carry one. A secret is wrapped where it enters racelab (a flag, an
//! environment variable, a password racelab makes for its own servers) and
//! every `Display`, `Debug` and `Serialize` of the wrapper shows it
//! redacted, so no table, message, result file, JUnit report or log line
//! can carry it by accident; reading the value takes an explicit
//! `expose()`, at the one place that sends it.
//!
//! A URL is redacted in two places: the password of its user info, and the
//! value of every query parameter (an `?api_key=...` or `?token=...` is a
//! secret as often as not, and racelab cannot tell which). `RedactedUrl` is
//! the shown form alone: a type that holds no secret at all, for results.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};
use url::Url;

/// What a secret is shown as.
pub const REDACTED: &str = "***";

/// A secret string: shown as `***` everywhere, read with `expose`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// A fresh random secret: 32 bytes from the operating system's
    /// generator, as 64 hex digits (safe in a URL, a config file and a
    /// connection string without quoting).
    pub fn random() -> Secret {
        use rand::RngCore as _;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Secret(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

/// A URL that may carry secrets (a password, query values): the whole URL
/// for connecting (`expose`), redacted in every `Display`, `Debug` and
/// `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl {
    url: Url,
    /// Query parameters whose values are not secret and stay visible.
    public: &'static [&'static str],
}

impl SecretUrl {
    /// Wrap a URL; every query value is taken for a secret.
    pub fn new(url: Url) -> SecretUrl {
        SecretUrl { url, public: &[] }
    }

    /// Wrap a URL whose query parameters named in `public` are not secret
    /// (a connection URL's `sslmode`, say) and stay visible.
    pub fn with_public(url: Url, public: &'static [&'static str]) -> SecretUrl {
        SecretUrl { url, public }
    }

    /// The URL itself, for the one place that sends it.
    pub fn expose(&self) -> &Url {
        &self.url
    }

    /// The URL to show.
    pub fn redacted(&self) -> RedactedUrl {
        RedactedUrl(redact(&self.url, self.public))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact(&self.url, self.public))
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.url, self.public))
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&redact(&self.url, self.public))
    }
}

/// A URL as shown: its password and query values already replaced by
/// `***`. It holds no secret, so it may go anywhere (a result file, a file
/// name, a JUnit report); read back from a result file, it stays what it
/// was written as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct RedactedUrl(String);

impl RedactedUrl {
    /// The shown form of `url` (every query value redacted).
    pub fn of(url: &Url) -> RedactedUrl {
        RedactedUrl(redact(url, &[]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RedactedUrl {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// `url` with the password of its user info and the values of its query
/// parameters (except those named in `public`) replaced by `***`.
pub fn redact(url: &Url, public: &[&str]) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some(REDACTED));
    }
    if u.query().is_some_and(|q| !q.is_empty()) {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let shown = public.iter().any(|p| k.eq_ignore_ascii_case(p)) || v.is_empty();
                let v = if shown {
                    v.into_owned()
                } else {
                    REDACTED.to_string()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    if u.fragment().is_some_and(|f| !f.is_empty()) {
        u.set_fragment(Some(REDACTED));
    }
    u.to_string()
}

/// `redact` for a URL given as text; text that is not a URL is replaced
/// whole by `placeholder` (it may be a URL mistyped around a password).
pub fn redact_text(text: &str, public: &[&str], placeholder: &str) -> String {
    match Url::parse(text) {
        Ok(u) => redact(&u, public),
        Err(_) => placeholder.to_string(),
    }
}

/// A URL as written, which may hold `{{placeholders}}` and so may not
/// parse: the password of its user info and the value of every query
/// parameter replaced by `***`, except a value that is one placeholder
/// alone (a name, not a value); a fragment likewise.
pub fn redact_written(text: &str) -> String {
    let (before_fragment, fragment) = match text.split_once('#') {
        Some((b, f)) if !f.is_empty() => (b, Some(f)),
        Some((b, _)) => (b, None),
        None => (text, None),
    };
    let (base, query) = match before_fragment.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (before_fragment, None),
    };
    let mut out = redact_userinfo(base);
    if let Some(q) = query {
        out.push('?');
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) if !v.is_empty() && !is_placeholder(v) => format!("{k}={REDACTED}"),
                _ => pair.to_string(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    if fragment.is_some() {
        out.push('#');
        out.push_str(REDACTED);
    }
    out
}

/// `scheme://user:password@host...` with the password replaced.
fn redact_userinfo(base: &str) -> String {
    let Some((scheme, rest)) = base.split_once("://") else {
        return base.to_string();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((info, host)) => {
            let user = info.split_once(':').map_or(info, |(u, _)| u);
            let hidden = if info.contains(':') {
                format!("{user}:{REDACTED}")
            } else {
                user.to_string()
            };
            format!("{scheme}://{hidden}@{host}{path}")
        }
        None => base.to_string(),
    }
}

/// `{{name}}` and nothing else.
fn is_placeholder(v: &str) -> bool {
    v.starts_with("{{") && v.ends_with("}}") && v[2..v.len() - 2].chars().all(|c| c != '}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows() {
        let s = Secret::new("hunter2");
        assert_eq!(s.to_string(), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "hunter2");
        let r = Secret::random();
        assert_eq!(r.expose().len(), 64);
        assert_ne!(r, Secret::random());
    }

    #[test]
    fn urls_lose_passwords_and_query_values() {
        let u = Url::parse("https://bob:pw@shop.example/buy?api_key=s3cret&x=1#tok").unwrap();
        let s = SecretUrl::new(u.clone());
        let shown = s.to_string();
        assert_eq!(
            shown,
            "https://bob:***@shop.example/buy?api_key=***&x=***#***"
        );
        assert_eq!(format!("{s:?}"), format!("{shown:?}"));
        assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{shown}\""));
        assert_eq!(s.redacted().as_str(), shown);
        assert_eq!(RedactedUrl::of(&u).as_str(), shown);
        assert_eq!(s.expose(), &u);
        let pg = Url::parse("postgres://u:pw@h/db?sslmode=require&password=x").unwrap();
        assert_eq!(
            SecretUrl::with_public(pg, &["sslmode"]).to_string(),
            "postgres://u:***@h/db?sslmode=require&password=***"
        );
        assert_eq!(redact_text("not a url :pw", &[], "<the URL>"), "<the URL>");
        assert_eq!(redact_text("http://h/p", &[], "<the URL>"), "http://h/p");
    }

    #[test]
    fn written_urls_keep_placeholders_and_lose_values() {
        assert_eq!(
            redact_written("http://ann:pw@h:8/buy/{{product}}?api_key=s3cret&u={{user}}&x=#f"),
            "http://ann:***@h:8/buy/{{product}}?api_key=***&u={{user}}&x=#***"
        );
        assert_eq!(redact_written("/buy?token=abc"), "/buy?token=***");
        assert_eq!(redact_written("http://h/p"), "http://h/p");
        assert_eq!(redact_written("http://ann@h/p?flag"), "http://ann@h/p?flag");
    }
}
