//! `-bv`: for each recipient, what would happen — the identity, the source
//! address that would be bound (checked by binding it), the route, DKIM and
//! BATV, which of DANE, MTA-STS or the `tls` policy applies to each host
//! and why (and a backoff in force) — without sending anything or reading
//! stdin.

use crate::deliver::route::Router;
use crate::exit::{Error, Result};
use crate::identity::job::Job;

pub fn run(job: &Job) -> Result<i32> {
    if job.inv.recipients.is_empty() {
        return Err(Error::VerifyNeedsRecipients);
    }
    let id = job.identity()?;
    let domain = id.domain();
    let (aliases, _) = crate::config::aliases::Aliases::load(&job.cfg.cfg.aliases);
    // Per family, the first address that binds is the one delivery uses.
    let (mut v4_used, mut v6_used) = (false, false);
    let sources: Vec<String> = id
        .sources
        .iter()
        .map(|s| {
            let ok = crate::deliver::connect::can_bind(*s).is_ok();
            let used = if s.is_ipv4() {
                &mut v4_used
            } else {
                &mut v6_used
            };
            let nat = match id.public_for(*s) {
                Some(p) => format!(", public {p}"),
                None => String::new(),
            };
            let text = match (ok, *used) {
                (true, false) => format!(
                    "{s} (bound here: ok, used for {}{nat})",
                    if s.is_ipv4() { "IPv4" } else { "IPv6" }
                ),
                (true, true) => format!("{s} (bound here: ok, spare{nat})"),
                (false, _) => format!("{s} (NOT configured on this host{nat})"),
            };
            *used |= ok;
            text
        })
        .collect();
    let src_text = if let Some(h) = &id.source_host {
        format!("{h} (host name, resolved at send time)")
    } else if sources.is_empty() {
        "- (kernel's choice, no binding)".into()
    } else {
        sources.join(", ")
    };
    let keys = id.dkim_keys();
    let dkim = if keys.is_empty() {
        "no".into()
    } else {
        let k: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, (d, sel, _))| {
                if i == 0 && id.dkim.is_some() {
                    format!("s={sel}, d={d}")
                } else {
                    format!("s={sel}, d={d} for From: *@{d}")
                }
            })
            .collect();
        format!("yes ({})", k.join("; "))
    };
    let batv = if id.batv.is_some() { "yes" } else { "no" };
    // The files this user's send opens, as the vsendmail group sees them
    // (root, who reads everything, sends as root).
    let mut fails: Vec<String> = Vec::new();
    if !job.invoker.is_root()
        && let Some(g) = crate::config::access::ServiceGroup::find(&job.cfg.cfg.spool)
    {
        let mut files: Vec<(&str, &std::path::Path)> = vec![
            ("config", job.cfg.path.as_path()),
            ("virtusers", job.cfg.cfg.virtusers.as_path()),
        ];
        for (_, _, p) in &keys {
            files.push(("dkim", p));
        }
        if let Some(p) = &id.batv {
            files.push(("batv", p.as_path()));
        }
        let relayed = job.inv.recipients.iter().any(|r| {
            let d = crate::base::address::domain(r).unwrap_or_default();
            crate::deliver::route::choose(&job.cfg, &id, &d)
                .relays
                .is_some()
        });
        if relayed && job.cfg.cfg.secrets.exists() {
            files.push(("secrets", job.cfg.cfg.secrets.as_path()));
        }
        for (what, p) in files {
            if p.exists()
                && let Err(m) = crate::config::access::group_can_read(p, &g)
            {
                fails.push(format!("FAIL {what} {}: {m}", id.sender));
            }
        }
    }
    let mut rcpts = Vec::new();
    for (i, r) in job.inv.recipients.iter().enumerate() {
        for t in aliases.expand(r) {
            rcpts.push((i, crate::base::address::qualify(&t, &domain)));
        }
    }
    let dns =
        crate::deliver::dns::Dns::new(&job.cfg.nameservers, std::time::Duration::from_secs(5)).ok();
    let router = Router {
        dns: dns.as_ref(),
        mx_port: job.cfg.cfg.mx_port,
        v6_first: job.cfg.cfg.prefer == crate::config::conf::Prefer::Ipv6,
        families: crate::deliver::route::families(&id.sources),
    };
    let mut warned: Vec<String> = Vec::new();
    let mut ctx = crate::deliver::context::Context::new(&job.cfg, &job.log, false, false);
    let now = crate::base::clock::unix_now();
    for (_, addr) in &rcpts {
        let d = crate::base::address::domain(addr).unwrap_or_default();
        let choice = crate::deliver::route::choose(&job.cfg, &id, &d);
        let plans: Vec<Option<&crate::base::relay::Relay>> = match &choice.relays {
            Some(l) => l.list().iter().map(Some).collect(),
            None => vec![None],
        };
        let mut parts = Vec::new();
        for relay in plans {
            if let (Some(r), Some(d)) = (relay, &dns)
                && let Some(w) = crate::commands::check::relay_unresolved(d, r)
                && !warned.contains(&w)
            {
                eprintln!("vsendmail: warning: {w}");
                warned.push(w);
            }
            parts.push(route_text(&router, &job.cfg.cfg.secrets, addr, relay));
        }
        let route = format!("{} (chosen by {})", parts.join(", then "), choice.why);
        let first = choice.relays.as_ref().map(|l| &l.list()[0]);
        let tls = tls_text(&mut ctx, &router, addr, first, &id.sources, now);
        println!(
            "<{addr}>: identity {} ({}), user {} uid {}, sender {}, source {}, helo {}, route {}, tls {}, dkim {}, batv {}",
            id.sender,
            id.location.clone().unwrap_or_else(|| "host default".into()),
            id.login,
            id.uid,
            id.sender,
            src_text,
            id.helo,
            route,
            tls,
            dkim,
            batv
        );
    }
    for f in &fails {
        println!("{f}");
    }
    if !fails.is_empty() {
        return Err(Error::VerifyFailed { count: fails.len() });
    }
    Ok(0)
}

/// Which of DANE, MTA-STS or the `tls` policy applies to each host of the
/// (first) destination of `addr`, and why; a backoff in force is named.
fn tls_text(
    ctx: &mut crate::deliver::context::Context,
    router: &Router,
    addr: &str,
    relay: Option<&crate::base::relay::Relay>,
    sources: &[std::net::IpAddr],
    now: u64,
) -> String {
    use crate::deliver::tls_choice::Choice;
    let (dests, _) = router.plan(&[(0, addr.to_string())], relay);
    let Some(d) = dests.first() else {
        return "-".into();
    };
    let sts = crate::deliver::tls_choice::sts_policy(ctx, d);
    let per_host: Vec<String> = d
        .hosts
        .iter()
        .map(|h| {
            let mut t = match crate::deliver::tls_choice::for_host(ctx, d, sts.as_ref(), &h.name) {
                Choice::Use(_, why) => format!("{}: {why}", h.name),
                Choice::Skip(why) => format!("{}: not used: {why}", h.name),
            };
            if let Some(w) = crate::deliver::backoff::waiting(ctx.cfg, &h.name, sources, now) {
                t.push_str(&format!(" ({})", w.describe()));
            }
            t
        })
        .collect();
    per_host.join("; ")
}

/// One route of `-bv`: `relay URL -> host[addr:port]`, `mx host[addr], …`,
/// or why it cannot be routed.
fn route_text(
    router: &Router,
    secrets: &std::path::Path,
    addr: &str,
    relay: Option<&crate::base::relay::Relay>,
) -> String {
    let (dests, bad) = router.plan(&[(0, addr.to_string())], relay);
    if let Some(d) = dests.first() {
        let hosts: Vec<String> = d
            .hosts
            .iter()
            .map(|h| {
                let a: Vec<String> = h.addrs.iter().map(crate::base::syslog::addr_port).collect();
                format!("{}[{}]", h.name, a.join(" "))
            })
            .collect();
        match relay {
            Some(r) => format!(
                "relay {r} -> {}{}",
                hosts.join(", "),
                relay_auth(secrets, r)
            ),
            None => format!("mx {}", hosts.join(", ")),
        }
    } else if let Some(b) = bad.first() {
        let what = if b.permanent {
            "undeliverable"
        } else {
            "cannot route now"
        };
        match relay {
            Some(r) => format!("relay {r} {what} ({})", b.why),
            None => format!("{what} ({})", b.why),
        }
    } else {
        "none".into()
    }
}

/// How `-bv` describes a relay's authentication: ` (auth …)`, or nothing.
fn relay_auth(secrets: &std::path::Path, r: &crate::base::relay::Relay) -> String {
    use crate::config::secrets::RelayAuth;
    let mut parts = Vec::new();
    match crate::config::secrets::for_relay(secrets, r) {
        Ok(RelayAuth::Use(c)) => {
            let how = if c.oauth.is_some() {
                "OAuth2"
            } else {
                "password"
            };
            let cert = if c.pin.is_some() {
                "pinned certificate"
            } else {
                "verified certificate"
            };
            parts.push(format!("{how} from {}, {cert} required", c.location));
        }
        Ok(RelayAuth::None) => {}
        Err(why) => parts.push(format!("cannot authenticate: {why}")),
    }
    if let Some((cert, _)) = &r.client_cert {
        parts.push(format!("client certificate {}", cert.display()));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" (auth: {})", parts.join("; "))
    }
}
