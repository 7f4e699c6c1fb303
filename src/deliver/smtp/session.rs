//! The SMTP client side: one session over a socket that `connect` bound and
//! verified.
//!
//! Written on top of our own socket rather than lettre 0.11's
//! `SmtpConnection`, after reading its source: lettre cannot wrap a socket we
//! bound and exposes no `local_addr()` (so the after-connect source check is
//! impossible), its `send` aborts the session at the first rejected RCPT, its
//! codec dot-stuffs only after CRLF, it writes the body and the final dot in
//! separate writes without TCP_NODELAY (a 40 ms Nagle/delayed-ACK stall per
//! message), it parses neither SIZE, DSN nor PIPELINING, has no HELO fallback,
//! and reads replies without a bound on their size. What we need of SMTP is
//! small: commands, bounded replies, EHLO keywords, dot-stuffing.

use super::reply::{MAX_LINE, MAX_LINES, Reply};
use crate::config::conf::Timeouts;
use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

thread_local! {
    /// The end of the time budget of the message being delivered
    /// (`message_time_budget`, set by `attempt` around one delivery).
    static MESSAGE_DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

thread_local! {
    /// The last reply of this thread's sessions that asked to slow down,
    /// with the session's local address (`deliver::backoff` acts on it).
    static SLOW_DOWN: std::cell::RefCell<Option<(SocketAddr, String)>> =
        const { std::cell::RefCell::new(None) };
}

/// The last "slow down" reply a session of this thread read since the last
/// call, with the local address of that session.
pub fn take_slow_down() -> Option<(SocketAddr, String)> {
    SLOW_DOWN.with(|c| c.borrow_mut().take())
}

/// Set (or clear) the message deadline that every session's reads and
/// writes, connects and TLS handshakes respect besides their own timeouts.
pub fn set_message_deadline(d: Option<Instant>) {
    MESSAGE_DEADLINE.with(|c| c.set(d));
}

/// The message deadline, when one is set.
pub fn message_deadline() -> Option<Instant> {
    MESSAGE_DEADLINE.with(|c| c.get())
}

/// The absolute deadline of a step that may take `timeout` from now: also
/// never past the message deadline.
pub fn deadline(timeout: Duration) -> Instant {
    let d = Instant::now() + timeout;
    match message_deadline() {
        Some(m) if m < d => m,
        _ => d,
    }
}

/// Time left until `deadline`; `None` once it has passed.
pub fn left(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

/// `timeout`, shortened to what is left of the message deadline (at least
/// a millisecond, so that a socket timeout is never "none").
pub fn bounded(timeout: Duration) -> Duration {
    let min = Duration::from_millis(1);
    match message_deadline() {
        Some(m) => timeout.min(left(m).unwrap_or(min)).max(min),
        None => timeout,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("{step} to {peer}: {err}")]
    Io {
        step: String,
        peer: String,
        err: io::Error,
    },
    #[error("{step} to {peer}: no reply within {secs}s (timeout)")]
    Timeout {
        step: String,
        peer: String,
        secs: u64,
    },
    #[error("{step} rejected by {peer}: {reply}")]
    Rejected {
        step: String,
        peer: String,
        reply: Reply,
    },
    #[error("{step} to {peer}: {why}")]
    Protocol {
        step: String,
        peer: String,
        why: String,
    },
    /// A refusal we make before sending (SIZE, 8BITMIME, SMTPUTF8, TLS policy).
    #[error("{0}")]
    Refused(String),
    /// Like `Refused`, but worth trying again later (TLS required but missing).
    #[error("{0}")]
    Deferred(String),
}

impl SmtpError {
    /// Permanent: retrying the same message cannot help.
    pub fn is_permanent(&self) -> bool {
        match self {
            SmtpError::Rejected { reply, .. } => reply.is_permanent(),
            SmtpError::Refused(_) => true,
            _ => false,
        }
    }
}

/// What the server's EHLO reply offered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    pub esmtp: bool,
    pub pipelining: bool,
    pub eightbitmime: bool,
    pub smtputf8: bool,
    /// SIZE limit; `Some(0)` means "SIZE without a limit".
    pub size: Option<u64>,
    pub dsn: bool,
    pub enhanced: bool,
    pub starttls: bool,
    pub auth: Vec<String>,
}

impl Extensions {
    pub fn parse(r: &Reply) -> Extensions {
        let mut e = Extensions {
            esmtp: true,
            ..Default::default()
        };
        for l in r.lines.iter().skip(1) {
            let mut words = l.split_whitespace();
            let Some(kw) = words.next() else { continue };
            let kw = kw.to_ascii_uppercase();
            match kw.as_str() {
                "PIPELINING" => e.pipelining = true,
                "8BITMIME" => e.eightbitmime = true,
                "SMTPUTF8" => e.smtputf8 = true,
                "SIZE" => e.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "DSN" => e.dsn = true,
                "ENHANCEDSTATUSCODES" => e.enhanced = true,
                "STARTTLS" => e.starttls = true,
                "AUTH" => e.auth.extend(words.map(|w| w.to_ascii_uppercase())),
                k if k.starts_with("AUTH=") => {
                    e.auth.extend(k[5..].split_whitespace().map(str::to_string));
                    e.auth.extend(words.map(|w| w.to_ascii_uppercase()));
                }
                _ => {}
            }
        }
        e.auth.sort();
        e.auth.dedup();
        e
    }
}

/// The byte stream under a session: plain TCP or TLS over it.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => t.flush(),
        }
    }
}

pub struct Session {
    pub stream: Stream,
    buf: Vec<u8>,
    pos: usize,
    pub ext: Extensions,
    pub local: SocketAddr,
    /// `name[addr]:port` for messages and logs.
    pub peer_name: String,
    pub helo: String,
    pub greeting: Reply,
    pub tls: bool,
    pub(super) verbose: bool,
    pub timeouts: Timeouts,
    /// This is the session's last transaction: with PIPELINING, QUIT goes in
    /// the same write as the final dot (one round trip less per message).
    pub last_transaction: bool,
    pub(super) quit_sent: bool,
}

impl Session {
    /// Read the greeting and say EHLO (HELO when EHLO is refused).
    pub fn open(
        stream: Stream,
        local: SocketAddr,
        peer: SocketAddr,
        host_name: &str,
        helo: &str,
        timeouts: &Timeouts,
        verbose: bool,
    ) -> Result<Session, SmtpError> {
        // Postfix's form: name[address]:port (the address again when there is no name).
        let peer_name = format!("{}[{}]:{}", host_name, peer.ip(), peer.port());
        let mut s = Session {
            stream,
            buf: Vec::with_capacity(4096),
            pos: 0,
            ext: Extensions::default(),
            local,
            peer_name,
            helo: helo.to_string(),
            greeting: Reply::synthetic(0, ""),
            tls: false,
            verbose,
            timeouts: timeouts.clone(),
            last_transaction: false,
            quit_sent: false,
        };
        let g = s.read_reply("greeting", timeouts.greeting())?;
        if g.code != 220 {
            let err = s.rejected("connection greeting", g);
            s.quit();
            return Err(err);
        }
        s.greeting = g;
        s.hello()?;
        Ok(s)
    }

    /// EHLO, falling back to HELO when the server refuses EHLO.
    pub fn hello(&mut self) -> Result<(), SmtpError> {
        let ehlo = format!("EHLO {}", self.helo);
        let r = self.command(&ehlo, self.timeouts.command())?;
        if r.code == 250 {
            self.ext = Extensions::parse(&r);
            return Ok(());
        }
        if r.is_permanent() {
            let helo = format!("HELO {}", self.helo);
            let r2 = self.command(&helo, self.timeouts.command())?;
            if r2.code == 250 {
                self.ext = Extensions::default();
                return Ok(());
            }
            return Err(self.rejected(&helo, r2));
        }
        Err(self.rejected(&ehlo, r))
    }

    pub(super) fn rejected(&self, step: &str, reply: Reply) -> SmtpError {
        SmtpError::Rejected {
            step: step.to_string(),
            peer: self.peer_name.clone(),
            reply,
        }
    }

    pub(super) fn io_err(&self, step: &str, err: io::Error, timeout: Duration) -> SmtpError {
        if matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            SmtpError::Timeout {
                step: step.to_string(),
                peer: self.peer_name.clone(),
                secs: timeout.as_secs(),
            }
        } else {
            SmtpError::Io {
                step: step.to_string(),
                peer: self.peer_name.clone(),
                err,
            }
        }
    }

    /// Send one command line and read its reply. `shown` is what `-v` prints
    /// (AUTH secrets masked).
    pub fn command_shown(
        &mut self,
        line: &str,
        shown: &str,
        timeout: Duration,
    ) -> Result<Reply, SmtpError> {
        self.write_line(line, shown, timeout)?;
        self.read_reply(first_word(shown), timeout)
    }

    pub fn command(&mut self, line: &str, timeout: Duration) -> Result<Reply, SmtpError> {
        self.command_shown(line, line, timeout)
    }

    pub(super) fn write_line(
        &mut self,
        line: &str,
        shown: &str,
        timeout: Duration,
    ) -> Result<(), SmtpError> {
        if self.verbose {
            crate::base::stderr::line(&format!(">>> {shown}"));
        }
        let mut b = Vec::with_capacity(line.len() + 2);
        b.extend_from_slice(line.as_bytes());
        b.extend_from_slice(b"\r\n");
        self.write_all(&b, first_word(shown), timeout)
    }

    /// Write all of `b` within `timeout` from now, however slowly the
    /// server reads (the socket's timeout is set to what is left before each
    /// piece).
    pub(super) fn write_all(
        &mut self,
        b: &[u8],
        step: &str,
        timeout: Duration,
    ) -> Result<(), SmtpError> {
        let end = deadline(timeout);
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "timeout");
        for piece in b.chunks(16 * 1024) {
            let Some(t) = left(end) else {
                return Err(self.io_err(step, timed_out(), timeout));
            };
            let _ = self.stream.tcp().set_write_timeout(Some(t));
            if let Err(e) = self.stream.write_all(piece) {
                return Err(self.io_err(step, e, timeout));
            }
        }
        let Some(t) = left(end) else {
            return Err(self.io_err(step, timed_out(), timeout));
        };
        let _ = self.stream.tcp().set_write_timeout(Some(t));
        self.stream
            .flush()
            .map_err(|e| self.io_err(step, e, timeout))
    }

    /// Read one (possibly multi-line) reply, bounded in size and in time:
    /// the whole reply must arrive within `timeout` of the call (and before
    /// the message deadline), however the bytes dribble in.
    pub fn read_reply(&mut self, step: &str, timeout: Duration) -> Result<Reply, SmtpError> {
        let end = deadline(timeout);
        let mut lines = Vec::new();
        let mut code = None;
        loop {
            let line = self.read_line(step, timeout, end)?;
            if self.verbose {
                crate::base::stderr::line(&format!(
                    "<<< {}",
                    line.chars()
                        .map(|c| if c.is_control() { '?' } else { c })
                        .collect::<String>()
                ));
            }
            let Some((c, last, text)) = Reply::parse_line(&line) else {
                return Err(SmtpError::Protocol {
                    step: step.to_string(),
                    peer: self.peer_name.clone(),
                    why: format!(
                        "malformed reply line \"{}\"",
                        crate::base::address::printable(&line)
                    ),
                });
            };
            if *code.get_or_insert(c) != c {
                return Err(SmtpError::Protocol {
                    step: step.to_string(),
                    peer: self.peer_name.clone(),
                    why: "reply lines with different codes".into(),
                });
            }
            lines.push(text);
            if last {
                let r = Reply { code: c, lines };
                if r.asks_to_slow_down() {
                    let note = (self.local, format!("{} said {r}", self.peer_name));
                    SLOW_DOWN.with(|c| *c.borrow_mut() = Some(note));
                }
                return Ok(r);
            }
            if lines.len() >= MAX_LINES {
                return Err(SmtpError::Protocol {
                    step: step.to_string(),
                    peer: self.peer_name.clone(),
                    why: format!("reply has more than {MAX_LINES} lines"),
                });
            }
        }
    }

    /// One reply line, read before `end` (`timeout` is what errors name).
    pub(super) fn read_line(
        &mut self,
        step: &str,
        timeout: Duration,
        end: Instant,
    ) -> Result<String, SmtpError> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.pos..]) {
                let end = self.pos + i;
                let mut line = &self.buf[self.pos..end];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                if line.len() > MAX_LINE {
                    return Err(self.too_long(step));
                }
                let s = String::from_utf8_lossy(line).into_owned();
                self.pos = end + 1;
                if self.pos == self.buf.len() {
                    self.buf.clear();
                    self.pos = 0;
                }
                return Ok(s);
            }
            if self.buf.len() - self.pos > MAX_LINE {
                return Err(self.too_long(step));
            }
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            let Some(t) = left(end) else {
                return Err(SmtpError::Timeout {
                    step: step.to_string(),
                    peer: self.peer_name.clone(),
                    secs: timeout.as_secs(),
                });
            };
            let _ = self.stream.tcp().set_read_timeout(Some(t));
            let mut chunk = [0u8; 4096];
            let n = match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(SmtpError::Io {
                        step: step.to_string(),
                        peer: self.peer_name.clone(),
                        err: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "connection closed by the server",
                        ),
                    });
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io_err(step, e, timeout)),
            };
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub(super) fn too_long(&self, step: &str) -> SmtpError {
        SmtpError::Protocol {
            step: step.to_string(),
            peer: self.peer_name.clone(),
            why: format!("reply line longer than {MAX_LINE} bytes"),
        }
    }

    /// Whether bytes from the server are waiting (they must not be, before STARTTLS).
    pub fn has_buffered(&self) -> bool {
        self.pos < self.buf.len()
    }

    /// RSET between two transactions on one connection.
    pub fn rset(&mut self) -> Result<(), SmtpError> {
        let r = self.command("RSET", self.timeouts.command())?;
        if r.code != 250 {
            return Err(self.rejected("RSET", r));
        }
        Ok(())
    }

    /// QUIT, ignoring what happens (the transaction is over either way).
    pub fn quit(&mut self) {
        let t = Duration::from_secs(5);
        if self.quit_sent {
            // QUIT went with the final dot; its 221 is not worth waiting for.
        } else if self.write_line("QUIT", "QUIT", t).is_ok() {
            let _ = self.read_reply("QUIT", t);
        }
        if let Stream::Tls(tls) = &mut self.stream {
            // close_notify, so the receiver sees a clean end of TLS.
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
        let _ = self.stream.tcp().shutdown(std::net::Shutdown::Both);
    }
}

fn first_word(s: &str) -> &str {
    if s.starts_with("MAIL FROM") {
        return "MAIL FROM";
    }
    if s.starts_with("RCPT TO") {
        return s;
    }
    s.split_whitespace().next().unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ehlo_keywords() {
        let r = Reply {
            code: 250,
            lines: vec![
                "mx.example".into(),
                "PIPELINING".into(),
                "SIZE 1000".into(),
                "8BITMIME".into(),
                "AUTH PLAIN LOGIN".into(),
                "AUTH=LOGIN".into(),
                "DSN".into(),
                "STARTTLS".into(),
            ],
        };
        let e = Extensions::parse(&r);
        assert!(e.pipelining && e.eightbitmime && e.dsn && e.starttls && !e.smtputf8);
        assert_eq!(e.size, Some(1000));
        assert_eq!(e.auth, vec!["LOGIN".to_string(), "PLAIN".to_string()]);
    }
}
