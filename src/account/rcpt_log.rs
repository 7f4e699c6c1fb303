//! The per-recipient log that `--log` and `--stats` read: one record per
//! recipient and event, so that a user can answer "did my contact-form mail
//! arrive?" without `/var/log/mail.log`, and the abuse desk can see which
//! script sent what.
//!
//! **Format.** One JSON object a line, in daily files
//! `audit_dir/log-YYYY-MM-DD.jsonl` (the UTC date of the record), beside the
//! audit trail and written the same way: each record one `write(2)` on an
//! `O_APPEND` descriptor, files 0660 of the spool's group in its 2770
//! directory, so users reach them only through the binary; removed with the
//! trail after `audit_days`. Keys, always in this order (`--stats` reads
//! them by position, without a JSON parse): `time` (UTC, RFC 3339),
//! `queue_id`, `uid`, `user`, `identity`, `to`, `status`, `message_id`,
//! `from`, `reply` (first line, bounded), `src`, `dst`, `cwd`, `script`,
//! `v` (1). Values a user or a server controls are bounded to 256 bytes
//! (the reply to 512).
//!
//! **Statuses.** `sent`, `deferred`, `failed` (each delivery attempt, as its
//! outcome is recorded), `held` (held for the rate at submission),
//! `suspended` (held at submission because the user is suspended with
//! `--action hold`), `refused` (not accepted: a suspension, the rate, the
//! breaker), `bounced` (failed in a queue run because it expired).
//!
//! **Written ahead.** A record that must exist is written before the act it
//! records: `held`/`suspended` before the commit (when it cannot be written
//! the message is not accepted: 75), `refused` before the exit. An
//! attempt's records are written as its outcome is recorded, before the
//! envelope is saved.

use crate::base::attribution::Attribution;
use crate::base::clock::{rfc3339_utc, unix_now, utc_date};
use crate::base::syslog::{MAX_REPLY, MAX_VALUE, cut, text};
use crate::config::conf::Loaded;
use crate::spool::envelope::Envelope;
use crate::spool::shared::{self, Access};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::io::Write;

/// The statuses a record may have.
pub const STATUSES: [&str; 7] = [
    "sent",
    "deferred",
    "failed",
    "held",
    "bounced",
    "suspended",
    "refused",
];

/// One record, as written and as read back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rec<'a> {
    #[serde(borrow)]
    pub time: Cow<'a, str>,
    #[serde(borrow)]
    pub queue_id: Cow<'a, str>,
    pub uid: u32,
    #[serde(borrow)]
    pub user: Cow<'a, str>,
    #[serde(borrow)]
    pub identity: Cow<'a, str>,
    #[serde(borrow)]
    pub to: Cow<'a, str>,
    #[serde(borrow)]
    pub status: Cow<'a, str>,
    #[serde(default, borrow)]
    pub message_id: Cow<'a, str>,
    #[serde(default, borrow)]
    pub from: Cow<'a, str>,
    #[serde(default, borrow)]
    pub reply: Cow<'a, str>,
    #[serde(default, borrow)]
    pub src: Cow<'a, str>,
    #[serde(default, borrow)]
    pub dst: Cow<'a, str>,
    #[serde(default, borrow)]
    pub cwd: Cow<'a, str>,
    #[serde(default, borrow)]
    pub script: Cow<'a, str>,
    #[serde(default)]
    pub v: u32,
}

/// One recipient's event.
pub struct Event<'a> {
    pub to: &'a str,
    pub status: &'a str,
    pub reply: &'a str,
    /// `address:port` of the bound source, when a connection was made.
    pub src: String,
    /// The host that answered (`name[addr]:port`), when one did.
    pub dst: String,
}

/// The record of `ev` for the message `env`, now.
pub fn record<'a>(env: &'a Envelope, ev: &'a Event<'a>) -> Rec<'a> {
    let a: &Attribution = &env.attribution;
    Rec {
        time: rfc3339_utc(unix_now() as i64).into(),
        queue_id: Cow::Borrowed(&env.id),
        uid: env.identity.uid,
        user: Cow::Borrowed(&env.identity.login),
        identity: Cow::Borrowed(&env.identity.sender),
        to: cut(ev.to, MAX_VALUE),
        status: Cow::Borrowed(ev.status),
        message_id: cut(env.message_id.as_deref().unwrap_or(""), MAX_VALUE),
        from: cut(&env.sender, MAX_VALUE),
        reply: text(ev.reply, MAX_REPLY).into(),
        src: Cow::Borrowed(&ev.src),
        dst: cut(&ev.dst, MAX_VALUE),
        cwd: Cow::Borrowed(&a.cwd),
        script: Cow::Borrowed(&a.script),
        v: 1,
    }
}

/// The daily file of records at Unix time `t`.
pub fn file_name(t: i64) -> String {
    format!("log-{}.jsonl", utc_date(t))
}

/// The day number of a `log-YYYY-MM-DD.jsonl` name.
pub fn file_day(name: &str) -> Option<i64> {
    let d = name.strip_prefix("log-")?.strip_suffix(".jsonl")?;
    crate::base::clock::utc_midnight(d).map(|t| t / 86400)
}

/// Append one record per event of `env`: each one `write(2)`.
pub fn append(cfg: &Loaded, env: &Envelope, events: &[Event]) -> std::io::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let dir = cfg.audit_dir();
    let path = dir.join(file_name(unix_now() as i64));
    let f = shared::open(&dir, &path, shared::spool_gid(cfg), Access::Append)?;
    let mut line = Vec::with_capacity(512);
    for ev in events {
        line.clear();
        serde_json::to_writer(&mut line, &record(env, ev)).map_err(std::io::Error::other)?;
        line.push(b'\n');
        // One write on an O_APPEND descriptor: concurrent writers never interleave.
        let n = (&f).write(&line)?;
        if n != line.len() {
            return Err(std::io::Error::other(format!(
                "short write to {} ({n} of {} bytes)",
                path.display(),
                line.len()
            )));
        }
    }
    Ok(())
}

/// [`append`], a failure logged (the act it records has happened already).
pub fn append_logged(
    cfg: &Loaded,
    log: &crate::base::syslog::Syslog,
    env: &Envelope,
    events: &[Event],
) {
    if let Err(e) = append(cfg, env, events) {
        log.err(&format!(
            "{}: cannot write the per-recipient log in {}: {e}",
            env.id,
            cfg.audit_dir().display()
        ));
    }
}

/// Every recipient of `env` with the same status and reply.
pub fn all<'a>(env: &'a Envelope, status: &'a str, reply: &'a str) -> Vec<Event<'a>> {
    env.recipients
        .iter()
        .map(|r| Event {
            to: &r.addr,
            status,
            reply,
            src: String::new(),
            dst: String::new(),
        })
        .collect()
}

impl Rec<'_> {
    /// The record with every value owned.
    pub fn into_owned(self) -> Rec<'static> {
        let o = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        Rec {
            time: o(self.time),
            queue_id: o(self.queue_id),
            uid: self.uid,
            user: o(self.user),
            identity: o(self.identity),
            to: o(self.to),
            status: o(self.status),
            message_id: o(self.message_id),
            from: o(self.from),
            reply: o(self.reply),
            src: o(self.src),
            dst: o(self.dst),
            cwd: o(self.cwd),
            script: o(self.script),
            v: self.v,
        }
    }
}

/// The last `n` records of `uid` in today's file, oldest first; only its
/// last 4 MiB are read (a bounded look, for the breaker's notification).
pub fn tail(cfg: &Loaded, uid: u32, n: usize) -> Vec<Rec<'static>> {
    use std::io::{Read, Seek, SeekFrom};
    const LOOK: u64 = 4 << 20;
    let path = cfg.audit_dir().join(file_name(unix_now() as i64));
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(LOOK);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if f.take(LOOK).read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let needle = format!(",\"uid\":{uid},");
    let finder = memchr::memmem::Finder::new(needle.as_bytes());
    let mut v: Vec<Rec<'static>> = buf
        .split(|b| *b == b'\n')
        .skip(usize::from(start > 0))
        .filter(|l| finder.find(l).is_some())
        .filter_map(|l| serde_json::from_slice::<Rec>(l).ok())
        .filter(|r| r.uid == uid)
        .map(Rec::into_owned)
        .collect();
    let drop = v.len().saturating_sub(n);
    v.drain(..drop);
    v
}

/// Create today's and tomorrow's files as root (queue runs), as the trail's.
pub fn prepare(cfg: &Loaded) {
    let dir = cfg.audit_dir();
    let now = unix_now() as i64;
    for t in [now, now + 86400] {
        let _ = shared::open(
            &dir,
            &dir.join(file_name(t)),
            shared::spool_gid(cfg),
            Access::Append,
        );
    }
}

/// Remove the daily files older than `audit_days`.
pub fn expire(cfg: &Loaded) {
    let Ok(rd) = std::fs::read_dir(cfg.audit_dir()) else {
        return;
    };
    let today = unix_now() as i64 / 86400;
    let keep = i64::from(cfg.cfg.audit_days.max(1));
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        // The day's --stats summary (account::tally) goes with it.
        let log_name = name
            .strip_prefix("stats-")
            .and_then(|r| r.strip_suffix(".bin"))
            .map(|d| format!("log-{d}.jsonl"));
        if let Some(day) = file_day(log_name.as_deref().unwrap_or(name))
            && day < today - keep
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_is_fixed_and_round_trips() {
        let mut env = Envelope::new_for_test("4F2A9C1B000001");
        env.attribution.cwd = "/home/a/wp".into();
        env.attribution.script = "1001:/home/a/wp/x.php".into();
        let ev = Event {
            to: "a@x.test",
            status: "sent",
            reply: "250 ok\r\nmore",
            src: "127.0.0.2:4000".into(),
            dst: "mx[127.0.0.1]:25".into(),
        };
        let r = record(&env, &ev);
        let line = serde_json::to_string(&r).unwrap();
        let keys = [
            "time",
            "queue_id",
            "uid",
            "user",
            "identity",
            "to",
            "status",
            "message_id",
            "from",
            "reply",
            "src",
            "dst",
            "cwd",
            "script",
            "v",
        ];
        let mut at = 0;
        for k in keys {
            let p = line[at..]
                .find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k} in {line}"));
            at += p;
        }
        let back: Rec = serde_json::from_str(&line).unwrap();
        assert_eq!(back.reply, "250 ok ...");
        assert_eq!(back.script, "1001:/home/a/wp/x.php");
        assert_eq!(file_day(&file_name(86400 * 3)), Some(3));
        assert_eq!(file_day("2026-11-23.jsonl"), None);
    }
}
