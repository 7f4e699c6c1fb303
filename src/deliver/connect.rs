//! The only place that opens outgoing sockets: create (`sockets`), bind the identity's
//! source address before connect, connect with a timeout, then check with
//! getsockname() that the kernel really used that address. There is no
//! fallback to the host's own address, ever.

use socket2::{Domain, SockAddr, Socket, Type};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "source address {src} (identity {identity}) is not configured on this host; add it to an interface or fix /etc/virtusers"
    )]
    NotConfigured { src: IpAddr, identity: String },
    #[error("cannot bind source address {src} (identity {identity}): {err}")]
    Bind {
        src: IpAddr,
        identity: String,
        err: std::io::Error,
    },
    #[error("connect to {dst} from {src} timed out after {secs}s")]
    Timeout {
        dst: SocketAddr,
        src: String,
        secs: u64,
    },
    #[error("connect to {dst} from {src}: {err}")]
    Connect {
        dst: SocketAddr,
        src: String,
        err: std::io::Error,
    },
    #[error(
        "connection to {dst} left from {got}, not from the bound address {want}; closed, nothing sent"
    )]
    Mismatch {
        dst: SocketAddr,
        want: IpAddr,
        got: SocketAddr,
    },
    #[error("socket error: {0}")]
    Socket(std::io::Error),
}

impl ConnectError {
    /// A problem of this host's configuration rather than of the destination.
    pub fn is_local(&self) -> bool {
        matches!(
            self,
            ConnectError::NotConfigured { .. }
                | ConnectError::Bind { .. }
                | ConnectError::Mismatch { .. }
        )
    }
}

/// A connected, verified socket.
pub struct Connection {
    pub stream: TcpStream,
    /// The local address:port as getsockname() reported it.
    pub local: SocketAddr,
    pub peer: SocketAddr,
}

/// Connect to `dst`, from `src` when given (else the kernel's choice).
pub fn connect(
    src: Option<IpAddr>,
    dst: SocketAddr,
    timeout: Duration,
    identity: &str,
) -> Result<Connection, ConnectError> {
    let domain = if dst.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let sock = crate::deliver::sockets::tcp(domain).map_err(ConnectError::Socket)?;
    if let Some(ip) = src {
        let sa = SocketAddr::new(ip, 0);
        if let Err(err) = sock.bind(&SockAddr::from(sa)) {
            return Err(if err.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
                ConnectError::NotConfigured {
                    src: ip,
                    identity: identity.into(),
                }
            } else {
                ConnectError::Bind {
                    src: ip,
                    identity: identity.into(),
                    err,
                }
            });
        }
    }
    if src.is_none() && dst.is_ipv6() {
        // Kernel's choice on IPv6: never a temporary (privacy) address.
        const IPV6_ADDR_PREFERENCES: libc::c_int = 72;
        const IPV6_PREFER_SRC_PUBLIC: libc::c_int = 0x0002;
        let v: libc::c_int = IPV6_PREFER_SRC_PUBLIC;
        // SAFETY: setsockopt with a valid fd and an int option value.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&sock),
                libc::IPPROTO_IPV6,
                IPV6_ADDR_PREFERENCES,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    let src_s = src
        .map(|s| s.to_string())
        .unwrap_or_else(|| "the host's address".into());
    if let Err(err) = sock.connect_timeout(&SockAddr::from(dst), timeout) {
        return Err(
            if err.kind() == std::io::ErrorKind::TimedOut
                || err.kind() == std::io::ErrorKind::WouldBlock
            {
                ConnectError::Timeout {
                    dst,
                    src: src_s,
                    secs: timeout.as_secs(),
                }
            } else {
                ConnectError::Connect {
                    dst,
                    src: src_s,
                    err,
                }
            },
        );
    }
    let local = sock
        .local_addr()
        .map_err(ConnectError::Socket)?
        .as_socket()
        .ok_or_else(|| ConnectError::Socket(std::io::Error::other("local address is not IP")))?;
    if let Some(want) = src
        && local.ip() != want
    {
        return Err(ConnectError::Mismatch {
            dst,
            want,
            got: local,
        });
    }
    let _ = sock.set_tcp_nodelay(true);
    Ok(Connection {
        stream: sock.into(),
        local,
        peer: dst,
    })
}

/// The sources to try, in order, for a destination: the identity's addresses
/// of the destination's family (the first that binds is used); `[None]` when
/// the identity binds nothing (`-`); empty when it has no address of that family.
pub fn candidates(sources: &[IpAddr], dst: &SocketAddr) -> Vec<Option<IpAddr>> {
    if sources.is_empty() {
        return vec![None];
    }
    sources
        .iter()
        .filter(|s| s.is_ipv4() == dst.is_ipv4())
        .map(|s| Some(*s))
        .collect()
}

/// Whether `ip` can be bound here (configured on an interface): the probe
/// of `-bv` and `--doctor`, made as `connect` binds, without connecting.
pub fn can_bind(ip: IpAddr) -> std::io::Result<()> {
    let domain = if ip.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    Socket::new(domain, Type::STREAM, None)?.bind(&SocketAddr::new(ip, 0).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_and_verifies_loopback_source() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dst = l.local_addr().unwrap();
        let c = connect(
            Some("127.0.0.2".parse().unwrap()),
            dst,
            Duration::from_secs(5),
            "t@x",
        )
        .unwrap();
        assert_eq!(c.local.ip(), "127.0.0.2".parse::<IpAddr>().unwrap());
        let (_, peer) = l.accept().unwrap();
        assert_eq!(peer, c.local);
    }

    #[test]
    fn unconfigured_source_is_named() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = connect(
            Some("192.0.2.10".parse().unwrap()),
            l.local_addr().unwrap(),
            Duration::from_secs(5),
            "alice@shop.example",
        )
        .err()
        .unwrap();
        assert_eq!(
            e.to_string(),
            "source address 192.0.2.10 (identity alice@shop.example) is not configured on this host; add it to an interface or fix /etc/virtusers"
        );
    }
}
