//! `mta-sts` and `tlsrpt`: the identity's own domain publishes an MTA-STS
//! policy (`_mta-sts.DOMAIN` TXT, parsed by mail-auth, and the policy file
//! it announces, fetched as delivery does with `mta_sts_port`) and a TLS-RPT
//! record (`_smtp._tls.DOMAIN`), so that receivers' mail to it is protected
//! and its operators hear of TLS failures. Absent: `warn`; broken: `FAIL`.

use crate::deliver::dns::DnsError;
use crate::doctor::report::{Doctor, Status, dns_text};
use mail_auth::common::parse::TxtRecordParser;

/// The TXT strings of `name` that start with `prefix`; `Err` already reported.
fn records(
    doc: &mut Doctor,
    check: &str,
    label: &str,
    a: &str,
    name: &str,
    prefix: &str,
) -> Result<Vec<String>, ()> {
    match doc.dns.txt(name) {
        Ok(v) => Ok(v
            .into_iter()
            .filter(|t| {
                t.to_ascii_lowercase()
                    .starts_with(&prefix.to_ascii_lowercase())
            })
            .collect()),
        Err(DnsError::NxDomain { .. }) => Ok(Vec::new()),
        Err(e) => {
            doc.line(Status::Fail, check, label, a, &dns_text(e));
            Err(())
        }
    }
}

pub fn mta_sts(doc: &mut Doctor, label: &str, a: &str, domain: &str) {
    if doc.out_of_time("mta-sts", label, a) {
        return;
    }
    let name = format!("_mta-sts.{domain}");
    let Ok(recs) = records(doc, "mta-sts", label, a, &name, "v=STSv1") else {
        return;
    };
    let [rec] = &recs[..] else {
        let text = if recs.is_empty() {
            format!(
                "{domain} publishes no MTA-STS policy: senders cannot insist on TLS to it; publish `{name} TXT \"v=STSv1; id=1\"` and https://mta-sts.{domain}/.well-known/mta-sts.txt (mode testing first)"
            )
        } else {
            format!(
                "{name} has {} v=STSv1 records; senders ignore them all: keep one",
                recs.len()
            )
        };
        let st = if recs.is_empty() {
            Status::Warn
        } else {
            Status::Fail
        };
        doc.line(st, "mta-sts", label, a, &text);
        return;
    };
    if mail_auth::mta_sts::MtaSts::parse(rec.as_bytes()).is_err() {
        doc.line(
            Status::Fail,
            "mta-sts",
            label,
            a,
            &format!(
                "{name}: \"{}\" is not a valid MTA-STS record; publish \"v=STSv1; id=YYYYMMDD01\"",
                crate::base::address::printable(rec)
            ),
        );
        return;
    }
    let fetched = match (&doc.tls, doc.mta_sts_port) {
        (Some(tls), port) => crate::deliver::mta_sts::fetch(&doc.dns, tls, domain, port),
        (None, _) => Err("no TLS set-up".into()),
    };
    match fetched.and_then(|b| crate::deliver::mta_sts::parse(&b).map_err(|e| format!("malformed policy: {e}"))) {
        Ok((mode, mx, age)) => {
            let st = if mode == crate::deliver::mta_sts::Mode::Enforce { Status::Ok } else { Status::Warn };
            let mut text = format!("{name}: \"{rec}\"; policy mode {}, mx {}, max_age {age}", mode.name(), mx.join(" "));
            if st == Status::Warn {
                text.push_str("; move to mode enforce once the TLS reports are clean");
            }
            doc.line(st, "mta-sts", label, a, &text);
        }
        Err(why) => doc.line(Status::Fail, "mta-sts", label, a, &format!("{name} announces a policy, but it cannot be had ({why}); senders treat that as no policy: serve it with a valid certificate, without redirects")),
    }
}

pub fn tlsrpt(doc: &mut Doctor, label: &str, a: &str, domain: &str) {
    if doc.out_of_time("tlsrpt", label, a) {
        return;
    }
    let name = format!("_smtp._tls.{domain}");
    let Ok(recs) = records(doc, "tlsrpt", label, a, &name, "v=TLSRPTv1") else {
        return;
    };
    match &recs[..] {
        [] => doc.line(Status::Warn, "tlsrpt", label, a, &format!("{domain} publishes no TLS-RPT record: nobody tells it when TLS to it fails; publish `{name} TXT \"v=TLSRPTv1; rua=mailto:postmaster@{domain}\"`")),
        [rec] => match mail_auth::mta_sts::TlsRpt::parse(rec.as_bytes()) {
            Ok(r) if !r.rua.is_empty() => doc.line(Status::Ok, "tlsrpt", label, a, &format!("{name}: \"{rec}\"")),
            _ => doc.line(Status::Fail, "tlsrpt", label, a, &format!("{name}: \"{}\" is not a valid TLS-RPT record (it needs rua=mailto:… or https:…)", crate::base::address::printable(rec))),
        },
        _ => doc.line(Status::Fail, "tlsrpt", label, a, &format!("{name} has {} v=TLSRPTv1 records; keep one", recs.len())),
    }
}
