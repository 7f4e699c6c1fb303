//! `-bs`: the server side of SMTP on stdin/stdout (what Symfony Mailer and
//! Laravel speak to sendmail). Each accepted message goes through the same
//! intake and delivery as argv mode; the reply to the final dot comes after
//! the message is safely spooled and one delivery attempt was made: 250 when
//! it was delivered or queued, 554 when every recipient failed permanently
//! (so the client knows and no bounce is needed).

use crate::base::dsn::Dsn;
use crate::base::dsn::ErrorMode;
use crate::commands::submit::{self, Submission};
use crate::deliver::context::Context;
use crate::deliver::privsep;
use crate::exit::{Error, Result};
use crate::identity::job::Job;
use crate::intake::lines::{Line, next_line};
use std::io::{BufRead, Write};

struct Tx {
    from: Option<String>,
    rcpts: Vec<String>,
}

pub fn run(job: &Job) -> Result<i32> {
    let identity = job.identity()?;
    let stdin = std::io::stdin();
    let mut input = std::io::BufReader::with_capacity(64 * 1024, stdin.lock());
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let host = job.cfg.hostname.clone();
    let say = |out: &mut std::io::StdoutLock, s: &str| -> Result<()> {
        out.write_all(s.as_bytes())
            .and_then(|_| out.write_all(b"\r\n"))
            .and_then(|_| out.flush())
            .map_err(|err| Error::Client {
                what: "writing to the SMTP client",
                err,
            })
    };
    say(&mut out, &format!("220 {host} ESMTP vsendmail"))?;
    let mut greeted = false;
    let mut tx: Option<Tx> = None;
    let mut line = Vec::new();
    loop {
        let got = next_line(&mut input, &mut line, 2048).map_err(|err| Error::Client {
            what: "reading from the SMTP client",
            err,
        })?;
        match got {
            Line::Eof => return Ok(0),
            Line::TooLong => {
                say(&mut out, "500 5.5.0 line too long")?;
                continue;
            }
            Line::Text { .. } => {}
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        let (verb, arg) = match text.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim().to_string()),
            None => (text.trim().to_ascii_uppercase(), String::new()),
        };
        match verb.as_str() {
            "EHLO" => {
                greeted = true;
                tx = None;
                say(&mut out, &format!("250-{host}"))?;
                say(&mut out, "250-PIPELINING")?;
                say(
                    &mut out,
                    &format!("250-SIZE {}", job.cfg.cfg.max_message_size),
                )?;
                say(&mut out, "250-8BITMIME")?;
                say(&mut out, "250-SMTPUTF8")?;
                say(&mut out, "250 ENHANCEDSTATUSCODES")?;
            }
            "HELO" => {
                greeted = true;
                tx = None;
                say(&mut out, &format!("250 {host}"))?;
            }
            "MAIL" => {
                if !greeted {
                    say(&mut out, "503 5.5.1 Error: send HELO/EHLO first")?;
                    continue;
                }
                if tx.is_some() {
                    say(&mut out, "503 5.5.1 Error: nested MAIL command")?;
                    continue;
                }
                let Some(addr) = path_arg(&arg, "FROM:") else {
                    say(&mut out, "501 5.5.4 Syntax: MAIL FROM:<address>")?;
                    continue;
                };
                let a = match crate::base::address::validate(&format!("<{addr}>"), "sender") {
                    Ok(a) => a,
                    Err(e) => {
                        refused(job, "MAIL FROM", &e.to_string());
                        say(&mut out, &format!("553 5.1.7 {e}"))?;
                        continue;
                    }
                };
                // Policy is applied at DATA, where the message is taken; check now to refuse early.
                if !a.is_empty()
                    && let Err(e) =
                        identity.envelope_sender(Some(&a), job.trusted(), job.cfg.cfg.sender_policy)
                {
                    refused(job, "MAIL FROM", &e.to_string());
                    say(&mut out, &format!("550 5.7.1 {e}"))?;
                    continue;
                }
                tx = Some(Tx {
                    from: Some(a),
                    rcpts: Vec::new(),
                });
                say(&mut out, "250 2.1.0 Ok")?;
            }
            "RCPT" => {
                let Some(t) = tx.as_mut() else {
                    say(&mut out, "503 5.5.1 Error: need MAIL command")?;
                    continue;
                };
                let Some(addr) = path_arg(&arg, "TO:") else {
                    say(&mut out, "501 5.5.4 Syntax: RCPT TO:<address>")?;
                    continue;
                };
                match crate::base::address::validate(&format!("<{addr}>"), "recipient") {
                    Ok(a) if !a.is_empty() => {
                        if t.rcpts.len() >= job.cfg.cfg.max_recipients {
                            say(&mut out, "452 4.5.3 Error: too many recipients")?;
                        } else {
                            t.rcpts.push(a);
                            say(&mut out, "250 2.1.5 Ok")?;
                        }
                    }
                    Ok(_) => say(&mut out, "501 5.1.3 empty recipient")?,
                    Err(e) => say(&mut out, &format!("553 5.1.3 {e}"))?,
                }
            }
            "DATA" => {
                let Some(t) = tx.take() else {
                    say(&mut out, "503 5.5.1 Error: need MAIL command")?;
                    continue;
                };
                if t.rcpts.is_empty() {
                    say(&mut out, "554 5.5.1 Error: no valid recipients")?;
                    continue;
                }
                say(&mut out, "354 End data with <CR><LF>.<CR><LF>")?;
                let reply = transaction(job, &identity, &t, &mut input);
                say(&mut out, &reply)?;
            }
            "RSET" => {
                tx = None;
                say(&mut out, "250 2.0.0 Ok")?;
            }
            "NOOP" => say(&mut out, "250 2.0.0 Ok")?,
            "QUIT" => {
                say(&mut out, &format!("221 2.0.0 {host} closing"))?;
                return Ok(0);
            }
            "VRFY" => say(
                &mut out,
                "252 2.5.2 Cannot VRFY user; send some mail and I will try my best",
            )?,
            "HELP" => say(
                &mut out,
                "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY",
            )?,
            "STARTTLS" | "AUTH" | "BDAT" | "ETRN" | "TURN" => {
                say(&mut out, "502 5.5.1 Error: command not implemented")?
            }
            "" => say(&mut out, "500 5.5.2 Error: bad syntax")?,
            _ => say(&mut out, "502 5.5.2 Error: command not recognized")?,
        }
    }
}

/// Take one message after 354 and try to deliver it; the reply to the dot.
fn transaction<R: BufRead>(
    job: &Job,
    identity: &crate::identity::profile::Identity,
    t: &Tx,
    input: &mut R,
) -> String {
    let sub = Submission {
        requested_sender: t.from.as_deref(),
        recipients: t.rcpts.clone(),
        read_recipients: false,
        ignore_dots: false,
        full_name: None,
        dsn: Dsn::default(),
        errors: ErrorMode::Mail,
        deliver_now: true,
        require_dot: true,
    };
    let locked = match submit::accept(job, identity, &sub, input) {
        Ok(l) => l,
        Err(e) => {
            // The rest of the message must still be read up to the dot.
            drain_to_dot(input);
            let code = crate::exit::code(&e);
            refused(job, &format!("DATA, exit {code}"), &e.to_string());
            return match code {
                crate::exit::DATAERR => format!("554 5.6.0 {e}"),
                crate::exit::NOPERM => format!("550 5.7.1 {e}"),
                _ => format!("451 4.3.0 {e}"),
            };
        }
    };
    let id = locked.env.id.clone();
    if locked.env.held {
        return format!("250 2.0.0 Ok: queued as {id} (held)");
    }
    if locked.env.rate_held {
        return format!("250 2.0.0 Ok: queued as {id} (rate limited, held)");
    }
    let mut locked = locked;
    let mut ctx = Context::new(&job.cfg, &job.log, job.inv.verbose, false);
    let report = privsep::deliver(&mut ctx, &mut locked);
    if report.sent.is_empty() && report.deferred.is_empty() && !report.failed.is_empty() {
        let why = report.failed[0].1.clone();
        let _ = locked.remove();
        return format!(
            "554 5.0.0 delivery failed: {}",
            crate::base::address::printable(&why)
        );
    }
    match submit::finish(job, &mut ctx, locked, &report, Some(ErrorMode::Mail)) {
        Ok(_) => format!("250 2.0.0 Ok: queued as {id}"),
        Err(e) => format!("451 4.3.0 {e}"),
    }
}

/// A refusal in the -bs dialogue, to syslog at warning (its client, as
/// PHP's, may never show the reply to anyone).
fn refused(job: &Job, step: &str, why: &str) {
    job.log.warning(&format!(
        "uid={} user={} refused (-bs {step}): {}",
        job.invoker.uid,
        crate::base::syslog::value(&job.invoker.login),
        crate::base::syslog::text(why, crate::base::syslog::MAX_REPLY)
    ));
}

fn drain_to_dot<R: BufRead>(input: &mut R) {
    let mut l = Vec::new();
    loop {
        match next_line(input, &mut l, 1 << 20) {
            Ok(Line::Eof) | Err(_) => return,
            _ if l == b"." => return,
            _ => {}
        }
    }
}

/// `FROM:<a@b> SIZE=1` -> `a@b`; also accepts `FROM: <a@b>` and a bare address.
fn path_arg(arg: &str, prefix: &str) -> Option<String> {
    let up = arg.to_ascii_uppercase();
    if !up.starts_with(prefix) {
        return None;
    }
    let rest = arg[prefix.len()..].trim_start();
    if let Some(r) = rest.strip_prefix('<') {
        let end = r.find('>')?;
        return Some(r[..end].to_string());
    }
    let a = rest.split_whitespace().next()?;
    Some(a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            path_arg("FROM:<a@b> SIZE=1", "FROM:").as_deref(),
            Some("a@b")
        );
        assert_eq!(path_arg("from: <a@b>", "FROM:").as_deref(), Some("a@b"));
        assert_eq!(path_arg("FROM:<>", "FROM:").as_deref(), Some(""));
        assert_eq!(path_arg("TO:c@d", "TO:").as_deref(), Some("c@d"));
        assert_eq!(path_arg("X", "TO:"), None);
    }
}
