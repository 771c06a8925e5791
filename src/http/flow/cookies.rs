//! A buyer's cookie jar, the basics of RFC 6265 for the hosts a flow talks
//! to: `Set-Cookie` stored (name, value, Domain, Path, Secure, Max-Age and
//! a past Expires), and the matching cookies sent back as one `Cookie`
//! header, longest path first. Cookie values are the buyer's secrets: the
//! jar is never shown.

use hyper::header::{HeaderMap, SET_COOKIE};
use reqwest::Url;

#[derive(Clone, PartialEq, Eq)]
struct Cookie {
    name: String,
    value: String,
    /// The domain, lower-case, and whether only that exact host matches.
    domain: String,
    host_only: bool,
    path: String,
    secure: bool,
}

/// One buyer's cookies.
#[derive(Clone, Default)]
pub struct Jar {
    cookies: Vec<Cookie>,
}

impl std::fmt::Debug for Jar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Jar({} cookies)", self.cookies.len())
    }
}

impl Jar {
    /// Store every `Set-Cookie` of a response to `url`.
    pub fn store(&mut self, url: &Url, headers: &HeaderMap) {
        for v in headers.get_all(SET_COOKIE) {
            if let Ok(text) = std::str::from_utf8(v.as_bytes()) {
                self.set(url, text);
            }
        }
    }

    /// Store one `Set-Cookie` value (RFC 6265 §5.2, §5.3).
    pub fn set(&mut self, url: &Url, header: &str) {
        let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
            return;
        };
        let mut attrs = header.split(';');
        let Some((name, value)) = attrs.next().and_then(|p| p.split_once('=')) else {
            return;
        };
        let (name, value) = (name.trim(), value.trim().trim_matches('"'));
        if name.is_empty() {
            return;
        }
        let mut cookie = Cookie {
            name: name.to_string(),
            value: value.to_string(),
            domain: host.clone(),
            host_only: true,
            path: default_path(url),
            secure: false,
        };
        let mut expired = false;
        for attr in attrs {
            let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "domain" if !v.is_empty() => {
                    let d = v.trim_start_matches('.').to_ascii_lowercase();
                    if !domain_matches(&host, &d) {
                        // A cookie for another domain is ignored (§5.3 step 6).
                        return;
                    }
                    cookie.domain = d;
                    cookie.host_only = false;
                }
                "path" if v.starts_with('/') => cookie.path = v.to_string(),
                "secure" => cookie.secure = true,
                "max-age" => {
                    if let Ok(n) = v.parse::<i64>() {
                        expired = n <= 0;
                    }
                }
                "expires" => expired |= expires_in_the_past(v),
                _ => {}
            }
        }
        self.cookies.retain(|c| {
            !(c.name == cookie.name && c.domain == cookie.domain && c.path == cookie.path)
        });
        if !expired {
            self.cookies.push(cookie);
        }
    }

    /// The `Cookie` header for a request to `url`, if any cookie matches.
    pub fn header_for(&self, url: &Url) -> Option<String> {
        let host = url.host_str()?.to_ascii_lowercase();
        let path = url.path();
        let https = url.scheme() == "https";
        let mut matching: Vec<&Cookie> = self
            .cookies
            .iter()
            .filter(|c| {
                let domain_ok = if c.host_only {
                    c.domain == host
                } else {
                    domain_matches(&host, &c.domain)
                };
                domain_ok && path_matches(path, &c.path) && (https || !c.secure)
            })
            .collect();
        if matching.is_empty() {
            return None;
        }
        matching.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        Some(
            matching
                .iter()
                .map(|c| format!("{}={}", c.name, c.value))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    /// The value of the cookie `name` stored for `url`'s host.
    pub fn get(&self, url: &Url, name: &str) -> Option<&str> {
        let host = url.host_str()?.to_ascii_lowercase();
        self.cookies
            .iter()
            .rev()
            .find(|c| c.name == name && (c.domain == host || domain_matches(&host, &c.domain)))
            .map(|c| c.value.as_str())
    }

    /// Every value in the jar (to keep them out of messages).
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.cookies.iter().map(|c| c.value.as_str())
    }
}

/// RFC 6265 §5.1.3: `host` is `domain` or a subdomain of it (not an IP).
fn domain_matches(host: &str, domain: &str) -> bool {
    host == domain
        || (host.ends_with(domain)
            && host[..host.len() - domain.len()].ends_with('.')
            && host.parse::<std::net::IpAddr>().is_err())
}

/// RFC 6265 §5.1.4: the directory of the request's path.
fn default_path(url: &Url) -> String {
    let p = url.path();
    match p.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => p[..i].to_string(),
    }
}

/// RFC 6265 §5.1.4: path-match.
fn path_matches(path: &str, cookie: &str) -> bool {
    path == cookie
        || (path.starts_with(cookie)
            && (cookie.ends_with('/') || path[cookie.len()..].starts_with('/')))
}

/// Whether an `Expires` date (RFC 1123, as servers send it) has passed.
fn expires_in_the_past(v: &str) -> bool {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(v.trim(), &fmt)
        .map(|t| t.assume_utc() <= time::OffsetDateTime::now_utc())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn cookies_go_back_to_their_host_and_path() {
        let mut jar = Jar::default();
        let login = url("http://shop.test/api/login");
        jar.set(&login, "sid=abc; Path=/; HttpOnly");
        jar.set(&login, "cart=1");
        jar.set(&login, "pref=x; Domain=.shop.test; Path=/api/cart");
        jar.set(&login, "s=1; Secure");
        jar.set(&login, "other=1; Domain=elsewhere.test");
        assert_eq!(
            jar.header_for(&url("http://shop.test/api/cart/items"))
                .unwrap(),
            "pref=x; cart=1; sid=abc"
        );
        assert_eq!(
            jar.header_for(&url("http://shop.test/")).unwrap(),
            "sid=abc"
        );
        assert_eq!(
            jar.header_for(&url("http://www.shop.test/api/cart"))
                .unwrap(),
            "pref=x"
        );
        assert_eq!(jar.header_for(&url("http://other.test/")), None);
        assert!(jar
            .header_for(&url("https://shop.test/api/x"))
            .unwrap()
            .contains("s=1"));
        assert_eq!(jar.get(&login, "sid"), Some("abc"));
    }

    #[test]
    fn a_cookie_is_replaced_and_expired() {
        let mut jar = Jar::default();
        let u = url("http://h.test/");
        jar.set(&u, "sid=1");
        jar.set(&u, "sid=2");
        assert_eq!(jar.header_for(&u).unwrap(), "sid=2");
        jar.set(&u, "sid=; Max-Age=0");
        assert_eq!(jar.header_for(&u), None);
        jar.set(&u, "t=1");
        jar.set(&u, "t=; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(jar.header_for(&u), None);
        jar.set(&u, "t=2; Expires=Fri, 01 Jan 2100 00:00:00 GMT");
        assert_eq!(jar.header_for(&u).unwrap(), "t=2");
    }
}
