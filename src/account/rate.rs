//! Per-identity rate limits: `COUNT/PERIOD` parsing, and the sliding-window
//! counters shared by every process through the spool.
//!
//! The limit of an identity is its virtusers `rate=` option, else the config's
//! `rate`; `rate=none` means none. Root and `trusted_users` are never limited.
//! A message counts once, when it is first handed to delivery: at submission
//! ([`admit`], before the spool commit) or when a queue run lets it out of the
//! rate hold ([`release`]). A refused message never counts.
//!
//! One counter file per identity, `<spool>/rate/<identity>` (the address
//! lower-cased, bytes outside `[a-z0-9@._+-]` as `%XX`), mode 0660 in a 2770
//! directory of the spool's group: users reach it only through the set-gid
//! binary, so they can neither reset nor raise it. Every read-modify-write
//! happens under `flock(LOCK_EX)` on that file, so concurrent processes of one
//! identity count exactly. No process writes to its caller's stderr or to the
//! log while holding that lock (a full pipe would block it there), and every
//! wait for it is bounded, retried without blocking: 10 s at submission (then
//! 75, try again later), 2 s in queue runs and `--delete` (then the message
//! stays held for this run, logged). Its text lines, oldest first:
//! `t MS` for each message counted within the window (Unix milliseconds;
//! older ones are dropped: the window slides), and `h QUEUEID` for each
//! message held for the rate (`over_rate = "defer"`). While an identity has
//! held messages, new ones queue behind them, so queue runs send in arrival
//! order; `max_queued` caps the `h` lines (ids whose message has left the
//! queue are dropped when seen).

use crate::base::limit::{Limit, Rate, period_text};
use crate::base::syslog::Syslog;
use crate::config::conf::{Loaded, OverRate};
use crate::identity::profile::Identity;
use crate::spool::envelope::Envelope;
use crate::spool::shared::{self, Access};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a submission was not accepted for its rate (all temporary: 75).
#[derive(Debug, thiserror::Error)]
pub enum RateError {
    #[error(
        "cannot use the rate counter of {identity} ({err}); the message was not accepted, try again later"
    )]
    Counter {
        identity: String,
        err: std::io::Error,
    },
    #[error(
        "cannot update the rate counter {path} ({err}); the message was not accepted, try again later"
    )]
    Store { path: String, err: std::io::Error },
    #[error(
        "{identity} sent {sent} messages in the last {period} (limit {limit}); try again later"
    )]
    Over {
        identity: String,
        sent: usize,
        period: String,
        limit: u32,
    },
    #[error(
        "{identity} sent {sent} messages in the last {period} (limit {limit}) and has {held} messages waiting in the queue (max_queued {max}); try again later"
    )]
    QueueFull {
        identity: String,
        sent: usize,
        period: String,
        limit: u32,
        held: usize,
        max: usize,
    },
    #[error(
        "user {login} made {made} BATV tag checks in the last {period} (policy_rate allows {limit}); try again later"
    )]
    Checks {
        login: String,
        made: usize,
        period: String,
        limit: u32,
    },
}

/// How long a submission waits for its identity's counter lock (then 75).
const SUBMIT_WAIT: Duration = Duration::from_secs(10);
/// How long a queue run or `--delete` waits for it (then the message is
/// skipped, and logged).
const RUN_WAIT: Duration = Duration::from_secs(2);

/// The limit that applies to `identity` (its `rate=`, else the config's).
pub fn limit_for(cfg: &Loaded, identity: &Identity) -> Option<Limit> {
    identity.rate.or(cfg.rate).and_then(Rate::limit)
}

/// Count one BATV tag check (`--policy`, `--batv-check`) by `uid` against
/// `policy_rate`, so that no caller can test tags by the thousand: a counter
/// `<spool>/rate/batv-checks.uid-UID` of the same form and locking as an
/// identity's (its name has no `@`, so it is no identity's). Root and
/// trusted users are never limited; a check over the limit is not counted.
pub fn count_tag_check(cfg: &Loaded, uid: u32, login: &str) -> Result<(), RateError> {
    let Some(limit) = cfg.policy_rate.filter(|_| !cfg.is_trusted(login)) else {
        return Ok(());
    };
    let name = format!("batv-checks.uid-{uid}");
    let mut c = Counter::open(cfg, &name, RUN_WAIT).map_err(|err| RateError::Counter {
        identity: name.clone(),
        err,
    })?;
    let now = crate::base::clock::unix_ms();
    c.slide(now, limit.period);
    if c.stamps.len() >= limit.count as usize {
        return Err(RateError::Checks {
            login: login.to_string(),
            made: c.stamps.len(),
            period: period_text(limit.period),
            limit: limit.count,
        });
    }
    c.stamps.push(now);
    c.store().map_err(|err| RateError::Store {
        path: c.path.display().to_string(),
        err,
    })
}

/// The counter file's name for an identity.
fn key(sender: &str) -> String {
    let mut k = String::new();
    for b in sender.to_ascii_lowercase().bytes() {
        if b.is_ascii_alphanumeric() || b"@._+-".contains(&b) {
            k.push(b as char);
        } else {
            k.push_str(&format!("%{b:02X}"));
        }
    }
    if k.is_empty() || k == "." || k == ".." {
        k = format!("%{}", k.len());
    }
    k
}

/// `<spool>/rate/<identity>`.
pub fn counter_path(spool: &Path, sender: &str) -> PathBuf {
    spool.join("rate").join(key(sender))
}

/// One identity's counter, locked while this value lives.
struct Counter {
    file: File,
    path: PathBuf,
    /// Unix ms of each counted message, oldest first.
    stamps: Vec<u64>,
    /// Queue ids held for the rate, oldest first.
    held: Vec<String>,
    spool: PathBuf,
}

impl Counter {
    /// Open (creating it and its directory when missing) and lock, waiting
    /// at most `wait` for another process's lock (retried without blocking,
    /// so a stopped process cannot hang this one).
    fn open(cfg: &Loaded, sender: &str, wait: Duration) -> std::io::Result<Counter> {
        let spool = cfg.cfg.spool.clone();
        let path = counter_path(&spool, sender);
        let mut file = shared::open(
            &spool.join("rate"),
            &path,
            shared::spool_gid(cfg),
            Access::ReadWrite,
        )?;
        let end = std::time::Instant::now() + wait;
        loop {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
            // SAFETY: flock on a valid descriptor we own.
            if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) if std::time::Instant::now() < end => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Some(libc::EWOULDBLOCK) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::WouldBlock,
                        format!(
                            "locked by another process for more than {}s",
                            wait.as_secs()
                        ),
                    ));
                }
                _ => return Err(e),
            }
        }
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        let mut stamps = Vec::new();
        let mut held = Vec::new();
        for l in text.lines() {
            if let Some(t) = l.strip_prefix("t ") {
                if let Ok(t) = t.trim().parse() {
                    stamps.push(t);
                }
            } else if let Some(id) = l.strip_prefix("h ") {
                let id = id.trim();
                if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    held.push(id.to_string());
                }
            }
        }
        Ok(Counter {
            file,
            path,
            stamps,
            held,
            spool,
        })
    }

    /// Drop the counts that have left the window.
    fn slide(&mut self, now: u64, period: Duration) {
        let from = now.saturating_sub(period.as_millis() as u64);
        self.stamps.retain(|t| *t > from);
    }

    /// The message is still in the spool. Its data file is in `tmp/` until the
    /// commit renames it to `queue/` (admit runs before the commit), and it is
    /// removed last: one of the two exists for the message's whole life.
    fn queued(&self, id: &str) -> bool {
        let name = format!("{id}.msg");
        self.spool.join("queue").join(&name).exists() || self.spool.join("tmp").join(&name).exists()
    }

    /// Drop held ids at the front whose message has left the queue; true
    /// when a held message remains.
    fn any_held(&mut self) -> bool {
        while let Some(id) = self.held.first() {
            if self.queued(id) {
                return true;
            }
            self.held.remove(0);
        }
        false
    }

    /// The number of held messages still queued (checks every id).
    fn held_exact(&mut self) -> usize {
        let held = std::mem::take(&mut self.held);
        self.held = held.into_iter().filter(|id| self.queued(id)).collect();
        self.held.len()
    }

    fn forget(&mut self, id: &str) {
        self.held.retain(|h| h != id);
    }

    fn store(&self) -> std::io::Result<()> {
        let mut s = String::with_capacity(16 * (self.stamps.len() + self.held.len()) + 64);
        for t in &self.stamps {
            s.push_str("t ");
            s.push_str(&t.to_string());
            s.push('\n');
        }
        for h in &self.held {
            s.push_str("h ");
            s.push_str(h);
            s.push('\n');
        }
        self.file.write_all_at(s.as_bytes(), 0)?;
        self.file.set_len(s.len() as u64)
    }
}

/// Count a message against its identity's limit at submission. Over the
/// limit: held (`env.rate_held`) or refused, as `over_rate` says.
/// `trusted`: the submitter is root or one of `trusted_users` (never limited).
pub fn admit(
    cfg: &Loaded,
    log: &Syslog,
    trusted: bool,
    env: &mut Envelope,
) -> Result<(), RateError> {
    if trusted {
        return Ok(());
    }
    let Some(limit) = limit_for(cfg, &env.identity) else {
        return Ok(());
    };
    let id = &env.identity;
    let mut c = Counter::open(cfg, &id.sender, SUBMIT_WAIT).map_err(|e| {
        log.err(&format!(
            "{}: uid={} user={} identity={}: cannot use the rate counter {}: {e}",
            env.id,
            id.uid,
            id.login,
            id.sender,
            counter_path(&cfg.cfg.spool, &id.sender).display()
        ));
        RateError::Counter {
            identity: id.sender.clone(),
            err: e,
        }
    })?;
    let now = crate::base::clock::unix_ms();
    c.slide(now, limit.period);
    let sent = c.stamps.len();
    let over = sent >= limit.count as usize;
    let period = period_text(limit.period);
    let cpath = c.path.clone();
    let store_err = |err: std::io::Error| RateError::Store {
        path: cpath.display().to_string(),
        err,
    };
    let counts = format!(
        "{}: uid={} user={} identity={} rate: sent {sent} messages in the last {period} (limit {})",
        env.id, id.uid, id.login, id.sender, limit.count
    );
    if cfg.cfg.over_rate == OverRate::Refuse {
        if over {
            drop(c);
            log.warning(&format!("{counts}: refused (over_rate=refuse)"));
            return Err(RateError::Over {
                identity: id.sender.clone(),
                sent,
                period,
                limit: limit.count,
            });
        }
        c.stamps.push(now);
        return c.store().map_err(store_err);
    }
    let behind = c.any_held();
    if !over && !behind {
        c.stamps.push(now);
        return c.store().map_err(store_err);
    }
    let max = cfg.cfg.max_queued as usize;
    if c.held.len() >= max && c.held_exact() >= max {
        let n = c.held.len();
        let _ = c.store();
        drop(c);
        log.warning(&format!("{counts}, {n} held (max_queued {max}): refused"));
        return Err(RateError::QueueFull {
            identity: id.sender.clone(),
            sent,
            period,
            limit: limit.count,
            held: n,
            max,
        });
    }
    c.held.push(env.id.clone());
    c.store().map_err(store_err)?;
    env.rate_held = true;
    let waiting = c.held.len() - 1;
    // Never write to the caller's descriptors (a full pipe blocks) or to the
    // log while holding a lock every process of the identity shares.
    drop(c);
    log.warning(&format!(
        "{counts}, {waiting} held before it: held for the rate (over_rate=defer)"
    ));
    if over {
        crate::base::stderr::line(&format!(
            "vsendmail: warning: {} sent {sent} messages in the last {period} (limit {}); message {} is queued and will be sent when the rate allows",
            id.sender, limit.count, env.id
        ));
    } else {
        crate::base::stderr::line(&format!(
            "vsendmail: warning: {} has {waiting} messages waiting for its rate limit ({} per {period}); message {} is queued behind them",
            id.sender, limit.count, env.id
        ));
    }
    Ok(())
}

/// In a queue run: may this rate-held message go now? Counts it when it may.
/// A counter locked by another process for more than a moment keeps the
/// message held for this run (logged), never stalls the run.
/// The limit is the one that applies today (an administrator may have
/// raised it, or lifted it with `rate=none`); the counter is the identity's
/// the message was submitted as. Problems are logged and keep it held.
/// `current`: the owner's identity as virtusers says today, when it has one.
pub fn release(cfg: &Loaded, log: &Syslog, env: &mut Envelope, current: Option<&Identity>) -> bool {
    let login = &env.identity.login;
    let limit = if cfg.is_trusted(login) {
        None
    } else {
        limit_for(cfg, current.unwrap_or(&env.identity))
    };
    let mut c = match Counter::open(cfg, &env.identity.sender, RUN_WAIT) {
        Ok(c) => c,
        Err(e) => {
            log.err(&format!(
                "{}: cannot use the rate counter of {}: {e}; the message stays held",
                env.id, env.identity.sender
            ));
            return false;
        }
    };
    let now = crate::base::clock::unix_ms();
    if let Some(l) = limit {
        c.slide(now, l.period);
        if c.stamps.len() >= l.count as usize {
            return false;
        }
        c.stamps.push(now);
    }
    c.forget(&env.id);
    let stored = c.store();
    let (counted, cpath) = (c.stamps.len(), c.path.clone());
    drop(c);
    if let Err(e) = stored {
        log.err(&format!(
            "{}: cannot update the rate counter {}: {e}; the message stays held",
            env.id,
            cpath.display()
        ));
        return false;
    }
    env.rate_held = false;
    log.info(&format!(
        "{}: uid={} user={} identity={} released from the rate hold{}",
        env.id,
        env.identity.uid,
        login,
        env.identity.sender,
        match limit {
            Some(l) => format!(
                " ({} of {} in the last {})",
                counted,
                l.count,
                period_text(l.period)
            ),
            None => " (no limit applies now)".into(),
        }
    ));
    true
}

/// Create (as root, in queue runs) the counter files of the identities that
/// several users share (a virtusers line whose sender is one address, as a
/// `%group` line's), so that none is owned by, and charged to the quota of,
/// whichever member sends first. A `@domain` identity is one user's own.
pub fn prepare(cfg: &Loaded) {
    let Ok(table) = crate::config::virtusers::Table::read(&cfg.cfg.virtusers) else {
        return;
    };
    let (entries, _) = table.check_all();
    for e in entries {
        let crate::config::virtusers::SenderSpec::Address(sender) = &e.sender else {
            continue;
        };
        if e.rate.or(cfg.rate).and_then(Rate::limit).is_none() {
            continue;
        }
        let path = counter_path(&cfg.cfg.spool, sender);
        if !path.exists() {
            let _ = shared::open(
                &cfg.cfg.spool.join("rate"),
                &path,
                shared::spool_gid(cfg),
                Access::ReadWrite,
            );
        }
    }
}

/// A rate-held message left the queue by other means (`--delete`): drop
/// its id from the identity's counter.
pub fn forget(cfg: &Loaded, log: &Syslog, env: &Envelope) {
    if !env.rate_held {
        return;
    }
    match Counter::open(cfg, &env.identity.sender, RUN_WAIT) {
        Ok(mut c) => {
            c.forget(&env.id);
            let _ = c.store();
        }
        // Its id is dropped when next seen: the message is gone by then.
        Err(e) => log.warning(&format!(
            "{}: cannot use the rate counter of {}: {e}; its held id is dropped later",
            env.id, env.identity.sender
        )),
    }
}

#[cfg(test)]
mod counter_tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(key("Alice@Shop.example"), "alice@shop.example");
        assert_eq!(key("a/b@x"), "a%2Fb@x");
        assert_eq!(key(".."), "%2");
    }

    #[test]
    fn counter_slides_and_keeps_held() {
        let dir = std::env::temp_dir().join(format!(
            "vs-rate-{}-{}",
            std::process::id(),
            crate::base::clock::unix_ms()
        ));
        std::fs::create_dir_all(dir.join("queue")).unwrap();
        let cfg = crate::config::conf::parse(
            &format!("spool = \"{}\"\n", dir.display()),
            Path::new("t.conf"),
        )
        .unwrap();
        {
            let mut c = Counter::open(&cfg, "a@x.test", RUN_WAIT).unwrap();
            c.stamps = vec![1_000, 5_000, 9_000];
            c.held = vec!["AAA".into(), "BBB".into()];
            c.store().unwrap();
        }
        std::fs::write(dir.join("queue/BBB.msg"), "x").unwrap();
        let mut c = Counter::open(&cfg, "a@x.test", RUN_WAIT).unwrap();
        assert_eq!(c.stamps, vec![1_000, 5_000, 9_000]);
        c.slide(11_000, Duration::from_secs(10));
        assert_eq!(c.stamps, vec![5_000, 9_000]);
        assert!(c.any_held());
        assert_eq!(c.held, vec!["BBB".to_string()], "AAA left the queue");
        drop(c);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
