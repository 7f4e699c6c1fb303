//! `--log [--user LOGIN] [--since TIME|DURATION] [--status S] [--rcpt ADDR]
//! [--json]`: the per-recipient log (`account::rcpt_log`), one line per
//! recipient and event, oldest first, in `key=value` form (values bounded
//! and quoted as `syslog::value` does) or, with `--json`, one object a line
//! with the same keys. Root and `trusted_users` see every record; any other
//! user only their own (`--user` naming another user: 77). Exit 0 when
//! something matched, 1 when nothing did, 64 for a malformed option.
//!
//! Fast as `--who` is: only the daily files from `--since` on are opened,
//! read in large blocks, and only lines that contain the user's `"uid":N`
//! (or `"user":"LOGIN"`) are parsed.

use crate::account::rcpt_log::{Rec, STATUSES, file_day};
use crate::base::clock::unix_now;
use crate::base::syslog::value;
use crate::cli::invocation::LogQuery;
use crate::exit::{Error, Result};
use crate::identity::job::Job;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `--since`: a duration back from now, or a time; the Unix second it names.
pub fn since(s: &str) -> Result<i64> {
    if let Some(d) = crate::base::duration::parse_duration(s) {
        return Ok(unix_now() as i64 - d.as_secs() as i64);
    }
    crate::commands::who::parse_time(s)
        .map(|t| t.0)
        .ok_or_else(|| Error::BadSince {
            shown: crate::base::address::printable(s),
        })
}

/// The daily log files from day `from_day` on, oldest first.
pub fn files(dir: &Path, from_day: i64) -> Result<Vec<PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(Error::AuditRead {
                path: dir.display().to_string(),
                err,
            });
        }
    };
    let mut v: Vec<(i64, PathBuf)> = rd
        .flatten()
        .filter_map(|e| Some((file_day(e.file_name().to_str()?)?, e.path())))
        .filter(|(d, _)| *d >= from_day)
        .collect();
    v.sort();
    Ok(v.into_iter().map(|(_, p)| p).collect())
}

/// `time` of a record, as `YYYY-MM-DDTHH:MM:SSZ` compares: as text.
pub fn stamp(t: i64) -> String {
    crate::base::clock::rfc3339_utc(t)
}

pub fn run(job: &Job, q: &LogQuery) -> Result<i32> {
    if let Some(s) = &q.status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(Error::BadStatus {
            shown: crate::base::address::printable(s),
        });
    }
    let from = q.since.as_deref().map(since).transpose()?;
    let trusted = job.trusted();
    if let Some(u) = &q.user
        && !trusted
        && *u != job.invoker.login
    {
        return Err(Error::NotYours {
            what: format!("--user {} names another user's records", value(u)),
            login: job.invoker.login.clone(),
        });
    }
    let uid = (!trusted).then_some(job.invoker.uid);
    let needle = match (uid, &q.user) {
        (Some(u), _) => format!(",\"uid\":{u},"),
        (None, Some(user)) => format!(
            "\"user\":{},",
            serde_json::to_string(user).expect("a string serialises")
        ),
        (None, None) => "\"time\":\"".into(),
    };
    let finder = memchr::memmem::Finder::new(needle.as_bytes());
    let from_stamp = from.map(stamp);
    let rcpt = q.rcpt.as_deref().map(str::to_ascii_lowercase);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut found = 0usize;
    let mut gone = false;
    for f in files(
        &job.cfg.audit_dir(),
        from.map_or(i64::MIN, |t| t.div_euclid(86400)),
    )? {
        let res = crate::account::scan::scan_file(&f, &finder, |line| {
            if gone {
                return;
            }
            let Ok(r) = serde_json::from_slice::<Rec>(line) else {
                return;
            };
            if uid.is_some_and(|u| u != r.uid)
                || q.user.as_deref().is_some_and(|u| u != r.user)
                || q.status.as_deref().is_some_and(|s| s != r.status)
                || rcpt
                    .as_deref()
                    .is_some_and(|a| !r.to.eq_ignore_ascii_case(a))
                || from_stamp.as_deref().is_some_and(|s| *r.time < *s)
            {
                return;
            }
            found += 1;
            let text = if q.json {
                serde_json::to_string(&Shown::of(&r)).expect("a record serialises")
            } else {
                render(&r)
            };
            if writeln!(out, "{text}").is_err() {
                gone = true; // the reader went away (`| head`)
            }
        });
        if let Err(err) = res {
            return Err(Error::AuditRead {
                path: f.display().to_string(),
                err,
            });
        }
        if gone {
            return Ok(0);
        }
    }
    let _ = out.flush();
    if found == 0 {
        return Err(Error::NoMatch);
    }
    Ok(0)
}

/// The keys `--log` shows, in order (`--json` too).
#[derive(serde::Serialize)]
struct Shown<'a> {
    time: &'a str,
    queue_id: &'a str,
    message_id: &'a str,
    user: &'a str,
    identity: &'a str,
    from: &'a str,
    to: &'a str,
    status: &'a str,
    reply: &'a str,
    src: &'a str,
    dst: &'a str,
    cwd: &'a str,
    script: &'a str,
}

impl<'a> Shown<'a> {
    fn of(r: &'a Rec) -> Shown<'a> {
        Shown {
            time: &r.time,
            queue_id: &r.queue_id,
            message_id: &r.message_id,
            user: &r.user,
            identity: &r.identity,
            from: &r.from,
            to: &r.to,
            status: &r.status,
            reply: &r.reply,
            src: &r.src,
            dst: &r.dst,
            cwd: &r.cwd,
            script: &r.script,
        }
    }
}

fn render(r: &Rec) -> String {
    let v = |s: &str| -> String {
        if s.is_empty() {
            "-".into()
        } else {
            value(s).into_owned()
        }
    };
    format!(
        "time={} queue_id={} message_id={} user={} identity={} from={} to={} status={} reply={} src={} dst={} cwd={} script={}",
        v(&r.time),
        v(&r.queue_id),
        v(&r.message_id),
        v(&r.user),
        v(&r.identity),
        if r.from.is_empty() {
            "<>".into()
        } else {
            v(&r.from)
        },
        v(&r.to),
        v(&r.status),
        v(&r.reply),
        v(&r.src),
        v(&r.dst),
        v(&r.cwd),
        v(&r.script),
    )
}
