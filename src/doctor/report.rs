//! `--doctor`'s report: one line per check,
//! `STATUS CHECK IDENTITY ADDRESS: detail and what to fix` (STATUS `ok`,
//! `warn` or `FAIL`), and what every check shares: the resolver, SPF, the
//! cache of names already looked up, whether anything failed.

use crate::deliver::dns::{Dns, DnsError};
use crate::doctor::spf::Spf;
use std::collections::HashMap;
use std::net::IpAddr;

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
    cache_addrs: HashMap<String, Result<Vec<IpAddr>, String>>,
    /// A check said `FAIL`.
    pub failed: bool,
}

impl Doctor {
    pub fn new(dns: Dns, spf: Spf) -> Doctor {
        Doctor {
            dns,
            spf,
            cache_addrs: HashMap::new(),
            failed: false,
        }
    }

    pub fn line(&mut self, st: Status, check: &str, id: &str, addr: &str, text: &str) {
        if st == Status::Fail {
            self.failed = true;
        }
        println!("{} {check} {id} {addr}: {text}", st.word());
    }

    /// A name's A and AAAA addresses (cached), or why not.
    pub fn addrs(&mut self, name: &str) -> Result<Vec<IpAddr>, String> {
        if let Some(r) = self.cache_addrs.get(name) {
            return r.clone();
        }
        let r = self.dns.addrs(name, true, true, false).map_err(dns_text);
        self.cache_addrs.insert(name.to_string(), r.clone());
        r
    }
}

pub fn dns_text(e: DnsError) -> String {
    e.to_string()
}
