//! The abuse desk's part of a submission (`submit::accept` calls it): the
//! stops before a message is counted or committed (a suspension, then the
//! circuit breaker, which may suspend now), the per-recipient records that
//! must exist before the caller hears the answer (`refused`, `held`,
//! `suspended`), and the breaker's one notification, queued durably and then
//! tried at once from the host identity.

use crate::account::breaker::{self, Counts, Verdict};
use crate::account::rcpt_log;
use crate::account::suspend::{self, Suspension};
use crate::config::conf::SuspendAction;
use crate::deliver::context::Context;
use crate::exit::{Error, Result};
use crate::identity::job::Job;
use crate::identity::profile::Identity;
use crate::spool::envelope::Envelope;

/// Apply a suspension (or a breaker trip) to the message being submitted:
/// refused (77, recorded first) or held (`env.held`, `env.suspended`).
/// Returns the trip when this submission tripped the breaker, for
/// [`notify`] once the message is committed.
pub fn stops(job: &Job, trusted: bool, env: &mut Envelope) -> Result<Option<(Suspension, Counts)>> {
    if trusted {
        return Ok(None);
    }
    let mut trip = None;
    let s = match suspend::get(&job.cfg, &env.identity.login) {
        Some(s) => Some(s),
        None => match breaker::submitted(&job.cfg, &job.log, env) {
            Ok(Verdict::Fine) => None,
            Ok(Verdict::Suspended(s)) => Some(s),
            Ok(Verdict::Tripped(s, c)) => {
                trip = Some((s.clone(), c));
                Some(s)
            }
            Err(e) => {
                job.log.err(&format!(
                    "{}: uid={} user={}: cannot use the breaker counters of {}: {e}",
                    env.id, env.identity.uid, env.identity.login, env.identity.sender
                ));
                return Err(Error::Breaker {
                    identity: env.identity.sender.clone(),
                    err: e,
                });
            }
        },
    };
    let Some(s) = s else { return Ok(None) };
    match s.action {
        SuspendAction::Refuse => {
            let text = s.refusal();
            refused(job, env, &text);
            job.log.warning(&format!(
                "{}: uid={} user={} identity={} refused: suspended{}",
                env.id,
                env.identity.uid,
                env.identity.login,
                env.identity.sender,
                env.attribution.log_fields()
            ));
            if let Some((s, c)) = &trip {
                notify(job, &env.identity, s, c);
            }
            Err(Error::Suspended { text })
        }
        SuspendAction::Hold => {
            env.held = true;
            env.suspended = true;
            Ok(trip)
        }
    }
}

/// The `refused` records of a message that is not accepted.
pub fn refused(job: &Job, env: &Envelope, why: &str) {
    rcpt_log::append_logged(&job.cfg, &job.log, env, &rcpt_log::all(env, "refused", why));
}

/// The `suspended` or `held` records of a message accepted but held; when
/// they cannot be written the message is not accepted (75).
pub fn held_records(job: &Job, env: &Envelope) -> Result<()> {
    let (status, why) = if env.suspended {
        let why = suspend::get(&job.cfg, &env.identity.login)
            .map(|s| format!("held: {}", s.refusal()))
            .unwrap_or_else(|| "held: sending is suspended".into());
        ("suspended", why)
    } else if env.rate_held {
        ("held", "rate limited".to_string())
    } else {
        return Ok(());
    };
    rcpt_log::append(&job.cfg, env, &rcpt_log::all(env, status, &why)).map_err(|err| {
        Error::LogWrite {
            path: job.cfg.audit_dir().display().to_string(),
            err,
        }
    })
}

/// Queue the breaker's notification and try it at once (a queue run sends
/// it when this process cannot).
pub fn notify(job: &Job, identity: &Identity, s: &Suspension, c: &Counts) {
    let Some(mut locked) = breaker::queue_notification(&job.cfg, &job.log, identity, s, c) else {
        return;
    };
    let mut ctx = Context::new(&job.cfg, &job.log, false, false);
    let _ = crate::deliver::attempt::deliver(&mut ctx, &mut locked);
    let _ = if locked.env.has_pending() {
        locked.save()
    } else {
        locked.remove()
    };
}

/// Try at once the notifications that delivery outcomes queued (their ids
/// in a report).
pub fn flush(ctx: &mut Context, ids: &[String]) {
    let Ok(spool) = crate::spool::store::Spool::of(ctx.cfg) else {
        return;
    };
    for id in ids {
        if let Ok(Some(mut locked)) = spool.lock(id, false) {
            let _ = crate::deliver::attempt::deliver(ctx, &mut locked);
            let _ = if locked.env.has_pending() {
                locked.save()
            } else {
                locked.remove()
            };
        }
    }
}
