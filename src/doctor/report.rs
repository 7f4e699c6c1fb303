//! `--doctor [LOGIN...]`: what receivers will see of each identity.
//!
//! Owns the checks and their report: per identity (every virtusers line, or
//! the identities of the logins named) and source address, one line
//! `STATUS CHECK IDENTITY ADDRESS: detail and what to fix`, STATUS `ok`,
//! `warn` or `FAIL`, CHECK one of `source` (the address can be bound here),
//! `ptr`, `fcrdns`, `helo`, `spf` (evaluated by mail-auth), `dkim` (the
//! selector's TXT holds the key file's public key), `dmarc`, `batv` (the key
//! file is readable and well formed). All DNS questions go to the `dns`
//! nameservers (PTR with plain queries, see `dns::Dns::ptr`). Exit 0 when no
//! check failed, 1 otherwise.

use crate::config::virtusers::{Table, Who};
use crate::deliver::dns::{Dns, DnsError};
use crate::identity::job::Job;
use crate::identity::profile::Identity;
use mail_auth::hickory_resolver::config::ResolverOpts;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

/// Check the identities of `logins` (all when empty).
pub fn run(job: &Job, logins: &[String]) -> crate::exit::Result<i32> {
    let table = Table::read(&job.cfg.cfg.virtusers)?;
    let mut ids: Vec<(String, Identity)> = Vec::new();
    if logins.is_empty() {
        let (entries, errors) = table.check_all();
        for e in &errors {
            eprintln!("vsendmail: warning: {e} (line skipped; see vsendmail -bi)");
        }
        for e in &entries {
            let (login, uid) = match &e.who {
                Who::User(u) => (
                    u.clone(),
                    crate::identity::invoker::by_login(u)
                        .map(|i| i.uid)
                        .unwrap_or(0),
                ),
                Who::Group(_) | Who::Any => ("*".to_string(), 0),
            };
            let id = Identity::resolve(Some(e), &login, uid, &job.cfg.hostname);
            let label = match &e.who {
                Who::User(_) => id.sender.clone(),
                Who::Group(g) => format!("%{g}:{}", id.sender),
                Who::Any => format!("*:{}", id.sender),
            };
            ids.push((label, id));
        }
        if ids.is_empty() {
            println!(
                "vsendmail: {} has no identities; every user sends as the host ({})",
                job.cfg.cfg.virtusers.display(),
                job.cfg.hostname
            );
        }
    } else {
        for login in logins {
            let who = crate::identity::invoker::by_login(login);
            let groups = who
                .as_ref()
                .map(|w| w.groups().to_vec())
                .unwrap_or_default();
            let uid = who.as_ref().map(|w| w.uid).unwrap_or(0);
            let entry = table.lookup(login, &groups)?;
            let id = Identity::resolve(entry.as_ref(), login, uid, &job.cfg.hostname);
            ids.push((id.sender.clone(), id));
        }
    }
    let ns: Vec<SocketAddr> = job.cfg.nameservers.clone();
    let dns = Dns::new(&ns, TIMEOUT).map_err(|e| crate::exit::Error::DoctorSetup(e.to_string()))?;
    let spf = Spf::new(&ns)?;
    let mut doc = Doctor {
        dns,
        spf,
        cache_addrs: HashMap::new(),
        failed: false,
    };
    for (label, id) in &ids {
        doc.identity(label, id);
    }
    if doc.failed {
        // Each failure is a FAIL line of the report on stdout.
        return Err(crate::exit::Error::Quiet(Box::new(
            crate::exit::Error::DoctorFailed,
        )));
    }
    Ok(0)
}

struct Doctor {
    dns: Dns,
    spf: Spf,
    cache_addrs: HashMap<String, Result<Vec<IpAddr>, String>>,
    failed: bool,
}

impl Doctor {
    fn line(&mut self, st: Status, check: &str, id: &str, addr: &str, text: &str) {
        if st == Status::Fail {
            self.failed = true;
        }
        println!("{} {check} {id} {addr}: {text}", st.word());
    }

    /// A name's A and AAAA addresses (cached), or why not.
    fn addrs(&mut self, name: &str) -> Result<Vec<IpAddr>, String> {
        if let Some(r) = self.cache_addrs.get(name) {
            return r.clone();
        }
        let r = self.dns.addrs(name, true, true, false).map_err(dns_text);
        self.cache_addrs.insert(name.to_string(), r.clone());
        r
    }

    fn identity(&mut self, label: &str, id: &Identity) {
        let loc = id
            .location
            .clone()
            .unwrap_or_else(|| "virtusers (no line: the host identity)".into());
        let domain = id.domain();
        let mut addrs: Vec<IpAddr> = id.sources.clone();
        if let Some(h) = &id.source_host {
            match self.addrs(h) {
                Ok(v) if !v.is_empty() => addrs = v,
                Ok(_) => self.line(
                    Status::Fail,
                    "source",
                    label,
                    h,
                    &format!("the source host name {h} has no address; add an A/AAAA record or put the address itself in {loc}"),
                ),
                Err(e) => self.line(
                    Status::Fail,
                    "source",
                    label,
                    h,
                    &format!("the source host name {h} does not resolve ({e}); add an A/AAAA record or put the address itself in {loc}"),
                ),
            }
        }
        let addr_texts: Vec<String> = if addrs.is_empty() {
            if id.source_host.is_none() {
                self.line(
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
            if let Some(ip) = addrs.get(i).copied() {
                self.address_checks(label, id, ip, &loc);
            }
            self.dkim(label, id, a, &domain, &loc);
            self.dmarc(label, a, &domain);
            self.batv(label, id, a, &loc);
        }
    }

    fn address_checks(&mut self, label: &str, id: &Identity, ip: IpAddr, loc: &str) {
        let a = ip.to_string();
        // source
        let domain_sock = if ip.is_ipv4() {
            socket2::Domain::IPV4
        } else {
            socket2::Domain::IPV6
        };
        let bound = socket2::Socket::new(domain_sock, socket2::Type::STREAM, None)
            .and_then(|s| s.bind(&SocketAddr::new(ip, 0).into()));
        match bound {
            Ok(()) => self.line(Status::Ok, "source", label, &a, "the address is configured on this host"),
            Err(e) => self.line(
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
        // ptr and fcrdns
        let rev = crate::deliver::dns::reverse_name(ip);
        match self.dns.ptr(ip) {
            Ok(names) if !names.is_empty() => {
                self.line(
                    Status::Ok,
                    "ptr",
                    label,
                    &a,
                    &format!("{rev} PTR {}", names.join(", ")),
                );
                let mut good = None;
                let mut seen = Vec::new();
                for n in &names {
                    match self.addrs(n) {
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
                    Some(n) => self.line(
                        Status::Ok,
                        "fcrdns",
                        label,
                        &a,
                        &format!("{n} resolves back to {a}"),
                    ),
                    None => self.line(
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
            other => {
                let why = match other {
                    Ok(_) => format!("{rev} has no PTR record"),
                    Err(e) => dns_text(e),
                };
                self.line(
                    Status::Fail,
                    "ptr",
                    label,
                    &a,
                    &format!(
                        "{why}; ask whoever runs the reverse zone (the address's provider) for `{rev} PTR {}`",
                        id.helo
                    ),
                );
                self.line(
                    Status::Fail,
                    "fcrdns",
                    label,
                    &a,
                    &format!("no PTR name to resolve back to {a}; fix the PTR first"),
                );
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
            self.line(
                st,
                "helo",
                label,
                &a,
                &format!("HELO is an address literal {helo}; receivers want a host name that resolves to {a}: set helo= in {loc}"),
            );
        } else {
            match self.addrs(&helo) {
                Ok(v) if v.contains(&ip) => self.line(
                    Status::Ok,
                    "helo",
                    label,
                    &a,
                    &format!("{helo} resolves to {a}"),
                ),
                other => {
                    let found = match other {
                        Ok(v) if v.is_empty() => "no address".to_string(),
                        Ok(v) => v
                            .iter()
                            .map(|x| x.to_string())
                            .collect::<Vec<_>>()
                            .join(" "),
                        Err(e) => e,
                    };
                    self.line(
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
        self.spf_check(label, id, ip);
    }

    fn spf_check(&mut self, label: &str, id: &Identity, ip: IpAddr) {
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
        let record = self.dns.txt(&domain).ok().and_then(|v| {
            v.into_iter()
                .find(|t| t.to_ascii_lowercase().starts_with("v=spf1"))
        });
        let result = self.spf.check(ip, &id.helo, &domain, &sender);
        match result {
            SpfResult::Pass => {
                let all = record
                    .as_deref()
                    .and_then(|r| r.split_whitespace().last())
                    .map(|t| t.to_ascii_lowercase())
                    .unwrap_or_default();
                if all == "~all" || all == "?all" {
                    self.line(
                        Status::Warn,
                        "spf",
                        label,
                        &a,
                        &format!("SPF of {domain} passes for {a}, but ends with {all}, so forgeries only soft-fail; end it with -all"),
                    );
                } else {
                    self.line(Status::Ok, "spf", label, &a, &format!("SPF of {domain} passes for {a}"));
                }
            }
            SpfResult::None => self.line(
                Status::Fail,
                "spf",
                label,
                &a,
                &format!("{domain} has no SPF record; publish `{domain} TXT \"v=spf1 {mech} -all\"`"),
            ),
            SpfResult::TempError => self.line(
                Status::Fail,
                "spf",
                label,
                &a,
                &format!("SPF of {domain} cannot be evaluated now (DNS temporary error); check the nameservers, then run --doctor again"),
            ),
            SpfResult::PermError => self.line(
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
                self.line(
                    Status::Fail,
                    "spf",
                    label,
                    &a,
                    &format!("SPF of {domain} gives {r} for {a}; {fix}"),
                );
            }
        }
    }

    fn dkim(&mut self, label: &str, id: &Identity, a: &str, domain: &str, loc: &str) {
        let Some((sel, path)) = &id.dkim else {
            self.line(
                Status::Warn,
                "dkim",
                label,
                a,
                &format!("messages are not DKIM-signed; add dkim=SELECTOR:/etc/vsendmail/dkim/{domain}.pem to {loc}"),
            );
            return;
        };
        let key = match crate::sign::dkim_key::public_key(path) {
            Ok(k) => k,
            Err(m) => {
                self.line(
                    Status::Fail,
                    "dkim",
                    label,
                    a,
                    &format!("key {}: {m}", path.display()),
                );
                return;
            }
        };
        let name = format!("{sel}._domainkey.{domain}");
        let publish = format!("publish `{name} TXT \"{}\"`", key.txt());
        let records = match self.dns.txt(&name) {
            Ok(v) => v,
            Err(DnsError::NxDomain { .. }) => Vec::new(),
            Err(e) => {
                self.line(
                    Status::Fail,
                    "dkim",
                    label,
                    a,
                    &format!("{}; then {publish}", dns_text(e)),
                );
                return;
            }
        };
        let recs: Vec<&String> = records.iter().filter(|r| r.contains("p=")).collect();
        if recs.is_empty() {
            self.line(
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
                self.line(
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
        self.line(
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

    fn dmarc(&mut self, label: &str, a: &str, domain: &str) {
        use mail_auth::common::parse::TxtRecordParser;
        use mail_auth::dmarc::{Dmarc, Policy};
        // The domain itself, then its parents (the organizational domain).
        let labels: Vec<&str> = domain.split('.').collect();
        let mut found: Option<(String, String)> = None;
        for i in 0..labels.len().saturating_sub(1).max(1) {
            let d = labels[i..].join(".");
            let name = format!("_dmarc.{d}");
            let rec = self.dns.txt(&name).ok().and_then(|v| {
                v.into_iter()
                    .find(|t| t.trim_start().to_ascii_lowercase().starts_with("v=dmarc1"))
            });
            if let Some(r) = rec {
                found = Some((name, r));
                break;
            }
        }
        let publish = format!(
            "publish `_dmarc.{domain} TXT \"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}\"` (p=none first, to watch the reports)"
        );
        let Some((name, rec)) = found else {
            self.line(
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
                Policy::Quarantine | Policy::Reject => self.line(
                    Status::Ok,
                    "dmarc",
                    label,
                    a,
                    &format!("{name}: \"{rec}\""),
                ),
                _ => self.line(
                    Status::Warn,
                    "dmarc",
                    label,
                    a,
                    &format!("{name}: \"{rec}\" has p=none: receivers are not asked to act on forgeries; move to p=quarantine once the reports are clean"),
                ),
            },
            Err(e) => self.line(
                Status::Fail,
                "dmarc",
                label,
                a,
                &format!("{name}: \"{rec}\" is not a valid DMARC record ({e}); {publish}"),
            ),
        }
    }

    fn batv(&mut self, label: &str, id: &Identity, a: &str, loc: &str) {
        let Some(path) = &id.batv else { return };
        match crate::sign::batv::read_keys(path) {
            Ok(k) => {
                let (d, _) = k.signing();
                let mode_note = if world_readable(path) {
                    "; but it is readable by every user: chmod 0640 and give it to the vsendmail group".to_string()
                } else {
                    String::new()
                };
                self.line(
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
            Err(m) => self.line(
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
}

fn world_readable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

fn dns_text(e: DnsError) -> String {
    e.to_string()
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

/// SPF evaluation by mail-auth, its resolver pointed at the `dns` servers.
struct Spf {
    rt: tokio::runtime::Runtime,
    auth: mail_auth::MessageAuthenticator,
}

impl Spf {
    fn new(ns: &[SocketAddr]) -> crate::exit::Result<Spf> {
        let setup = |e: String| {
            crate::exit::Error::DoctorSetup(format!("cannot set up the SPF resolver: {e}"))
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| setup(e.to_string()))?;
        let mut opts = ResolverOpts::default();
        opts.timeout = TIMEOUT;
        opts.attempts = 2;
        opts.ndots = 0;
        let auth = {
            let _g = rt.enter();
            if ns.is_empty() {
                mail_auth::MessageAuthenticator::new_system_conf()
                    .map_err(|e| setup(e.to_string()))?
            } else {
                mail_auth::MessageAuthenticator::new(crate::deliver::dns::resolver_config(ns), opts)
                    .map_err(|e| setup(e.to_string()))?
            }
        };
        Ok(Spf { rt, auth })
    }

    fn check(&self, ip: IpAddr, helo: &str, domain: &str, sender: &str) -> mail_auth::SpfResult {
        let params =
            mail_auth::spf::verify::SpfParameters::verify_mail_from(ip, helo, domain, sender);
        let out = self.rt.block_on(self.auth.verify_spf(params));
        out.result()
    }
}
