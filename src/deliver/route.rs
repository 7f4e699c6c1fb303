//! Routing: which hosts receive which recipients. Each recipient's route is
//! chosen by [`choose`]: the identity's `relay=`, else the most specific
//! `[routes]` entry for its domain, else the global `relay`, else MX; one
//! message's recipients are grouped per route ([`split`]). A relay route is a
//! failover list, tried in order by the caller; otherwise each recipient
//! domain's MX hosts (preference order, random order among equal
//! preferences), the domain itself when it has no MX, and a permanent failure
//! for a null MX. Only address families the identity can bind are kept. A
//! relay that cannot be resolved is a temporary failure, even NXDOMAIN.

use crate::base::relay::{Relay, Relays};
use crate::config::conf::Loaded;
use crate::config::routes::Target;
use crate::deliver::dns::{Dns, Mx};
use crate::identity::profile::Identity;
use std::net::{IpAddr, SocketAddr};

/// The route of a recipient domain: a failover list of relays, or MX
/// (`None`), and why it was chosen (the same text for every domain the same
/// rule sends, so that [`split`] groups them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub relays: Option<Relays>,
    pub why: String,
}

/// The route for mail of `identity` to `domain` (DESIGN.md, "Routes by
/// recipient domain"). Each relay's port is settled here (587 when the
/// secrets file has a line for the host without a port, see
/// `secrets::relay_port`), so that route, AUTH and `-bv` agree on it.
pub fn choose(cfg: &Loaded, identity: &Identity, domain: &str) -> Choice {
    let conf = cfg.path.display();
    let (relays, why) = if let Some(r) = &identity.relay {
        (
            Some(r.clone()),
            format!(
                "the identity's relay= ({})",
                identity.location.as_deref().unwrap_or("virtusers")
            ),
        )
    } else if let Some((route, exact)) = cfg.routes.find(domain) {
        let how = if exact { "exact domain" } else { "wildcard" };
        let relays = match &route.target {
            Target::Mx => None,
            Target::Relays(r) => Some(r.clone()),
        };
        (
            relays,
            format!("[routes] \"{}\" ({conf}:{}, {how})", route.key, route.line),
        )
    } else if let Some(r) = &cfg.relay {
        (Some(r.clone()), format!("the global relay ({conf})"))
    } else {
        (
            None,
            "no route or relay applies: direct delivery by MX".into(),
        )
    };
    let relays = relays.map(|mut list| {
        for r in list.list_mut() {
            r.port = Some(crate::config::secrets::relay_port(&cfg.cfg.secrets, r));
        }
        list
    });
    Choice { relays, why }
}

/// The recipients `(index, address)` grouped per route, in first-seen order.
pub fn split(
    cfg: &Loaded,
    identity: &Identity,
    rcpts: &[(usize, String)],
) -> Vec<(Choice, Vec<(usize, String)>)> {
    let mut groups: Vec<(Choice, Vec<(usize, String)>)> = Vec::new();
    // Chosen once per domain (choosing reads the secrets file for the port).
    let mut by_domain: std::collections::HashMap<String, Choice> = Default::default();
    for (i, a) in rcpts {
        let d = crate::base::address::domain(a)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let c = by_domain
            .entry(d.clone())
            .or_insert_with(|| choose(cfg, identity, &d))
            .clone();
        match groups.iter_mut().find(|g| g.0 == c) {
            Some(g) => g.1.push((*i, a.clone())),
            None => groups.push((c, vec![(*i, a.clone())])),
        }
    }
    groups
}

/// One host to try, with its addresses.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub addrs: Vec<SocketAddr>,
}

/// Where a set of recipients goes.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The recipient domain, or the relay host.
    pub name: String,
    pub relay: Option<Relay>,
    /// Hosts in the order to try.
    pub hosts: Vec<Host>,
    /// Indices into the envelope's recipients.
    pub rcpts: Vec<usize>,
}

/// A recipient that cannot be routed, and whether that is final.
#[derive(Debug, Clone)]
pub struct Unroutable {
    pub rcpt: usize,
    pub permanent: bool,
    pub why: String,
}

/// Which families the identity's sources allow: (v4, v6).
pub fn families(sources: &[IpAddr]) -> (bool, bool) {
    if sources.is_empty() {
        return (true, true);
    }
    (
        sources.iter().any(|a| a.is_ipv4()),
        sources.iter().any(|a| a.is_ipv6()),
    )
}

pub struct Router<'a> {
    pub dns: Option<&'a Dns>,
    pub mx_port: u16,
    pub v6_first: bool,
    pub families: (bool, bool),
}

impl Router<'_> {
    /// Route `rcpts` (index, address) through `relay` or by MX.
    pub fn plan(
        &self,
        rcpts: &[(usize, String)],
        relay: Option<&Relay>,
    ) -> (Vec<Destination>, Vec<Unroutable>) {
        let mut dests = Vec::new();
        let mut bad = Vec::new();
        if let Some(r) = relay {
            let idx: Vec<usize> = rcpts.iter().map(|x| x.0).collect();
            match self.host(&r.host, r.port()) {
                Ok(h) if !h.addrs.is_empty() => dests.push(Destination {
                    name: r.host.clone(),
                    relay: Some(r.clone()),
                    hosts: vec![h],
                    rcpts: idx,
                }),
                Ok(_) => bad.extend(idx.into_iter().map(|rcpt| Unroutable {
                    rcpt,
                    permanent: false,
                    why: format!(
                        "relay {} has no address of a family this identity can use",
                        r.host
                    ),
                })),
                // A relay name that does not resolve (a typo, a DNS outage)
                // is the host's problem, not the recipients': the message
                // waits in the queue for it to be fixed, as Postfix does.
                Err((_, why)) => bad.extend(idx.into_iter().map(|rcpt| Unroutable {
                    rcpt,
                    permanent: false,
                    why: format!("cannot resolve relay {}: {why}", r.host),
                })),
            }
            return (dests, bad);
        }
        // Group by domain, in first-seen order.
        let mut by_domain: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, a) in rcpts {
            let d = crate::base::address::domain(a).unwrap_or_default();
            match by_domain.iter_mut().find(|x| x.0 == d) {
                Some(x) => x.1.push(*i),
                None => by_domain.push((d, vec![*i])),
            }
        }
        for (domain, idx) in by_domain {
            match self.mx_hosts(&domain) {
                Ok(hosts) => dests.push(Destination {
                    name: domain,
                    relay: None,
                    hosts,
                    rcpts: idx,
                }),
                Err((permanent, why)) => bad.extend(idx.into_iter().map(|rcpt| Unroutable {
                    rcpt,
                    permanent,
                    why: why.clone(),
                })),
            }
        }
        (dests, bad)
    }

    fn host(&self, name: &str, port: u16) -> Result<Host, (bool, String)> {
        let (v4, v6) = self.families;
        let ips: Vec<IpAddr> = if let Ok(ip) = name.parse::<IpAddr>() {
            vec![ip]
        } else if let Some(dns) = self.dns {
            dns.addrs(name, v4, v6, self.v6_first)
                .map_err(|e| (e.is_permanent(), e.to_string()))?
        } else {
            use std::net::ToSocketAddrs;
            (name, port)
                .to_socket_addrs()
                .map_err(|e| (false, format!("cannot resolve {name}: {e}")))?
                .map(|s| s.ip())
                .collect()
        };
        let mut addrs: Vec<SocketAddr> = ips
            .into_iter()
            .filter(|ip| (ip.is_ipv4() && v4) || (ip.is_ipv6() && v6))
            .map(|ip| SocketAddr::new(ip, port))
            .collect();
        if self.v6_first {
            addrs.sort_by_key(|a| a.is_ipv4());
        } else {
            addrs.sort_by_key(|a| a.is_ipv6());
        }
        Ok(Host {
            name: name.to_string(),
            addrs,
        })
    }

    fn mx_hosts(&self, domain: &str) -> Result<Vec<Host>, (bool, String)> {
        let Some(dns) = self.dns else {
            return Err((false, "no resolver".into()));
        };
        if domain.is_empty() {
            return Err((true, "recipient has no domain".into()));
        }
        if let Some(lit) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            let ip: IpAddr = lit
                .trim_start_matches("IPv6:")
                .parse()
                .map_err(|_| (true, format!("bad address literal [{lit}]")))?;
            return Ok(vec![self.host(&ip.to_string(), self.mx_port)?]);
        }
        let mx = dns
            .mx(domain)
            .map_err(|e| (e.is_permanent(), e.to_string()))?;
        let names: Vec<String> = match mx {
            Mx::Null => {
                return Err((
                    true,
                    format!("{domain} accepts no mail (null MX, RFC 7505)"),
                ));
            }
            Mx::Implicit => vec![domain.to_string()],
            Mx::Hosts(h) => shuffle_equal(h),
        };
        let mut hosts = Vec::new();
        let mut last_err = None;
        for n in names {
            match self.host(&n, self.mx_port) {
                Ok(h) if !h.addrs.is_empty() => hosts.push(h),
                Ok(_) => {}
                Err(e) => last_err = Some(e),
            }
        }
        if hosts.is_empty() {
            return Err(last_err.map(|(_, w)| (false, w)).unwrap_or((
                false,
                format!(
                    "no mail host of {domain} has an address of a family this identity can use"
                ),
            )));
        }
        Ok(hosts)
    }
}

/// MX hosts by preference, shuffled among equal preferences.
fn shuffle_equal(mut h: Vec<(u16, String)>) -> Vec<String> {
    h.sort_by_key(|x| x.0);
    let mut out = Vec::new();
    let mut i = 0;
    while i < h.len() {
        let mut j = i;
        while j < h.len() && h[j].0 == h[i].0 {
            j += 1;
        }
        let mut group: Vec<String> = h[i..j].iter().map(|x| x.1.clone()).collect();
        for k in (1..group.len()).rev() {
            let r = rand::random::<u32>() as usize % (k + 1);
            group.swap(k, r);
        }
        out.extend(group);
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_preferences_keep_order_between_groups() {
        for _ in 0..20 {
            let o = shuffle_equal(vec![(20, "c".into()), (10, "a".into()), (10, "b".into())]);
            assert_eq!(o[2], "c");
            assert!(o[..2].contains(&"a".to_string()) && o[..2].contains(&"b".to_string()));
        }
    }
}
