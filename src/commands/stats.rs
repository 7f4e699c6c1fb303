//! `--stats [--since DURATION|TIME] [--json]` (default 24h): who is sending
//! right now. One line per identity: messages, recipients, distinct
//! recipients, sent, deferred, failed, rate-limited (records `held`) and
//! whether the user is suspended; busiest (most recipients) first. Root and
//! `trusted_users` see every identity, others their own. Exit 0/1 as `--log`.
//!
//! Fast over 1,000,000 records: only the daily files the window reaches are
//! read; a finished day that lies wholly in the window is read from its
//! summary (`account::tally`), the others are counted by position without
//! a JSON parse, over two worker threads, each taking every other file.

use crate::account::tally::{self, Tally};
use crate::base::syslog::value;
use crate::exit::{Error, Result};
use crate::identity::job::Job;
use std::io::Write;
use std::path::PathBuf;

#[derive(Default, serde::Serialize)]
struct Row {
    identity: String,
    user: String,
    uid: u32,
    messages: u64,
    recipients: u64,
    distinct_recipients: u64,
    sent: u64,
    deferred: u64,
    failed: u64,
    rate_limited: u64,
    suspended: bool,
}

pub fn run(job: &Job, since: Option<&str>, json: bool) -> Result<i32> {
    let from = crate::commands::log::since(since.unwrap_or("24h"))?;
    let from_stamp = crate::commands::log::stamp(from);
    let uid_only = (!job.trusted()).then_some(job.invoker.uid);
    let files: Vec<PathBuf> =
        crate::commands::log::files(&job.cfg.audit_dir(), from.div_euclid(86400))?;
    let cfg = &job.cfg;
    let count = |p: &PathBuf| -> std::io::Result<Tally> {
        let day = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(crate::account::rcpt_log::file_day)
            .unwrap_or(i64::MAX);
        if day * 86400 >= from {
            let mut t = tally::day(cfg, p, day)?;
            if let Some(u) = uid_only {
                t.retain(|_, a| a.uid == u);
            }
            Ok(t)
        } else {
            tally::file(p, &from_stamp, uid_only)
        }
    };
    let workers = 2.min(files.len()).max(1);
    let parts: Vec<(PathBuf, std::io::Result<Tally>)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..workers)
            .map(|w| {
                let (files, count) = (&files, &count);
                sc.spawn(move || {
                    files
                        .iter()
                        .skip(w)
                        .step_by(workers)
                        .map(|p| (p.clone(), count(p)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("a --stats worker panicked"))
            .collect()
    });
    let mut aggs = Tally::new();
    for (p, part) in parts {
        match part {
            Ok(t) => tally::merge(&mut aggs, t),
            Err(err) => {
                return Err(Error::AuditRead {
                    path: p.display().to_string(),
                    err,
                });
            }
        }
    }
    let mut rows: Vec<Row> = aggs
        .into_iter()
        .map(|(id, a)| Row {
            identity: String::from_utf8_lossy(&id).into_owned(),
            suspended: crate::account::suspend::get(&job.cfg, &a.user).is_some(),
            user: a.user,
            uid: a.uid,
            messages: a.messages.len() as u64,
            recipients: a.rcpts.len() as u64,
            distinct_recipients: a.distinct.len() as u64,
            sent: a.sent,
            deferred: a.deferred,
            failed: a.failed,
            rate_limited: a.rate_limited,
        })
        .collect();
    rows.sort_by(|a, b| {
        (b.recipients, b.messages)
            .cmp(&(a.recipients, a.messages))
            .then_with(|| a.identity.cmp(&b.identity))
    });
    if rows.is_empty() {
        return Err(Error::NoMatch);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for r in &rows {
        let line = if json {
            serde_json::to_string(r).expect("a row serialises")
        } else {
            format!(
                "identity={} user={} uid={} messages={} recipients={} distinct_recipients={} sent={} deferred={} failed={} rate_limited={} suspended={}",
                value(&r.identity),
                value(&r.user),
                r.uid,
                r.messages,
                r.recipients,
                r.distinct_recipients,
                r.sent,
                r.deferred,
                r.failed,
                r.rate_limited,
                if r.suspended { "yes" } else { "no" }
            )
        };
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    Ok(0)
}
