//! `--who QUERY [TIME] [--window D]`: who opened which outgoing connection,
//! read from the audit trail (`account::audit`).
//!
//! The query turns into a byte string that every
//! matching line must contain (`"src":"192.0.2.10:40312"`,
//! `"message_id":"<…>"`): files are read in large blocks and searched for it
//! with `memchr::memmem` (SIMD), and only the few lines that contain it are
//! parsed as JSON and checked exactly (address, port, time, uid). With a
//! TIME only the daily files that can hold a matching connect date are opened
//! (one, or two near midnight); without one every file is scanned in date
//! order, which is a sequential read of the trail at memory speed (about
//! 1,000,000 records, 90 days of a busy host, in well under a second).
//! To try it at scale, copy one real record with new times, ports, queue ids
//! and Message-IDs into daily files (`bench/driver.rs gen-audit` does this)
//! and point `audit_dir` at them.
//!
//! A transaction has two records (`account::audit`: one written before
//! `MAIL FROM`, one with the outcome); `--who` shows it once, by its outcome,
//! or, when none was recorded (the sending process was killed), by the
//! first record with `result=unknown (…)`. Values are bounded and quoted
//! when they could pass for more than one field (`syslog::value`).

use crate::account::audit::{Phase, Stored, file_day, file_name};
use crate::account::scan::scan_file;
use crate::base::clock::utc_midnight;
use crate::base::syslog::{MAX_REPLY, text, value};
use crate::exit::{Error, Result};
use crate::identity::job::Job;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// What `--who` looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Query {
    Addr(IpAddr),
    AddrPort(SocketAddr),
    MessageId(String),
}

impl Query {
    fn parse(q: &str) -> Option<Query> {
        let q = q.trim();
        if q.is_empty() || q.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return None;
        }
        if q.starts_with('<') {
            let inner = q.strip_prefix('<')?.strip_suffix('>')?;
            if inner.is_empty() || inner.contains(['<', '>']) {
                return None;
            }
            return Some(Query::MessageId(q.to_string()));
        }
        if let Ok(sa) = q.parse::<SocketAddr>() {
            return Some(Query::AddrPort(sa));
        }
        if let Ok(ip) = q.parse::<IpAddr>() {
            return Some(Query::Addr(ip));
        }
        if let Some(inner) = q.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            return inner
                .parse::<std::net::Ipv6Addr>()
                .ok()
                .map(|ip| Query::Addr(IpAddr::V6(ip)));
        }
        // A Message-ID typed without its brackets (the shell eats bare `<`).
        match q.split_once('@') {
            Some((l, r))
                if !l.is_empty() && !r.is_empty() && !q.contains(['<', '>', '"', '\\']) =>
            {
                Some(Query::MessageId(format!("<{q}>")))
            }
            _ => None,
        }
    }

    /// Bytes that every matching line contains, as `Record::to_line` writes it.
    fn needle(&self) -> Vec<u8> {
        match self {
            // In `src` or, behind NAT, in `public`: `"IP` (v4) or `IP` (v6,
            // bracketed in `src` only).
            Query::Addr(IpAddr::V4(ip)) => format!("\"{ip}"),
            Query::Addr(IpAddr::V6(ip)) => ip.to_string(),
            Query::AddrPort(sa) => match sa.ip() {
                IpAddr::V4(ip) => format!("\"{ip}"),
                IpAddr::V6(ip) => ip.to_string(),
            },
            Query::MessageId(m) => format!(
                "\"message_id\":{}",
                serde_json::to_string(m).expect("a string serialises")
            ),
        }
        .into_bytes()
    }

    /// The exact test, on a parsed record.
    fn matches(&self, r: &Stored) -> bool {
        match self {
            // Behind NAT the complaint names the public address (and, with
            // 1:1 NAT, the same port).
            Query::Addr(ip) => {
                parse_addr_port(&r.src).is_some_and(|sa| sa.ip() == *ip)
                    || public_ip(r) == Some(*ip)
            }
            Query::AddrPort(sa) => parse_addr_port(&r.src).is_some_and(|s| {
                s == *sa || (public_ip(r) == Some(sa.ip()) && s.port() == sa.port())
            }),
            Query::MessageId(m) => r.message_id == *m,
        }
    }
}

fn parse_addr_port(s: &str) -> Option<SocketAddr> {
    s.parse().ok()
}

/// The longest a connection is assumed to stay open: records are filed by
/// the date of connect, so a TIME query also opens the previous day's file
/// when the window starts less than this after midnight.
const MAX_CONNECTION: i64 = 6 * 3600;

/// `--who QUERY [TIME] [--window D]`.
pub fn who(job: &Job, query: &str, time: Option<&str>, window: Option<&str>) -> Result<i32> {
    let q = Query::parse(query).ok_or_else(|| Error::WhoQuery {
        shown: crate::base::address::printable(query),
    })?;
    let window = match window {
        None => 600,
        Some(w) => crate::base::duration::parse_duration(w)
            .ok_or_else(|| Error::WhoWindow {
                shown: crate::base::address::printable(w),
            })?
            .as_secs() as i64,
    };
    let span = match time {
        None => None,
        Some(t) => {
            let (a, b) = parse_time(t).ok_or_else(|| Error::WhoTime {
                shown: crate::base::address::printable(t),
            })?;
            Some((a - window, b + window))
        }
    };
    let uid_filter = (!job.trusted()).then_some(job.invoker.uid);
    let dir = job.cfg.audit_dir();
    let files = match span {
        Some((from, to)) => {
            let first = (from - MAX_CONNECTION).div_euclid(86400);
            let last = to.div_euclid(86400);
            (first..=last)
                .map(|d| dir.join(file_name(d * 86400)))
                .filter(|p| p.is_file())
                .collect()
        }
        None => all_files(&dir)?,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut found = 0usize;
    let needle = q.needle();
    let finder = memchr::memmem::Finder::new(&needle);
    for f in &files {
        // (connect, the transaction's key, phase, the line)
        let mut hits: Vec<(i64, String, Phase, String)> = Vec::new();
        let res = scan_file(f, &finder, |line| {
            let Ok(r) = serde_json::from_slice::<Stored>(line) else {
                return;
            };
            if !q.matches(&r) || uid_filter.is_some_and(|u| u != r.uid) {
                return;
            }
            let connect = parse_time(&r.connect).map(|t| t.0);
            if let Some((from, to)) = span {
                let Some(c) = connect else { return };
                let close = parse_time(&r.close).map(|t| t.0).unwrap_or(c).max(c);
                if c > to || close < from {
                    return;
                }
            }
            let key = format!("{} {} {}", r.connect, r.src, r.queue_id);
            hits.push((connect.unwrap_or(0), key, r.phase, render(&r)));
        });
        if let Err(e) = res {
            return Err(Error::AuditRead {
                path: f.display().to_string(),
                err: e,
            });
        }
        // A transaction is shown once: by its outcome, or, when none was
        // recorded, by the record written before it.
        let closed: std::collections::HashSet<String> = hits
            .iter()
            .filter(|h| h.2 == Phase::Close)
            .map(|h| h.1.clone())
            .collect();
        hits.retain(|h| h.2 == Phase::Close || !closed.contains(&h.1));
        hits.sort_by_key(|h| h.0);
        found += hits.len();
        for (_, _, _, l) in hits {
            if writeln!(out, "{l}").is_err() {
                // The reader went away (`| head`): what matched was shown.
                return Ok(0);
            }
        }
    }
    let _ = out.flush();
    if found == 0 {
        return Err(Error::NoMatch);
    }
    Ok(0)
}

/// Every daily file in `dir`, oldest first. A missing directory is an empty trail.
pub(crate) fn all_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::AuditRead {
                path: dir.display().to_string(),
                err: e,
            });
        }
    };
    let mut v: Vec<(i64, PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            let day = file_day(e.file_name().to_str()?)?;
            Some((day, e.path()))
        })
        .collect();
    v.sort();
    Ok(v.into_iter().map(|(_, p)| p).collect())
}

/// The public address of a record's source behind NAT.
fn public_ip(r: &Stored) -> Option<std::net::IpAddr> {
    r.public.as_deref().and_then(|p| p.parse().ok())
}

/// One output line, in the syslog line's key=value form: each value bounded
/// and quoted when it could pass for more than one field (a hostile
/// Message-ID); `result`, the last, is free text as the syslog's `status=`.
fn render(r: &Stored) -> String {
    let result = match r.phase {
        Phase::Close => text(&r.result, MAX_REPLY + 16),
        Phase::Open => {
            "unknown (no outcome recorded: in progress, or the sending process ended before it)"
                .to_string()
        }
    };
    format!(
        "time={} uid={} user={} identity={} src={} dst={} queue_id={} message_id={} rcpts={} result={}",
        value(&r.connect),
        r.uid,
        value(&r.user),
        value(&r.identity),
        value(&r.src),
        value(&r.dst),
        value(&r.queue_id),
        value(&r.message_id),
        r.rcpts,
        result
    )
}

// The grammar of --who's TIME is ours (the forms the man page lists, and a
// precision: a date names its day, a minute its 60 seconds); the calendar
// under it is jiff's (base::clock::utc_midnight).
/// A time as `--who` takes it, and as the trail stores it: `YYYY-MM-DD`,
/// then optionally `T` or a space and `HH:MM[:SS[.frac]]`, then optionally
/// `Z`, `UTC` or an offset (`+01:00`, `-0500`, `+01`); UTC when none.
/// Returns the first and last second the text names: a date names its whole
/// day, a minute its 60 seconds, a second itself.
pub(crate) fn parse_time(s: &str) -> Option<(i64, i64)> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let day = utc_midnight(s.get(..10)?)?;
    let mut rest = &s[10..];
    if rest.is_empty() {
        return Some((day, day + 86399));
    }
    rest = rest
        .strip_prefix('T')
        .or_else(|| rest.strip_prefix('t'))
        .or_else(|| rest.strip_prefix(' '))?;
    let rb = rest.as_bytes();
    if rb.len() < 5 || rb[2] != b':' {
        return None;
    }
    let h = digits(&rest[0..2])?;
    let mi = digits(&rest[3..5])?;
    if h > 23 || mi > 59 {
        return None;
    }
    rest = &rest[5..];
    let mut sec = None;
    if let Some(r) = rest.strip_prefix(':') {
        if r.len() < 2 {
            return None;
        }
        let ss = digits(&r[0..2])?;
        if ss > 60 {
            return None;
        }
        sec = Some(ss.min(59));
        rest = &r[2..];
        if let Some(f) = rest.strip_prefix('.').or_else(|| rest.strip_prefix(',')) {
            let n = f.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return None;
            }
            rest = &f[n..];
        }
    }
    let offset = parse_offset(rest.trim_start())?;
    let start = day + h * 3600 + mi * 60 + sec.unwrap_or(0) - offset;
    let end = if sec.is_some() { start } else { start + 59 };
    Some((start, end))
}

/// `""`, `Z`, `UTC` -> 0; `+01:00`, `-0500`, `+01` -> seconds east of UTC.
fn parse_offset(s: &str) -> Option<i64> {
    if s.is_empty() || s.eq_ignore_ascii_case("z") || s.eq_ignore_ascii_case("utc") {
        return Some(0);
    }
    let (sign, r) = match s.as_bytes()[0] {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = match r.len() {
        2 => (digits(r)?, 0),
        4 => (digits(&r[0..2])?, digits(&r[2..4])?),
        5 if r.as_bytes()[2] == b':' => (digits(&r[0..2])?, digits(&r[3..5])?),
        _ => return None,
    };
    if h > 23 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::audit::tests::rec;

    #[test]
    fn times() {
        let t = 1_795_435_384; // 2026-11-23T12:03:04Z
        assert_eq!(parse_time("2026-11-23T12:03:04Z"), Some((t, t)));
        assert_eq!(parse_time("2026-11-23 12:03:04"), Some((t, t)));
        assert_eq!(parse_time("2026-11-23T12:03"), Some((t - 4, t + 55)));
        assert_eq!(parse_time("2026-11-23T13:03:04+01:00"), Some((t, t)));
        assert_eq!(parse_time("2026-11-23T07:03:04-0500"), Some((t, t)));
        assert_eq!(parse_time("2026-11-23T12:03:04.250Z"), Some((t, t)));
        let day = t - (12 * 3600 + 3 * 60 + 4);
        assert_eq!(parse_time("2026-11-23"), Some((day, day + 86399)));
        for bad in [
            "",
            "2026-11-31",
            "2026-13-01",
            "2026-11-23T25:00",
            "2026-11-23T12",
            "12:03",
            "2026-11-23T12:03+1",
            "yesterday",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn queries() {
        assert_eq!(
            Query::parse("192.0.2.10"),
            Some(Query::Addr("192.0.2.10".parse().unwrap()))
        );
        assert_eq!(
            Query::parse("192.0.2.10:40312"),
            Some(Query::AddrPort("192.0.2.10:40312".parse().unwrap()))
        );
        assert_eq!(
            Query::parse("[2001:db8::11]:40312"),
            Some(Query::AddrPort("[2001:db8::11]:40312".parse().unwrap()))
        );
        assert_eq!(
            Query::parse("2001:db8::11"),
            Some(Query::Addr("2001:db8::11".parse().unwrap()))
        );
        assert_eq!(
            Query::parse("[::1]"),
            Some(Query::Addr("::1".parse().unwrap()))
        );
        assert_eq!(
            Query::parse("<a.b@x.example>"),
            Some(Query::MessageId("<a.b@x.example>".into()))
        );
        assert_eq!(
            Query::parse("a.b@x.example"),
            Some(Query::MessageId("<a.b@x.example>".into()))
        );
        for bad in [
            "",
            "foo",
            "192.0.2.300",
            "192.0.2.1:99999",
            "<>",
            "<a b@x>",
            "[::1]:x",
            "1.2.3.4:",
            "<a@b",
        ] {
            assert_eq!(Query::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn needles_find_what_the_writer_wrote() {
        let r = rec("192.0.2.10:40312", "<m\"1@shop.example>");
        let line = String::from_utf8(r.to_line()).unwrap();
        for q in ["192.0.2.10", "192.0.2.10:40312", "<m\"1@shop.example>"] {
            let q = Query::parse(q).unwrap();
            assert!(
                memchr::memmem::find(line.as_bytes(), &q.needle()).is_some(),
                "{q:?}"
            );
            let s: Stored = serde_json::from_str(line.trim_end()).unwrap();
            assert!(q.matches(&s));
        }
        let q = Query::parse("192.0.2.10:4031").unwrap();
        let s: Stored = serde_json::from_str(line.trim_end()).unwrap();
        assert!(!q.matches(&s));
        let q = Query::parse("192.0.2.11").unwrap();
        assert!(memchr::memmem::find(line.as_bytes(), &q.needle()).is_none());
        let r6 = rec("[2001:db8::11]:40312", "<x@y>");
        let l6 = r6.to_line();
        let q = Query::parse("2001:db8::11").unwrap();
        assert!(memchr::memmem::find(&l6, &q.needle()).is_some());
    }

    #[test]
    fn scan_finds_lines_across_blocks() {
        let dir = std::env::temp_dir().join(format!(
            "vs-audit-{}-{}",
            std::process::id(),
            crate::base::clock::unix_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("2026-11-23.jsonl");
        let mut data = Vec::new();
        let mut want = 0;
        for i in 0..40_000 {
            let src = format!("192.0.2.{}:{}", i % 7 + 1, 20000 + i);
            if i % 7 == 2 {
                want += 1;
            }
            data.extend(rec(&src, &format!("<{i}@x>")).to_line());
        }
        std::fs::write(&p, &data).unwrap();
        let q = Query::parse("192.0.2.3").unwrap();
        let needle = q.needle();
        let finder = memchr::memmem::Finder::new(&needle);
        let mut n = 0;
        scan_file(&p, &finder, |l| {
            let s: Stored = serde_json::from_slice(l).unwrap();
            assert!(q.matches(&s));
            n += 1;
        })
        .unwrap();
        assert_eq!(n, want);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
