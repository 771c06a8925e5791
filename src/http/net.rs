//! The bytes under racelab's own HTTP connections: where a target is
//! (`Endpoint`: its addresses, looked up once, and its TLS settings), and a
//! connected `Stream`, plain TCP or TLS (rustls with the webpki roots and
//! ALPN), with `TCP_NODELAY` so that every write leaves at once as its own
//! segment. HTTP itself is `h1`'s and `h2`'s.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::text::chain;

/// What the connection carries, offered over TLS with ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    Http1,
    H2,
}

impl Alpn {
    fn id(self) -> &'static [u8] {
        match self {
            Alpn::Http1 => b"http/1.1",
            Alpn::H2 => b"h2",
        }
    }
}

/// TLS for an `https://` target.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
    alpn: Alpn,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tls({:?}, {:?})", self.name, self.alpn)
    }
}

impl Tls {
    /// TLS to `host`, trusting the webpki roots and `extra` (`--cacert`),
    /// offering `alpn` alone.
    pub fn new(host: &str, alpn: Alpn, extra: &[CertificateDer<'static>]) -> Result<Tls, String> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for cert in extra {
            roots
                .add(cert.clone())
                .map_err(|e| format!("a --cacert certificate cannot be used: {e}"))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.id().to_vec()];
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            name,
            alpn,
        })
    }
}

/// The certificates of a PEM file (`--cacert`); an error names the file.
pub fn read_pem(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not PEM certificates ({e})", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in it (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// Where a target is: its addresses (looked up once for every buyer) and
/// whether it speaks TLS.
#[derive(Debug)]
pub struct Endpoint {
    pub addrs: Arc<[SocketAddr]>,
    pub tls: Option<Tls>,
    /// Connect time limit per address (`--request-timeout`).
    pub timeout: Option<Duration>,
}

impl Endpoint {
    /// Connect to the first address that answers, then shake hands over
    /// TLS when the target has it. A TLS target must agree to what ALPN
    /// offered.
    pub async fn dial(&self) -> Result<Stream, String> {
        let mut last = String::new();
        for addr in self.addrs.iter() {
            let tcp = match self.timeout {
                Some(t) => match tokio::time::timeout(t, TcpStream::connect(addr)).await {
                    Ok(r) => r,
                    Err(_) => Err(io::Error::new(
                        io::ErrorKind::TimedOut,
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
            // Small requests: each write leaves at once, as its own segment
            // (what last-byte synchronisation relies on).
            let _ = tcp.set_nodelay(true);
            let Some(tls) = &self.tls else {
                return Ok(Stream::Plain(tcp));
            };
            let shake = tls.connector.connect(tls.name.clone(), tcp);
            let stream = match self.timeout {
                Some(t) => tokio::time::timeout(t, shake)
                    .await
                    .map_err(|_| format!("the TLS handshake took over {} ms", t.as_millis()))?,
                None => shake.await,
            }
            .map_err(|e| format!("TLS handshake: {}", chain(&e)))?;
            let agreed = stream.get_ref().1.alpn_protocol();
            if tls.alpn == Alpn::H2 && agreed != Some(Alpn::H2.id()) {
                return Err(format!(
                    "the server did not agree to HTTP/2 over TLS (ALPN offered h2, it chose {}); \
                     race it over HTTP/1.1 (without --http2)",
                    agreed.map_or("nothing".into(), |p| String::from_utf8_lossy(p)
                        .into_owned())
                ));
            }
            return Ok(Stream::Tls(Box::new(stream)));
        }
        Err(last)
    }
}

/// A connected stream, plain or TLS.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Stream {
    /// Read what has already arrived, without waiting: `Ok(None)` when
    /// nothing has, `Ok(Some(0))` when the peer has closed.
    pub async fn read_ready(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        let mut chunk = [0u8; 4096];
        std::future::poll_fn(|cx| {
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut *self).poll_read(cx, &mut rb) {
                Poll::Pending => Poll::Ready(Ok(None)),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    buf.extend_from_slice(rb.filled());
                    Poll::Ready(Ok(Some(n)))
                }
            }
        })
        .await
    }
}

/// Told of every chunk of bytes written to a `Tapped` stream, and when.
pub trait Tap: Unpin {
    fn wrote(&mut self, bytes: &[u8], at: Instant);
}

/// A stream whose writes a `Tap` sees as they succeed: how racelab knows
/// when a request actually left, rather than when it asked to send it.
pub struct Tapped<T: Tap> {
    inner: Stream,
    tap: T,
}

impl<T: Tap> Tapped<T> {
    pub fn new(inner: Stream, tap: T) -> Tapped<T> {
        Tapped { inner, tap }
    }
}

impl<T: Tap> AsyncRead for Tapped<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: Tap> AsyncWrite for Tapped<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            me.tap.wrote(&buf[..n], Instant::now());
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(mut n)) = r {
            let at = Instant::now();
            for b in bufs {
                if n == 0 {
                    break;
                }
                let k = n.min(b.len());
                me.tap.wrote(&b[..k], at);
                n -= k;
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
