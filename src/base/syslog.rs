//! The log: RFC 3164 lines, facility mail, to the syslog datagram socket
//! (`syslog_socket`, default /dev/log), and the one formatter of the
//! per-recipient attempt line:
//! `ID: uid=1001 user=alice identity=alice@shop.example src=192.0.2.10:40312
//! to=<bob@example.org> relay=mx.example.org[203.0.113.5]:25 delay=0.21
//! status=sent (250 2.0.0 Ok: queued as ABC)`.
//!
//! What a user or a server controls (a Message-ID, a reply, a reason) is
//! never copied unbounded, and never so that it could pass for another
//! field: [`value`] cuts it to [`MAX_VALUE`] bytes (marked `...`) and writes
//! it `"quoted"`, with `\"`, `\\` and control characters escaped, when it
//! holds a space, a quote, `=`, a backslash or a control character. The
//! attempt line's last part, `status=S (DETAIL)`, is free text by contract;
//! its DETAIL is bounded and has its control characters escaped ([`text`]).

use crate::base::clock::unix_now;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

pub const INFO: u8 = 6;
pub const WARNING: u8 = 4;
pub const ERR: u8 = 3;
const FACILITY_MAIL: u8 = 2;
/// The longest message part of one datagram, in bytes (a safety net: each
/// value in it is bounded already).
const MAX_LINE: usize = 4096;

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
        let clean: String = cut(msg, MAX_LINE)
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

/// The most bytes of one value a log line, an audit record or an envelope
/// keeps of what a user or a server controls.
pub const MAX_VALUE: usize = 256;

/// The longest reply or reason (its first line) kept per recipient.
pub const MAX_REPLY: usize = 512;

/// `s` cut to at most `max` bytes at a character boundary, marked with `...`.
pub fn cut(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}...", &s[..end]))
}

/// A `key=value` field's value: bounded, and quoted with escapes when it
/// could otherwise be read as more than one field (see the module's text).
pub fn value(s: &str) -> Cow<'_, str> {
    let s = cut(s, MAX_VALUE);
    let plain = !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '=' | '\\'));
    if plain {
        return s;
    }
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if c.is_control() => o.extend(c.escape_default()),
            c => o.push(c),
        }
    }
    o.push('"');
    Cow::Owned(o)
}

/// Free text (the last part of a line): its first line only, bounded to
/// `max` bytes, control characters escaped.
pub fn text(s: &str, max: usize) -> String {
    let first = s.split(['\r', '\n']).next().unwrap_or("");
    let more = first.len() < s.trim_end_matches(['\r', '\n']).len();
    let mut t = if more {
        format!("{} ...", cut(first, max.saturating_sub(4)))
    } else {
        cut(first, max).into_owned()
    };
    if t.chars().any(char::is_control) {
        t = t
            .chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect();
    }
    t
}

pub fn attempt_line(a: &Attempt) -> String {
    format!(
        "{}: uid={} user={} identity={} src={} to=<{}> relay={} delay={:.2} status={} ({})",
        a.queue_id,
        a.uid,
        value(a.user),
        value(a.identity),
        a.src
            .map(|s| addr_port(&s))
            .unwrap_or_else(|| "none".into()),
        a.to,
        value(a.relay.unwrap_or("none")),
        a.delay,
        a.status,
        text(a.detail, MAX_REPLY)
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

    #[test]
    fn values_stay_one_field_and_bounded() {
        assert_eq!(value("<a.b@x.example>"), "<a.b@x.example>");
        assert_eq!(
            value("<x@y> result=sent uid=0"),
            "\"<x@y> result=sent uid=0\""
        );
        assert_eq!(value("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
        assert_eq!(value(""), "\"\"");
        let long = "x".repeat(180_000);
        let v = value(&long);
        assert_eq!(v.len(), MAX_VALUE);
        assert!(v.ends_with("..."));
        assert_eq!(cut("ééé", 5), "é...");
        assert_eq!(text("250-first\r\n250 second", 512), "250-first ...");
        assert_eq!(text(&"9".repeat(4000), 512).len(), 512);
        assert_eq!(text("a\u{1b}b", 512), "a\\u{1b}b");
    }
}
