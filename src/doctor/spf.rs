//! SPF evaluation by mail-auth, its resolver pointed at the `dns` servers.

use mail_auth::hickory_resolver::config::ResolverOpts;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// SPF evaluation by mail-auth, its resolver pointed at the `dns` servers.
pub struct Spf {
    rt: tokio::runtime::Runtime,
    auth: mail_auth::MessageAuthenticator,
    /// An evaluation still running then is a temporary error.
    deadline: Option<std::time::Instant>,
}

impl Spf {
    pub fn new(ns: &[SocketAddr], timeout: Duration) -> Result<Spf, String> {
        let rt = crate::deliver::dns::runtime().map_err(|e| e.to_string())?;
        let mut opts = ResolverOpts::default();
        crate::deliver::dns::tune(&mut opts, timeout);
        let auth = {
            let _g = rt.enter();
            if ns.is_empty() {
                mail_auth::MessageAuthenticator::new_system_conf().map_err(|e| e.to_string())?
            } else {
                mail_auth::MessageAuthenticator::new(crate::deliver::dns::resolver_config(ns), opts)
                    .map_err(|e| e.to_string())?
            }
        };
        Ok(Spf {
            rt,
            auth,
            deadline: None,
        })
    }

    pub fn set_deadline(&mut self, at: std::time::Instant) {
        self.deadline = Some(at);
    }

    pub fn check(
        &self,
        ip: IpAddr,
        helo: &str,
        domain: &str,
        sender: &str,
    ) -> mail_auth::SpfResult {
        let params =
            mail_auth::spf::verify::SpfParameters::verify_mail_from(ip, helo, domain, sender);
        let fut = self.auth.verify_spf(params);
        match self.deadline {
            None => self.rt.block_on(fut).result(),
            Some(d) => {
                let at = tokio::time::Instant::from_std(d);
                match self
                    .rt
                    .block_on(async { tokio::time::timeout_at(at, fut).await })
                {
                    Ok(out) => out.result(),
                    Err(_) => mail_auth::SpfResult::TempError,
                }
            }
        }
    }
}
