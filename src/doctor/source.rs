//! The checks of one source address: it can be bound here (`source`), its
//! PTR and forward-confirmed reverse DNS (`ptr`, `fcrdns`), the HELO name
//! (`helo`), and SPF for the identity's domain from it (`spf`, evaluated by
//! mail-auth). Behind NAT (`PRIVATE=PUBLIC`) the binding is checked for
//! PRIVATE and everything receivers see for PUBLIC.

use crate::deliver::dns::DnsError;
use crate::doctor::report::{DnsFail, Doctor, Status, dns_text};
use crate::identity::profile::Identity;
use std::net::IpAddr;

pub fn address_checks(doc: &mut Doctor, label: &str, id: &Identity, ip: IpAddr, loc: &str) {
    let a = ip.to_string();
    // source
    match crate::deliver::connect::can_bind(ip) {
        Ok(()) => doc.line(
            Status::Ok,
            "source",
            label,
            &a,
            &match id.public_for(ip) {
                Some(p) => format!(
                    "the address is configured on this host; receivers see the public address {p} (NAT)"
                ),
                None => "the address is configured on this host".to_string(),
            },
        ),
        Err(e) => doc.line(
            Status::Fail,
            "source",
            label,
            &a,
            &format!(
                "the address cannot be bound here ({e}); configure it on an interface (e.g. `ip addr add {a}/{} dev eth0`) or correct {loc}",
                if ip.is_ipv4() { 32 } else { 128 }
            ),
        ),
    }
    // Behind 1:1 NAT receivers see the public address: PTR, FCrDNS, HELO
    // and SPF are checked for it.
    let ip = id.public_for(ip).unwrap_or(ip);
    let a = ip.to_string();
    // ptr and fcrdns
    let rev = crate::deliver::dns::reverse_name(ip);
    if doc.out_of_time("ptr", label, &a) {
        doc.out_of_time("fcrdns", label, &a);
    } else {
        match doc.dns.ptr(ip) {
            Ok(names) if !names.is_empty() => {
                doc.line(
                    Status::Ok,
                    "ptr",
                    label,
                    &a,
                    &format!("{rev} PTR {}", names.join(", ")),
                );
                let mut good = None;
                let mut seen = Vec::new();
                for n in &names {
                    match doc.addrs(n) {
                        Ok(v) if v.contains(&ip) => {
                            good = Some(n.clone());
                            break;
                        }
                        Ok(v) => seen.push(format!(
                            "{n} -> {}",
                            if v.is_empty() {
                                "no address".to_string()
                            } else {
                                v.iter()
                                    .map(|x| x.to_string())
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            }
                        )),
                        Err(e) => seen.push(format!("{n}: {e}")),
                    }
                }
                match good {
                    Some(n) => doc.line(
                        Status::Ok,
                        "fcrdns",
                        label,
                        &a,
                        &format!("{n} resolves back to {a}"),
                    ),
                    None => doc.line(
                        Status::Fail,
                        "fcrdns",
                        label,
                        &a,
                        &format!(
                            "the PTR name does not resolve back to {a} ({}); add `{} {} {a}`",
                            seen.join("; "),
                            names[0],
                            if ip.is_ipv4() { "A" } else { "AAAA" }
                        ),
                    ),
                }
            }
            Err(e @ DnsError::Temporary { .. }) => {
                doc.line(Status::Fail, "ptr", label, &a, &dns_text(e));
                doc.line(
                    Status::Fail,
                    "fcrdns",
                    label,
                    &a,
                    "not checked: the PTR could not be asked for",
                );
            }
            other => {
                let why = match other {
                    Ok(_) => format!("{rev} has no PTR record"),
                    Err(e) => dns_text(e),
                };
                doc.line(
                Status::Fail,
                "ptr",
                label,
                &a,
                &format!(
                    "{why}; ask whoever runs the reverse zone (the address's provider) for `{rev} PTR {}`",
                    id.helo
                ),
            );
                doc.line(
                    Status::Fail,
                    "fcrdns",
                    label,
                    &a,
                    &format!("no PTR name to resolve back to {a}; fix the PTR first"),
                );
            }
        }
    }
    // helo
    let helo = id.helo.clone();
    if let Ok(lit) = helo
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_start_matches("IPv6:")
        .parse::<IpAddr>()
    {
        let st = if lit == ip {
            Status::Warn
        } else {
            Status::Fail
        };
        doc.line(
            st,
            "helo",
            label,
            &a,
            &format!("HELO is an address literal {helo}; receivers want a host name that resolves to {a}: set helo= in {loc}"),
        );
    } else if !doc.out_of_time("helo", label, &a) {
        match doc.addrs(&helo) {
            Ok(v) if v.contains(&ip) => doc.line(
                Status::Ok,
                "helo",
                label,
                &a,
                &format!("{helo} resolves to {a}"),
            ),
            Err(DnsFail::Unasked(e)) => doc.line(Status::Fail, "helo", label, &a, &e),
            other => {
                let found = match other {
                    Ok(v) if v.is_empty() => "no address".to_string(),
                    Ok(v) => v
                        .iter()
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join(" "),
                    Err(e) => e.to_string(),
                };
                doc.line(
                    Status::Fail,
                    "helo",
                    label,
                    &a,
                    &format!(
                        "HELO name {helo} does not resolve to {a} ({found}); add `{helo} {} {a}` or set helo= in {loc} to a name that does",
                        if ip.is_ipv4() { "A" } else { "AAAA" }
                    ),
                );
            }
        }
    }
    // spf
    spf_check(doc, label, id, ip);
}

pub fn spf_check(doc: &mut Doctor, label: &str, id: &Identity, ip: IpAddr) {
    use mail_auth::SpfResult;
    let a = ip.to_string();
    let domain = id.domain();
    let local = crate::base::address::local_part(&id.sender);
    let sender = if local == "*" {
        format!("postmaster@{domain}")
    } else {
        id.sender.clone()
    };
    let mech = match ip {
        IpAddr::V4(_) => format!("ip4:{a}"),
        IpAddr::V6(_) => format!("ip6:{a}"),
    };
    if doc.out_of_time("spf", label, &a) {
        return;
    }
    // Asked first, so that a nameserver that is down or refuses is said as
    // such, never taken for "no SPF record".
    let record = match doc.dns.txt(&domain) {
        Ok(v) => v
            .into_iter()
            .find(|t| t.to_ascii_lowercase().starts_with("v=spf1")),
        Err(DnsError::NxDomain { .. }) => None,
        Err(e) => {
            doc.line(Status::Fail, "spf", label, &a, &dns_text(e));
            return;
        }
    };
    let result = doc.spf.check(ip, &id.helo, &domain, &sender);
    match result {
        SpfResult::Pass => {
            let all = record
                .as_deref()
                .and_then(|r| r.split_whitespace().last())
                .map(|t| t.to_ascii_lowercase())
                .unwrap_or_default();
            if all == "~all" || all == "?all" {
                doc.line(
                    Status::Warn,
                    "spf",
                    label,
                    &a,
                    &format!("SPF of {domain} passes for {a}, but ends with {all}, so forgeries only soft-fail; end it with -all"),
                );
            } else {
                doc.line(Status::Ok, "spf", label, &a, &format!("SPF of {domain} passes for {a}"));
            }
        }
        SpfResult::None => doc.line(
            Status::Fail,
            "spf",
            label,
            &a,
            &format!("{domain} has no SPF record; publish `{domain} TXT \"v=spf1 {mech} -all\"`"),
        ),
        SpfResult::TempError => doc.line(
            Status::Fail,
            "spf",
            label,
            &a,
            &format!("could not ask DNS (SPF of {domain} met a temporary DNS error or ran out of time); check the nameservers, then run --doctor again"),
        ),
        SpfResult::PermError => doc.line(
            Status::Fail,
            "spf",
            label,
            &a,
            &format!(
                "the SPF record of {domain} is broken (permerror){}; fix its syntax and include {mech}",
                record.as_deref().map(|r| format!(": \"{r}\"")).unwrap_or_default()
            ),
        ),
        other => {
            let r = match other {
                SpfResult::Fail => "fail",
                SpfResult::SoftFail => "softfail",
                _ => "neutral",
            };
            let fix = match &record {
                Some(rec) => format!("add {mech} to \"{rec}\" (before the all)"),
                None => format!("add {mech} to the SPF record of {domain}"),
            };
            doc.line(
                Status::Fail,
                "spf",
                label,
                &a,
                &format!("SPF of {domain} gives {r} for {a}; {fix}"),
            );
        }
    }
}
