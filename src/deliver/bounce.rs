//! Bounces and delay warnings: RFC 3464 multipart/report delivery status
//! notifications, from the null sender `<>`, to the envelope sender, sent
//! through the same identity (source address, HELO) as the original message.
//! Never for a message whose sender was `<>`, and never for a bounce.

use crate::base::clock::rfc5322_date;
use crate::base::clock::unix_now;
use crate::deliver::context::Context;
use crate::deliver::privsep;
use crate::spool::envelope::{Envelope, Recipient};
use crate::spool::store::Spool;
use std::io::{Read, Write};

/// Mail a failure report for `failed` (address, reason) to the sender.
pub fn send_failure(ctx: &mut Context, env: &Envelope, failed: &[(String, String)]) {
    send(ctx, env, failed, Kind::Failed);
}

/// Mail a "still trying" report for `deferred` recipients.
pub fn send_delay_warning(ctx: &mut Context, env: &Envelope, deferred: &[(String, String)]) {
    send(ctx, env, deferred, Kind::Delayed);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Failed,
    Delayed,
}

fn send(ctx: &mut Context, env: &Envelope, rcpts: &[(String, String)], kind: Kind) {
    if env.sender.is_empty() || env.is_bounce || rcpts.is_empty() {
        return;
    }
    let spool = match Spool::of(ctx.cfg) {
        Ok(s) => s,
        Err(e) => {
            ctx.log
                .err(&format!("{}: cannot write a bounce: {e}", env.id));
            return;
        }
    };
    let headers = original_headers(&spool.msg_path(&env.id));
    let mut draft = match spool.draft() {
        Ok(d) => d,
        Err(e) => {
            ctx.log
                .err(&format!("{}: cannot write a bounce: {e}", env.id));
            return;
        }
    };
    let text = render(ctx.cfg, env, rcpts, kind, &draft.id, &headers);
    if draft.file().write_all(text.as_bytes()).is_err() {
        return;
    }
    let mut benv = Envelope::new(
        draft.id.clone(),
        env.identity.clone(),
        String::new(),
        vec![Recipient::new(env.sender.clone(), None)],
        text.len() as u64,
    );
    benv.eightbit = !text.is_ascii();
    benv.smtputf8 = !env.sender.is_ascii();
    benv.errors = crate::base::dsn::ErrorMode::Quiet;
    benv.warned = true;
    benv.is_bounce = true;
    let mut locked = match draft.commit(&benv) {
        Ok(l) => l,
        Err(e) => {
            ctx.log
                .err(&format!("{}: cannot queue a bounce: {e}", env.id));
            return;
        }
    };
    ctx.log.info(&format!(
        "{}: {} notification for {} queued as {}",
        env.id,
        if kind == Kind::Failed {
            "non-delivery"
        } else {
            "delay"
        },
        env.id,
        locked.env.id
    ));
    let _ = privsep::deliver(ctx, &mut locked);
    if locked.env.has_pending() {
        let _ = locked.save();
    } else {
        let _ = locked.remove();
    }
}

fn original_headers(path: &std::path::Path) -> String {
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(256 * 1024).read_to_end(&mut buf);
    }
    let end = memchr::memmem::find(&buf, b"\r\n\r\n")
        .map(|i| i + 2)
        .unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The enhanced status code in a reply text, or a default.
fn status_of(reason: &str, kind: Kind) -> String {
    for tok in reason.split_whitespace() {
        let p: Vec<&str> = tok.split('.').collect();
        if p.len() == 3
            && matches!(p[0], "4" | "5")
            && p.iter()
                .all(|x| !x.is_empty() && x.chars().all(|c| c.is_ascii_digit()))
        {
            return if kind == Kind::Failed && p[0] == "4" {
                format!("5.{}.{}", p[1], p[2])
            } else {
                tok.to_string()
            };
        }
    }
    if kind == Kind::Failed {
        "5.0.0".into()
    } else {
        "4.0.0".into()
    }
}

/// The diagnostic: the SMTP reply part of a reason, when there is one.
fn diagnostic(reason: &str) -> Option<String> {
    let idx = reason.find(": ").map(|i| i + 2).unwrap_or(0);
    let tail = &reason[idx..];
    let b = tail.as_bytes();
    (b.len() >= 3 && b[..3].iter().all(u8::is_ascii_digit)).then(|| format!("smtp; {tail}"))
}

fn remote_mta(reason: &str) -> Option<String> {
    // "... rejected by mx.example.org[203.0.113.5]:25: ..."
    let i = reason.find(" by ")?;
    let rest = &reason[i + 4..];
    let name = rest.split(['[', ' ', ':']).next()?;
    (!name.is_empty()).then(|| format!("dns; {name}"))
}

fn render(
    cfg: &crate::config::conf::Loaded,
    env: &Envelope,
    rcpts: &[(String, String)],
    kind: Kind,
    new_id: &str,
    headers: &str,
) -> String {
    let host = &cfg.hostname;
    let domain = env.identity.domain();
    let boundary = format!("{new_id}.{}/{host}", unix_now());
    let now = rfc5322_date(unix_now() as i64);
    let mut s = String::new();
    let subject = match kind {
        Kind::Failed => "Undelivered Mail Returned to Sender",
        Kind::Delayed => "Delayed Mail (still being retried)",
    };
    s.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{domain}>\r\nTo: <{}>\r\nSubject: {subject}\r\nDate: {now}\r\nMessage-ID: <{new_id}.dsn@{domain}>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\nThis is a MIME-encapsulated message.\r\n\r\n",
        env.sender
    ));
    s.push_str(&format!("--{boundary}\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"));
    match kind {
        Kind::Failed => s.push_str(&format!(
            "This is vsendmail on {host}.\r\n\r\nYour message {} (queued as {}) could not be delivered to one or more\r\nrecipients. It is attached below.\r\n\r\n",
            env.message_id.clone().unwrap_or_default(),
            env.id
        )),
        Kind::Delayed => s.push_str(&format!(
            "This is vsendmail on {host}.\r\n\r\nYour message {} (queued as {}) could not be delivered yet to one or\r\nmore recipients. vsendmail keeps trying; no action is needed now.\r\n\r\n",
            env.message_id.clone().unwrap_or_default(),
            env.id
        )),
    }
    for (a, why) in rcpts {
        s.push_str(&format!(
            "<{a}>: {}\r\n",
            crate::base::address::printable(why)
        ));
    }
    s.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; {host}\r\nX-Vsendmail-Queue-ID: {}\r\nX-Vsendmail-Sender: rfc822; {}\r\nArrival-Date: {}\r\n",
        env.id,
        env.sender,
        rfc5322_date(env.created as i64)
    ));
    if let Some(e) = &env.dsn.envid {
        s.push_str(&format!("Original-Envelope-Id: {e}\r\n"));
    }
    for (a, why) in rcpts {
        s.push_str("\r\n");
        s.push_str(&format!("Final-Recipient: rfc822; {a}\r\n"));
        if let Some(r) = env
            .recipients
            .iter()
            .find(|r| &r.addr == a)
            .and_then(|r| r.orig.clone())
        {
            s.push_str(&format!("Original-Recipient: rfc822; {r}\r\n"));
        }
        s.push_str(&format!(
            "Action: {}\r\nStatus: {}\r\n",
            if kind == Kind::Failed {
                "failed"
            } else {
                "delayed"
            },
            status_of(why, kind)
        ));
        if let Some(m) = remote_mta(why) {
            s.push_str(&format!("Remote-MTA: {m}\r\n"));
        }
        if let Some(d) = diagnostic(why) {
            s.push_str(&format!(
                "Diagnostic-Code: {}\r\n",
                crate::base::address::printable(&d)
            ));
        }
        if kind == Kind::Delayed {
            let until = env.created + cfg.max_age.as_secs();
            s.push_str(&format!(
                "Will-Retry-Until: {}\r\n",
                rfc5322_date(until as i64)
            ));
        }
    }
    s.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers}\r\n--{boundary}--\r\n"
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_diagnostic_from_reason() {
        let r = "RCPT TO:<bob@x> rejected by mx.x[203.0.113.5]:25: 550 5.1.1 no such user";
        assert_eq!(status_of(r, Kind::Failed), "5.1.1");
        assert_eq!(diagnostic(r).unwrap(), "smtp; 550 5.1.1 no such user");
        assert_eq!(remote_mta(r).unwrap(), "dns; mx.x");
        assert_eq!(status_of("connect refused", Kind::Delayed), "4.0.0");
        assert_eq!(status_of("expired: 451 4.3.0 later", Kind::Failed), "5.3.0");
    }
}
