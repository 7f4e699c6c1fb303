//! The circuit breaker (`[breaker]`): without a daemon, an identity's
//! counters are checked whenever one of its messages is submitted
//! ([`submitted`]) and whenever a delivery outcome is recorded
//! ([`outcomes`]); past a threshold the user is suspended (`suspend`), the
//! trip is logged at `warning`, and one notification is queued from the host
//! identity ([`notification`]).
//!
//! **State.** One file per user, `<spool>/breaker/<login>` (named as the
//! rate counters), 0660 in a 2770 directory of the spool's group, read
//! and rewritten under `flock(LOCK_EX)` with the rate counters' bounded,
//! non-blocking wait. Its lines: `r MS HASH` for each recipient submitted
//! (HASH: FNV-1a of the lower-cased address, for the distinct count) and
//! `o MS K` for each outcome recorded (K: `s` sent, `d` deferred, `f`
//! failed, `u` failed with an unknown-user reply), oldest first, kept for
//! the longest window. **The trip decision is made under that lock**: the
//! process that finds a threshold passed and no suspension in place writes
//! the suspension before it lets go, so eight processes racing past a
//! threshold trip it once, and only that process queues the notification.
//! The file stays bounded: one `r` line per distinct recipient (its
//! latest), at most 100,000 `o` lines. A trip clears the counters, so after an unsuspend or a cooldown counting
//! starts afresh. Root and `trusted_users` are never counted.

use crate::account::suspend::{self, Suspension};
use crate::base::clock::unix_ms;
use crate::base::limit::period_text;
use crate::base::syslog::Syslog;
use crate::config::conf::{Breaker, Loaded};
use crate::identity::profile::Identity;
use crate::spool::envelope::Envelope;
use crate::spool::shared::{self, Access};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::time::Duration;

/// How long a submission waits for the user's breaker lock (then 75).
const SUBMIT_WAIT: Duration = Duration::from_secs(10);
/// How long recording an outcome waits (a queue run must not stall on a
/// stopped process of the user; the outcome then goes uncounted, logged).
const OUTCOME_WAIT: Duration = Duration::from_secs(2);
/// The most outcome lines a state file keeps (the newest).
const MAX_OUTCOMES: usize = 100_000;
/// The failure share is taken over this window.
const FAILURE_WINDOW: Duration = Duration::from_secs(3600);

/// What a check found.
#[derive(Debug)]
pub enum Verdict {
    /// Nothing to do.
    Fine,
    /// This check tripped the breaker: the suspension it wrote, and the
    /// counts for the notification.
    Tripped(Suspension, Counts),
    /// The user is suspended already (by someone else, just now).
    Suspended(Suspension),
}

/// The counts at the moment of a trip.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub distinct: u64,
    pub tried: u64,
    pub failed: u64,
    pub deferred: u64,
    pub unknown: u64,
}

/// One outcome for [`outcomes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sent,
    Deferred,
    Failed,
    UnknownUser,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::Sent => 's',
            Kind::Deferred => 'd',
            Kind::Failed => 'f',
            Kind::UnknownUser => 'u',
        }
    }

    /// The kind of a failed reply: an unknown user (`5.1.1`, or 550 "no
    /// such user"/"user unknown") or another failure.
    pub fn of_failure(reply: &str) -> Kind {
        let l = reply.to_ascii_lowercase();
        let unknown = l.contains("5.1.1")
            || (l.contains("550")
                && [
                    "no such user",
                    "user unknown",
                    "unknown user",
                    "does not exist",
                ]
                .iter()
                .any(|p| l.contains(p)));
        if unknown {
            Kind::UnknownUser
        } else {
            Kind::Failed
        }
    }
}

/// FNV-1a, 64 bits: stable across releases, which a distinct count kept
/// on disk needs (std's hasher promises no such thing).
pub fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

struct State {
    file: std::fs::File,
    /// The file's length as read (it is truncated only when it shrinks).
    len: u64,
    rcpts: Vec<(u64, u64)>,
    outcomes: Vec<(u64, char)>,
}

impl State {
    fn open(cfg: &Loaded, login: &str, wait: Duration) -> std::io::Result<State> {
        let spool = &cfg.cfg.spool;
        let path = state_path(cfg, login);
        let mut file = shared::open(
            &spool.join("breaker"),
            &path,
            shared::spool_gid(cfg),
            Access::ReadWrite,
        )?;
        shared::lock(&file, wait)?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        let (mut rcpts, mut outcomes) = (Vec::new(), Vec::new());
        for l in text.lines() {
            let mut p = l.split(' ');
            match (p.next(), p.next(), p.next()) {
                (Some("r"), Some(t), Some(h)) => {
                    if let (Ok(t), Ok(h)) = (t.parse(), h.parse()) {
                        rcpts.push((t, h));
                    }
                }
                (Some("o"), Some(t), Some(k)) => {
                    if let (Ok(t), Some(k)) = (t.parse(), k.chars().next()) {
                        outcomes.push((t, k));
                    }
                }
                _ => {}
            }
        }
        Ok(State {
            file,
            len: text.len() as u64,
            rcpts,
            outcomes,
        })
    }

    fn slide(&mut self, now: u64, b: &Breaker) {
        let longest = [
            b.distinct_rcpts.map(|l| l.period),
            b.unknown_users.map(|l| l.period),
            b.failures.map(|_| FAILURE_WINDOW),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(FAILURE_WINDOW);
        let from = now.saturating_sub(longest.as_millis() as u64);
        self.rcpts.retain(|r| r.0 > from);
        self.outcomes.retain(|o| o.0 > from);
        // Bounded whatever the user sends: one line per distinct recipient
        // (its latest), and at most MAX_OUTCOMES outcomes (the newest).
        let mut seen = std::collections::HashSet::with_capacity(self.rcpts.len());
        let mut keep: Vec<(u64, u64)> = self
            .rcpts
            .iter()
            .rev()
            .filter(|r| seen.insert(r.1))
            .copied()
            .collect();
        keep.reverse();
        self.rcpts = keep;
        if self.outcomes.len() > MAX_OUTCOMES {
            let cut = self.outcomes.len() - MAX_OUTCOMES;
            self.outcomes.drain(..cut);
        }
    }

    fn counts(&self, now: u64, b: &Breaker) -> Counts {
        let since = |d: Duration| now.saturating_sub(d.as_millis() as u64);
        let dfrom = since(b.distinct_rcpts.map_or(FAILURE_WINDOW, |l| l.period));
        let mut seen: Vec<u64> = self
            .rcpts
            .iter()
            .filter(|r| r.0 > dfrom)
            .map(|r| r.1)
            .collect();
        seen.sort_unstable();
        seen.dedup();
        let ffrom = since(FAILURE_WINDOW);
        let ufrom = since(b.unknown_users.map_or(FAILURE_WINDOW, |l| l.period));
        let recent = || self.outcomes.iter().filter(move |o| o.0 > ffrom);
        Counts {
            distinct: seen.len() as u64,
            tried: recent().count() as u64,
            failed: recent().filter(|o| matches!(o.1, 'f' | 'u')).count() as u64,
            deferred: recent().filter(|o| o.1 == 'd').count() as u64,
            unknown: self
                .outcomes
                .iter()
                .filter(|o| o.0 > ufrom && o.1 == 'u')
                .count() as u64,
        }
    }

    fn store(&self) -> std::io::Result<()> {
        use std::fmt::Write;
        let mut s = String::with_capacity(40 * (self.rcpts.len() + self.outcomes.len()));
        for (t, h) in &self.rcpts {
            let _ = writeln!(s, "r {t} {h}");
        }
        for (t, k) in &self.outcomes {
            let _ = writeln!(s, "o {t} {k}");
        }
        self.file.write_all_at(s.as_bytes(), 0)?;
        // Growing (the usual case) needs no truncate, which costs a journal
        // transaction on some file systems.
        if (s.len() as u64) < self.len {
            self.file.set_len(s.len() as u64)?;
        }
        Ok(())
    }
}

/// `<spool>/breaker/<login>`.
fn state_path(cfg: &Loaded, login: &str) -> std::path::PathBuf {
    cfg.cfg
        .spool
        .join("breaker")
        .join(crate::account::rate::key(login))
}

/// Create the state directory (as root, in queue runs: an installation
/// that predates it gets it at the first run), so no user owns it.
pub fn prepare(cfg: &Loaded) {
    let d = cfg.cfg.spool.join("breaker");
    if !d.is_dir() {
        let probe = d.join(".probe");
        if shared::open(&d, &probe, shared::spool_gid(cfg), Access::ReadWrite).is_ok() {
            let _ = std::fs::remove_file(probe);
        }
    }
}

/// Forget a user's counts (`--unsuspend`: counting starts afresh).
pub fn reset(cfg: &Loaded, login: &str) {
    let _ = std::fs::remove_file(state_path(cfg, login));
}

/// Why the counts trip the breaker, if they do.
fn tripped(c: &Counts, b: &Breaker) -> Option<String> {
    if let Some(l) = b.distinct_rcpts
        && c.distinct > u64::from(l.count)
    {
        return Some(format!(
            "breaker: {} distinct recipients in {} (limit {})",
            c.distinct,
            period_text(l.period),
            l.count
        ));
    }
    if let Some(l) = b.unknown_users
        && c.unknown > u64::from(l.count)
    {
        return Some(format!(
            "breaker: {} unknown-user replies in {} (limit {})",
            c.unknown,
            period_text(l.period),
            l.count
        ));
    }
    if let Some(s) = b.failures
        && c.tried >= u64::from(s.min)
        && (c.failed + c.deferred) * 100 >= u64::from(s.percent) * c.tried
    {
        return Some(format!(
            "breaker: {} of {} recipients failed or deferred in 1h (limit {}% of at least {})",
            c.failed + c.deferred,
            c.tried,
            s.percent,
            s.min
        ));
    }
    None
}

/// Count, decide and (when over) suspend, all under the identity's lock.
fn check(
    cfg: &Loaded,
    log: &Syslog,
    identity: &Identity,
    wait: Duration,
    add: impl FnOnce(&mut State, u64),
) -> std::io::Result<Verdict> {
    let Some(b) = &cfg.breaker else {
        return Ok(Verdict::Fine);
    };
    if cfg.is_trusted(&identity.login) {
        return Ok(Verdict::Fine);
    }
    let mut st = State::open(cfg, &identity.login, wait)?;
    let now = unix_ms();
    add(&mut st, now);
    st.slide(now, b);
    let counts = st.counts(now, b);
    // Nothing is logged while the lock is held (`suspend::peek`).
    let verdict = match suspend::peek(cfg, &identity.login) {
        Some(s) => Verdict::Suspended(s),
        None => match tripped(&counts, b) {
            None => Verdict::Fine,
            Some(reason) => {
                let since = now / 1000;
                let s = Suspension {
                    v: 1,
                    login: identity.login.clone(),
                    since,
                    reason,
                    by: "breaker".into(),
                    action: b.action,
                    breaker: true,
                    until: b.cooldown.map_or(0, |d| since + d.as_secs()),
                };
                suspend::set(cfg, &s)?;
                st.rcpts.clear();
                st.outcomes.clear();
                Verdict::Tripped(s, counts)
            }
        },
    };
    st.store()?;
    drop(st);
    if let Verdict::Tripped(s, _) = &verdict {
        log.warning(&format!(
            "uid={} user={} identity={}: suspended ({}), action={}",
            identity.uid,
            crate::base::syslog::value(&identity.login),
            identity.sender,
            s.reason,
            s.action.as_str()
        ));
    }
    Ok(verdict)
}

/// A message of `env`'s identity is being submitted to its recipients.
pub fn submitted(cfg: &Loaded, log: &Syslog, env: &Envelope) -> std::io::Result<Verdict> {
    check(cfg, log, &env.identity, SUBMIT_WAIT, |st, now| {
        for r in &env.recipients {
            st.rcpts.push((now, fnv(&r.addr)));
        }
    })
}

/// Outcomes of one delivery attempt of the identity's message. A problem
/// with the state is logged (the outcome has happened; nothing to refuse).
pub fn outcomes(cfg: &Loaded, log: &Syslog, identity: &Identity, kinds: &[Kind]) -> Verdict {
    if kinds.is_empty() || cfg.breaker.is_none() {
        return Verdict::Fine;
    }
    match check(cfg, log, identity, OUTCOME_WAIT, |st, now| {
        for k in kinds {
            st.outcomes.push((now, k.letter()));
        }
    }) {
        Ok(v) => v,
        Err(e) => {
            log.err(&format!(
                "uid={} user={}: cannot use the breaker counters of {}: {e}",
                identity.uid, identity.login, identity.sender
            ));
            Verdict::Fine
        }
    }
}

/// The notification of a trip: (recipients, message text with CRLF line
/// ends), from the host identity. `recent`: the identity's last records of
/// the per-recipient log, oldest first.
pub fn notification(
    cfg: &Loaded,
    identity: &Identity,
    s: &Suspension,
    c: &Counts,
    recent: &[crate::account::rcpt_log::Rec],
    id: &str,
) -> (Vec<String>, String) {
    let b = cfg.breaker.as_ref().expect("a trip has a [breaker]");
    let (aliases, _) = crate::config::aliases::Aliases::load(&cfg.cfg.aliases);
    let mut to: Vec<String> = aliases
        .expand(&b.notify)
        .iter()
        .map(|a| crate::base::address::qualify(a, &cfg.hostname))
        .collect();
    if b.notify_user && !to.iter().any(|a| a.eq_ignore_ascii_case(&identity.sender)) {
        to.push(identity.sender.clone());
    }
    let when = crate::base::clock::rfc3339_utc(s.since as i64);
    let mut t = String::new();
    let mut line = |l: &str| {
        t.push_str(l);
        t.push_str("\r\n");
    };
    line(&format!(
        "From: vsendmail breaker <postmaster@{}>",
        cfg.hostname
    ));
    line(&format!("To: {}", to.join(", ")));
    line(&format!(
        "Subject: vsendmail: sending suspended for {} ({})",
        identity.login, identity.sender
    ));
    line(&format!(
        "Date: {}",
        crate::base::clock::rfc5322_date(s.since as i64)
    ));
    line(&format!("Message-ID: <{id}.breaker@{}>", cfg.hostname));
    line("Auto-Submitted: auto-generated");
    line("MIME-Version: 1.0");
    line("Content-Type: text/plain; charset=utf-8");
    line("Content-Transfer-Encoding: 8bit");
    line("");
    line(&format!(
        "The circuit breaker suspended user {} (uid {}, identity {}) at {when}.",
        identity.login, identity.uid, identity.sender
    ));
    line("");
    line(&format!("What tripped: {}", s.reason));
    line(&format!(
        "Action: {} (new messages are {})",
        s.action.as_str(),
        match s.action {
            crate::config::conf::SuspendAction::Hold => "accepted and held in the queue",
            crate::config::conf::SuspendAction::Refuse => "refused with exit 77",
        }
    ));
    line(&match b.cooldown {
        Some(d) => format!(
            "Cooldown: {} (lifts itself at {})",
            period_text(d),
            crate::base::clock::rfc3339_utc(s.until as i64)
        ),
        None => "Cooldown: none (only an administrator lifts it)".into(),
    });
    line("");
    line("Counts:");
    line(&format!("  distinct recipients: {}", c.distinct));
    line(&format!("  recipients tried in the last hour: {}", c.tried));
    line(&format!("  failed: {}", c.failed));
    line(&format!("  deferred: {}", c.deferred));
    line(&format!("  unknown-user replies: {}", c.unknown));
    line("");
    line("Last recipients (at most 20), with their replies:");
    for r in recent
        .iter()
        .rev()
        .take(20)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        line(&format!(
            "  {} {} <{}> {}",
            r.time,
            r.status,
            r.to,
            crate::base::syslog::text(&r.reply, 200)
        ));
    }
    line("");
    line("Attribution of the last messages (supplied by the caller, not proof):");
    let mut seen: Vec<&str> = Vec::new();
    for r in recent.iter().rev() {
        if seen.len() >= 5 {
            break;
        }
        if seen.contains(&&*r.queue_id) {
            continue;
        }
        seen.push(&r.queue_id);
        line(&format!(
            "  {} cwd={} script={}",
            r.queue_id,
            crate::base::syslog::value(&r.cwd),
            crate::base::syslog::value(&r.script)
        ));
    }
    line("");
    line("To look:");
    line(&format!("  vsendmail --log --user {}", identity.login));
    line("  vsendmail --stats");
    line("  mailq");
    line("To release:");
    line(&format!("  vsendmail --unsuspend {}", identity.login));
    line(&format!(
        "  vsendmail --release user={}   (the messages held meanwhile)",
        identity.login
    ));
    (to, t)
}

/// Queue the notification of a trip (durably: whatever happens to this
/// process, a queue run sends it) and return it locked, for the caller to
/// try at once. Sent as the host identity (`postmaster@HOST`, never `<>`,
/// never through the suspended identity).
pub fn queue_notification(
    cfg: &Loaded,
    log: &Syslog,
    identity: &Identity,
    s: &Suspension,
    c: &Counts,
) -> Option<crate::spool::store::Locked> {
    use std::io::Write;
    let fail = |e: String| -> Option<crate::spool::store::Locked> {
        log.err(&format!(
            "user={}: cannot queue the breaker notification: {e}",
            identity.login
        ));
        None
    };
    let spool = match crate::spool::store::Spool::of(cfg) {
        Ok(sp) => sp,
        Err(e) => return fail(e.to_string()),
    };
    let mut draft = match spool.draft() {
        Ok(d) => d,
        Err(e) => return fail(e.to_string()),
    };
    let recent = crate::account::rcpt_log::tail(cfg, identity.uid, 20);
    let (to, text) = notification(cfg, identity, s, c, &recent, &draft.id);
    if let Err(e) = draft.file().write_all(text.as_bytes()) {
        return fail(e.to_string());
    }
    let host = Identity::resolve(None, "root", 0, &cfg.hostname);
    let mut env = Envelope::new(
        draft.id.clone(),
        host,
        format!("postmaster@{}", cfg.hostname),
        to.into_iter()
            .map(|a| crate::spool::envelope::Recipient::new(a, None))
            .collect(),
        text.len() as u64,
    );
    env.message_id = Some(format!("<{}.breaker@{}>", draft.id, cfg.hostname));
    env.eightbit = !text.is_ascii();
    env.errors = crate::base::dsn::ErrorMode::Quiet;
    match draft.commit(&env) {
        Ok(l) => {
            log.info(&format!(
                "{}: breaker notification for user={} queued",
                l.env.id, identity.login
            ));
            Some(l)
        }
        Err(e) => fail(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_users_are_told_apart() {
        assert_eq!(
            Kind::of_failure("RCPT TO:<a@x> rejected by mx: 550 5.1.1 no such user"),
            Kind::UnknownUser
        );
        assert_eq!(Kind::of_failure("550 user unknown"), Kind::UnknownUser);
        assert_eq!(Kind::of_failure("554 5.7.1 spam"), Kind::Failed);
        assert_eq!(fnv("A@x"), fnv("a@X"));
    }

    #[test]
    fn thresholds() {
        let cfg = crate::config::conf::parse(
            "[breaker]\ndistinct_rcpts = \"3/h\"\nfailures = \"50%/4\"\nunknown_users = \"1/h\"\n",
            std::path::Path::new("c"),
        )
        .unwrap();
        let b = cfg.breaker.unwrap();
        let mut c = Counts {
            distinct: 3,
            ..Default::default()
        };
        assert_eq!(tripped(&c, &b), None);
        c.distinct = 4;
        assert!(
            tripped(&c, &b)
                .unwrap()
                .contains("4 distinct recipients in 1h (limit 3)")
        );
        let c = Counts {
            tried: 4,
            failed: 1,
            deferred: 1,
            ..Default::default()
        };
        assert!(tripped(&c, &b).unwrap().contains("2 of 4"));
        let c = Counts {
            tried: 3,
            failed: 3,
            ..Default::default()
        };
        assert_eq!(tripped(&c, &b), None, "under the minimum");
        let c = Counts {
            unknown: 2,
            ..Default::default()
        };
        assert!(tripped(&c, &b).unwrap().contains("2 unknown-user replies"));
    }
}
