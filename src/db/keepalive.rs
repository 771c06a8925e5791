//! TCP keepalive on racelab's own connections to the server. sqlx 0.8
//! offers no socket option for it and does not hand out its sockets, so
//! this finds them: every TCP socket of this process whose peer is the
//! server's address and port (racelab's connections to the server, and
//! nothing else: no other socket of the process talks to that port) gets
//! `SO_KEEPALIVE` with short probes. Done once after the buyers connect
//! and after each reconnect: a few system calls per open descriptor, never
//! per statement. A partition that hides a dead peer is then noticed by
//! the kernel within about 20 s even on an idle connection (racelab's own
//! deadline, `--timeout`, covers the statements in flight).

use std::net::{IpAddr, SocketAddr};

/// Idle seconds before the first probe, seconds between probes, and
/// unanswered probes before the connection is dropped.
const IDLE_S: libc::c_int = 10;
const INTERVAL_S: libc::c_int = 5;
const PROBES: libc::c_int = 2;

/// Keepalive on every TCP connection of this process made with `opts`
/// (none when they go over a unix socket).
pub fn enable_for(opts: &sqlx::postgres::PgConnectOptions) -> usize {
    if opts.get_socket().is_some() {
        return 0;
    }
    enable_to(opts.get_host(), opts.get_port())
}

/// Turn keepalive on for every TCP socket of this process connected to
/// `host:port` (`host` an IP address; a name or a unix socket directory:
/// any peer on `port` over TCP). Returns how many sockets have it on.
pub fn enable_to(host: &str, port: u16) -> usize {
    let ip: Option<IpAddr> = host.parse().ok();
    if host.starts_with('/') {
        return 0;
    }
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let mut on = 0;
    for entry in fds.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<libc::c_int>().ok())
        else {
            continue;
        };
        let Some(peer) = tcp_peer(fd) else { continue };
        if peer.port() != port || ip.is_some_and(|ip| ip != peer.ip()) {
            continue;
        }
        if set_keepalive(fd) {
            on += 1;
        }
    }
    on
}

/// The peer of `fd` if it is a connected TCP socket.
fn tcp_peer(fd: libc::c_int) -> Option<SocketAddr> {
    if sockopt(fd, libc::SOL_SOCKET, libc::SO_TYPE) != Some(libc::SOCK_STREAM) {
        return None;
    }
    // SAFETY: sockaddr_storage is plain data; getpeername writes at most `len` bytes.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let r = unsafe {
        libc::getpeername(
            fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return None;
    }
    match libc::c_int::from(addr.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let a: libc::sockaddr_in = unsafe { *(&addr as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let a: libc::sockaddr_in6 = unsafe { *(&addr as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::new(ip.into(), u16::from_be(a.sin6_port)))
        }
        _ => None,
    }
}

/// `SO_KEEPALIVE` and its timings on `fd`; whether it is on afterwards.
fn set_keepalive(fd: libc::c_int) -> bool {
    let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| {
        // SAFETY: setsockopt reads one c_int from `value`.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            ) == 0
        }
    };
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, IDLE_S);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, INTERVAL_S);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, PROBES);
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)
}

/// Whether `fd` has keepalive on (for tests).
pub fn is_on(fd: libc::c_int) -> bool {
    sockopt(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE).is_some_and(|v| v != 0)
}

/// An integer socket option of `fd`.
fn sockopt(fd: libc::c_int, level: libc::c_int, name: libc::c_int) -> Option<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `v`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn only_sockets_to_the_peer_get_keepalive() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let to_server = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let to_other = std::net::TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!is_on(to_server.as_raw_fd()));
        assert_eq!(enable_to("127.0.0.1", port), 1);
        assert!(is_on(to_server.as_raw_fd()));
        assert!(!is_on(to_other.as_raw_fd()));
        // A unix socket directory: nothing over TCP to set.
        assert_eq!(enable_to("/tmp", port), 0);
    }
}
