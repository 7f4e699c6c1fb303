//! The checks of an identity's domain and keys: the DKIM selector's TXT
//! holds the key file's public key (`dkim`), a DMARC record (`dmarc`), the
//! BATV key file is readable and well formed (`batv`).

use crate::deliver::dns::DnsError;
use crate::doctor::report::{Doctor, Status, dns_text};
use crate::identity::profile::Identity;
use std::collections::HashMap;

pub fn dkim(doc: &mut Doctor, label: &str, id: &Identity, a: &str, domain: &str, loc: &str) {
    let keys = id.dkim_keys();
    if keys.is_empty() {
        doc.line(
            Status::Warn,
            "dkim",
            label,
            a,
            &format!("messages are not DKIM-signed; add dkim=SELECTOR:/etc/vsendmail/dkim/{domain}.pem to {loc}"),
        );
        return;
    }
    // Each key: the identity's own domain's, and each addon domain's.
    for (d, sel, path) in keys {
        dkim_key(doc, label, id, a, &d, sel, path);
    }
}

/// One key of `dkim=`: the selector's TXT at `domain` holds its public key.
fn dkim_key(
    doc: &mut Doctor,
    label: &str,
    id: &Identity,
    a: &str,
    domain: &str,
    sel: &str,
    path: &std::path::Path,
) {
    let key = match crate::sign::dkim_key::public_key(path) {
        Ok(k) => k,
        Err(m) => {
            doc.line(
                Status::Fail,
                "dkim",
                label,
                a,
                &format!("key {}: {m}", path.display()),
            );
            return;
        }
    };
    group_readable(doc, "dkim", label, id, a, path);
    let name = format!("{sel}._domainkey.{domain}");
    let publish = format!("publish `{name} TXT \"{}\"`", key.txt());
    if doc.out_of_time("dkim", label, a) {
        return;
    }
    let records = match doc.dns.txt(&name) {
        Ok(v) => v,
        Err(DnsError::NxDomain { .. }) => Vec::new(),
        Err(e) => {
            doc.line(Status::Fail, "dkim", label, a, &dns_text(e));
            return;
        }
    };
    let recs: Vec<&String> = records.iter().filter(|r| r.contains("p=")).collect();
    if recs.is_empty() {
        doc.line(
            Status::Fail,
            "dkim",
            label,
            a,
            &format!("{name} has no DKIM key record; {publish}"),
        );
        return;
    }
    let mut problems = Vec::new();
    for r in &recs {
        let tags = dkim_tags(r);
        let k = tags
            .get("k")
            .map(|s| s.to_ascii_lowercase())
            .unwrap_or_else(|| "rsa".into());
        let p = tags.get("p").cloned().unwrap_or_default();
        let p: String = p.chars().filter(|c| !c.is_whitespace()).collect();
        use base64::Engine;
        if p.is_empty() {
            problems.push("its p= is empty (the key is revoked)".to_string());
            continue;
        }
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(p.as_bytes()) else {
            problems.push("its p= is not valid base64".to_string());
            continue;
        };
        if k != key.k {
            problems.push(format!(
                "it says k={k}, the key file holds an {} key",
                key.k
            ));
            continue;
        }
        if key.matches(&bytes) {
            let mut note = String::new();
            if key.k == "rsa" && key.bits < 2048 {
                note = format!(
                    "; the RSA key has only {} bits, receivers prefer 2048",
                    key.bits
                );
            }
            let st = if note.is_empty() {
                Status::Ok
            } else {
                Status::Warn
            };
            let mode_note = if world_readable(path) {
                format!(
                    "; but {} is readable by every user: chmod 0640 and give it to the vsendmail group",
                    path.display()
                )
            } else {
                String::new()
            };
            let st = if mode_note.is_empty() {
                st
            } else {
                Status::Warn
            };
            doc.line(
                st,
                "dkim",
                label,
                a,
                &format!(
                    "{name} holds the public key of {} ({} {} bits){note}{mode_note}",
                    path.display(),
                    key.k,
                    key.bits
                ),
            );
            return;
        }
        problems.push("it holds another key".to_string());
    }
    doc.line(
        Status::Fail,
        "dkim",
        label,
        a,
        &format!(
            "{name} does not match {} ({}); {publish}",
            path.display(),
            problems.join("; ")
        ),
    );
}

pub fn dmarc(doc: &mut Doctor, label: &str, a: &str, domain: &str) {
    use mail_auth::common::parse::TxtRecordParser;
    use mail_auth::dmarc::{Dmarc, Policy};
    // The domain itself, then its parents (the organizational domain).
    let labels: Vec<&str> = domain.split('.').collect();
    let mut found: Option<(String, String)> = None;
    if doc.out_of_time("dmarc", label, a) {
        return;
    }
    for i in 0..labels.len().saturating_sub(1).max(1) {
        let d = labels[i..].join(".");
        let name = format!("_dmarc.{d}");
        let rec = match doc.dns.txt(&name) {
            Ok(v) => v
                .into_iter()
                .find(|t| t.trim_start().to_ascii_lowercase().starts_with("v=dmarc1")),
            Err(DnsError::NxDomain { .. }) => None,
            Err(e) => {
                doc.line(Status::Fail, "dmarc", label, a, &dns_text(e));
                return;
            }
        };
        if let Some(r) = rec {
            found = Some((name, r));
            break;
        }
    }
    let publish = format!(
        "publish `_dmarc.{domain} TXT \"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}\"` (p=none first, to watch the reports)"
    );
    let Some((name, rec)) = found else {
        doc.line(
            Status::Fail,
            "dmarc",
            label,
            a,
            &format!("{domain} has no DMARC record; {publish}"),
        );
        return;
    };
    match Dmarc::parse(rec.as_bytes()) {
        Ok(d) => match d.p {
            Policy::Quarantine | Policy::Reject => doc.line(
                Status::Ok,
                "dmarc",
                label,
                a,
                &format!("{name}: \"{rec}\""),
            ),
            _ => doc.line(
                Status::Warn,
                "dmarc",
                label,
                a,
                &format!("{name}: \"{rec}\" has p=none: receivers are not asked to act on forgeries; move to p=quarantine once the reports are clean"),
            ),
        },
        Err(e) => doc.line(
            Status::Fail,
            "dmarc",
            label,
            a,
            &format!("{name}: \"{rec}\" is not a valid DMARC record ({e}); {publish}"),
        ),
    }
}

pub fn batv(doc: &mut Doctor, label: &str, id: &Identity, a: &str, loc: &str) {
    let Some(path) = &id.batv else { return };
    match crate::sign::batv::read_keys(path) {
        Ok(k) => {
            group_readable(doc, "batv", label, id, a, path);
            let (d, _) = k.signing();
            let mode_note = if world_readable(path) {
                "; but it is readable by every user: chmod 0640 and give it to the vsendmail group"
                    .to_string()
            } else {
                String::new()
            };
            doc.line(
                if mode_note.is_empty() {
                    Status::Ok
                } else {
                    Status::Warn
                },
                "batv",
                label,
                a,
                &format!(
                    "{}: {} key(s), signing with key {d}{mode_note}",
                    path.display(),
                    k.keys.len()
                ),
            );
        }
        Err(m) => doc.line(
            Status::Fail,
            "batv",
            label,
            a,
            &format!(
                "{}: {m}; fix the file named by batv= in {loc}",
                path.display()
            ),
        ),
    }
}

/// A `FAIL` line when a send of this identity (any user but root) could not
/// read the key file with the vsendmail group.
fn group_readable(
    doc: &mut Doctor,
    check: &str,
    label: &str,
    id: &Identity,
    a: &str,
    path: &std::path::Path,
) {
    if id.login == "root" {
        return;
    }
    if let Some(g) = doc.group.clone()
        && let Err(m) = crate::config::access::group_can_read(path, &g)
    {
        doc.line(
            Status::Fail,
            check,
            label,
            a,
            &format!("{m}; until then every send of this identity fails with 78"),
        );
    }
}

fn world_readable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

/// `k=v; k=v` tags of a DKIM key record.
fn dkim_tags(r: &str) -> HashMap<String, String> {
    r.split(';')
        .filter_map(|t| {
            let (k, v) = t.split_once('=')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect()
}
