//! What delivery needs besides the message: the configuration and log, the
//! resolver and TLS configuration (made on first use), and in a queue run the
//! pool of SMTP sessions that messages to the same host from the same source
//! share (RSET between), and the destinations that could not be reached in
//! this run, which the run's other messages do not wait for again.

use crate::base::syslog::Syslog;
use crate::config::conf::Loaded;
use crate::deliver::dns::Dns;
use crate::deliver::smtp::session::Session;
use crate::deliver::smtp::tls::TlsContext;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// Sessions kept open across messages of one queue job, keyed by
/// (source, destination, HELO, relay user): a queue run reuses one SMTP
/// connection for several messages to the same host from the same source.
/// (source, destination, HELO, relay user) of a reusable session.
pub type PoolKey = (Option<IpAddr>, SocketAddr, String, Option<String>);

/// (source, destination) of a connection attempt.
pub type Route = (Option<IpAddr>, SocketAddr);

#[derive(Default)]
pub struct Pool {
    pub(super) sessions: HashMap<PoolKey, (Session, u64)>,
    /// Destinations that failed to connect or timed out in this run, with
    /// why (a cell: noted while the session being opened borrows the context).
    unreachable: RefCell<HashMap<Route, String>>,
}

impl Pool {
    pub fn close_all(&mut self) {
        for (_, (mut s, _)) in self.sessions.drain() {
            s.quit();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.close_all();
    }
}

/// Everything delivery needs besides the message.
pub struct Context<'a> {
    pub cfg: &'a Loaded,
    pub log: &'a Syslog,
    pub verbose: bool,
    dns: Option<Dns>,
    dns_err: Option<String>,
    pub pool: Option<Pool>,
    pub(super) tls: Option<TlsContext>,
    /// Root's queue runs: the connection slots held per destination host
    /// (`deliver::backoff::slot`); `None`: not counted.
    pub slots: Option<HashMap<String, crate::deliver::backoff::Slot>>,
    /// The MTA-STS policy of each domain seen in this run (`tls_choice`).
    pub(super) sts: HashMap<String, Option<crate::deliver::mta_sts::Policy>>,
    /// The TLS the host being tried gets (set by `attempt` per host).
    pub(super) peer_tls: crate::deliver::peer_tls::HostTls,
}

impl<'a> Context<'a> {
    pub fn new(cfg: &'a Loaded, log: &'a Syslog, verbose: bool, reuse: bool) -> Context<'a> {
        Context {
            cfg,
            log,
            verbose,
            dns: None,
            dns_err: None,
            pool: reuse.then(Pool::default),
            tls: None,
            slots: None,
            sts: HashMap::new(),
            peer_tls: Default::default(),
        }
    }

    /// The resolver, created on first use (a relay-only run never needs it).
    pub fn dns(&mut self) -> Option<&Dns> {
        if self.dns.is_none() && self.dns_err.is_none() {
            match Dns::new(&self.cfg.nameservers, std::time::Duration::from_secs(5)) {
                Ok(d) => self.dns = Some(d),
                Err(e) => self.dns_err = Some(e.to_string()),
            }
        }
        self.dns.as_ref()
    }

    /// In a queue run: why `route` is not to be tried again (it failed to
    /// connect or timed out earlier in the run), as the deferral reason.
    pub(super) fn not_again(&self, route: Route) -> Option<String> {
        let pool = self.pool.as_ref()?;
        let seen = pool.unreachable.borrow();
        Some(format!(
            "not tried again in this queue run: {}",
            seen.get(&route)?
        ))
    }

    /// In a queue run: remember that `route` failed to connect or timed out.
    pub(super) fn unreachable(&self, route: Route, why: &str) {
        if let Some(pool) = self.pool.as_ref() {
            pool.unreachable.borrow_mut().insert(route, why.to_string());
        }
    }

    /// In a queue run: the destinations noted by [`Context::unreachable`].
    pub(super) fn unreachable_routes(&self) -> Vec<(Route, String)> {
        self.pool
            .as_ref()
            .map(|p| {
                p.unreachable
                    .borrow()
                    .iter()
                    .map(|(r, w)| (*r, w.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The resolver and the TLS configuration, both made on first use.
    pub(super) fn dns_and_tls(&mut self) -> (Option<&Dns>, Option<&TlsContext>) {
        let _ = self.dns();
        let _ = self.init_tls();
        (self.dns.as_ref(), self.tls.as_ref())
    }

    pub(super) fn init_tls(&mut self) -> Result<(), String> {
        if self.tls.is_none() {
            self.tls = Some(
                crate::deliver::smtp::tls::TlsContext::new(self.cfg).map_err(|e| e.to_string())?,
            );
        }
        Ok(())
    }
}
