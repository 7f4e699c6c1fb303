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
use crate::base::dsn::Dsn;
use crate::config::conf::Timeouts;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

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

    /// The reply, when the server gave one.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            SmtpError::Rejected { reply, .. } => Some(reply),
            _ => None,
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

/// One message's transaction.
pub struct Transaction<'a> {
    pub from: &'a str,
    pub rcpts: &'a [String],
    /// ORCPT per recipient (the address before alias expansion), when known.
    pub orcpts: &'a [Option<String>],
    pub size: u64,
    pub eightbit: bool,
    /// Non-ASCII in the envelope: SMTPUTF8 is required.
    pub smtputf8: bool,
    /// Non-ASCII in headers only: SMTPUTF8 used when offered.
    pub utf8_headers: bool,
    pub dsn: &'a Dsn,
    /// Header lines sent before the message file (DKIM-Signature).
    pub prepend: &'a [u8],
}

/// The server's answers to one transaction.
#[derive(Debug, Clone)]
pub struct TxOutcome {
    /// Per recipient, in order: the RCPT reply.
    pub rcpts: Vec<Reply>,
    /// The reply to the final dot; `None` when no recipient was accepted.
    pub data: Option<Reply>,
}

pub struct Session {
    pub stream: Stream,
    buf: Vec<u8>,
    pos: usize,
    pub ext: Extensions,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// `name[addr]:port` for messages and logs.
    pub peer_name: String,
    pub helo: String,
    pub greeting: Reply,
    pub tls: bool,
    verbose: bool,
    pub timeouts: Timeouts,
    /// This is the session's last transaction: with PIPELINING, QUIT goes in
    /// the same write as the final dot (one round trip less per message).
    pub last_transaction: bool,
    quit_sent: bool,
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
            peer,
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

    fn rejected(&self, step: &str, reply: Reply) -> SmtpError {
        SmtpError::Rejected {
            step: step.to_string(),
            peer: self.peer_name.clone(),
            reply,
        }
    }

    fn io_err(&self, step: &str, err: io::Error, timeout: Duration) -> SmtpError {
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

    fn write_line(&mut self, line: &str, shown: &str, timeout: Duration) -> Result<(), SmtpError> {
        if self.verbose {
            eprintln!(">>> {shown}");
        }
        let mut b = Vec::with_capacity(line.len() + 2);
        b.extend_from_slice(line.as_bytes());
        b.extend_from_slice(b"\r\n");
        self.write_all(&b, first_word(shown), timeout)
    }

    fn write_all(&mut self, b: &[u8], step: &str, timeout: Duration) -> Result<(), SmtpError> {
        let _ = self.stream.tcp().set_write_timeout(Some(timeout));
        self.stream
            .write_all(b)
            .and_then(|_| self.stream.flush())
            .map_err(|e| self.io_err(step, e, timeout))
    }

    /// Read one (possibly multi-line) reply, bounded.
    pub fn read_reply(&mut self, step: &str, timeout: Duration) -> Result<Reply, SmtpError> {
        let _ = self.stream.tcp().set_read_timeout(Some(timeout));
        let mut lines = Vec::new();
        let mut code = None;
        loop {
            let line = self.read_line(step, timeout)?;
            if self.verbose {
                eprintln!(
                    "<<< {}",
                    line.chars()
                        .map(|c| if c.is_control() { '?' } else { c })
                        .collect::<String>()
                );
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
                return Ok(Reply { code: c, lines });
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

    fn read_line(&mut self, step: &str, timeout: Duration) -> Result<String, SmtpError> {
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

    fn too_long(&self, step: &str) -> SmtpError {
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

    /// Run one mail transaction. Per-recipient rejections are results, not
    /// errors; an error means the whole transaction failed.
    pub fn send<R: Read>(
        &mut self,
        tx: &Transaction,
        body: &mut R,
    ) -> Result<TxOutcome, SmtpError> {
        if let Some(limit) = self.ext.size.filter(|l| *l > 0) {
            let total = tx.size + tx.prepend.len() as u64;
            if total > limit {
                return Err(SmtpError::Refused(format!(
                    "message of {total} bytes is larger than {}'s SIZE limit of {limit} bytes",
                    self.peer_name
                )));
            }
        }
        if tx.smtputf8 && !self.ext.smtputf8 {
            return Err(SmtpError::Refused(format!(
                "an address of this message needs SMTPUTF8, which {} does not offer",
                self.peer_name
            )));
        }
        if tx.eightbit && !self.ext.eightbitmime {
            return Err(SmtpError::Refused(format!(
                "the message has 8-bit content and {} does not offer 8BITMIME; send it encoded (quoted-printable or base64)",
                self.peer_name
            )));
        }
        let mut mail = format!("MAIL FROM:<{}>", tx.from);
        if self.ext.size.is_some() {
            mail.push_str(&format!(" SIZE={}", tx.size + tx.prepend.len() as u64));
        }
        if tx.eightbit {
            mail.push_str(" BODY=8BITMIME");
        }
        if tx.smtputf8 || (tx.utf8_headers && self.ext.smtputf8) {
            mail.push_str(" SMTPUTF8");
        }
        if self.ext.dsn {
            if let Some(r) = &tx.dsn.ret {
                mail.push_str(&format!(" RET={r}"));
            }
            if let Some(e) = &tx.dsn.envid {
                mail.push_str(&format!(" ENVID={}", xtext(e)));
            }
        }
        let rcpt_cmds: Vec<String> = tx
            .rcpts
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut c = format!("RCPT TO:<{r}>");
                if self.ext.dsn {
                    if let Some(n) = &tx.dsn.notify {
                        c.push_str(&format!(" NOTIFY={n}"));
                    }
                    // ORCPT when the address was rewritten (alias) or a DSN was asked for.
                    let orig = tx.orcpts.get(i).cloned().flatten();
                    if orig.is_some() || tx.dsn.notify.is_some() {
                        let orcpt = orig.unwrap_or_else(|| r.clone());
                        if orcpt.is_ascii() {
                            c.push_str(&format!(" ORCPT=rfc822;{}", xtext(&orcpt)));
                        }
                    }
                }
                c
            })
            .collect();
        let cmd_t = self.timeouts.command();
        let (mail_reply, rcpt_replies, data_reply) = if self.ext.pipelining {
            // One write for MAIL, every RCPT and DATA (RFC 2920: DATA may end
            // the group), then the replies in order: one round trip.
            let mut batch = String::new();
            for c in std::iter::once(&mail)
                .chain(rcpt_cmds.iter())
                .chain(std::iter::once(&"DATA".to_string()))
            {
                if self.verbose {
                    eprintln!(">>> {c}");
                }
                batch.push_str(c);
                batch.push_str("\r\n");
            }
            self.write_all(batch.as_bytes(), "MAIL FROM", cmd_t)?;
            let m = self.read_reply("MAIL FROM", cmd_t)?;
            let mut rr = Vec::new();
            for c in &rcpt_cmds {
                rr.push(self.read_reply(c, cmd_t)?);
            }
            let d = self.read_reply("DATA", cmd_t)?;
            (m, rr, Some(d))
        } else {
            let m = self.command(&mail, cmd_t)?;
            let mut rr = Vec::new();
            if m.is_positive() {
                for c in &rcpt_cmds {
                    rr.push(self.command(c, cmd_t)?);
                }
            }
            (m, rr, None)
        };
        let accepted = rcpt_replies.iter().any(|r| r.is_positive());
        if data_reply.as_ref().is_some_and(|d| d.code == 354)
            && (!mail_reply.is_positive() || !accepted)
        {
            // A server that said 354 although nothing was accepted: end the
            // empty message so that the session stays in step.
            self.write_all(b".\r\n", "DATA", cmd_t)?;
            let _ = self.read_reply("end of data", self.timeouts.final_dot())?;
        }
        if !mail_reply.is_positive() {
            return Err(self.rejected(&mail, mail_reply));
        }
        if !accepted {
            return Ok(TxOutcome {
                rcpts: rcpt_replies,
                data: None,
            });
        }
        let d = match data_reply {
            Some(d) => d,
            None => self.command("DATA", cmd_t)?,
        };
        if d.code != 354 {
            return Err(self.rejected("DATA", d));
        }
        if self.verbose {
            eprintln!(">>> [message: {} bytes]", tx.size + tx.prepend.len() as u64);
            eprintln!(">>> .");
        }
        self.write_body(tx.prepend, body)?;
        let r = self.read_reply("end of data", self.timeouts.final_dot())?;
        Ok(TxOutcome {
            rcpts: rcpt_replies,
            data: Some(r),
        })
    }

    /// Write the message dot-stuffed, then the final `.`, in large writes.
    fn write_body<R: Read>(&mut self, prepend: &[u8], body: &mut R) -> Result<(), SmtpError> {
        let t = self.timeouts.data_block();
        let _ = self.stream.tcp().set_write_timeout(Some(t));
        let mut out: Vec<u8> = Vec::with_capacity(64 * 1024 + 1024);
        let mut at_line_start = true;
        stuff(prepend, &mut out, &mut at_line_start);
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match body.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(SmtpError::Io {
                        step: "reading the spooled message".into(),
                        peer: self.peer_name.clone(),
                        err: e,
                    });
                }
            };
            stuff(&chunk[..n], &mut out, &mut at_line_start);
            if out.len() >= 64 * 1024 {
                self.stream
                    .write_all(&out)
                    .map_err(|e| self.io_err("message data", e, t))?;
                out.clear();
            }
        }
        if !at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        if self.last_transaction && self.ext.pipelining {
            if self.verbose {
                eprintln!(">>> QUIT");
            }
            out.extend_from_slice(b"QUIT\r\n");
            self.quit_sent = true;
        }
        self.stream
            .write_all(&out)
            .and_then(|_| self.stream.flush())
            .map_err(|e| self.io_err("message data", e, t))
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

    pub fn set_verbose(&mut self, v: bool) {
        self.verbose = v;
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

/// Append `data` to `out`, doubling a `.` at the start of every line.
pub fn stuff(data: &[u8], out: &mut Vec<u8>, at_line_start: &mut bool) {
    if data.is_empty() {
        return;
    }
    let mut start = 0;
    if *at_line_start && data[0] == b'.' {
        out.push(b'.');
    }
    for nl in memchr::memchr_iter(b'\n', data) {
        if data.get(nl + 1) == Some(&b'.') {
            out.extend_from_slice(&data[start..=nl]);
            out.push(b'.');
            start = nl + 1;
        }
    }
    out.extend_from_slice(&data[start..]);
    *at_line_start = data.last() == Some(&b'\n');
}

/// RFC 3461 xtext: `+XX` for '+', '=', and anything outside 33..=126.
pub fn xtext(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            o.push(b as char);
        } else {
            o.push_str(&format!("+{b:02X}"));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing_across_chunks() {
        let mut out = Vec::new();
        let mut s = true;
        stuff(b".a\r\n", &mut out, &mut s);
        stuff(b".b\r\nc\r\n", &mut out, &mut s);
        stuff(b"\r\n", &mut out, &mut s);
        stuff(b"..d\r\n", &mut out, &mut s);
        assert_eq!(out, b"..a\r\n..b\r\nc\r\n\r\n...d\r\n");
    }

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

    #[test]
    fn xtext_encodes() {
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
    }
}
