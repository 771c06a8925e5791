//! A request as racelab sends it, below any template: where it goes
//! (`Origin`: host, port, TLS, looked up once for every buyer) and what it
//! is (`Wire`: method, path, headers and body, ready for HTTP/1.1 bytes,
//! hyper or an HTTP/2 stream), and what came back (`Answer`).

use base64::Engine as _;
use hyper::body::Bytes;
use hyper::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, HOST,
    TRANSFER_ENCODING, UPGRADE, USER_AGENT,
};
use hyper::{Method, Uri};
use reqwest::Url;
use tokio_rustls::rustls::pki_types::CertificateDer;

use super::net::{Alpn, Endpoint, Tls};
use super::text::chain;

/// Where racelab connects itself: scheme, host and port of a URL, and the
/// headers every request to it carries unless the request sets its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    host: url::Host<String>,
    port: u16,
    https: bool,
    /// `Host`, `User-Agent`, `Accept` as reqwest would add them, and
    /// `Authorization` for credentials in the URL.
    defaults: HeaderMap,
}

/// Whether a proxy is set in the environment: reqwest honours it, and
/// racelab then hands every request to reqwest.
pub fn proxied() -> bool {
    [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

impl Origin {
    /// The origin of `url`; None for a scheme racelab does not speak.
    pub fn of(url: &Url) -> Option<Origin> {
        let https = match url.scheme() {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        let host = url.host()?.to_owned();
        let port = url.port_or_known_default()?;
        let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
        let mut defaults = HeaderMap::new();
        defaults.insert(HOST, HeaderValue::from_str(authority).ok()?);
        defaults.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("racelab/", env!("CARGO_PKG_VERSION"))),
        );
        defaults.insert(ACCEPT, HeaderValue::from_static("*/*"));
        if !url.username().is_empty() {
            // As reqwest does: the URL's credentials as basic auth.
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map_or_else(|_| s.to_string(), |d| d.into_owned())
            };
            let pair = format!(
                "{}:{}",
                decode(url.username()),
                decode(url.password().unwrap_or(""))
            );
            let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
            let mut v = HeaderValue::from_str(&format!("Basic {b64}")).ok()?;
            v.set_sensitive(true);
            defaults.insert(AUTHORIZATION, v);
        }
        Some(Origin {
            host,
            port,
            https,
            defaults,
        })
    }

    /// The request for `url` (of this origin): the user's `headers` over
    /// the origin's defaults.
    pub fn wire(
        &self,
        method: &Method,
        url: &Url,
        headers: HeaderMap,
        body: Bytes,
    ) -> Option<Wire> {
        let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
        let uri: Uri = path.parse().ok()?;
        let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
        let absolute = format!("{}://{authority}{path}", url.scheme())
            .parse()
            .ok()?;
        let mut all = headers;
        for (name, value) in &self.defaults {
            if !all.contains_key(name) {
                all.insert(name, value.clone());
            }
        }
        Some(Wire {
            method: method.clone(),
            uri,
            absolute,
            headers: all,
            body,
        })
    }

    /// The origin's addresses, looked up once for every buyer, and its TLS
    /// settings offering `alpn`.
    pub async fn resolve(
        &self,
        alpn: Alpn,
        timeout: Option<std::time::Duration>,
        roots: &[CertificateDer<'static>],
    ) -> Result<Endpoint, String> {
        let addrs: Vec<std::net::SocketAddr> = match &self.host {
            url::Host::Ipv4(ip) => vec![(*ip, self.port).into()],
            url::Host::Ipv6(ip) => vec![(*ip, self.port).into()],
            url::Host::Domain(name) => tokio::net::lookup_host((name.as_str(), self.port))
                .await
                .map_err(|e| format!("dns error: {}", chain(&e)))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(format!("dns error: {} has no address", self.host));
        }
        let tls = if self.https {
            let name = match &self.host {
                url::Host::Domain(d) => d.clone(),
                url::Host::Ipv4(ip) => ip.to_string(),
                url::Host::Ipv6(ip) => ip.to_string(),
            };
            Some(Tls::new(&name, alpn, roots)?)
        } else {
            None
        };
        Ok(Endpoint {
            addrs: addrs.into(),
            tls,
            timeout,
        })
    }
}

/// One request, whole: what HTTP/1.1 bytes, hyper and an HTTP/2 stream
/// are made from.
#[derive(Debug, Clone)]
pub struct Wire {
    pub method: Method,
    /// Origin-form: path and query.
    pub uri: Uri,
    /// `scheme://authority` + path and query, for HTTP/2's pseudo-headers.
    pub absolute: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Wire {
    fn bodied(&self) -> bool {
        !self.body.is_empty() || matches!(self.method, Method::POST | Method::PUT | Method::PATCH)
    }

    /// The request as bytes on the wire, as hyper would write it: the
    /// request line, the headers, a `content-length` when there is a body
    /// (or the method usually has one), and the body.
    pub fn serialize(&self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.uri.to_string().as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in &self.headers {
            if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
                continue;
            }
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if self.bodied() {
            out.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }

    /// The request for hyper's HTTP/1.1 client.
    pub fn hyper(&self) -> hyper::Request<http_body_util::Full<Bytes>> {
        let mut req = hyper::Request::new(http_body_util::Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }

    /// The head of the request as an HTTP/2 stream: absolute URI (a `Host`
    /// becomes the `:authority`), without the headers HTTP/2 forbids.
    pub fn h2(&self) -> hyper::Request<()> {
        let mut headers = self.headers.clone();
        let mut uri = self.absolute.clone();
        if let Some(host) = headers.remove(HOST) {
            if let Some(a) = host.to_str().ok().and_then(|h| h.parse().ok()) {
                let mut parts = uri.clone().into_parts();
                parts.authority = Some(a);
                if let Ok(u) = Uri::from_parts(parts) {
                    uri = u;
                }
            }
        }
        for h in [CONNECTION, TRANSFER_ENCODING, UPGRADE, CONTENT_LENGTH] {
            headers.remove(h);
        }
        headers.remove("keep-alive");
        headers.remove("proxy-connection");
        let mut req = hyper::Request::new(());
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        if self.bodied() {
            req.headers_mut()
                .insert(CONTENT_LENGTH, self.body.len().into());
        }
        req
    }
}

/// What the server answered: status, headers, the whole body.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_carries_the_origin_defaults_unless_it_has_its_own() {
        let url = Url::parse("http://u:p%40ss@127.0.0.1:8080/a/b?c=1").unwrap();
        let o = Origin::of(&url).unwrap();
        let mut own = HeaderMap::new();
        own.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let w = o
            .wire(&Method::POST, &url, own, Bytes::from_static(b"{}"))
            .unwrap();
        assert_eq!(w.uri, "/a/b?c=1");
        assert_eq!(w.absolute, "http://127.0.0.1:8080/a/b?c=1");
        assert_eq!(w.headers[HOST], "127.0.0.1:8080");
        assert_eq!(w.headers[ACCEPT], "application/json");
        // u:p@ss
        assert_eq!(w.headers[AUTHORIZATION], "Basic dTpwQHNz");
        let mut bytes = Vec::new();
        w.serialize(&mut bytes);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("POST /a/b?c=1 HTTP/1.1\r\n"), "{text}");
        assert!(text.ends_with("content-length: 2\r\n\r\n{}"), "{text}");
        let h2 = w.h2();
        assert!(!h2.headers().contains_key(HOST));
        assert_eq!(h2.headers()[CONTENT_LENGTH], "2");
    }
}
