//! Queue control: `--hold`, `--release`, `--delete` with a queue id,
//! `user=LOGIN` or `ALL`; root and trusted users on any message, others on
//! their own only. Another user's message is answered exactly as a queue id
//! that does not exist (exit 1, the same line: no oracle of whose mail is
//! queued); `user=` naming another user is refused (exit 77); `ALL` means
//! all of one's own. Each message is changed under its
//! spool lock, so an action never races a delivery in progress: when one is
//! running, the command retries for a few seconds (never blocking on the
//! lock, so a stopped process cannot hang it), then says
//! `ID: busy (being delivered by another process); try again` and exits 75
//! having changed the others. Prints `ID: held`,
//! `ID: released`, `ID: deleted` per message, exit 0, or exit 1 when the
//! selector matched nothing. Held messages are skipped by queue runs;
//! `--release` lifts only that hold (a message held for the rate limit stays
//! under it); `--delete` removes the message without a bounce.
//!
//! A hold the owner did not set binds the owner: an administrator's
//! `--hold`, or a queue run's for an identity removed or changed since
//! submission (`HeldBy`). Only root or a trusted user releases or deletes
//! such a message (the owner gets exit 77 naming it, the others are done);
//! releasing one held for its identity sends it as the identity is now.

use crate::exit::{Error, Result};
use crate::identity::job::Job;
use crate::spool::envelope::{Envelope, HeldBy};
use crate::spool::store::{Locked, Spool};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Hold,
    Release,
    Delete,
}

impl Action {
    fn done(self) -> &'static str {
        match self {
            Action::Hold => "held",
            Action::Release => "released",
            Action::Delete => "deleted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Sel {
    Id(String),
    User(String),
    All,
}

impl Sel {
    fn parse(s: &str) -> Result<Sel> {
        if s == "ALL" {
            return Ok(Sel::All);
        }
        if let Some(login) = s.strip_prefix("user=") {
            if login.is_empty() || login.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(Error::BadSelector {
                    shown: crate::base::address::printable(s),
                    why: "user= needs a login name",
                });
            }
            return Ok(Sel::User(login.to_string()));
        }
        if !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(Sel::Id(s.to_ascii_uppercase()));
        }
        Err(Error::BadSelector {
            shown: crate::base::address::printable(s),
            why: "not a selector; use a queue id (as mailq shows it), user=LOGIN or ALL",
        })
    }
}

pub fn hold(job: &Job, sel: &str) -> Result<i32> {
    act(job, sel, Action::Hold)
}

pub fn release(job: &Job, sel: &str) -> Result<i32> {
    act(job, sel, Action::Release)
}

pub fn delete(job: &Job, sel: &str) -> Result<i32> {
    act(job, sel, Action::Delete)
}

fn refuse_other(job: &Job, what: &str) -> Error {
    Error::NotYours {
        what: what.to_string(),
        login: job.invoker.login.clone(),
    }
}

/// The ids a selector names, oldest first, after the permission check.
fn select(job: &Job, spool: &Spool, sel: &Sel) -> Result<Vec<String>> {
    let trusted = job.trusted();
    let own = |e: &Envelope| e.identity.uid == job.invoker.uid;
    match sel {
        // Another user's message is, to a plain user, no message at all.
        Sel::Id(id) => match spool.load(id) {
            Ok(e) if trusted || own(&e) => Ok(vec![id.clone()]),
            Ok(_) | Err(crate::spool::store::SpoolError::NotFound(_)) => Ok(Vec::new()),
            Err(e) if trusted => Err(e.into()),
            Err(_) => Ok(Vec::new()),
        },
        Sel::User(login) => {
            if !trusted && *login != job.invoker.login {
                return Err(refuse_other(
                    job,
                    &format!("user={login} names another user's messages"),
                ));
            }
            let uid = crate::identity::invoker::by_login(login).map(|w| w.uid);
            Ok(list(spool, |e| {
                (e.identity.login == *login || Some(e.identity.uid) == uid) && (trusted || own(e))
            }))
        }
        Sel::All => Ok(list(spool, |e| trusted || own(e))),
    }
}

fn list(spool: &Spool, keep: impl Fn(&Envelope) -> bool) -> Vec<String> {
    let Ok(ids) = spool.list() else {
        return Vec::new();
    };
    ids.into_iter()
        .filter(|id| spool.load(id).is_ok_and(|e| keep(&e)))
        .collect()
}

/// How long `--hold/--release/--delete` wait for a message another process
/// is delivering: retried without blocking, never longer than this in all.
const BUSY_WAIT: Duration = Duration::from_secs(5);

fn act(job: &Job, sel: &str, action: Action) -> Result<i32> {
    let s = Sel::parse(sel)?;
    let spool = Spool::of(&job.cfg)?;
    let mut waiting = select(job, &spool, &s)?;
    let mut done = 0usize;
    let mut bound = Vec::new();
    // Non-blocking tries, repeated for the busy ones until BUSY_WAIT is
    // spent: a stopped process holding a lock cannot hang the command.
    let end = Instant::now() + BUSY_WAIT;
    loop {
        let mut busy = Vec::new();
        for id in waiting {
            let locked = match spool.lock(&id, false)? {
                Some(l) => l,
                None if spool.env_path(&id).exists() => {
                    busy.push(id);
                    continue;
                }
                None => continue, // delivered (or deleted) meanwhile
            };
            if !job.trusted() && locked.env.identity.uid != job.invoker.uid {
                continue;
            }
            if let Some(by) = locked.env.held_by.filter(|_| !job.trusted())
                && action != Action::Hold
            {
                bound.push(format!("{id} (held, {})", by.text()));
                continue;
            }
            apply(job, locked, action, &id)?;
            done += 1;
        }
        if busy.is_empty() {
            break;
        }
        if Instant::now() >= end {
            return Err(Error::Busy {
                ids: busy.join(", "),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
        waiting = busy;
    }
    if !bound.is_empty() {
        return Err(Error::HoldBinds {
            ids: bound.join(", "),
        });
    }
    if done == 0 {
        eprintln!(
            "vsendmail: no queued message matches {}",
            crate::base::address::printable(sel)
        );
        return Err(Error::NoMatch);
    }
    Ok(0)
}

/// Do `action` to one locked message and say so.
fn apply(job: &Job, mut locked: Locked, action: Action, id: &str) -> Result<()> {
    let mut note = "";
    match action {
        Action::Hold => {
            // An administrator's hold binds the owner; a reason already
            // recorded (an identity change) stays.
            if job.trusted() && locked.env.held_by.is_none() {
                locked.env.held_by = Some(HeldBy::Admin);
            }
            locked.env.held = true;
            locked.save()?;
        }
        Action::Release => {
            if matches!(
                locked.env.held_by,
                Some(HeldBy::IdentityRemoved | HeldBy::IdentityChanged)
            ) {
                note = adopt_current_identity(job, &mut locked.env);
            }
            locked.env.held = false;
            locked.env.held_by = None;
            locked.save()?;
            if locked.env.rate_held {
                note = " (still under the rate limit: queue runs send it when the rate allows)";
            }
        }
        Action::Delete => {
            crate::account::rate::forget(&job.cfg, &job.log, &locked.env);
            locked.remove()?;
        }
    }
    job.log.info(&format!(
        "{id}: {} by uid={} user={}{}",
        action.done(),
        job.invoker.uid,
        job.invoker.login,
        if action == Action::Delete {
            " (no bounce)"
        } else {
            ""
        }
    ));
    println!("{id}: {}{note}", action.done());
    Ok(())
}

/// An administrator releases a message held for its identity: it is sent as
/// the owner's identity is now (the host identity when the line is gone).
/// The envelope sender follows when it was the old identity's own address.
/// The header and any DKIM signature stay as submitted.
fn adopt_current_identity(job: &Job, env: &mut Envelope) -> &'static str {
    let old = &env.identity;
    let now = match crate::identity::job::current_identity(&job.cfg, &old.login) {
        Ok(Some(i)) => i,
        Ok(None) => crate::identity::profile::Identity::resolve(
            None,
            &old.login,
            old.uid,
            &job.cfg.hostname,
        ),
        Err(_) => return " (virtusers cannot be read: it keeps its recorded identity)",
    };
    if env.sender.eq_ignore_ascii_case(&old.sender) {
        env.sender = now.sender.clone();
    }
    env.identity = now;
    " (sent as the identity virtusers gives now)"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        assert_eq!(Sel::parse("ALL").unwrap(), Sel::All);
        assert_eq!(Sel::parse("user=alice").unwrap(), Sel::User("alice".into()));
        assert_eq!(
            Sel::parse("4f2a9c1b000001").unwrap(),
            Sel::Id("4F2A9C1B000001".into())
        );
        for bad in ["", "user=", "../x", "a b", "queue/x"] {
            assert!(
                matches!(Sel::parse(bad), Err(Error::BadSelector { .. })),
                "{bad}"
            );
        }
    }
}
