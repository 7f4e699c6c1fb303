//! Counting the per-recipient log for `--stats`, fast over 1,000,000
//! records: a record is never parsed as JSON (the writer, `rcpt_log`, puts
//! its keys in a fixed order, so each line is read by position with byte
//! searches; a value with an escape in it sends that line through the JSON
//! parser instead), counts are 64-bit hashes in sets, and **a finished day
//! is counted once**: its tally is kept beside it as
//! `audit_dir/stats-YYYY-MM-DD.bin` and read back instead of the day's file
//! while that file keeps the size and modification time the summary names.
//!
//! Summary format (version 1): the line `vsendmail-stats 1 SIZE MTIME_NS\n`,
//! then per identity, little-endian: `u32 len` + identity, `u32 len` + user,
//! `u32 uid`, `u64` sent, deferred, failed, rate-limited, then three sets
//! (messages, recipients, distinct recipients) each as `u32 n` + `n` `u64`.
//! Written to a temporary name and renamed (a reader sees a whole one or
//! none), 0660 of the spool's group; removed with the log after `audit_days`.
//! A day is finished five minutes after its UTC midnight; queue runs write
//! the summary of the last two finished days ([`prepare`]), the first
//! `--stats` to read a day without one writes it.

use crate::account::breaker::fnv;
use crate::account::rcpt_log::Rec;
use crate::config::conf::Loaded;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Per identity.
pub type Tally = HashMap<Vec<u8>, Agg>;

/// The sets hold FNV hashes already: hashing them again is wasted work.
#[derive(Default, Clone, Copy)]
pub struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, b: &[u8]) {
        for x in b {
            self.0 = (self.0 << 8) ^ u64::from(*x);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub type Set = HashSet<u64, std::hash::BuildHasherDefault<PassThrough>>;

#[derive(Default)]
pub struct Agg {
    pub user: String,
    pub uid: u32,
    pub messages: Set,
    pub rcpts: Set,
    pub distinct: Set,
    pub sent: u64,
    pub deferred: u64,
    pub failed: u64,
    pub rate_limited: u64,
}

/// The fields `--stats` needs, borrowed from the line.
struct Fields<'a> {
    time: &'a [u8],
    queue_id: &'a [u8],
    uid: u32,
    user: &'a [u8],
    identity: &'a [u8],
    to: &'a [u8],
    status: &'a [u8],
}

/// The keys' searchers, built once per run.
struct Keys {
    queue_id: memchr::memmem::Finder<'static>,
    uid: memchr::memmem::Finder<'static>,
    user: memchr::memmem::Finder<'static>,
    identity: memchr::memmem::Finder<'static>,
    to: memchr::memmem::Finder<'static>,
    status: memchr::memmem::Finder<'static>,
}

impl Keys {
    fn new() -> Keys {
        let f = |k: &'static [u8]| memchr::memmem::Finder::new(k);
        Keys {
            queue_id: f(b"\"queue_id\":\""),
            uid: f(b"\"uid\":"),
            user: f(b"\"user\":\""),
            identity: f(b"\"identity\":\""),
            to: f(b"\"to\":\""),
            status: f(b"\"status\":\""),
        }
    }
}

/// The string value of `key` (`"name":"`) at or after `*at`; `None` when
/// missing or escaped (the caller parses that line as JSON instead).
fn string<'a>(line: &'a [u8], at: &mut usize, key: &memchr::memmem::Finder) -> Option<&'a [u8]> {
    let k = *at + key.find(&line[*at..])? + key.needle().len();
    let end = k + memchr::memchr(b'"', &line[k..])?;
    let v = &line[k..end];
    if memchr::memchr(b'\\', v).is_some() {
        return None;
    }
    *at = end + 1;
    Some(v)
}

fn fields<'a>(line: &'a [u8], keys: &Keys) -> Option<Fields<'a>> {
    // `{"time":"` opens every record: the value starts at byte 9.
    let rest = line.strip_prefix(b"{\"time\":\"")?;
    let tend = memchr::memchr(b'"', rest)?;
    let time = &rest[..tend];
    let mut at = 9 + tend + 1;
    let queue_id = string(line, &mut at, &keys.queue_id)?;
    let k = at + keys.uid.find(&line[at..])? + 6;
    let e = k + memchr::memchr(b',', &line[k..])?;
    let uid = std::str::from_utf8(&line[k..e]).ok()?.parse().ok()?;
    at = e;
    let user = string(line, &mut at, &keys.user)?;
    let identity = string(line, &mut at, &keys.identity)?;
    let to = string(line, &mut at, &keys.to)?;
    let status = string(line, &mut at, &keys.status)?;
    Some(Fields {
        time,
        queue_id,
        uid,
        user,
        identity,
        to,
        status,
    })
}

/// `breaker::fnv` over bytes (addresses compare without case).
fn fnv_bytes(b: &[u8]) -> u64 {
    fnv(std::str::from_utf8(b).unwrap_or(""))
}

/// Add `b` into `a`.
pub fn merge(a: &mut Tally, b: Tally) {
    for (id, x) in b {
        match a.get_mut(&id) {
            None => {
                a.insert(id, x);
            }
            Some(t) => {
                t.messages.extend(x.messages);
                t.rcpts.extend(x.rcpts);
                t.distinct.extend(x.distinct);
                t.sent += x.sent;
                t.deferred += x.deferred;
                t.failed += x.failed;
                t.rate_limited += x.rate_limited;
            }
        }
    }
}

/// Count the records of one file from `from_stamp` on (RFC 3339 UTC; `""`
/// for all), of `uid_only` when set.
pub fn file(path: &Path, from_stamp: &str, uid_only: Option<u32>) -> std::io::Result<Tally> {
    let keys = Keys::new();
    let needle = match uid_only {
        Some(u) => format!(",\"uid\":{u},"),
        None => "{\"time\":\"".into(),
    };
    let finder = memchr::memmem::Finder::new(needle.as_bytes());
    let mut aggs: Tally = HashMap::new();
    crate::account::scan::scan_file(path, &finder, |line| {
        let owned;
        let fl = match fields(line, &keys) {
            Some(x) => x,
            None => {
                let Ok(r) = serde_json::from_slice::<Rec>(line) else {
                    return;
                };
                owned = r;
                Fields {
                    time: owned.time.as_bytes(),
                    queue_id: owned.queue_id.as_bytes(),
                    uid: owned.uid,
                    user: owned.user.as_bytes(),
                    identity: owned.identity.as_bytes(),
                    to: owned.to.as_bytes(),
                    status: owned.status.as_bytes(),
                }
            }
        };
        if fl.time < from_stamp.as_bytes() || uid_only.is_some_and(|u| u != fl.uid) {
            return;
        }
        if !aggs.contains_key(fl.identity) {
            aggs.insert(
                fl.identity.to_vec(),
                Agg {
                    user: String::from_utf8_lossy(fl.user).into_owned(),
                    uid: fl.uid,
                    ..Default::default()
                },
            );
        }
        let a = aggs.get_mut(fl.identity).expect("inserted above");
        let (q, t) = (fnv_bytes(fl.queue_id), fnv_bytes(fl.to));
        a.messages.insert(q);
        a.rcpts.insert(q ^ t.rotate_left(17));
        a.distinct.insert(t);
        match fl.status {
            b"sent" => a.sent += 1,
            b"deferred" => a.deferred += 1,
            b"failed" | b"bounced" => a.failed += 1,
            b"held" => a.rate_limited += 1,
            _ => {}
        }
    })?;
    Ok(aggs)
}

/// The summary file of a day's log file.
pub fn summary_path(log: &Path) -> PathBuf {
    let name = log.file_name().and_then(|n| n.to_str()).unwrap_or("");
    log.with_file_name(name.replacen("log-", "stats-", 1).replace(".jsonl", ".bin"))
}

/// The whole tally of a finished day: from its summary when that is
/// current, else counted now and the summary written (best effort).
pub fn day(cfg: &Loaded, log: &Path, day: i64) -> std::io::Result<Tally> {
    let meta = std::fs::metadata(log)?;
    let stamp = (
        meta.len(),
        meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
    );
    let finished = crate::base::clock::unix_now() as i64 >= (day + 1) * 86400 + 300;
    let sp = summary_path(log);
    if finished && let Some(t) = read_summary(&sp, stamp) {
        return Ok(t);
    }
    let t = file(log, "", None)?;
    if finished {
        let _ = write_summary(cfg, &sp, stamp, &t);
    }
    Ok(t)
}

/// Queue runs (as root) summarise yesterday's log once it is finished, so
/// that `--stats` never has to count a whole past day itself.
pub fn prepare(cfg: &Loaded) {
    let today = crate::base::clock::unix_now() as i64 / 86400;
    for d in [today - 2, today - 1] {
        let log = cfg
            .audit_dir()
            .join(crate::account::rcpt_log::file_name(d * 86400));
        if log.is_file() {
            let _ = day(cfg, &log, d);
        }
    }
}

fn write_summary(cfg: &Loaded, path: &Path, stamp: (u64, i128), t: &Tally) -> std::io::Result<()> {
    let mut b: Vec<u8> = format!("vsendmail-stats 1 {} {}\n", stamp.0, stamp.1).into_bytes();
    let s = |b: &mut Vec<u8>, x: &[u8]| {
        b.extend_from_slice(&(x.len() as u32).to_le_bytes());
        b.extend_from_slice(x);
    };
    for (id, a) in t {
        s(&mut b, id);
        s(&mut b, a.user.as_bytes());
        b.extend_from_slice(&a.uid.to_le_bytes());
        for n in [a.sent, a.deferred, a.failed, a.rate_limited] {
            b.extend_from_slice(&n.to_le_bytes());
        }
        for set in [&a.messages, &a.rcpts, &a.distinct] {
            b.extend_from_slice(&(set.len() as u32).to_le_bytes());
            for h in set {
                b.extend_from_slice(&h.to_le_bytes());
            }
        }
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".stats.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let f = crate::spool::shared::open(
        dir,
        &tmp,
        crate::spool::shared::spool_gid(cfg),
        crate::spool::shared::Access::ReadWrite,
    )?;
    (&f).write_all(&b)?;
    drop(f);
    std::fs::rename(&tmp, path)
}

fn read_summary(path: &Path, stamp: (u64, i128)) -> Option<Tally> {
    let data = std::fs::read(path).ok()?;
    let nl = memchr::memchr(b'\n', &data)?;
    let head = std::str::from_utf8(&data[..nl]).ok()?;
    if head != format!("vsendmail-stats 1 {} {}", stamp.0, stamp.1) {
        return None;
    }
    let mut at = nl + 1;
    let mut take = |n: usize| -> Option<&[u8]> {
        let x = data.get(at..at + n)?;
        at += n;
        Some(x)
    };
    let mut t: Tally = HashMap::new();
    while let Some(l) = take(4) {
        let l = u32::from_le_bytes(l.try_into().ok()?) as usize;
        let id = take(l)?.to_vec();
        let l = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        let user = String::from_utf8_lossy(take(l)?).into_owned();
        let uid = u32::from_le_bytes(take(4)?.try_into().ok()?);
        let mut n = [0u64; 4];
        for x in &mut n {
            *x = u64::from_le_bytes(take(8)?.try_into().ok()?);
        }
        let mut sets: [Set; 3] = Default::default();
        for set in &mut sets {
            let k = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
            let raw = take(k.checked_mul(8)?)?;
            set.reserve(k);
            set.extend(
                raw.chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))),
            );
        }
        let [messages, rcpts, distinct] = sets;
        t.insert(
            id,
            Agg {
                user,
                uid,
                messages,
                rcpts,
                distinct,
                sent: n[0],
                deferred: n[1],
                failed: n[2],
                rate_limited: n[3],
            },
        );
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_by_position() {
        let line = br#"{"time":"2026-11-23T12:03:04Z","queue_id":"ABC","uid":1001,"user":"alice","identity":"a@x.test","to":"b@y.test","status":"sent","message_id":"<m>"}"#;
        let keys = Keys::new();
        let f = fields(line, &keys).unwrap();
        assert_eq!(
            (f.uid, f.user, f.identity, f.to, f.status),
            (
                1001,
                &b"alice"[..],
                &b"a@x.test"[..],
                &b"b@y.test"[..],
                &b"sent"[..]
            )
        );
        let esc = br#"{"time":"2026-11-23T12:03:04Z","queue_id":"ABC","uid":1,"user":"a","identity":"a@x","to":"\"q\"@y","status":"sent"}"#;
        assert!(fields(esc, &keys).is_none());
    }

    #[test]
    fn a_summary_round_trips_and_goes_stale() {
        let dir = std::env::temp_dir().join(format!(
            "vs-tally-{}-{}",
            std::process::id(),
            crate::base::clock::unix_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = crate::config::conf::parse(
            &format!("spool = \"{}\"\n", dir.display()),
            Path::new("t.conf"),
        )
        .unwrap();
        let log = dir.join("log-2001-01-01.jsonl");
        std::fs::write(
            &log,
            concat!(
                r#"{"time":"2001-01-01T00:00:01Z","queue_id":"A","uid":5,"user":"u","identity":"u@x","to":"a@y","status":"sent"}"#,
                "\n",
                r#"{"time":"2001-01-01T00:00:02Z","queue_id":"B","uid":5,"user":"u","identity":"u@x","to":"a@y","status":"failed"}"#,
                "\n"
            ),
        )
        .unwrap();
        let t = day(&cfg, &log, 11323).unwrap();
        assert!(summary_path(&log).exists());
        let back = day(&cfg, &log, 11323).unwrap();
        for x in [&t, &back] {
            let a = &x[&b"u@x"[..]];
            assert_eq!(
                (a.messages.len(), a.distinct.len(), a.sent, a.failed),
                (2, 1, 1, 1)
            );
        }
        // The log changed: the summary is not used.
        std::fs::write(&log, "").unwrap();
        assert!(day(&cfg, &log, 11323).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
