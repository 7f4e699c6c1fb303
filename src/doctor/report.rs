//! `--doctor`'s report: one line per check,
//! `STATUS CHECK IDENTITY ADDRESS: detail and what to fix` (STATUS `ok`,
//! `warn` or `FAIL`), and what every check shares: the resolver, SPF, the
//! cache of names already looked up, the vsendmail group (whose view of the
//! key files counts), the run's time budget, whether anything failed.
//!
//! A DNS question that got no usable answer (SERVFAIL, REFUSED, a timeout,
//! nothing listening) is `FAIL … could not ask DNS (…)`, never "no record":
//! only NXDOMAIN or an empty answer says a record is missing.

use crate::config::access::ServiceGroup;
use crate::deliver::dns::{Dns, DnsError};
use crate::doctor::spf::Spf;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Why a name has no addresses: it has none (`Missing`), or DNS could not
/// be asked (`Unasked`).
#[derive(Debug, Clone)]
pub enum DnsFail {
    Missing(String),
    Unasked(String),
}

impl std::fmt::Display for DnsFail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnsFail::Missing(s) | DnsFail::Unasked(s) => f.write_str(s),
        }
    }
}

impl From<DnsError> for DnsFail {
    fn from(e: DnsError) -> DnsFail {
        match e {
            DnsError::NxDomain { .. } => DnsFail::Missing(e.to_string()),
            e => DnsFail::Unasked(dns_text(e)),
        }
    }
}

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

/// The checks' shared state and their output.
pub struct Doctor {
    pub dns: Dns,
    pub spf: Spf,
    cache_addrs: HashMap<String, Result<Vec<IpAddr>, DnsFail>>,
    /// The group a send reads key files with (`None`: not known).
    pub group: Option<ServiceGroup>,
    /// The whole run's time budget and when it ends.
    pub budget: Duration,
    pub deadline: Instant,
    /// Checks not made because the budget ran out.
    pub unfinished: usize,
    /// A check said `FAIL`.
    pub failed: bool,
    /// The `dnsbl` zones (empty: no dnsbl check).
    pub dnsbl: Vec<String>,
    /// For fetching the identity's own MTA-STS policy (`mta_sts_port`).
    pub tls: Option<crate::deliver::smtp::tls::TlsContext>,
    pub mta_sts_port: u16,
}

impl Doctor {
    pub fn new(
        mut dns: Dns,
        mut spf: Spf,
        group: Option<ServiceGroup>,
        budget: Duration,
    ) -> Doctor {
        let deadline = Instant::now() + budget;
        dns.set_deadline(deadline);
        spf.set_deadline(deadline);
        Doctor {
            dns,
            spf,
            cache_addrs: HashMap::new(),
            group,
            budget,
            deadline,
            unfinished: 0,
            failed: false,
            dnsbl: Vec::new(),
            tls: None,
            mta_sts_port: 443,
        }
    }

    /// `true` (and a `FAIL … not checked` line) when the budget is used
    /// up: the check that asked must not start.
    pub fn out_of_time(&mut self, check: &str, id: &str, addr: &str) -> bool {
        if Instant::now() < self.deadline {
            return false;
        }
        self.unfinished += 1;
        let text = format!(
            "not checked: --doctor's time budget of {} s ran out (DNS answers too slowly or not at all); check the nameservers, then run --doctor again",
            self.budget.as_secs()
        );
        self.line(Status::Fail, check, id, addr, &text);
        true
    }

    pub fn line(&mut self, st: Status, check: &str, id: &str, addr: &str, text: &str) {
        if st == Status::Fail {
            self.failed = true;
        }
        println!("{} {check} {id} {addr}: {text}", st.word());
    }

    /// A name's A and AAAA addresses (cached), or why not.
    pub fn addrs(&mut self, name: &str) -> Result<Vec<IpAddr>, DnsFail> {
        if let Some(r) = self.cache_addrs.get(name) {
            return r.clone();
        }
        let r = self
            .dns
            .addrs(name, true, true, false)
            .map_err(DnsFail::from);
        self.cache_addrs.insert(name.to_string(), r.clone());
        r
    }
}

/// What a failed question says: NXDOMAIN as it is, anything else (SERVFAIL,
/// REFUSED, a timeout) as `could not ask DNS (…)`.
pub fn dns_text(e: DnsError) -> String {
    match e {
        DnsError::Temporary { name, why } => {
            format!(
                "could not ask DNS ({name}: {why}); check the nameservers, then run --doctor again"
            )
        }
        e => e.to_string(),
    }
}
