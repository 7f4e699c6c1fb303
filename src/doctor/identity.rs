//! The checks of one identity: its source addresses (or the host name that
//! gives them), then per address the source checks and the records of its
//! domain.

use crate::doctor::records::{batv, dkim, dmarc};
use crate::doctor::report::{DnsFail, Doctor, Status};
use crate::doctor::source::address_checks;
use crate::identity::profile::Identity;
use std::net::IpAddr;

/// Every check of `id`, reported under `label`.
pub fn identity(doc: &mut Doctor, label: &str, id: &Identity) {
    let loc = id
        .location
        .clone()
        .unwrap_or_else(|| "virtusers (no line: the host identity)".into());
    let domain = id.domain();
    let mut addrs: Vec<IpAddr> = id.sources.clone();
    if let Some(h) = &id.source_host
        && !doc.out_of_time("source", label, h)
    {
        match doc.addrs(h) {
            Ok(v) if !v.is_empty() => addrs = v,
            Ok(_) => doc.line(
                Status::Fail,
                "source",
                label,
                h,
                &format!("the source host name {h} has no address; add an A/AAAA record or put the address itself in {loc}"),
            ),
            Err(DnsFail::Missing(e)) => doc.line(
                Status::Fail,
                "source",
                label,
                h,
                &format!("the source host name {h} does not resolve ({e}); add an A/AAAA record or put the address itself in {loc}"),
            ),
            Err(DnsFail::Unasked(e)) => doc.line(Status::Fail, "source", label, h, &e),
        }
    }
    let addr_texts: Vec<String> = if addrs.is_empty() {
        if id.source_host.is_none() {
            doc.line(
                Status::Warn,
                "source",
                label,
                "-",
                &format!("no source address: the kernel chooses, so receivers see the host's address; give the identity its own address in {loc}"),
            );
        }
        vec!["-".to_string()]
    } else {
        addrs.iter().map(|a| a.to_string()).collect()
    };
    for (i, a) in addr_texts.iter().enumerate() {
        let ip = addrs.get(i).copied();
        if let Some(ip) = ip {
            address_checks(doc, label, id, ip, &loc);
            // Lists list what receivers see: the public address of a NAT pair.
            crate::doctor::dnsbl::dnsbl(doc, label, id.public_for(ip).unwrap_or(ip));
        }
        dkim(doc, label, id, a, &domain, &loc);
        dmarc(doc, label, a, &domain);
        let seen = ip.map(|ip| id.public_for(ip).unwrap_or(ip));
        crate::doctor::alignment::dmarc_align(doc, label, id, seen);
        batv(doc, label, id, a, &loc);
        crate::doctor::transport_records::mta_sts(doc, label, a, &domain);
        crate::doctor::transport_records::tlsrpt(doc, label, a, &domain);
    }
}
