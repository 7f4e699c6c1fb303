//! `-q`: queue runs without a daemon. `-q` tries every queued message now;
//! `-q<time>` makes one pass over the messages whose retry time has come
//! (what cron or the systemd timer runs every `<time>`); `-qI/-qR/-qS` select
//! by substring. A message whose owner's virtusers line was removed or
//! changed since it was queued is held (`held (identity removed)` /
//! `held (identity changed)` in `-bp`), never sent from the old identity;
//! the administrator decides with `--release` or `--delete`. Messages locked by another process are skipped, so parallel
//! runs (and a -odi delivery in progress) never send a message twice. One
//! connection pool per run: messages to the same host from the same source
//! share an SMTP connection (RSET between). An error of one message (a full
//! disk when saving its state, a damaged envelope) is logged and the run goes
//! on with the next.

use crate::base::clock::unix_now;
use crate::cli::invocation::{QueueFilter, QueueRun};
use crate::deliver::context::Context;
use crate::deliver::outcome::Report;
use crate::deliver::privsep;
use crate::exit::Result;
use crate::identity::job::Job;
use crate::identity::profile::Identity;
use crate::spool::envelope::{Envelope, HeldBy, RcptState};
use crate::spool::store::{Spool, SpoolError};

pub fn run(job: &Job, q: &QueueRun) -> Result<i32> {
    let spool = Spool::of(&job.cfg)?;
    let mut ctx = Context::new(&job.cfg, &job.log, job.inv.verbose, true);
    // Root's runs count their connections per host (destination_concurrency).
    if job.trusted() {
        ctx.slots = Some(Default::default());
    }
    let now = unix_now();
    let mut tried = 0usize;
    let mut rate_released = 0usize;
    // Rate-held messages are released oldest first: ids sort by arrival.
    let mut current: std::collections::HashMap<String, Current> = Default::default();
    // Whose mail is suspended (looked up once per login and run).
    let mut suspended: std::collections::HashMap<String, bool> = Default::default();
    for id in spool.list()? {
        // Whose it is and whether it is due, read without the lock: a user's
        // run never takes (and so never pins) another user's message.
        match spool.load(&id) {
            Ok(env) if wanted(job, q, &env, now) => {}
            Ok(_) | Err(SpoolError::NotFound(_)) => continue,
            Err(e) => {
                job.log
                    .err(&format!("{id}: {e}; skipped by this queue run"));
                continue;
            }
        }
        // Then the lock (non-blocking: a message being delivered is skipped),
        // and the same checks on the envelope read under it.
        let mut locked = match spool.lock(&id, false) {
            Ok(Some(l)) if wanted(job, q, &l.env, now) => l,
            Ok(_) => continue,
            Err(e) => {
                job.log
                    .err(&format!("{id}: {e}; skipped by this queue run"));
                continue;
            }
        };
        // Queue runs never send a suspended user's mail.
        let login = locked.env.identity.login.clone();
        if *suspended
            .entry(login.clone())
            .or_insert_with(|| crate::account::suspend::get(&job.cfg, &login).is_some())
        {
            continue;
        }
        let now_identity = match current_identity(job, &locked.env, &mut current) {
            Err(()) => {
                job.log.err(&format!(
                    "{id}: the identity of {} cannot be read from virtusers now; not sent by this queue run",
                    locked.env.identity.login
                ));
                continue;
            }
            Ok(i) => i,
        };
        if let Some(by) = locked.env.identity_hold(now_identity.as_ref()) {
            hold_for_identity(job, &mut locked, by);
            continue;
        }
        if locked.env.rate_held {
            if !crate::account::rate::release(
                &job.cfg,
                &job.log,
                &mut locked.env,
                now_identity.as_ref(),
            ) {
                continue;
            }
            rate_released += 1;
            if let Err(e) = locked.save() {
                // Tried again by the next run; this one goes on.
                job.log
                    .err(&format!("{id}: {e}; left as it was, the queue run goes on"));
                continue;
            }
        }
        tried += 1;
        let expired = now.saturating_sub(locked.env.created) > job.cfg.max_age.as_secs();
        let report = if expired {
            Report {
                failed: expire(&mut locked.env, job.cfg.max_age.as_secs()),
                ..Default::default()
            }
        } else {
            privsep::deliver(&mut ctx, &mut locked)
        };
        if job.inv.verbose {
            crate::base::stderr::line(&format!(
                "vsendmail: {id}: sent={} deferred={} failed={}",
                report.sent.len(),
                report.deferred.len(),
                report.failed.len()
            ));
        }
        crate::commands::abuse::flush(&mut ctx, &report.notifications);
        if expired {
            let events: Vec<crate::account::rcpt_log::Event> = report
                .failed
                .iter()
                .map(|(to, why)| crate::account::rcpt_log::Event {
                    to,
                    status: "bounced",
                    reply: why,
                    src: String::new(),
                    dst: String::new(),
                })
                .collect();
            crate::account::rcpt_log::append_logged(&job.cfg, &job.log, &locked.env, &events);
        }
        if !report.failed.is_empty() {
            crate::deliver::bounce::send_failure(&mut ctx, &locked.env, &report.failed);
        }
        if locked.env.has_pending() {
            if let Some(warn) = job.cfg.warn_after
                && !locked.env.warned
                && now.saturating_sub(locked.env.created) >= warn.as_secs()
            {
                crate::deliver::bounce::send_delay_warning(&mut ctx, &locked.env, &report.deferred);
                locked.env.warned = true;
            }
            if let Err(e) = locked.save() {
                job.log.err(&format!(
                    "{id}: {e}; its state is not saved (tried again by the next run), the queue run goes on"
                ));
            }
        } else if let Err(e) = locked.remove() {
            job.log.err(&format!(
                "{id}: {e}; delivered but not removed, the queue run goes on"
            ));
        }
    }
    if let Some(pool) = ctx.pool.as_mut() {
        pool.close_all();
    }
    spool.sweep();
    crate::account::audit::expire(&job.cfg);
    crate::account::audit::prepare(&job.cfg);
    crate::deliver::oauth2::prepare(&job.cfg);
    if job.inv.verbose {
        crate::base::stderr::line(&format!(
            "vsendmail: queue run done: {tried} message(s) tried, {rate_released} released from the rate hold"
        ));
    }
    Ok(0)
}

/// Whether this run is to try the message: the invoker's own (or any, for
/// root and trusted users), selected, not held, and due.
fn wanted(job: &Job, q: &QueueRun, env: &Envelope, now: u64) -> bool {
    (job.trusted() || env.identity.uid == job.invoker.uid)
        && selected(env, &q.filters)
        && !env.held
        && (q.interval.is_none() || env.next_try <= now || env.rate_held)
}

/// Substring selection as sendmail's -qI/-qR/-qS.
pub fn selected(env: &Envelope, filters: &[QueueFilter]) -> bool {
    filters.iter().all(|f| match f {
        QueueFilter::Id(s) => env
            .id
            .to_ascii_lowercase()
            .contains(&s.to_ascii_lowercase()),
        QueueFilter::Recipient(s) => env.recipients.iter().any(|r| {
            r.state == RcptState::Pending
                && r.addr
                    .to_ascii_lowercase()
                    .contains(&s.to_ascii_lowercase())
        }),
        QueueFilter::Sender(s) => env
            .sender
            .to_ascii_lowercase()
            .contains(&s.to_ascii_lowercase()),
    })
}

/// Past max_age: every pending recipient fails with the last reason;
/// returns them as (address, reason) for the bounce.
fn expire(env: &mut Envelope, max_age: u64) -> Vec<(String, String)> {
    let days = max_age as f64 / 86400.0;
    let mut failed = Vec::new();
    for r in env
        .recipients
        .iter_mut()
        .filter(|r| r.state == RcptState::Pending)
    {
        let why = format!(
            "message expired after {days:.1} days in the queue; last error: {}",
            r.reply.as_deref().unwrap_or("none")
        );
        r.state = RcptState::Failed;
        r.reply = Some(why.clone());
        failed.push((r.addr.clone(), why));
    }
    failed
}

/// The owner's identity today, looked up once per login and run; `Err`
/// when virtusers cannot be read now.
type Current = std::result::Result<Option<Identity>, ()>;

fn current_identity(
    job: &Job,
    env: &Envelope,
    current: &mut std::collections::HashMap<String, Current>,
) -> Current {
    current
        .entry(env.identity.login.clone())
        .or_insert_with(|| {
            crate::identity::job::current_identity(&job.cfg, &env.identity.login).map_err(|_| ())
        })
        .clone()
}

/// Hold the message for the administrator (`-bp`: `held (identity …)`).
fn hold_for_identity(job: &Job, locked: &mut crate::spool::store::Locked, by: HeldBy) {
    locked.env.held = true;
    locked.env.held_by = Some(by);
    let id = locked.id().to_string();
    match locked.save() {
        Ok(()) => job.log.warning(&format!(
            "{id}: held ({}): queued as {} by {} before virtusers changed; not sent from the old identity; root decides with --release {id} (sends as the identity is now) or --delete {id}",
            by.text(),
            locked.env.identity.sender,
            locked.env.identity.login
        )),
        Err(e) => job.log.err(&format!(
            "{id}: {e}; not sent (its identity {}), the queue run goes on",
            by.text()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substring_filters() {
        let mut e = Envelope::new_for_test("ABCDEF0123");
        e.sender = "alice@shop.example".into();
        assert!(selected(&e, &[QueueFilter::Id("def0".into())]));
        assert!(selected(&e, &[QueueFilter::Recipient("x.test".into())]));
        assert!(selected(&e, &[QueueFilter::Sender("shop".into())]));
        assert!(!selected(&e, &[QueueFilter::Sender("blog".into())]));
        e.recipients[0].state = RcptState::Sent;
        assert!(!selected(&e, &[QueueFilter::Recipient("x.test".into())]));
    }
}
