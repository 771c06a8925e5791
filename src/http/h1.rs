//! A buyer's own HTTP/1.1 keep-alive connection for `http://` targets,
//! through hyper's low-level client API. reqwest's shared pool costs more
//! per request (client and connector clones, a hashed pool checkout, big
//! future moves) than the trivial endpoints racelab is benchmarked against
//! take to answer; a dedicated connection per buyer needs none of that and
//! is what the race wants anyway: every buyer connected before the barrier.
//! `https://` targets (TLS) stay on reqwest.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderValue, ACCEPT, HOST, USER_AGENT};
use hyper::{Method, Uri};
use hyper_util::rt::TokioIo;
use reqwest::Url;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::lane::chain;

/// What can be prepared once for every request to an `http://` target.
#[derive(Debug)]
pub struct Target {
    host: url::Host<String>,
    port: u16,
    pub method: Method,
    /// Origin-form: path and query.
    pub uri: Uri,
    /// The user's headers plus the `Host`, `User-Agent` and `Accept` that
    /// reqwest would have added, so the service sees the same request.
    pub headers: HeaderMap,
}

impl Target {
    /// The target for `url`, or None when reqwest must carry the requests:
    /// TLS, credentials in the URL (reqwest turns them into basic auth), or
    /// a proxy configured in the environment (reqwest honours it).
    pub fn of(url: &Url, method: &Method, headers: &HeaderMap) -> Option<Target> {
        let proxied = ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
        if url.scheme() != "http"
            || !url.username().is_empty()
            || url.password().is_some()
            || proxied
        {
            return None;
        }
        let host = url.host()?.to_owned();
        let port = url.port_or_known_default()?;
        let uri = url[url::Position::BeforePath..url::Position::AfterQuery]
            .parse()
            .ok()?;
        let mut all = headers.clone();
        if !all.contains_key(HOST) {
            let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
            all.insert(HOST, HeaderValue::from_str(authority).ok()?);
        }
        if !all.contains_key(USER_AGENT) {
            all.insert(
                USER_AGENT,
                HeaderValue::from_static(concat!("racelab/", env!("CARGO_PKG_VERSION"))),
            );
        }
        if !all.contains_key(ACCEPT) {
            all.insert(ACCEPT, HeaderValue::from_static("*/*"));
        }
        Some(Target {
            host,
            port,
            method: method.clone(),
            uri,
            headers: all,
        })
    }

    /// The target's addresses, looked up once for every buyer.
    pub async fn resolve(&self) -> Result<Arc<[SocketAddr]>, String> {
        let addrs: Vec<SocketAddr> = match &self.host {
            url::Host::Ipv4(ip) => vec![SocketAddr::from((*ip, self.port))],
            url::Host::Ipv6(ip) => vec![SocketAddr::from((*ip, self.port))],
            url::Host::Domain(name) => tokio::net::lookup_host((name.as_str(), self.port))
                .await
                .map_err(|e| format!("dns error: {}", chain(&e)))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(format!("dns error: {} has no address", self.host));
        }
        Ok(addrs.into())
    }
}

/// One open connection; its driver task ends with it.
#[derive(Debug)]
pub struct Conn {
    pub sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // A connection dropped mid-request (a timeout) may wait on a
        // server that never answers: close the socket now, not at exit.
        self.driver.abort();
    }
}

/// Connect to the first address that answers, within `timeout` each (as
/// reqwest's connect timeout), and shake hands.
pub async fn connect(addrs: &[SocketAddr], timeout: Option<Duration>) -> Result<Conn, String> {
    let mut last = String::new();
    for addr in addrs {
        let tcp = match timeout {
            Some(t) => match tokio::time::timeout(t, TcpStream::connect(addr)).await {
                Ok(r) => r,
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting to {addr} timed out after {} ms", t.as_millis()),
                )),
            },
            None => TcpStream::connect(addr).await,
        };
        let tcp = match tcp {
            Ok(s) => s,
            Err(e) => {
                last = format!("tcp connect error: {}", chain(&e));
                continue;
            }
        };
        // Small requests and answers: send each at once (as reqwest did).
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("handshake: {}", chain(&e)))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        return Ok(Conn { sender, driver });
    }
    Err(last)
}
