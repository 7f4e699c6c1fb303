//! Delivery of one queued message: route its pending recipients (relay or
//! MX), resolve the identity's sources, then for each destination try its
//! hosts and addresses in order (`host`) until every recipient is
//! settled or the hosts run out; the outcome goes into the envelope
//! (`outcome::record`). The envelope is updated in place; the caller saves
//! or removes it.

use crate::deliver::context::Context;
use crate::deliver::host::try_address;
use crate::deliver::outcome::{Outcome, Outcomes, Report, TryError, record};
use crate::deliver::route::{Destination, Router};
use crate::identity::profile::Identity;
use crate::spool::envelope::RcptState;
use crate::spool::store::Locked;
use std::collections::HashMap;
use std::net::IpAddr;

/// Deliver the pending recipients of `msg`. Updates the recipients' states,
/// attempts and retry time in `msg.env` (not saved).
pub fn deliver(ctx: &mut Context, msg: &mut Locked) -> Report {
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

    let relay = crate::deliver::route::relay_for(ctx.cfg, &identity);
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
        let families = crate::deliver::route::families(&sources);
        let v6_first = ctx.cfg.cfg.prefer == crate::config::conf::Prefer::Ipv6;
        let mx_port = ctx.cfg.cfg.mx_port;
        let needs_dns = relay
            .as_ref()
            .map(|r| r.host.parse::<IpAddr>().is_err())
            .unwrap_or(true);
        let (dests, bad) = {
            let dns = if needs_dns { ctx.dns() } else { None };
            let router = Router {
                dns,
                mx_port,
                v6_first,
                families,
            };
            router.plan(&pending, relay.as_ref())
        };
        for u in bad {
            let o = if u.permanent {
                Outcome::Failed(u.why)
            } else {
                Outcome::Deferred(u.why)
            };
            outcomes.insert(u.rcpt, (o, None, None));
        }
        for d in dests {
            deliver_destination(
                ctx,
                msg,
                &identity,
                &sources,
                &d,
                &mut outcomes,
                &mut report,
            );
        }
    }

    record(ctx, msg, &identity, outcomes, &mut report);
    report
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
    'hosts: for host in &dest.hosts {
        for addr in &host.addrs {
            if remaining.is_empty() {
                break 'hosts;
            }
            match try_address(
                ctx, msg, identity, sources, dest, &host.name, *addr, &remaining, outcomes,
            ) {
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
                }
                Err(TryError::Stop { why, permanent }) => {
                    last = Some((why, permanent));
                    break 'hosts;
                }
            }
        }
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
