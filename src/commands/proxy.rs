//! `racelab proxy --upstream URL [--listen ADDR] [--record FILE]`: the
//! wire proxy alone, for a service started any other way. It prints where
//! it listens, relays until Ctrl-C or SIGTERM (a normal stop: exit 0), and
//! says what it recorded.

use std::io::Write as _;
use std::net::SocketAddr;

use anyhow::Context as _;

use crate::cli::ProxyArgs;
use crate::error::bad_input;
use crate::proxy::record::{JsonLines, Sink};
use crate::proxy::{Proxy, ProxyOptions, Upstream};

pub fn proxy(args: &ProxyArgs) -> anyhow::Result<()> {
    let upstream = Upstream::parse(&args.upstream)?;
    let listen: SocketAddr = args.listen.trim().parse().map_err(|_| {
        bad_input(format!(
            "--listen {:?} is not an address: expected IP:PORT, e.g. 127.0.0.1:6433 (port 0: any free port)",
            args.listen
        ))
    })?;
    let sink: Option<Box<dyn Sink>> = match &args.record {
        Some(path) => {
            let file = std::fs::File::create(path).map_err(|e| {
                bad_input(format!(
                    "--record {}: cannot write there: {e}",
                    path.display()
                ))
            })?;
            Some(Box::new(JsonLines::new(std::io::BufWriter::with_capacity(
                256 * 1024,
                file,
            ))))
        }
        None => None,
    };
    let listener = std::net::TcpListener::bind(listen).map_err(|e| {
        bad_input(format!(
            "--listen {listen}: cannot listen there ({e}); pick another port, or 0 for any free one"
        ))
    })?;
    let proxy = Proxy::start(
        listener,
        ProxyOptions {
            upstream: upstream.clone(),
            sink,
            gate: None,
        },
    )?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", proxy.addr())?;
        out.flush()?;
    }
    if !args.quiet {
        eprintln!(
            "racelab proxy: relaying to {upstream} (clients authenticate to the server \
             through the proxy; SSL is refused, so they go on in plain text){}",
            args.record
                .as_ref()
                .map_or(String::new(), |p| format!("; recording to {}", p.display()))
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal watcher")?;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
    });
    let connections = proxy.connections();
    proxy.shutdown()?;
    if !args.quiet {
        eprintln!(
            "racelab proxy: stopped after {connections} client connection{}{}",
            if connections == 1 { "" } else { "s" },
            args.record.as_ref().map_or(String::new(), |p| format!(
                "; the record is in {}",
                p.display()
            ))
        );
    }
    Ok(())
}
