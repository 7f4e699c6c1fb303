//! Per-identity rate limits: the sliding-window counters shared by every
//! process through the spool.
//!
//! Limits come in layers, and a message must fit every one that applies:
//! the identity's message windows (virtusers `rate=`, else the config's
//! `rate`; `rate=none` means none), its recipient windows (`rcpt_rate=`, else
//! the config's `rcpt_rate`), and, for an identity from a `%group` line, that
//! line's `group_rate=` and `group_rcpt_rate=`, counted over every member
//! together in one counter of the group. Over any of them `over_rate`
//! applies, and the refusal or warning names the limit that was hit (`limit
//! 5, rcpt_rate`). Root and `trusted_users` are never limited.
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
//! `t MS` for each message counted within the longest window (Unix
//! milliseconds; older ones are dropped: the window slides), `r MS N` for the
//! N recipients of each message counted, and `h QUEUEID` for each
//! message held for the rate (`over_rate = "defer"`). While an identity has
//! held messages, new ones queue behind them, so queue runs send in arrival
//! order; `max_queued` caps the `h` lines (ids whose message has left the
//! queue are dropped when seen). A group's counter is `<spool>/rate/%GROUP`
//! (`%25GROUP` on disk), with `t` and `r` lines only; it is locked after the
//! identity's, always in that order.

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
    #[error("{hit}; try again later")]
    Over { hit: Hit },
    #[error(
        "{hit} and has {held} messages waiting in the queue (max_queued {max}); try again later"
    )]
    QueueFull { hit: Hit, held: usize, max: usize },
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

/// Which limit a message did not fit, and by how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The identity, or `group %NAME`.
    pub who: String,
    /// Messages or recipients counted in the window.
    pub sent: u64,
    pub limit: Limit,
    /// The setting: `rate`, `rcpt_rate`, `group_rate`, `group_rcpt_rate`.
    pub key: &'static str,
}

impl Hit {
    /// `sent 3 messages in the last 1h (limit 3)`, `(limit 5, rcpt_rate)`.
    pub fn counts(&self) -> String {
        let unit = if self.key.contains("rcpt") {
            "recipients"
        } else {
            "messages"
        };
        let key = if self.key == "rate" {
            String::new()
        } else {
            format!(", {}", self.key)
        };
        format!(
            "sent {} {unit} in the last {} (limit {}{key})",
            self.sent,
            period_text(self.limit.period),
            self.limit.count
        )
    }
}

impl std::fmt::Display for Hit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.who, self.counts())
    }
}

/// ` (group %NAME)` when the limit hit was a group's, for the log line.
fn group_note(hit: &Hit) -> String {
    match hit.who.strip_prefix("group ") {
        Some(g) => format!(" (group {g})"),
        None => String::new(),
    }
}

/// How long a submission waits for its identity's counter lock (then 75).
const SUBMIT_WAIT: Duration = Duration::from_secs(10);
/// How long a queue run or `--delete` waits for it (then the message is
/// skipped, and logged).
const RUN_WAIT: Duration = Duration::from_secs(2);

/// Every limit that applies: (`key`, on the group's counter, window).
fn layers(cfg: &Loaded, identity: &Identity) -> Vec<(&'static str, bool, Limit)> {
    let mut v: Vec<(&'static str, bool, Limit)> = Vec::new();
    let add = |v: &mut Vec<_>, key, group, r: Option<&Rate>| {
        for l in r.map(Rate::limits).unwrap_or_default() {
            v.push((key, group, *l));
        }
    };
    add(
        &mut v,
        "rate",
        false,
        identity.rate.as_ref().or(cfg.rate.as_ref()),
    );
    add(
        &mut v,
        "rcpt_rate",
        false,
        identity.rcpt_rate.as_ref().or(cfg.rcpt_rate.as_ref()),
    );
    if let Some(g) = &identity.group {
        add(&mut v, "group_rate", true, g.rate.as_ref());
        add(&mut v, "group_rcpt_rate", true, g.rcpt_rate.as_ref());
    }
    v
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
pub(crate) fn key(sender: &str) -> String {
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

/// One identity's (or group's) counter, locked while this value lives.
struct Counter {
    file: File,
    path: PathBuf,
    /// Unix ms of each counted message, oldest first.
    stamps: Vec<u64>,
    /// Unix ms and recipient count of each counted message, oldest first.
    rcpts: Vec<(u64, u64)>,
    /// Queue ids held for the rate, oldest first.
    held: Vec<String>,
    spool: PathBuf,
}

impl Counter {
    /// Open (creating it and its directory when missing) and lock, waiting
    /// at most `wait` for another process's lock (retried without blocking,
    /// so a stopped process cannot hang this one).
    fn open(cfg: &Loaded, name: &str, wait: Duration) -> std::io::Result<Counter> {
        let spool = cfg.cfg.spool.clone();
        let path = counter_path(&spool, name);
        let mut file = shared::open(
            &spool.join("rate"),
            &path,
            shared::spool_gid(cfg),
            Access::ReadWrite,
        )?;
        shared::lock(&file, wait)?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        let mut stamps = Vec::new();
        let mut rcpts = Vec::new();
        let mut held = Vec::new();
        for l in text.lines() {
            if let Some(t) = l.strip_prefix("t ") {
                if let Ok(t) = t.trim().parse() {
                    stamps.push(t);
                }
            } else if let Some(r) = l.strip_prefix("r ") {
                if let Some((t, n)) = r.trim().split_once(' ')
                    && let (Ok(t), Ok(n)) = (t.parse(), n.parse())
                {
                    rcpts.push((t, n));
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
            rcpts,
            held,
            spool,
        })
    }

    /// Drop the counts that have left the longest window.
    fn slide(&mut self, now: u64, period: Duration) {
        let from = now.saturating_sub(period.as_millis() as u64);
        self.stamps.retain(|t| *t > from);
        self.rcpts.retain(|(t, _)| *t > from);
    }

    /// What is counted within `period` before `now`: messages, or recipients.
    fn counted(&self, now: u64, period: Duration, rcpts: bool) -> u64 {
        let from = now.saturating_sub(period.as_millis() as u64);
        if rcpts {
            self.rcpts
                .iter()
                .filter(|(t, _)| *t > from)
                .map(|(_, n)| n)
                .sum()
        } else {
            self.stamps.iter().filter(|t| **t > from).count() as u64
        }
    }

    fn count(&mut self, now: u64, n: u64) {
        self.stamps.push(now);
        self.rcpts.push((now, n));
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
        let mut s = String::with_capacity(16 * (self.stamps.len() * 2 + self.held.len()) + 64);
        for t in &self.stamps {
            s.push_str("t ");
            s.push_str(&t.to_string());
            s.push('\n');
        }
        for (t, n) in &self.rcpts {
            s.push_str(&format!("r {t} {n}\n"));
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

/// The counters of one check: the identity's, and its group's when a group
/// limit applies (locked after the identity's).
struct Counters {
    own: Counter,
    group: Option<Counter>,
    layers: Vec<(&'static str, bool, Limit)>,
    who: String,
    group_name: String,
}

impl Counters {
    fn open(cfg: &Loaded, id: &Identity, wait: Duration) -> std::io::Result<Counters> {
        let layers = layers(cfg, id);
        let own = Counter::open(cfg, &id.sender, wait)?;
        let group_name = id
            .group
            .as_ref()
            .map(|g| format!("%{}", g.name))
            .unwrap_or_default();
        let group = if layers.iter().any(|l| l.1) {
            Some(Counter::open(cfg, &group_name, wait)?)
        } else {
            None
        };
        Ok(Counters {
            own,
            group,
            layers,
            who: id.sender.clone(),
            group_name,
        })
    }

    /// The first limit that a message of `n` recipients does not fit now.
    fn over(&mut self, now: u64, n: u64) -> Option<Hit> {
        let longest = |group: bool| {
            self.layers
                .iter()
                .filter(|l| l.1 == group)
                .map(|l| l.2.period)
                .max()
        };
        if let Some(p) = longest(false) {
            self.own.slide(now, p);
        }
        if let (Some(p), Some(g)) = (longest(true), self.group.as_mut()) {
            g.slide(now, p);
        }
        for (key, group, limit) in &self.layers {
            let c = if *group {
                self.group.as_ref()?
            } else {
                &self.own
            };
            let rcpts = key.contains("rcpt");
            let sent = c.counted(now, limit.period, rcpts);
            let over = if rcpts {
                sent > 0 && sent + n > u64::from(limit.count)
            } else {
                sent >= u64::from(limit.count)
            };
            if over {
                return Some(Hit {
                    who: if *group {
                        format!("group {}", self.group_name)
                    } else {
                        self.who.clone()
                    },
                    sent,
                    limit: *limit,
                    key,
                });
            }
        }
        None
    }

    fn count(&mut self, now: u64, n: u64) {
        self.own.count(now, n);
        if let Some(g) = self.group.as_mut() {
            g.count(now, n);
        }
    }

    fn store(&self) -> std::io::Result<()> {
        self.own.store()?;
        if let Some(g) = &self.group {
            g.store()
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", g.path.display())))?;
        }
        Ok(())
    }
}

/// Count a message against every limit of its identity at submission. Over
/// one: held (`env.rate_held`) or refused, as `over_rate` says.
/// `trusted`: the submitter is root or one of `trusted_users` (never limited).
pub fn admit(
    cfg: &Loaded,
    log: &Syslog,
    trusted: bool,
    env: &mut Envelope,
) -> Result<(), RateError> {
    if trusted || layers(cfg, &env.identity).is_empty() {
        return Ok(());
    }
    let id = &env.identity;
    let mut c = Counters::open(cfg, id, SUBMIT_WAIT).map_err(|e| {
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
    let n = env.recipients.len() as u64;
    let hit = c.over(now, n);
    let cpath = c.own.path.clone();
    let store_err = |err: std::io::Error| RateError::Store {
        path: cpath.display().to_string(),
        err,
    };
    let head = format!(
        "{}: uid={} user={} identity={}",
        env.id, id.uid, id.login, id.sender
    );
    if cfg.cfg.over_rate == OverRate::Refuse {
        if let Some(hit) = hit {
            drop(c);
            log.warning(&format!(
                "{head} rate: {}{}: refused (over_rate=refuse)",
                hit.counts(),
                group_note(&hit)
            ));
            return Err(RateError::Over { hit });
        }
        c.count(now, n);
        return c.store().map_err(store_err);
    }
    let behind = c.own.any_held();
    if hit.is_none() && !behind {
        c.count(now, n);
        return c.store().map_err(store_err);
    }
    let max = cfg.cfg.max_queued as usize;
    if c.own.held.len() >= max && c.own.held_exact() >= max {
        let held = c.own.held.len();
        let _ = c.store();
        drop(c);
        let hit = hit.unwrap_or_else(|| Hit {
            who: id.sender.clone(),
            sent: 0,
            limit: layers(cfg, id)[0].2,
            key: layers(cfg, id)[0].0,
        });
        log.warning(&format!(
            "{head} rate: {}{}, {held} held (max_queued {max}): refused",
            hit.counts(),
            group_note(&hit)
        ));
        return Err(RateError::QueueFull { hit, held, max });
    }
    c.own.held.push(env.id.clone());
    c.store().map_err(store_err)?;
    env.rate_held = true;
    let waiting = c.own.held.len() - 1;
    // Never write to the caller's descriptors (a full pipe blocks) or to the
    // log while holding a lock every process of the identity shares.
    drop(c);
    match hit {
        Some(hit) => {
            log.warning(&format!(
                "{head} rate: {}{}, {waiting} held before it: held for the rate (over_rate=defer)",
                hit.counts(),
                group_note(&hit)
            ));
            crate::base::stderr::line(&format!(
                "vsendmail: warning: {hit}; message {} is queued and will be sent when the rate allows",
                env.id
            ));
        }
        None => {
            log.warning(&format!(
                "{head} rate: {waiting} held before it: held for the rate (over_rate=defer)"
            ));
            crate::base::stderr::line(&format!(
                "vsendmail: warning: {} has {waiting} messages waiting for its rate limit; message {} is queued behind them",
                id.sender, env.id
            ));
        }
    }
    Ok(())
}

/// In a queue run: may this rate-held message go now? Counts it when it may.
/// A counter locked by another process for more than a moment keeps the
/// message held for this run (logged), never stalls the run.
/// The limits are the ones that apply today (an administrator may have
/// raised them, or lifted them with `rate=none`); the counter is the
/// identity's the message was submitted as. Problems are logged and keep it
/// held. `current`: the owner's identity as virtusers says today, when it
/// has one.
pub fn release(cfg: &Loaded, log: &Syslog, env: &mut Envelope, current: Option<&Identity>) -> bool {
    let login = &env.identity.login;
    let mut id = current.unwrap_or(&env.identity).clone();
    id.sender = env.identity.sender.clone();
    let limited = !cfg.is_trusted(login);
    let mut c = match Counters::open(cfg, &id, RUN_WAIT) {
        Ok(c) => c,
        Err(e) => {
            log.err(&format!(
                "{}: cannot use the rate counter of {}: {e}; the message stays held",
                env.id, env.identity.sender
            ));
            return false;
        }
    };
    if !limited {
        c.layers.clear();
    }
    let now = crate::base::clock::unix_ms();
    let n = env.recipients.len() as u64;
    if c.over(now, n).is_some() {
        return false;
    }
    let note = if c.layers.is_empty() {
        " (no limit applies now)".to_string()
    } else {
        c.count(now, n);
        format!(
            " ({} counted in the last {})",
            c.own.stamps.len(),
            period_text(
                c.layers
                    .iter()
                    .map(|l| l.2.period)
                    .max()
                    .unwrap_or_default()
            )
        )
    };
    c.own.forget(&env.id);
    let stored = c.store();
    let cpath = c.own.path.clone();
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
        "{}: uid={} user={} identity={} released from the rate hold{note}",
        env.id, env.identity.uid, login, env.identity.sender,
    ));
    true
}

/// Create (as root, in queue runs) the counter files of the identities that
/// several users share (a virtusers line whose sender is one address, as a
/// `%group` line's), and of the groups with `group_rate=`, so that none is
/// owned by, and charged to the quota of, whichever member sends first. A
/// `@domain` identity is one user's own.
pub fn prepare(cfg: &Loaded) {
    let Ok(table) = crate::config::virtusers::Table::read(&cfg.cfg.virtusers) else {
        return;
    };
    let (entries, _) = table.check_all();
    for e in entries {
        let mut names = Vec::new();
        if let crate::config::virtusers::SenderSpec::Address(sender) = &e.sender
            && (e.rate.as_ref().or(cfg.rate.as_ref()).is_some()
                || e.rcpt_rate.as_ref().or(cfg.rcpt_rate.as_ref()).is_some())
        {
            names.push(sender.clone());
        }
        if let crate::config::virtusers::Who::Group(g) = &e.who
            && (e.group_rate.is_some() || e.group_rcpt_rate.is_some())
        {
            names.push(format!("%{g}"));
        }
        for name in names {
            let path = counter_path(&cfg.cfg.spool, &name);
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
