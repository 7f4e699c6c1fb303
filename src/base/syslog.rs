//! The log: RFC 3164 lines, facility mail, to the syslog datagram socket
//! (`syslog_socket`, default /dev/log), and the one formatter of the
//! per-recipient attempt line:
//! `ID: uid=1001 user=alice identity=alice@shop.example src=192.0.2.10:40312
//! to=<bob@example.org> relay=mx.example.org[203.0.113.5]:25 delay=0.21
//! status=sent (250 2.0.0 Ok: queued as ABC)`.

use crate::base::clock::unix_now;
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

pub const INFO: u8 = 6;
pub const WARNING: u8 = 4;
pub const ERR: u8 = 3;
const FACILITY_MAIL: u8 = 2;

pub struct Syslog {
    sock: Option<UnixDatagram>,
    tag: String,
    pid: u32,
    /// Why there is no socket: `cannot log to PATH (why)`.
    problem: Option<String>,
}

impl Syslog {
    pub fn open(path: &Path, tag: &str) -> Syslog {
        let (sock, problem) = match UnixDatagram::unbound().and_then(|s| s.connect(path).map(|_| s))
        {
            Ok(s) => (Some(s), None),
            Err(e) => (
                None,
                Some(format!("cannot log to {} ({e})", path.display())),
            ),
        };
        Syslog {
            sock,
            tag: tag.to_string(),
            pid: std::process::id(),
            problem,
        }
    }

    /// Why nothing reaches the log (the socket is missing or nobody
    /// listens), for the one warning of a run; `None` when the log works.
    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    /// A logger that drops everything (for tests).
    #[cfg(test)]
    pub fn none() -> Syslog {
        Syslog {
            sock: None,
            tag: "vsendmail".into(),
            pid: std::process::id(),
            problem: None,
        }
    }

    pub fn log(&self, severity: u8, msg: &str) {
        let Some(s) = &self.sock else { return };
        let stamp = crate::base::clock::syslog_stamp(unix_now() as i64);
        let clean: String = msg
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let line = format!(
            "<{}>{} {}[{}]: {}",
            FACILITY_MAIL * 8 + severity,
            stamp,
            self.tag,
            self.pid,
            clean
        );
        let _ = s.send(line.as_bytes());
    }

    pub fn info(&self, msg: &str) {
        self.log(INFO, msg)
    }
    pub fn warning(&self, msg: &str) {
        self.log(WARNING, msg)
    }
    pub fn err(&self, msg: &str) {
        self.log(ERR, msg)
    }
}

/// Everything one attempt line says.
pub struct Attempt<'a> {
    pub queue_id: &'a str,
    pub uid: u32,
    pub user: &'a str,
    pub identity: &'a str,
    pub src: Option<SocketAddr>,
    pub to: &'a str,
    /// `name[addr]:port` of the host, when a connection was made or tried.
    pub relay: Option<&'a str>,
    pub delay: f64,
    /// `sent`, `deferred` or `failed`.
    pub status: &'a str,
    pub detail: &'a str,
}

/// `[v6]:port` for IPv6, `a.b.c.d:port` for IPv4.
pub fn addr_port(sa: &SocketAddr) -> String {
    match sa {
        SocketAddr::V4(v) => format!("{}:{}", v.ip(), v.port()),
        SocketAddr::V6(v) => format!("[{}]:{}", v.ip(), v.port()),
    }
}

pub fn attempt_line(a: &Attempt) -> String {
    format!(
        "{}: uid={} user={} identity={} src={} to=<{}> relay={} delay={:.2} status={} ({})",
        a.queue_id,
        a.uid,
        a.user,
        a.identity,
        a.src
            .map(|s| addr_port(&s))
            .unwrap_or_else(|| "none".into()),
        a.to,
        a.relay.unwrap_or("none"),
        a.delay,
        a.status,
        a.detail
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_socket_is_a_problem_that_names_it() {
        let l = Syslog::open(Path::new("/nonexistent/vsendmail-log"), "t");
        let p = l.problem().expect("a problem");
        assert!(
            p.starts_with("cannot log to /nonexistent/vsendmail-log ("),
            "{p}"
        );
        l.info("dropped, without a panic");
    }

    #[test]
    fn attempt_line_shape() {
        let l = attempt_line(&Attempt {
            queue_id: "4F2A9C1B",
            uid: 1001,
            user: "alice",
            identity: "alice@shop.example",
            src: Some("192.0.2.10:40312".parse().unwrap()),
            to: "bob@example.org",
            relay: Some("mx.example.org[203.0.113.5]:25"),
            delay: 0.2134,
            status: "sent",
            detail: "250 2.0.0 Ok: queued as ABC",
        });
        assert_eq!(
            l,
            "4F2A9C1B: uid=1001 user=alice identity=alice@shop.example src=192.0.2.10:40312 to=<bob@example.org> relay=mx.example.org[203.0.113.5]:25 delay=0.21 status=sent (250 2.0.0 Ok: queued as ABC)"
        );
        assert_eq!(addr_port(&"[::1]:25".parse().unwrap()), "[::1]:25");
    }
}
