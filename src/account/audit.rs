//! The audit trail and `--who`: who opened which outgoing connection.
//!
//! **Writing, ahead of the act.** The process that writes the trail is the
//! sending user's own (set-gid, but the user may kill it, lower its file
//! size limit, close its stderr), so the record of a transaction is written
//! *before* it: after connect (and greeting, TLS, AUTH), before `MAIL FROM`,
//! a record of phase `open` ([`append_open`]); when that write fails the
//! message is not sent (the attempt defers, the message stays queued for a
//! queue run, which root runs). After the transaction a second record of
//! phase `close` gives the outcome ([`append`]); a connection that failed
//! after connect (greeting, EHLO, TLS or AUTH refused) sent no message and
//! has only that one. Each record is one JSON object on one line, written
//! with a single `write(2)` on an `O_APPEND` descriptor, to
//! `audit_dir/YYYY-MM-DD.jsonl`, the UTC date of the connect. A connection
//! that a queue run reuses for several messages has a pair per message, all
//! with the same `connect`, `src` and `dst`, so that an `address:port` leads
//! to every queue id and Message-ID that went over it; `close` is when that
//! message's transaction ended. Keys, in this order: `connect`, `close` (UTC,
//! RFC 3339; in an `open` record the connect again), `uid`, `user`,
//! `identity`, `src`, `dst` (`a.b.c.d:port`, `[v6]:port`), `queue_id`,
//! `message_id` (at most [`MAX_FIELD`] bytes, cut with `...`), `rcpts` (a
//! count), `result` (`sent (250 …)`, `deferred (…)` or `failed (…)`, the
//! reply's first line, bounded; `""` in an `open` record), `phase` (`open`
//! or `close`; absent in records of earlier releases, which are `close`
//! records), then, when the caller gave them, the message's attribution
//! `cwd` and `script` (`base::attribution`, bounded). The directory is mode 2770 and the files 0660, both of the
//! spool's group (the set-gid group), so users reach the trail only through
//! the binary. No setting turns the trail off. Queue runs remove the daily
//! files older than `audit_days` ([`expire`]) and create today's and
//! tomorrow's files as root ([`prepare`]), so that no user owns a shared
//! file or has it charged to their quota.
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
    /// What receivers see of `src` behind 1:1 NAT (`PRIVATE=PUBLIC` sources).
    pub public: Option<std::net::IpAddr>,
    pub dst: SocketAddr,
    /// The relay URL of the connection, when it went to a relay.
    pub relay: Option<String>,
    pub queue_id: String,
    pub message_id: String,
    pub rcpts: usize,
    pub result: String,
    pub phase: Phase,
    /// The message's attribution (`cwd`, `script`), as the caller gave it.
    pub cwd: String,
    pub script: String,
}

/// Which of a transaction's two records: written before it, or after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Before `MAIL FROM`: who is about to send what over which connection.
    Open,
    /// The outcome (records of earlier releases are all of this kind).
    #[default]
    Close,
}

/// The longest value a user controls (Message-ID) or a server controls (the
/// reply) that a record, a log line or an envelope keeps, in bytes.
pub const MAX_FIELD: usize = crate::base::syslog::MAX_VALUE;

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
            public: env.identity.public_for(src.ip()),
            dst,
            relay: None,
            queue_id: env.id.clone(),
            message_id: env.message_id.clone().unwrap_or_default(),
            rcpts,
            result,
            phase: Phase::Close,
            cwd: env.attribution.cwd.clone(),
            script: env.attribution.script.clone(),
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
            #[serde(skip_serializing_if = "Option::is_none")]
            public: Option<String>,
            dst: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            relay: Option<&'a str>,
            queue_id: &'a str,
            message_id: &'a str,
            rcpts: usize,
            result: &'a str,
            phase: Phase,
            #[serde(skip_serializing_if = "str::is_empty")]
            cwd: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            script: &'a str,
        }
        let mut v = serde_json::to_vec(&Line {
            connect: rfc3339_utc(self.connect as i64),
            close: rfc3339_utc(self.close as i64),
            uid: self.uid,
            user: &self.user,
            identity: &self.identity,
            src: addr_port(&self.src),
            public: self.public.map(|ip| ip.to_string()),
            dst: addr_port(&self.dst),
            relay: self.relay.as_deref(),
            queue_id: &self.queue_id,
            message_id: &bound(&self.message_id),
            rcpts: self.rcpts,
            result: &crate::base::syslog::text(&self.result, crate::base::syslog::MAX_REPLY),
            phase: self.phase,
            cwd: &self.cwd,
            script: &self.script,
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
    pub public: Option<Cow<'a, str>>,
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
    #[serde(default)]
    pub phase: Phase,
}

/// Append the outcome record of a transaction (or of a failed session).
/// The `open` record was written before anything was sent; a failure here
/// is logged and cannot unsend the message.
pub fn append(cfg: &Loaded, rec: &Record) {
    if let Err(e) = try_append(cfg, rec) {
        let log = crate::base::syslog::Syslog::open(&cfg.cfg.syslog_socket, "vsendmail");
        log.err(&format!(
            "{}: cannot write the audit record (src={} dst={} result={}): {e}",
            rec.queue_id,
            addr_port(&rec.src),
            addr_port(&rec.dst),
            crate::base::syslog::value(&rec.result)
        ));
    }
}

/// Append the `open` record of a transaction, before `MAIL FROM`. `Err`
/// (the reason, for the deferral): it could not be written, and the
/// message must not be sent.
pub fn append_open(cfg: &Loaded, rec: &Record) -> Result<(), String> {
    let rec = Record {
        close: rec.connect,
        result: String::new(),
        phase: Phase::Open,
        ..rec.clone()
    };
    try_append(cfg, &rec).map_err(|e| {
        let why = format!(
            "not sent: cannot write the audit record to {}: {e}",
            cfg.audit_dir().display()
        );
        let log = crate::base::syslog::Syslog::open(&cfg.cfg.syslog_socket, "vsendmail");
        log.err(&format!(
            "{}: uid={} user={} src={} dst={}: {why}; the message stays queued",
            rec.queue_id,
            rec.uid,
            crate::base::syslog::value(&rec.user),
            addr_port(&rec.src),
            addr_port(&rec.dst),
        ));
        why
    })
}

/// `s` cut to [`MAX_FIELD`] bytes (at a character boundary, marked `...`).
pub fn bound(s: &str) -> Cow<'_, str> {
    crate::base::syslog::cut(s, MAX_FIELD)
}

/// Create today's and tomorrow's daily files (as root, in queue runs), so
/// that the first user to send does not own the shared file, nor have every
/// user's records charged to their quota; the shared rate counters too
/// ([`crate::account::rate::prepare`]).
pub fn prepare(cfg: &Loaded) {
    if crate::spool::store::running_setid_for_user() {
        return;
    }
    crate::account::rate::prepare(cfg);
    crate::account::rcpt_log::prepare(cfg);
    crate::account::suspend::prepare(cfg);
    crate::account::breaker::prepare(cfg);
    crate::account::tally::prepare(cfg);
    let dir = cfg.audit_dir();
    let now = unix_now() as i64;
    for t in [now, now + 86400] {
        let path = dir.join(file_name(t));
        if let Err(e) = shared::open(&dir, &path, shared::spool_gid(cfg), Access::Append) {
            let log = crate::base::syslog::Syslog::open(&cfg.cfg.syslog_socket, "vsendmail");
            log.warning(&format!(
                "cannot create the audit file {}: {e}",
                path.display()
            ));
        }
    }
}

/// The daily files opened by [`hold`], by name: what a delivery process
/// without the group writes its records to.
static HELD: std::sync::Mutex<Vec<(String, std::fs::File)>> = std::sync::Mutex::new(Vec::new());

/// Open today's daily file (and tomorrow's, when a queue run made it) now,
/// before the set-gid process gives up its group (`deliver::privsep`): the
/// delivery process inherits the `O_APPEND` descriptors and writes its
/// records, the write-ahead one included, through them. A record for a day
/// not held cannot be written there, so its message is not sent.
pub fn hold(cfg: &Loaded) -> std::io::Result<()> {
    let dir = cfg.audit_dir();
    let now = unix_now() as i64;
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    for (t, create) in [(now, true), (now + 86400, false)] {
        let name = file_name(t);
        let path = dir.join(&name);
        if held.iter().any(|(n, _)| *n == name) || (!create && !path.exists()) {
            continue;
        }
        held.push((
            name,
            shared::open(&dir, &path, shared::spool_gid(cfg), Access::Append)?,
        ));
    }
    Ok(())
}

fn try_append(cfg: &Loaded, rec: &Record) -> std::io::Result<()> {
    let dir = cfg.audit_dir();
    let name = file_name(rec.connect as i64);
    let path = dir.join(&name);
    let kept = HELD
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| f.try_clone())
        .transpose()?;
    let f = match kept {
        Some(f) => f,
        None => shared::open(&dir, &path, shared::spool_gid(cfg), Access::Append)?,
    };
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
    crate::account::rcpt_log::expire(cfg);
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
            public: None,
            dst: "203.0.113.5:25".parse().unwrap(),
            relay: None,
            queue_id: "4F2A9C1B000001".into(),
            message_id: mid.into(),
            rcpts: 1,
            result: "sent (250 2.0.0 Ok)".into(),
            phase: Phase::Close,
            cwd: String::new(),
            script: String::new(),
        }
    }

    #[test]
    fn line_shape() {
        let r = rec("192.0.2.10:40312", "<m\"1@shop.example>");
        let line = String::from_utf8(r.to_line()).unwrap();
        assert_eq!(
            line,
            "{\"connect\":\"2026-11-23T12:03:04Z\",\"close\":\"2026-11-23T12:03:05Z\",\"uid\":1001,\"user\":\"alice\",\"identity\":\"alice@shop.example\",\"src\":\"192.0.2.10:40312\",\"dst\":\"203.0.113.5:25\",\"queue_id\":\"4F2A9C1B000001\",\"message_id\":\"<m\\\"1@shop.example>\",\"rcpts\":1,\"result\":\"sent (250 2.0.0 Ok)\",\"phase\":\"close\"}\n"
        );
        let s: Stored = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(
            (s.uid, &*s.src, &*s.message_id),
            (1001, "192.0.2.10:40312", "<m\"1@shop.example>")
        );
    }
}
