//! `dmarc-align`: would a message of this identity pass DMARC from this
//! source address? It does when SPF passes for the envelope domain (the
//! identity's) and that domain is aligned with the From: domain, or a DKIM
//! key's `d=` is aligned with it (relaxed alignment, RFC 7489 3.1: the same
//! organizational domain). The organizational domain is taken as the last
//! two labels: without a public-suffix list (none of our crates ships one)
//! a domain under a two-label public suffix (`co.uk`) is compared a label
//! short, which can only say "aligned" where strict alignment also holds
//! for the identity's own domain.

use crate::doctor::report::{Doctor, Status};
use crate::identity::profile::Identity;
use std::net::IpAddr;

fn org(d: &str) -> String {
    let d = d.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = d.split('.').collect();
    labels[labels.len().saturating_sub(2)..].join(".")
}

/// Relaxed DMARC alignment of two domains.
pub fn aligned(a: &str, b: &str) -> bool {
    org(a) == org(b)
}

pub fn dmarc_align(doc: &mut Doctor, label: &str, id: &Identity, ip: Option<IpAddr>) {
    let a = ip.map(|i| i.to_string()).unwrap_or_else(|| "-".into());
    if doc.out_of_time("dmarc-align", label, &a) {
        return;
    }
    let domain = id.domain();
    let dkim: Option<String> = id
        .dkim_keys()
        .iter()
        .map(|(d, _, _)| d.to_string())
        .find(|d| aligned(d, &domain));
    let spf_pass = ip.is_some_and(|ip| {
        let local = crate::base::address::local_part(&id.sender);
        let sender = if local == "*" {
            format!("postmaster@{domain}")
        } else {
            id.sender.clone()
        };
        doc.spf.check(ip, &id.helo, &domain, &sender) == mail_auth::SpfResult::Pass
    });
    let spf_text = if spf_pass {
        format!("SPF passes for {domain} from {a}")
    } else {
        format!("SPF does not pass for {domain} from {a}")
    };
    match (spf_pass, dkim) {
        (true, Some(d)) => doc.line(
            Status::Ok,
            "dmarc-align",
            label,
            &a,
            &format!("{spf_text} and DKIM d={d} is aligned with From: @{domain}"),
        ),
        (false, Some(d)) => doc.line(
            Status::Ok,
            "dmarc-align",
            label,
            &a,
            &format!("DKIM d={d} is aligned with From: @{domain} ({spf_text}, see the spf line)"),
        ),
        (true, None) => doc.line(
            Status::Warn,
            "dmarc-align",
            label,
            &a,
            &format!("only SPF is aligned with From: @{domain} ({spf_text}); DMARC fails once the mail is forwarded: sign with a key for d={domain} (dkim= in virtusers)"),
        ),
        (false, None) => doc.line(
            Status::Fail,
            "dmarc-align",
            label,
            &a,
            &format!("neither SPF ({spf_text}) nor DKIM (no key for d={domain}) is aligned with From: @{domain}: receivers applying DMARC refuse or junk this mail; fix SPF (see the spf line) or add dkim= in virtusers"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed() {
        assert!(aligned("mail.shop.test", "shop.test"));
        assert!(aligned("Shop.Test.", "shop.test"));
        assert!(!aligned("blog.test", "shop.test"));
    }
}
