//! `--doctor [LOGIN...]`: what receivers will see of each identity.
//!
//! Chooses the identities (every virtusers line, or the identities of the
//! logins named) and runs `doctor`'s checks on each; per source address one
//! line
//! `STATUS CHECK IDENTITY ADDRESS: detail and what to fix`, STATUS `ok`,
//! `warn` or `FAIL`, CHECK one of `source` (the address can be bound here),
//! `ptr`, `fcrdns`, `helo`, `spf` (evaluated by mail-auth), `dkim` (the
//! selector's TXT holds the key file's public key), `dmarc`, `batv` (the key
//! file is readable and well formed). All DNS questions go to the `dns`
//! nameservers (PTR with plain queries, see `deliver::dns::Dns::ptr`). Exit 0 when no
//! check failed, 1 otherwise.
//!
//! Root and `trusted_users` check any identity (every line by default). Any
//! other user checks only its own (the default, and the only login it may
//! name: another is 77), so no user learns another's addresses, key paths
//! or public keys.

use crate::config::virtusers::{Table, Who};
use crate::deliver::dns::Dns;
use crate::doctor::report::Doctor;
use crate::doctor::spf::Spf;
use crate::exit::{Error, Result};
use crate::identity::job::Job;
use crate::identity::profile::Identity;
use std::time::Duration;

/// How long one DNS question may take.
const TIMEOUT: Duration = Duration::from_secs(3);
/// How long the whole run may take: with DNS down, every check still
/// ends, and those not made are `FAIL … not checked` lines.
const BUDGET: Duration = Duration::from_secs(20);

/// Check the identities of `logins` (all when empty).
pub fn run(job: &Job, logins: &[String]) -> Result<i32> {
    let own = [job.invoker.login.clone()];
    let logins = if job.trusted() {
        logins
    } else if let Some(other) = logins.iter().find(|l| **l != job.invoker.login) {
        return Err(Error::NotYours {
            what: format!(
                "--doctor {}: another user's identity",
                crate::base::address::printable(other)
            ),
            login: job.invoker.login.clone(),
        });
    } else {
        &own[..]
    };
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
    let ns = &job.cfg.nameservers;
    let dns = Dns::new(ns, TIMEOUT).map_err(|e| Error::DoctorSetup(e.to_string()))?;
    let spf = Spf::new(ns, TIMEOUT)
        .map_err(|e| Error::DoctorSetup(format!("cannot set up the SPF resolver: {e}")))?;
    let group = crate::config::access::ServiceGroup::find(&job.cfg.cfg.spool);
    let mut doc = Doctor::new(dns, spf, group, BUDGET);
    doc.dnsbl = job.cfg.cfg.dnsbl.clone();
    doc.mta_sts_port = job.cfg.cfg.mta_sts_port;
    doc.tls = crate::deliver::smtp::tls::TlsContext::new(&job.cfg).ok();
    for (label, id) in &ids {
        crate::doctor::identity::identity(&mut doc, label, id);
    }
    if doc.unfinished > 0 {
        eprintln!(
            "vsendmail: warning: --doctor stopped at its time budget of {} s; {} check(s) not made (the `not checked` lines); check the nameservers, then run it again",
            BUDGET.as_secs(),
            doc.unfinished
        );
    }
    if doc.failed {
        // Each failure is a FAIL line of the report on stdout.
        return Err(Error::Quiet(Box::new(Error::DoctorFailed)));
    }
    Ok(0)
}
