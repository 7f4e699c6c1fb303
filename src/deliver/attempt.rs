//! Delivery of one queued message: route its pending recipients (relay or
//! MX), resolve the identity's sources, then for each destination try its
//! hosts and addresses in order (`host`) until every recipient is
//! settled or the hosts run out; the outcome goes into the envelope
//! (`outcome::record`). The envelope is updated in place; the caller saves
//! or removes it.
//!
//! Bounded so that one hostile destination cannot hold the queue: per
//! destination at most `mx_address_limit` addresses are tried and at most
//! `mx_session_limit` sessions that got past the greeting (Postfix's
//! smtp_mx_address_limit and smtp_mx_session_limit); the whole attempt has
//! `message_time_budget`, which every connect, TLS handshake, read and write
//! respects; once it is spent, the recipients not yet settled are deferred
//! with that reason.

use crate::base::relay::Relay;
use crate::deliver::context::Context;
use crate::deliver::host::try_address;
use crate::deliver::outcome::{Outcome, Outcomes, Report, TryError, record};
use crate::deliver::peer_tls::HostTls;
use crate::deliver::route::{Destination, Router};
use crate::deliver::smtp::session;
use crate::deliver::tls_choice::{self, Choice};
use crate::identity::profile::Identity;
use crate::spool::envelope::RcptState;
use crate::spool::store::Locked;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Deliver the pending recipients of `msg`. Updates the recipients' states,
/// attempts and retry time in `msg.env` (not saved).
pub fn deliver(ctx: &mut Context, msg: &mut Locked) -> Report {
    let _budget = Budget::start(ctx.cfg.message_time_budget);
    let env = &msg.env;
    let identity = env.identity.clone();
    let pending: Vec<(usize, String)> = env
        .recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| r.state == RcptState::Pending)
        .map(|(i, r)| (i, r.addr.clone()))
        .collect();
    let mut outcomes: Outcomes = HashMap::new();
    let mut report = Report::default();
    if let Err(why) = msg.check_size() {
        ctx.log.err(&format!("{}: {why}", msg.env.id));
        report.local_errors.push(why.clone());
        for (i, _) in &pending {
            outcomes.insert(*i, (Outcome::Deferred(why.clone()), None, None));
        }
    }

    let sources = if !outcomes.is_empty() {
        Vec::new()
    } else {
        match resolve_sources(ctx, &identity) {
            Ok(s) => s,
            Err(why) => {
                for (i, _) in &pending {
                    outcomes.insert(*i, (Outcome::Deferred(why.clone()), None, None));
                }
                report.local_errors.push(why);
                Vec::new()
            }
        }
    };
    if outcomes.is_empty() {
        // Each route's part of the message is delivered, deferred or failed on its own.
        for (choice, rcpts) in crate::deliver::route::split(ctx.cfg, &identity, &pending) {
            deliver_route(
                ctx,
                msg,
                &identity,
                &sources,
                choice.relays.as_ref(),
                &rcpts,
                &mut outcomes,
                &mut report,
            );
        }
    }

    record(ctx, msg, &identity, outcomes, &mut report);
    report
}

/// The recipients of one route: by MX, or through its relays in order. The
/// recipients a relay leaves deferred (it could not be reached or resolved,
/// TLS failed, or it answered 4xx) go to the next relay of the list; what the
/// last one leaves deferred keeps every relay's reason. A permanent refusal
/// is final.
#[allow(clippy::too_many_arguments)]
fn deliver_route(
    ctx: &mut Context,
    msg: &Locked,
    identity: &Identity,
    sources: &[IpAddr],
    relays: Option<&crate::base::relay::Relays>,
    rcpts: &[(usize, String)],
    outcomes: &mut Outcomes,
    report: &mut Report,
) {
    let families = crate::deliver::route::families(sources);
    let v6_first = ctx.cfg.cfg.prefer == crate::config::conf::Prefer::Ipv6;
    let mx_port = ctx.cfg.cfg.mx_port;
    let plan = |ctx: &mut Context, rcpts: &[(usize, String)], relay: Option<&Relay>| {
        let needs_dns = relay.is_none_or(|r| r.host.parse::<IpAddr>().is_err());
        let dns = if needs_dns { ctx.dns() } else { None };
        Router {
            dns,
            mx_port,
            v6_first,
            families,
        }
        .plan(rcpts, relay)
    };
    let unroutable = |o: &mut Outcomes, u: crate::deliver::route::Unroutable| {
        let why = if u.permanent {
            Outcome::Failed(u.why)
        } else {
            Outcome::Deferred(u.why)
        };
        o.insert(u.rcpt, (why, None, None));
    };
    let Some(relays) = relays else {
        let (dests, bad) = plan(ctx, rcpts, None);
        for u in bad {
            unroutable(outcomes, u);
        }
        for d in dests {
            deliver_destination(ctx, msg, identity, sources, &d, outcomes, report);
        }
        return;
    };
    let list = relays.list();
    let mut left: Vec<(usize, String)> = rcpts.to_vec();
    let mut earlier: HashMap<usize, Vec<String>> = HashMap::new();
    for (k, relay) in list.iter().enumerate() {
        let (dests, bad) = plan(ctx, &left, Some(relay));
        for u in bad {
            unroutable(outcomes, u);
        }
        for d in dests {
            deliver_destination(ctx, msg, identity, sources, &d, outcomes, report);
        }
        left.retain(|(i, _)| matches!(outcomes.get(i), Some((Outcome::Deferred(_), _, _))));
        if left.is_empty() || k + 1 == list.len() {
            break;
        }
        // Deferred here: note why, and try the next relay afresh.
        for (i, _) in &left {
            if let Some((Outcome::Deferred(why), _, _)) = outcomes.remove(i) {
                earlier
                    .entry(*i)
                    .or_default()
                    .push(format!("relay {}: {why}", relay.text));
            }
        }
    }
    let last = list.last().map(|r| r.text.as_str()).unwrap_or_default();
    for (i, _) in &left {
        if let (Some(notes), Some((Outcome::Deferred(why), _, _))) =
            (earlier.get(i), outcomes.get_mut(i))
        {
            *why = format!("{}; relay {last}: {why}", notes.join("; "));
        }
    }
}

/// The message deadline of one delivery attempt, set while this lives
/// (the one before it restored after: a bounce sent meanwhile has its own).
struct Budget(Option<Instant>);

impl Budget {
    fn start(budget: Option<Duration>) -> Budget {
        let before = session::message_deadline();
        session::set_message_deadline(budget.map(|b| Instant::now() + b));
        Budget(before)
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        session::set_message_deadline(self.0);
    }
}

/// Why the rest of a destination is not tried in this attempt, if so.
fn spent(ctx: &Context, addresses: u32, sessions: u32) -> Option<String> {
    let c = &ctx.cfg.cfg;
    if let Some(end) = session::message_deadline()
        && session::left(end).is_none()
    {
        let b = ctx.cfg.message_time_budget.unwrap_or_default();
        return Some(format!(
            "message_time_budget ({}) spent in this delivery attempt; deferred to the next queue run",
            crate::base::limit::period_text(b)
        ));
    }
    if c.mx_address_limit > 0 && addresses >= c.mx_address_limit {
        return Some(format!(
            "{addresses} addresses tried (mx_address_limit {})",
            c.mx_address_limit
        ));
    }
    if c.mx_session_limit > 0 && sessions >= c.mx_session_limit {
        return Some(format!(
            "{sessions} sessions tried (mx_session_limit {})",
            c.mx_session_limit
        ));
    }
    None
}

/// The identity's source addresses; a `source_host` is resolved now.
fn resolve_sources(ctx: &mut Context, id: &Identity) -> Result<Vec<IpAddr>, String> {
    let Some(h) = &id.source_host else {
        return Ok(id.sources.clone());
    };
    let Some(dns) = ctx.dns() else {
        return Err(format!(
            "cannot resolve source host {h} (identity {}): no resolver",
            id.sender
        ));
    };
    let mut v = dns.addrs(h, true, true, true).map_err(|e| {
        format!(
            "cannot resolve source host {h} (identity {}): {e}",
            id.sender
        )
    })?;
    // Never bind a link-local address picked up by a name.
    v.retain(|ip| !matches!(ip, IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80));
    if v.is_empty() {
        return Err(format!(
            "source host {h} (identity {}) has no address",
            id.sender
        ));
    }
    Ok(v)
}

#[allow(clippy::too_many_arguments)]
fn deliver_destination(
    ctx: &mut Context,
    msg: &Locked,
    identity: &Identity,
    sources: &[IpAddr],
    dest: &Destination,
    outcomes: &mut Outcomes,
    report: &mut Report,
) {
    let mut remaining: Vec<usize> = dest.rcpts.clone();
    let mut last: Option<(String, bool)> = None;
    // Hosts not tried: backing off (the one ending first), or no free slot.
    let mut waiting: Option<(String, u64)> = None;
    let (mut addresses, mut sessions) = (0u32, 0u32);
    let sts = tls_choice::sts_policy(ctx, dest);
    'hosts: for host in &dest.hosts {
        if remaining.is_empty() {
            break;
        }
        let now = crate::base::clock::unix_now();
        if let Some(w) = crate::deliver::backoff::waiting(ctx.cfg, &host.name, sources, now) {
            if waiting.as_ref().is_none_or(|(_, u)| w.until < *u) {
                waiting = Some((w.describe(), w.until));
            }
            continue 'hosts;
        }
        match tls_choice::for_host(ctx, dest, sts.as_ref(), &host.name) {
            Choice::Skip(why) => {
                if ctx.verbose {
                    crate::base::stderr::line(&format!("*** {}: {why}", host.name));
                }
                ctx.log.warning(&format!("{}: {why}", msg.env.id));
                last = Some((why, false));
                continue 'hosts;
            }
            Choice::Use(t, why) => {
                if ctx.verbose {
                    crate::base::stderr::line(&format!("*** {}: {why}", host.name));
                }
                ctx.peer_tls = t;
            }
        }
        if let Err(why) = take_slot(ctx, &host.name) {
            waiting.get_or_insert((why, now));
            continue 'hosts;
        }
        for addr in &host.addrs {
            if remaining.is_empty() {
                break 'hosts;
            }
            if let Some(why) = spent(ctx, addresses, sessions) {
                // Keep the last real reply when there was one.
                let why = match &last {
                    Some((w, _)) => format!("{w}; {why}"),
                    None => why,
                };
                last = Some((why, false));
                break 'hosts;
            }
            addresses += 1;
            // A session got past the greeting when the try recorded outcomes.
            let before: Vec<_> = remaining.iter().map(|i| outcomes.get(i).cloned()).collect();
            let _ = session::take_slow_down();
            let r = try_address(
                ctx, msg, identity, sources, dest, &host.name, *addr, &remaining, outcomes,
            );
            let slowed = slow_down(ctx, msg, &host.name, sources);
            if r.is_ok()
                || remaining
                    .iter()
                    .zip(&before)
                    .any(|(i, b)| outcomes.get(i) != b.as_ref())
            {
                sessions += 1;
            }
            match r {
                Ok(left) => {
                    remaining = left;
                    // The session ran; a different address of the same host won't do better.
                    continue 'hosts;
                }
                Err(TryError::Next {
                    why,
                    permanent,
                    local,
                }) => {
                    if local && !report.local_errors.contains(&why) {
                        report.local_errors.push(why.clone());
                    }
                    last = Some((why, permanent));
                    if slowed {
                        continue 'hosts;
                    }
                }
                Err(TryError::Stop { why, permanent }) => {
                    last = Some((why, permanent));
                    break 'hosts;
                }
            }
        }
    }
    ctx.peer_tls = HostTls::Configured;
    if last.is_none()
        && let Some((why, until)) = waiting
    {
        for i in remaining {
            outcomes.insert(
                i,
                (
                    Outcome::Waiting(why.clone(), until),
                    None,
                    Some(dest.name.clone()),
                ),
            );
        }
        return;
    }
    let (why, permanent) = last.unwrap_or_else(|| ("no host could be reached".into(), false));
    for i in remaining {
        if outcomes
            .get(&i)
            .is_some_and(|(o, _, _)| !matches!(o, Outcome::Deferred(_)))
        {
            continue;
        }
        if outcomes.contains_key(&i) && !permanent {
            continue; // keep the recipient's own deferral reply
        }
        let o = if permanent {
            Outcome::Failed(why.clone())
        } else {
            Outcome::Deferred(why.clone())
        };
        outcomes.insert(i, (o, None, Some(dest.name.clone())));
    }
}

/// In a queue run that counts connections (root's): hold one of the host's
/// `destination_concurrency` slots until the run ends.
fn take_slot(ctx: &mut Context, host: &str) -> Result<(), String> {
    let Some(slots) = ctx.slots.as_mut() else {
        return Ok(());
    };
    if slots.contains_key(host) {
        return Ok(());
    }
    let s = crate::deliver::backoff::slot(ctx.cfg, host)?;
    slots.insert(host.to_string(), s);
    Ok(())
}

/// After a try: when the host asked to slow down, record the wait (see
/// `deliver::backoff`); true when it did.
fn slow_down(ctx: &Context, msg: &Locked, host: &str, sources: &[IpAddr]) -> bool {
    let Some((local, said)) = session::take_slow_down() else {
        return false;
    };
    let src = (!sources.is_empty()).then_some(local.ip());
    let now = crate::base::clock::unix_now();
    match crate::deliver::backoff::record(ctx.cfg, host, src, &said, now) {
        Ok(w) => ctx
            .log
            .warning(&format!("{}: {}", msg.env.id, w.describe())),
        Err(e) => ctx.log.err(&format!("{}: {e}", msg.env.id)),
    }
    true
}
