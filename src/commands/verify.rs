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
        if relay.is_some() && job.cfg.cfg.secrets.exists() {
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
    if let Some(r) = relay
        && let Ok(d) =
            crate::deliver::dns::Dns::new(&job.cfg.nameservers, std::time::Duration::from_secs(3))
        && let Some(w) = crate::commands::check::relay_unresolved(&d, r)
    {
        eprintln!("vsendmail: warning: {w}");
    }
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
    let mut ctx = crate::deliver::context::Context::new(&job.cfg, &job.log, false, false);
    let now = crate::base::clock::unix_now();
    for (_, addr) in &rcpts {
        let (dests, bad) = router.plan(&[(0, addr.clone())], relay);
        let tls = match dests.first() {
            Some(d) => {
                let sts = crate::deliver::tls_choice::sts_policy(&mut ctx, d);
                let per_host: Vec<String> = d
                    .hosts
                    .iter()
                    .map(|h| {
                        use crate::deliver::tls_choice::Choice;
                        let mut t = match crate::deliver::tls_choice::for_host(
                            &mut ctx,
                            d,
                            sts.as_ref(),
                            &h.name,
                        ) {
                            Choice::Use(_, why) => format!("{}: {why}", h.name),
                            Choice::Skip(why) => format!("{}: not used: {why}", h.name),
                        };
                        if let Some(w) =
                            crate::deliver::backoff::waiting(&job.cfg, &h.name, &id.sources, now)
                        {
                            t.push_str(&format!(" ({})", w.describe()));
                        }
                        t
                    })
                    .collect();
                per_host.join("; ")
            }
            None => "-".into(),
        };
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
