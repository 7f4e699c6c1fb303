//! `--policy`: the Postfix SMTP access policy delegation protocol on
//! stdin/stdout, rejecting bounces to untagged or badly tagged BATV addresses.
//!
//! Owns the protocol loop: requests are `name=value` lines ended by an empty
//! line; each gets `action=...` and an empty line; many requests per run (as
//! Postfix's spawn(8) runs it, stdin/stdout/stderr all connected to Postfix,
//! so nothing is ever written to stderr: problems go to syslog). A request
//! with an empty `sender` (a bounce) to a `recipient` at a domain that has a
//! BATV key gets `action=REJECT 5.7.1 ...` unless the recipient carries a
//! valid tag; a key file that cannot be read gives `DEFER_IF_PERMIT` (the
//! bounce is retried later); everything else `action=DUNNO`. Malformed input
//! (a line without `=`, an over-long line or request, bytes that are not
//! UTF-8) ends the run with a syslog line and exit 65. Only root,
//! `trusted_users` and `policy_users` may run it (others: 77, on stderr,
//! since they are not Postfix), and every tag it checks counts against the
//! caller's `policy_rate`: over it, the bounce gets `DEFER_IF_PERMIT`.

use crate::base::syslog::Syslog;
use crate::exit::{Error, Result};
use crate::sign::batv::{Domains, Verdict};
use std::io::{BufRead, Read, Write};

const MAX_LINE: usize = 8 * 1024;
const MAX_ATTRS: usize = 200;

/// Serve policy requests until end of input.
pub fn serve(job: &crate::identity::job::Job) -> Result<i32> {
    let login = &job.invoker.login;
    if !job.cfg.may_check_tags(login) {
        return Err(Error::NotPolicyUser {
            what: "--policy",
            login: login.clone(),
        });
    }
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let result = Domains::load(&job.cfg)
        .map_err(|e| Error::PolicyKeys(e.to_string()))
        .and_then(|domains| {
            let mut input = stdin.lock();
            let mut out = stdout.lock();
            serve_on(&mut input, &mut out, &job.log, |addr| {
                crate::account::rate::count_tag_check(&job.cfg, job.invoker.uid, login)
                    .map_err(|e| e.to_string())?;
                domains.check(addr, crate::sign::batv::today(), job.cfg.cfg.batv_days)
            })
        });
    // Postfix's spawn(8) connects stderr to the client: what ended the run
    // goes to syslog only.
    result.map_err(|e| {
        job.log.err(&e.to_string());
        Error::Quiet(Box::new(e))
    })
}

/// The protocol loop over any reader/writer, with `check` deciding about one
/// recipient (`Ok(verdict)`, or `Err(reason)` when the keys cannot be read).
pub fn serve_on<R: BufRead, W: Write>(
    input: &mut R,
    out: &mut W,
    log: &Syslog,
    check: impl Fn(&str) -> std::result::Result<Verdict, String>,
) -> Result<i32> {
    let mut attrs: Vec<(String, String)> = Vec::new();
    let mut line = Vec::new();
    let mut served = 0usize;
    loop {
        line.clear();
        let n = match (&mut *input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(n) => n,
            Err(err) => {
                return Err(Error::Client {
                    what: "policy: cannot read the request",
                    err,
                });
            }
        };
        if n == 0 {
            if !attrs.is_empty() {
                return Err(Error::PolicyInput(format!(
                    "input ended inside a request ({} attribute(s) without the empty line); ending after {served} request(s)",
                    attrs.len()
                )));
            }
            return Ok(0);
        }
        if line.last() != Some(&b'\n') && line.len() > MAX_LINE {
            return Err(malformed(served, "a line longer than 8 KiB"));
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        if line.is_empty() {
            let action = decide(&attrs, &check, log);
            let ok = writeln!(out, "action={action}\n").and_then(|_| out.flush());
            if let Err(err) = ok {
                return Err(Error::Client {
                    what: "policy: cannot answer",
                    err,
                });
            }
            served += 1;
            attrs.clear();
            continue;
        }
        let Ok(text) = std::str::from_utf8(&line) else {
            return Err(malformed(served, "a line that is not UTF-8"));
        };
        let Some((name, value)) = text.split_once('=') else {
            return Err(malformed(
                served,
                &format!(
                    "a line without `=`: \"{}\"",
                    crate::base::address::printable(text)
                ),
            ));
        };
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(malformed(
                served,
                &format!(
                    "a bad attribute name: \"{}\"",
                    crate::base::address::printable(name)
                ),
            ));
        }
        if attrs.len() >= MAX_ATTRS {
            return Err(malformed(served, "a request of more than 200 attributes"));
        }
        attrs.push((name.to_string(), value.to_string()));
    }
}

fn malformed(served: usize, what: &str) -> Error {
    Error::PolicyInput(format!(
        "malformed input ({what}); this is not the Postfix policy protocol; ending after {served} request(s)"
    ))
}

/// The action for one request.
fn decide(
    attrs: &[(String, String)],
    check: &impl Fn(&str) -> std::result::Result<Verdict, String>,
    log: &Syslog,
) -> String {
    let get = |k: &str| {
        attrs
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    let (Some(sender), Some(rcpt)) = (get("sender"), get("recipient")) else {
        return "DUNNO".into();
    };
    if !sender.is_empty() || rcpt.is_empty() {
        return "DUNNO".into();
    }
    let client = get("client_address").unwrap_or("unknown");
    match check(rcpt) {
        Ok(Verdict::Valid) | Ok(Verdict::NoKey(_)) => "DUNNO".into(),
        Ok(v) => {
            let why = match v {
                Verdict::Untagged => "it carries no BATV tag",
                Verdict::Expired => "its BATV tag has expired",
                _ => "its BATV tag is not valid",
            };
            log.info(&format!(
                "policy: reject bounce from client {client} to <{rcpt}>: {v}"
            ));
            format!(
                "REJECT 5.7.1 <{}>: bounce refused: {why}; this domain sends only tagged return addresses, so this message was not sent by it",
                crate::base::address::printable(rcpt)
            )
        }
        Err(e) => {
            log.err(&format!("policy: {e}; deferring bounce to <{rcpt}>"));
            "DEFER_IF_PERMIT 4.7.1 cannot check the BATV tag now; try again later".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &str) -> (i32, String) {
        let mut out = Vec::new();
        let log = Syslog::none();
        let result = serve_on(&mut input.as_bytes(), &mut out, &log, |a| {
            Ok(if a.starts_with("prvs=") {
                Verdict::Valid
            } else if a.ends_with("@batv.test") {
                Verdict::Untagged
            } else {
                Verdict::NoKey("x".into())
            })
        });
        let code = match result {
            Ok(c) => c,
            Err(e) => crate::exit::code(&e),
        };
        (code, String::from_utf8(out).unwrap())
    }

    #[test]
    fn many_requests() {
        let (code, out) = run(
            "request=smtpd_access_policy\nsender=\nrecipient=a@batv.test\n\n\
             sender=\nrecipient=prvs=0123abcdef=a@batv.test\n\n\
             sender=x@y.test\r\nrecipient=a@batv.test\r\n\r\n\
             sender=\nrecipient=a@other.test\n\n",
        );
        assert_eq!(code, 0);
        let actions: Vec<&str> = out.split("\n\n").filter(|s| !s.is_empty()).collect();
        assert_eq!(actions.len(), 4, "{out}");
        assert!(
            actions[0].starts_with("action=REJECT 5.7.1 <a@batv.test>"),
            "{out}"
        );
        assert_eq!(
            &actions[1..],
            &["action=DUNNO", "action=DUNNO", "action=DUNNO"]
        );
    }

    #[test]
    fn malformed_input_ends_the_run() {
        let (code, out) = run("sender=\nrecipient=a@batv.test\n\ngarbage line\n\nsender=\n\n");
        assert_eq!(code, 65);
        assert_eq!(out.matches("action=").count(), 1, "{out}");
        let (code, _) = run("sender=\nrecipient=a@batv.test\n");
        assert_eq!(code, 65);
        let long = format!("x={}\n\n", "a".repeat(10_000));
        assert_eq!(run(&long).0, 65);
        let (code, out) = run("");
        assert_eq!((code, out.as_str()), (0, ""));
    }
}
