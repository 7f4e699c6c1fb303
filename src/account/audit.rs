//! The audit trail and `--who`: who opened which outgoing connection.
//!
//! **Writing.** Every SMTP transaction that vsendmail runs on an outgoing
//! connection appends one record, and so does a connection that failed after
//! connect (greeting, EHLO, TLS or AUTH refused): one JSON object on one
//! line, written with a single `write(2)` on an `O_APPEND` descriptor, to
//! `audit_dir/YYYY-MM-DD.jsonl`, the UTC date of the connect. A connection
//! that a queue run reuses for several messages therefore has one record per
//! message, all with the same `connect`, `src` and `dst`, so that an
//! `address:port` leads to every queue id and Message-ID that went over it;
//! `close` is when that message's transaction ended. Keys, in this order:
//! `connect`, `close` (UTC, RFC 3339), `uid`, `user`, `identity`, `src`, `dst`
//! (`a.b.c.d:port`, `[v6]:port`), `queue_id`, `message_id`, `rcpts` (a count),
//! `result` (`sent (250 …)`, `deferred (…)` or `failed (…)`). The directory is
//! mode 2770 and the files 0660, both of the spool's group (the set-gid
//! group), so users reach the trail only through the binary. No setting turns
//! the trail off; a failed write is logged to syslog and never stops delivery.
//! Queue runs remove the daily files older than `audit_days` ([`expire`]).
//!
//! Reading it is `--who` (`commands::who`), which relies on the key order
//! and forms written here.

use crate::base::clock::{rfc3339_utc, unix_now, utc_date, utc_midnight};
use crate::base::syslog::addr_port;
use crate::config::conf::Loaded;
use crate::spool::envelope::Envelope;
use crate::spool::shared::{self, Access};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::io::Write;
use std::net::SocketAddr;

/// One record: one transaction (or one failed session) on one connection.
#[derive(Debug, Clone)]
pub struct Record {
    /// Unix seconds of the connect.
    pub connect: u64,
    /// Unix seconds of the end of this transaction (or of the failure).
    pub close: u64,
    pub uid: u32,
    pub user: String,
    pub identity: String,
    /// The local address as getsockname() returned it after connect.
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub queue_id: String,
    pub message_id: String,
    pub rcpts: usize,
    pub result: String,
}

impl Record {
    /// A record for `env` on the connection `src` -> `dst`, closed now.
    pub fn new(
        env: &Envelope,
        src: SocketAddr,
        dst: SocketAddr,
        connect: u64,
        rcpts: usize,
        result: String,
    ) -> Record {
        Record {
            connect,
            close: unix_now().max(connect),
            uid: env.identity.uid,
            user: env.identity.login.clone(),
            identity: env.identity.sender.clone(),
            src,
            dst,
            queue_id: env.id.clone(),
            message_id: env.message_id.clone().unwrap_or_default(),
            rcpts,
            result,
        }
    }

    /// The JSON line (with its newline), keys in the documented order.
    pub fn to_line(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Line<'a> {
            connect: String,
            close: String,
            uid: u32,
            user: &'a str,
            identity: &'a str,
            src: String,
            dst: String,
            queue_id: &'a str,
            message_id: &'a str,
            rcpts: usize,
            result: &'a str,
        }
        let mut v = serde_json::to_vec(&Line {
            connect: rfc3339_utc(self.connect as i64),
            close: rfc3339_utc(self.close as i64),
            uid: self.uid,
            user: &self.user,
            identity: &self.identity,
            src: addr_port(&self.src),
            dst: addr_port(&self.dst),
            queue_id: &self.queue_id,
            message_id: &self.message_id,
            rcpts: self.rcpts,
            result: &self.result,
        })
        .expect("audit record serialises");
        v.push(b'\n');
        v
    }
}

/// A record as read back from the trail (borrowing from the line).
#[derive(Debug, Clone, Deserialize)]
pub struct Stored<'a> {
    #[serde(borrow)]
    pub connect: Cow<'a, str>,
    #[serde(default, borrow)]
    pub close: Cow<'a, str>,
    pub uid: u32,
    #[serde(default, borrow)]
    pub user: Cow<'a, str>,
    #[serde(default, borrow)]
    pub identity: Cow<'a, str>,
    #[serde(borrow)]
    pub src: Cow<'a, str>,
    #[serde(default, borrow)]
    pub dst: Cow<'a, str>,
    #[serde(default, borrow)]
    pub queue_id: Cow<'a, str>,
    #[serde(default, borrow)]
    pub message_id: Cow<'a, str>,
    #[serde(default)]
    pub rcpts: u64,
    #[serde(default, borrow)]
    pub result: Cow<'a, str>,
}

/// Append a record. Failures are logged, never fatal to delivery.
pub fn append(cfg: &Loaded, rec: &Record) {
    if let Err(e) = try_append(cfg, rec) {
        let log = crate::base::syslog::Syslog::open(&cfg.cfg.syslog_socket, "vsendmail");
        log.err(&format!(
            "{}: cannot write the audit record (src={} dst={} result={}): {e}",
            rec.queue_id,
            addr_port(&rec.src),
            addr_port(&rec.dst),
            rec.result
        ));
    }
}

fn try_append(cfg: &Loaded, rec: &Record) -> std::io::Result<()> {
    let dir = cfg.audit_dir();
    let path = dir.join(file_name(rec.connect as i64));
    let f = shared::open(&dir, &path, shared::spool_gid(cfg), Access::Append)?;
    let line = rec.to_line();
    // One write on an O_APPEND descriptor: concurrent writers never interleave.
    let n = (&f).write(&line)?;
    if n != line.len() {
        return Err(std::io::Error::other(format!(
            "short write to {} ({n} of {} bytes)",
            path.display(),
            line.len()
        )));
    }
    Ok(())
}

/// Records for the connections that `deliver::open::open_session` made but did
/// not hand over as a session: each one before the last was given up to
/// retry without TLS; the last failed with `failure` (when the session did
/// open, `failure` is `None` and the last one gets its records per message).
pub fn sessions_failed(
    cfg: &Loaded,
    env: &Envelope,
    opened: &[(SocketAddr, SocketAddr, u64)],
    failure: Option<(&str, bool)>,
    rcpts: usize,
) {
    for (i, (src, dst, connect)) in opened.iter().enumerate() {
        let result = if i + 1 < opened.len() {
            "deferred (TLS handshake failed; retried without TLS on a new connection)".to_string()
        } else if let Some((why, permanent)) = failure {
            format!("{} ({why})", if permanent { "failed" } else { "deferred" })
        } else {
            continue;
        };
        append(cfg, &Record::new(env, *src, *dst, *connect, rcpts, result));
    }
}

/// Remove daily files older than `audit_days` (queue runs call this).
pub fn expire(cfg: &Loaded) {
    let dir = cfg.audit_dir();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return;
    };
    let today = unix_now() as i64 / 86400;
    let keep = i64::from(cfg.cfg.audit_days.max(1));
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(day) = name.to_str().and_then(file_day) else {
            continue;
        };
        if day >= today - keep {
            continue;
        }
        if let Err(err) = std::fs::remove_file(e.path()) {
            let log = crate::base::syslog::Syslog::open(&cfg.cfg.syslog_socket, "vsendmail");
            log.warning(&format!(
                "cannot remove old audit file {}: {err}",
                e.path().display()
            ));
        }
    }
}

/// The name of the daily file that holds a connect at Unix time `t`.
pub fn file_name(t: i64) -> String {
    format!("{}.jsonl", utc_date(t))
}

/// The day number (days since 1970-01-01) of a `YYYY-MM-DD.jsonl` name.
pub fn file_day(name: &str) -> Option<i64> {
    let d = name.strip_suffix(".jsonl")?;
    utc_midnight(d).map(|t| t / 86400)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn daily_files() {
        assert_eq!(file_name(1_795_435_384), "2026-11-23.jsonl");
        assert_eq!(file_day("2026-11-23.jsonl"), Some(1_795_435_384 / 86400));
        assert_eq!(file_day("2026-11-23.json"), None);
        assert_eq!(file_day("x026-11-23.jsonl"), None);
        assert_eq!(file_day("2026-11-31.jsonl"), None);
    }

    pub(crate) fn rec(src: &str, mid: &str) -> Record {
        Record {
            connect: 1_795_435_384,
            close: 1_795_435_385,
            uid: 1001,
            user: "alice".into(),
            identity: "alice@shop.example".into(),
            src: src.parse().unwrap(),
            dst: "203.0.113.5:25".parse().unwrap(),
            queue_id: "4F2A9C1B000001".into(),
            message_id: mid.into(),
            rcpts: 1,
            result: "sent (250 2.0.0 Ok)".into(),
        }
    }

    #[test]
    fn line_shape() {
        let r = rec("192.0.2.10:40312", "<m\"1@shop.example>");
        let line = String::from_utf8(r.to_line()).unwrap();
        assert_eq!(
            line,
            "{\"connect\":\"2026-11-23T12:03:04Z\",\"close\":\"2026-11-23T12:03:05Z\",\"uid\":1001,\"user\":\"alice\",\"identity\":\"alice@shop.example\",\"src\":\"192.0.2.10:40312\",\"dst\":\"203.0.113.5:25\",\"queue_id\":\"4F2A9C1B000001\",\"message_id\":\"<m\\\"1@shop.example>\",\"rcpts\":1,\"result\":\"sent (250 2.0.0 Ok)\"}\n"
        );
        let s: Stored = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(
            (s.uid, &*s.src, &*s.message_id),
            (1001, "192.0.2.10:40312", "<m\"1@shop.example>")
        );
    }
}
