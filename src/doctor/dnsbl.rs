//! `dnsbl`: each source address against the `dnsbl` zones of the config
//! (default none). NXDOMAIN: not listed; an answer in 127.255.255.0/24: the
//! list refused the query (a public resolver, no subscription), `warn`; any
//! other answer: listed, `FAIL` with the list's TXT reason when it gives one.

use crate::deliver::dns::DnsError;
use crate::doctor::report::{Doctor, Status, dns_text};
use std::net::IpAddr;

/// The name to ask of `zone` for `ip` (reversed octets or nibbles).
pub fn query_name(ip: IpAddr, zone: &str) -> String {
    let rev = crate::deliver::dns::reverse_name(ip);
    let rev = rev
        .trim_end_matches(".in-addr.arpa")
        .trim_end_matches(".ip6.arpa");
    format!("{rev}.{}", zone.trim_matches('.'))
}

pub fn dnsbl(doc: &mut Doctor, label: &str, ip: IpAddr) {
    let a = ip.to_string();
    for zone in doc.dnsbl.clone() {
        if doc.out_of_time("dnsbl", label, &a) {
            return;
        }
        let name = query_name(ip, &zone);
        let answers = match doc.dns.addrs(&name, true, false, false) {
            Ok(v) => v,
            Err(DnsError::NxDomain { .. }) => Vec::new(),
            Err(e) => {
                doc.line(Status::Fail, "dnsbl", label, &a, &dns_text(e));
                continue;
            }
        };
        let refused =
            |ip: &IpAddr| matches!(ip, IpAddr::V4(v) if v.octets()[..3] == [127, 255, 255]);
        if answers.is_empty() {
            doc.line(
                Status::Ok,
                "dnsbl",
                label,
                &a,
                &format!("{a} is not listed by {zone}"),
            );
        } else if answers.iter().all(refused) {
            doc.line(
                Status::Warn,
                "dnsbl",
                label,
                &a,
                &format!(
                    "{zone} refused the query (answer {}): ask it through a resolver of your own (not a public one), or with a subscription, then run --doctor again",
                    answers[0]
                ),
            );
        } else {
            let why = doc
                .dns
                .txt(&name)
                .ok()
                .and_then(|t| t.into_iter().next())
                .map(|t| format!(": \"{}\"", crate::base::address::printable(&t)))
                .unwrap_or_default();
            doc.line(
                Status::Fail,
                "dnsbl",
                label,
                &a,
                &format!(
                    "{a} is listed by {zone} (answer {}){why}; receivers using it refuse this identity's mail: find why (a compromised site?), fix it, then ask {zone} to delist",
                    answers[0]
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            query_name("192.0.2.10".parse().unwrap(), "zen.example."),
            "10.2.0.192.zen.example"
        );
        assert!(
            query_name("2001:db8::1".parse().unwrap(), "bl.test")
                .ends_with(".8.b.d.0.1.0.0.2.bl.test")
        );
    }
}
