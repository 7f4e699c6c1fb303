//! One SMTP transaction on an open session: MAIL (SIZE, BODY, SMTPUTF8,
//! DSN), RCPT per recipient, DATA with the message dot-stuffed in one
//! stream, pipelined when the server offers PIPELINING, and the replies
//! per recipient.

use super::reply::Reply;
use super::session::{Session, SmtpError};
use crate::base::dsn::Dsn;
use std::io::{self, Read};

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

impl Session {
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
                    crate::base::stderr::line(&format!(">>> {c}"));
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
            crate::base::stderr::line(&format!(
                ">>> [message: {} bytes]",
                tx.size + tx.prepend.len() as u64
            ));
            crate::base::stderr::line(">>> .");
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
        // Each block within data_block of its start (and the message deadline).
        let t = self.timeouts.data_block();
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
                self.write_all(&out, "message data", t)?;
                out.clear();
            }
        }
        if !at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        if self.last_transaction && self.ext.pipelining {
            if self.verbose {
                crate::base::stderr::line(">>> QUIT");
            }
            out.extend_from_slice(b"QUIT\r\n");
            self.quit_sent = true;
        }
        self.write_all(&out, "message data", t)
    }
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
    fn xtext_encodes() {
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
    }
}
