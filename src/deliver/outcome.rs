//! The outcome of a delivery attempt: per recipient sent, deferred (with the
//! reason) or failed (with the reply), merged into the envelope and the
//! report the caller acts on, one syslog line per recipient, and the next
//! retry time. Each reply is kept as its first line, at most `MAX_REPLY`
//! bytes. Also why one try of one address did not settle everything.

use crate::base::clock::unix_now;
use crate::base::syslog::{Attempt, MAX_REPLY, attempt_line, text};
use crate::config::conf::Loaded;
use crate::deliver::context::Context;
use crate::identity::profile::Identity;
use crate::spool::envelope::{Envelope, RcptState};
use crate::spool::store::Locked;
use std::collections::HashMap;
use std::net::SocketAddr;

/// What happened to one recipient in this attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent(String),
    Deferred(String),
    Failed(String),
    /// Not tried: every host is backing off (`deliver::backoff`) until the
    /// time given. Not an attempt: the tries and attempts are not counted.
    Waiting(String, u64),
}

/// The result of one delivery attempt of a message.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub sent: Vec<(String, String)>,
    pub deferred: Vec<(String, String)>,
    pub failed: Vec<(String, String)>,
    /// Problems of this host's own configuration (source not configured...).
    pub local_errors: Vec<String>,
    /// Breaker notifications this attempt's outcomes queued (queue ids), for
    /// the caller to try at once.
    pub notifications: Vec<String>,
}

/// Each recipient's outcome in this attempt (by index into the envelope's
/// recipients), with the source address used and the host that answered.
pub type Outcomes = HashMap<usize, (Outcome, Option<SocketAddr>, Option<String>)>;

/// Why one try of one address did not settle every recipient.
pub enum TryError {
    /// Try the next address/host; the reason applies to every remaining recipient.
    Next {
        why: String,
        permanent: bool,
        local: bool,
    },
    /// Stop trying for this destination; the remaining recipients get `why`.
    Stop { why: String, permanent: bool },
}

/// Record this attempt's outcomes in the envelope (state, reply, tries,
/// attempts, next retry) and in the report, and log one line per recipient.
pub fn record(
    ctx: &Context,
    msg: &mut Locked,
    identity: &Identity,
    mut outcomes: Outcomes,
    report: &mut Report,
) {
    // Record outcomes in the envelope, log each recipient.
    let now = unix_now();
    let delay_precise = precise_delay(&msg.env);
    let mut any_deferred = false;
    // (to, status, reply, src, dst) for the per-recipient log and the breaker.
    let mut events: Vec<RcptEvent> = Vec::new();
    let mut tried = false;
    let mut wait_until: Option<u64> = None;
    for (i, r) in msg.env.recipients.iter_mut().enumerate() {
        let Some((o, src, relay_name)) = outcomes.remove(&i) else {
            continue;
        };
        if let Outcome::Waiting(_, until) = &o {
            wait_until = Some(wait_until.map_or(*until, |w| w.min(*until)));
        } else {
            r.tries += 1;
            tried = true;
        }
        // A hostile server's reply is kept bounded (its first line, at most
        // MAX_REPLY bytes): in the envelope every -bp and -q re-reads, in the
        // log, in the report and the bounce.
        let o = match o {
            Outcome::Sent(d) => Outcome::Sent(text(&d, MAX_REPLY)),
            Outcome::Deferred(d) => Outcome::Deferred(text(&d, MAX_REPLY)),
            Outcome::Failed(d) => Outcome::Failed(text(&d, MAX_REPLY)),
            Outcome::Waiting(d, t) => Outcome::Waiting(text(&d, MAX_REPLY), t),
        };
        let (status, detail) = match &o {
            Outcome::Sent(d) => {
                r.state = RcptState::Sent;
                report.sent.push((r.addr.clone(), d.clone()));
                ("sent", d.clone())
            }
            Outcome::Deferred(d) => {
                any_deferred = true;
                report.deferred.push((r.addr.clone(), d.clone()));
                ("deferred", d.clone())
            }
            Outcome::Failed(d) => {
                r.state = RcptState::Failed;
                report.failed.push((r.addr.clone(), d.clone()));
                ("failed", d.clone())
            }
            Outcome::Waiting(d, _) => {
                report.deferred.push((r.addr.clone(), d.clone()));
                ("deferred", d.clone())
            }
        };
        r.reply = Some(detail.clone());
        events.push(RcptEvent {
            to: r.addr.clone(),
            status: status.to_string(),
            reply: detail.clone(),
            src: src
                .map(|a| crate::base::syslog::addr_port(&a))
                .unwrap_or_default(),
            dst: relay_name.clone().unwrap_or_default(),
        });
        ctx.log.info(&attempt_line(&Attempt {
            queue_id: &msg.env.id,
            uid: identity.uid,
            user: &identity.login,
            identity: &identity.sender,
            src,
            to: &r.addr,
            relay: relay_name.as_deref(),
            delay: delay_precise,
            status,
            detail: &detail,
        }));
    }
    if !msg.env.is_bounce {
        account(ctx, &msg.env, &events, report);
    }
    // Waiting for a destination is not an attempt.
    if tried || wait_until.is_none() {
        msg.env.attempts += 1;
        msg.env.last_try = now;
    }
    if any_deferred {
        msg.env.next_try = now + backoff(ctx.cfg, msg.env.attempts).as_secs();
    }
    if let Some(w) = wait_until {
        msg.env.next_try = if any_deferred {
            msg.env.next_try.min(w)
        } else {
            w
        };
    }
}

/// One recipient's outcome of an attempt, for the per-recipient log and
/// the breaker.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RcptEvent {
    pub to: String,
    pub status: String,
    pub reply: String,
    pub src: String,
    pub dst: String,
}

/// The events a split delivery's child recorded, for its answer.
static CHILD_EVENTS: std::sync::Mutex<Vec<RcptEvent>> = std::sync::Mutex::new(Vec::new());

/// Take the events [`account`] kept in a split delivery's child.
pub fn take_child_events() -> Vec<RcptEvent> {
    std::mem::take(&mut *CHILD_EVENTS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The attempt's per-recipient records (written as the outcome is
/// recorded, before the envelope is saved) and the breaker's count of them.
pub fn account(ctx: &Context, env: &Envelope, events: &[RcptEvent], report: &mut Report) {
    if crate::spool::shared::in_split_child() {
        // The network child cannot write them: its parent does (privsep).
        CHILD_EVENTS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(events);
        return;
    }
    use crate::account::breaker::{self, Kind, Verdict};
    use crate::account::rcpt_log::{Event, append_logged};
    let evs: Vec<Event> = events
        .iter()
        .map(|e| Event {
            to: &e.to,
            status: &e.status,
            reply: &e.reply,
            src: e.src.clone(),
            dst: e.dst.clone(),
        })
        .collect();
    append_logged(ctx.cfg, ctx.log, env, &evs);
    let kinds: Vec<Kind> = events
        .iter()
        .map(|e| match e.status.as_str() {
            "sent" => Kind::Sent,
            "deferred" => Kind::Deferred,
            _ => Kind::of_failure(&e.reply),
        })
        .collect();
    if let Verdict::Tripped(s, c) = breaker::outcomes(ctx.cfg, ctx.log, &env.identity, &kinds)
        && let Some(l) = breaker::queue_notification(ctx.cfg, ctx.log, &env.identity, &s, &c)
    {
        report.notifications.push(l.env.id.clone());
    }
}

/// Seconds since the message arrived.
fn precise_delay(env: &Envelope) -> f64 {
    let now = crate::base::clock::unix_ms();
    let arrived = if env.arrival_ms > 0 {
        env.arrival_ms
    } else {
        env.created * 1000
    };
    now.saturating_sub(arrived) as f64 / 1000.0
}

/// retry_min doubled per attempt, capped at retry_max.
pub fn backoff(cfg: &Loaded, attempts: u32) -> std::time::Duration {
    let base = cfg.retry_min.as_secs().max(1);
    let factor = 1u64 << attempts.saturating_sub(1).min(20);
    std::time::Duration::from_secs(
        base.saturating_mul(factor)
            .min(cfg.retry_max.as_secs().max(base)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::syslog::Syslog;
    use crate::spool::envelope::Recipient;
    use crate::spool::store::Spool;
    use std::io::Write;

    /// A committed (locked) message to three recipients in a fresh spool.
    fn queued(dir: &std::path::Path) -> Locked {
        let s = Spool::open(dir).unwrap();
        let mut d = s.draft().unwrap();
        d.file().write_all(b"Subject: x\r\n\r\nhi\r\n").unwrap();
        let mut env = Envelope::new_for_test(&d.id);
        env.size = 18;
        env.recipients = ["a@x.test", "b@x.test", "c@x.test", "d@x.test"]
            .iter()
            .map(|a| Recipient::new(a.to_string(), None))
            .collect();
        env.recipients[3].state = RcptState::Sent;
        d.commit(&env).unwrap()
    }

    #[test]
    fn outcomes_are_merged_into_envelope_and_report() {
        let dir = std::env::temp_dir().join(format!(
            "vs-outcome-{}-{}",
            std::process::id(),
            crate::base::clock::unix_ms()
        ));
        let cfg = crate::config::conf::parse(
            "retry_min = \"10m\"\nretry_max = \"1h\"\n",
            std::path::Path::new("t.conf"),
        )
        .unwrap();
        let log = Syslog::none();
        let ctx = Context::new(&cfg, &log, false, false);
        let mut msg = queued(&dir);
        let id = msg.env.identity.clone();
        let src: SocketAddr = "127.0.0.2:40000".parse().unwrap();
        let mut o: Outcomes = HashMap::new();
        o.insert(
            0,
            (Outcome::Sent("250 ok".into()), Some(src), Some("mx".into())),
        );
        o.insert(1, (Outcome::Deferred("451 later".into()), Some(src), None));
        o.insert(2, (Outcome::Failed("550 no".into()), None, None));
        let mut report = Report::default();
        let before = unix_now();
        record(&ctx, &mut msg, &id, o, &mut report);
        let r = &msg.env.recipients;
        assert_eq!(
            r.iter().map(|r| r.state).collect::<Vec<_>>(),
            [
                RcptState::Sent,
                RcptState::Pending,
                RcptState::Failed,
                RcptState::Sent
            ]
        );
        assert_eq!(r[1].reply.as_deref(), Some("451 later"));
        assert_eq!(
            (r[0].tries, r[1].tries, r[2].tries, r[3].tries),
            (1, 1, 1, 0)
        );
        assert_eq!(
            report.sent,
            [("a@x.test".to_string(), "250 ok".to_string())]
        );
        assert_eq!(report.deferred.len(), 1);
        assert_eq!(report.failed[0].1, "550 no");
        assert_eq!(msg.env.attempts, 1);
        // Deferred: the first retry waits retry_min.
        assert!(msg.env.next_try >= before + 600 && msg.env.next_try <= unix_now() + 600);
        drop(msg);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hostile_replies_are_stored_bounded() {
        let dir = std::env::temp_dir().join(format!(
            "vs-outcome-big-{}-{}",
            std::process::id(),
            crate::base::clock::unix_ms()
        ));
        let cfg = crate::config::conf::parse("", std::path::Path::new("t.conf")).unwrap();
        let log = Syslog::none();
        let ctx = Context::new(&cfg, &log, false, false);
        let mut msg = queued(&dir);
        let id = msg.env.identity.clone();
        let huge: String = (0..128)
            .map(|i| format!("451-{i} {}\r\n", "x".repeat(4000)))
            .collect();
        let mut o: Outcomes = HashMap::new();
        for i in 0..3 {
            o.insert(i, (Outcome::Deferred(huge.clone()), None, None));
        }
        let mut report = Report::default();
        record(&ctx, &mut msg, &id, o, &mut report);
        for r in &msg.env.recipients[..3] {
            let reply = r.reply.as_deref().unwrap();
            assert!(reply.len() <= MAX_REPLY, "{}", reply.len());
            assert!(reply.starts_with("451-0 xxx") && !reply.contains('\n'));
        }
        assert!(msg.env.encode().len() < 4 * 1024);
        drop(msg);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn backoff_doubles_up_to_retry_max() {
        let cfg = crate::config::conf::parse(
            "retry_min = \"5m\"\nretry_max = \"30m\"\n",
            std::path::Path::new("t.conf"),
        )
        .unwrap();
        let secs: Vec<u64> = (1..=5).map(|a| backoff(&cfg, a).as_secs()).collect();
        assert_eq!(secs, [300, 600, 1200, 1800, 1800]);
    }
}
