//! `-bv`: for each recipient, what would happen — the identity, the source
//! address that would be bound (checked by binding it), the route, DKIM and
//! BATV — without sending anything or reading stdin.

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
    let relay = crate::deliver::route::relay_for(&job.cfg, &id);
    let relay = relay.as_ref();
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
            let text = match (ok, *used) {
                (true, false) => format!(
                    "{s} (bound here: ok, used for {})",
                    if s.is_ipv4() { "IPv4" } else { "IPv6" }
                ),
                (true, true) => format!("{s} (bound here: ok, spare)"),
                (false, _) => format!("{s} (NOT configured on this host)"),
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
    let dkim = match &id.dkim {
        Some((sel, _)) => format!("yes (s={sel}, d={domain})"),
        None => "no".into(),
    };
    let batv = if id.batv.is_some() { "yes" } else { "no" };
    let mut rcpts = Vec::new();
    for (i, r) in job.inv.recipients.iter().enumerate() {
        for t in aliases.expand(r) {
            rcpts.push((i, crate::base::address::qualify(&t, &domain)));
        }
    }
    let dns = if relay.is_none() {
        crate::deliver::dns::Dns::new(&job.cfg.nameservers, std::time::Duration::from_secs(5)).ok()
    } else {
        None
    };
    let router = Router {
        dns: dns.as_ref(),
        mx_port: job.cfg.cfg.mx_port,
        v6_first: job.cfg.cfg.prefer == crate::config::conf::Prefer::Ipv6,
        families: crate::deliver::route::families(&id.sources),
    };
    for (_, addr) in &rcpts {
        let (dests, bad) = router.plan(&[(0, addr.clone())], relay);
        let route = if let Some(d) = dests.first() {
            let hosts: Vec<String> = d
                .hosts
                .iter()
                .map(|h| {
                    let a: Vec<String> =
                        h.addrs.iter().map(crate::base::syslog::addr_port).collect();
                    format!("{}[{}]", h.name, a.join(" "))
                })
                .collect();
            match relay {
                Some(r) => format!("relay {r} -> {}", hosts.join(", ")),
                None => format!("mx {}", hosts.join(", ")),
            }
        } else if let Some(b) = bad.first() {
            format!(
                "{} ({})",
                if b.permanent {
                    "undeliverable"
                } else {
                    "cannot route now"
                },
                b.why
            )
        } else {
            "none".into()
        };
        println!(
            "<{addr}>: identity {} ({}), user {} uid {}, sender {}, source {}, helo {}, route {}, dkim {}, batv {}",
            id.sender,
            id.location.clone().unwrap_or_else(|| "host default".into()),
            id.login,
            id.uid,
            id.sender,
            src_text,
            id.helo,
            route,
            dkim,
            batv
        );
    }
    Ok(0)
}
