//! An identity as used for sending: who the invoking user sends as (sender,
//! source addresses, HELO, route, signing options), resolved from the matching
//! virtusers line or the host default, and the sender policy that decides
//! which envelope sender and From: addresses that user may use.

use crate::config::conf::{FromPolicy, SenderPolicy};
use crate::config::virtusers::{Entry, SenderSpec, Sources};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "user {login} may not use sender <{requested}> (identity {identity}); allowed: {allowed}. Ask the administrator to add a from= pattern to {location}"
    )]
    Sender {
        login: String,
        requested: String,
        identity: String,
        allowed: String,
        location: String,
    },
    #[error(
        "{field}: <{requested}> is not an address user {login} may use (identity {identity}); allowed: {allowed}; from_policy = \"reject\""
    )]
    From {
        field: &'static str,
        login: String,
        requested: String,
        identity: String,
        allowed: String,
    },
}

/// What is stored with every queued message: enough to send it again exactly
/// as at submission, even if virtusers changes later.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Identity {
    pub login: String,
    pub uid: u32,
    /// The identity's own address (`alice@shop.example`).
    pub sender: String,
    /// Source addresses; empty = the kernel chooses.
    pub sources: Vec<std::net::IpAddr>,
    /// Behind 1:1 NAT: (PRIVATE, PUBLIC) for the sources written
    /// `PRIVATE=PUBLIC`; PRIVATE is bound, PUBLIC is what receivers see.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public: Vec<(std::net::IpAddr, std::net::IpAddr)>,
    /// A host name to resolve at send time instead of literals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_host: Option<String>,
    pub helo: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// `relay=`: a failover list (an envelope from before lists holds one URL).
    pub relay: Option<crate::base::relay::Relays>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<crate::base::limit::Rate>,
    /// `rcpt_rate=`: recipients per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcpt_rate: Option<crate::base::limit::Rate>,
    /// The `%group` line it came from, with `group_rate=`/`group_rcpt_rate=`
    /// when that line sets them (counted over every member together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupLimits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dkim: Option<(String, PathBuf)>,
    /// Keys of further From: domains, `(domain, selector, key)`; envelopes
    /// written before they existed load with none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dkim_domains: Vec<(String, String, PathBuf)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batv: Option<PathBuf>,
    /// `file:line` of the virtusers entry; `None` for the host identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// A `%group` line's shared limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupLimits {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<crate::base::limit::Rate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcpt_rate: Option<crate::base::limit::Rate>,
}

impl Identity {
    /// The public address receivers see for the bound source `ip` (NAT).
    pub fn public_for(&self, ip: std::net::IpAddr) -> Option<std::net::IpAddr> {
        self.public.iter().find(|(p, _)| *p == ip).map(|x| x.1)
    }

    /// The identity for `login` from its virtusers entry, or the host identity.
    pub fn resolve(entry: Option<&Entry>, login: &str, uid: u32, hostname: &str) -> Identity {
        let Some(e) = entry else {
            return Identity {
                login: login.into(),
                uid,
                sender: format!("{login}@{hostname}"),
                sources: Vec::new(),
                public: Vec::new(),
                source_host: None,
                helo: hostname.into(),
                relay: None,
                from: Vec::new(),
                rate: None,
                rcpt_rate: None,
                group: None,
                dkim: None,
                dkim_domains: Vec::new(),
                batv: None,
                location: None,
            };
        };
        let sender = match &e.sender {
            SenderSpec::Address(a) => a.clone(),
            SenderSpec::AtDomain(d) => format!("{login}@{d}"),
        };
        let domain = crate::base::address::domain(&sender).unwrap_or_else(|| hostname.to_string());
        let (sources, source_host) = match &e.sources {
            Sources::Kernel => (Vec::new(), None),
            Sources::Addrs(v) => (v.clone(), None),
            Sources::Host(h) => (Vec::new(), Some(h.clone())),
        };
        let public = match &e.sources {
            Sources::Addrs(_) => e.public.clone(),
            _ => Vec::new(),
        };
        Identity {
            login: login.into(),
            uid,
            sender,
            sources,
            public,
            source_host,
            helo: e.helo.clone().unwrap_or(domain),
            relay: e.relay.clone(),
            from: e.from.clone(),
            rate: e.rate.clone(),
            rcpt_rate: e.rcpt_rate.clone(),
            group: match &e.who {
                crate::config::virtusers::Who::Group(g)
                    if e.group_rate.is_some() || e.group_rcpt_rate.is_some() =>
                {
                    Some(GroupLimits {
                        name: g.clone(),
                        rate: e.group_rate.clone(),
                        rcpt_rate: e.group_rcpt_rate.clone(),
                    })
                }
                _ => None,
            },
            dkim: e.dkim.clone(),
            dkim_domains: e.dkim_domains.clone(),
            batv: e.batv.clone(),
            location: Some(e.location()),
        }
    }

    /// The key a message whose From: is at `from_domain` is signed with:
    /// `(d=, s=, key file)`, the From: domain's own when `dkim=` lists it,
    /// else the identity's own domain's; `None`: not signed.
    pub fn dkim_key_for(&self, from_domain: Option<&str>) -> Option<(String, &str, &Path)> {
        if let Some(fd) = from_domain
            && let Some((d, sel, p)) = self
                .dkim_domains
                .iter()
                .find(|(d, _, _)| d.eq_ignore_ascii_case(fd))
        {
            return Some((d.clone(), sel.as_str(), p.as_path()));
        }
        self.dkim
            .as_ref()
            .map(|(sel, p)| (self.domain(), sel.as_str(), p.as_path()))
    }

    /// Every key of the identity: `(domain, selector, key file)`, its own first.
    pub fn dkim_keys(&self) -> Vec<(String, &str, &Path)> {
        let mut v: Vec<(String, &str, &Path)> = self
            .dkim
            .iter()
            .map(|(sel, p)| (self.domain(), sel.as_str(), p.as_path()))
            .collect();
        v.extend(
            self.dkim_domains
                .iter()
                .map(|(d, sel, p)| (d.clone(), sel.as_str(), p.as_path())),
        );
        v
    }

    /// The domain of the identity's sender (Message-ID right side, qualification).
    pub fn domain(&self) -> String {
        crate::base::address::domain(&self.sender).unwrap_or_default()
    }

    /// Whether `addr` is one this identity may use as sender or From:.
    pub fn may_use(&self, addr: &str) -> bool {
        addr.eq_ignore_ascii_case(&self.sender)
            || self
                .from
                .iter()
                .any(|p| crate::base::address::wildcard(p, addr))
    }

    fn allowed(&self) -> String {
        let mut v = vec![self.sender.clone()];
        v.extend(self.from.iter().cloned());
        v.join(", ")
    }

    /// Decide the envelope sender for a `-f`/`-r` request.
    pub fn envelope_sender(
        &self,
        requested: Option<&str>,
        trusted: bool,
        policy: SenderPolicy,
    ) -> Result<SenderChoice, PolicyError> {
        let Some(req) = requested else {
            return Ok(SenderChoice::plain(self.sender.clone()));
        };
        if req.is_empty() {
            return Ok(SenderChoice::plain(String::new()));
        }
        let req = crate::base::address::qualify(req, &self.domain());
        if trusted || self.may_use(&req) {
            return Ok(SenderChoice::plain(req));
        }
        match policy {
            SenderPolicy::Reject => Err(PolicyError::Sender {
                login: self.login.clone(),
                requested: req,
                identity: self.sender.clone(),
                allowed: self.allowed(),
                location: self
                    .location
                    .clone()
                    .unwrap_or_else(|| "/etc/virtusers (the user has no line)".into()),
            }),
            SenderPolicy::Rewrite => Ok(SenderChoice {
                sender: self.sender.clone(),
                warning: Some(format!("{} set sender to {req} using -f", self.login)),
            }),
        }
    }

    /// Apply `from_policy` to the mailbox address of one author field
    /// (`field`: From, Sender, Resent-From, Resent-Sender). `Ok(None)`: keep
    /// it; `Ok(Some(addr))`: rewrite to the identity's sender.
    pub fn check_from(
        &self,
        field: &'static str,
        from_addr: &str,
        trusted: bool,
        policy: FromPolicy,
    ) -> Result<Option<String>, PolicyError> {
        if trusted || policy == FromPolicy::Keep || self.may_use(from_addr) {
            return Ok(None);
        }
        match policy {
            FromPolicy::Reject => Err(PolicyError::From {
                field,
                login: self.login.clone(),
                requested: from_addr.into(),
                identity: self.sender.clone(),
                allowed: self.allowed(),
            }),
            _ => Ok(Some(self.sender.clone())),
        }
    }
}

/// The envelope sender chosen, and an `X-Authentication-Warning:` text when a
/// request was rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderChoice {
    pub sender: String,
    pub warning: Option<String>,
}

impl SenderChoice {
    fn plain(sender: String) -> Self {
        SenderChoice {
            sender,
            warning: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::virtusers::Table;
    use std::path::Path;

    fn alice() -> Identity {
        let t = Table::from_text(
            Path::new("/etc/virtusers"),
            "alice alice@shop.example 192.0.2.10 from=*@shop.example,alice@other.example\n",
        );
        Identity::resolve(
            t.lookup("alice", &[]).unwrap().as_ref(),
            "alice",
            1001,
            "host.example",
        )
    }

    #[test]
    fn addon_domains_sign_with_their_own_key_and_old_envelopes_load() {
        let t = Table::from_text(
            Path::new("/etc/virtusers"),
            "alice alice@shop.example - from=*@blog.example dkim=s1:/k/shop.pem,Blog.Example=s2:/k/blog.pem\n",
        );
        let i = Identity::resolve(
            t.lookup("alice", &[]).unwrap().as_ref(),
            "alice",
            1,
            "h.example",
        );
        let k = |d: Option<&str>| {
            i.dkim_key_for(d)
                .map(|(d, s, p)| (d, s.to_string(), p.display().to_string()))
        };
        assert_eq!(
            k(Some("blog.example")),
            Some(("blog.example".into(), "s2".into(), "/k/blog.pem".into()))
        );
        assert_eq!(k(Some("BLOG.example")).unwrap().1, "s2");
        assert_eq!(
            k(Some("other.example")),
            Some(("shop.example".into(), "s1".into(), "/k/shop.pem".into()))
        );
        assert_eq!(k(None).unwrap().1, "s1");
        assert_eq!(i.dkim_keys().len(), 2);
        let old = r#"{"login":"a","uid":1,"sender":"a@shop.example","sources":[],"helo":"h","dkim":["sel","/k/shop.pem"]}"#;
        let o: Identity = serde_json::from_str(old).unwrap();
        assert_eq!(o.dkim, Some(("sel".into(), PathBuf::from("/k/shop.pem"))));
        assert!(o.dkim_domains.is_empty());
        let back: Identity = serde_json::from_str(&serde_json::to_string(&i).unwrap()).unwrap();
        assert_eq!(back, i);
        for bad in [
            "dkim=s1:/a,s2:/b",
            "dkim==s:/a",
            "dkim=x.example=s:/a,x.example=t:/b",
            "dkim=s1",
        ] {
            let t = Table::from_text(
                Path::new("/etc/virtusers"),
                &format!("alice a@shop.example - {bad}\n"),
            );
            assert!(t.lookup("alice", &[]).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_identity_when_no_line() {
        let i = Identity::resolve(None, "bob", 1002, "host.example");
        assert_eq!(i.sender, "bob@host.example");
        assert_eq!(i.helo, "host.example");
        assert!(i.sources.is_empty());
    }

    #[test]
    fn helo_defaults_to_sender_domain() {
        assert_eq!(alice().helo, "shop.example");
    }

    #[test]
    fn sender_inside_patterns_is_kept() {
        let c = alice()
            .envelope_sender(Some("sales@shop.example"), false, SenderPolicy::Reject)
            .unwrap();
        assert_eq!(c.sender, "sales@shop.example");
    }

    #[test]
    fn sender_outside_patterns_rejected_names_patterns() {
        let e = alice()
            .envelope_sender(Some("ceo@bank.example"), false, SenderPolicy::Reject)
            .unwrap_err()
            .to_string();
        assert!(e.contains("*@shop.example"), "{e}");
        assert!(e.contains("/etc/virtusers:1"), "{e}");
    }

    #[test]
    fn sender_outside_patterns_rewritten_with_warning() {
        let c = alice()
            .envelope_sender(Some("ceo@bank.example"), false, SenderPolicy::Rewrite)
            .unwrap();
        assert_eq!(c.sender, "alice@shop.example");
        assert!(c.warning.unwrap().contains("ceo@bank.example"));
    }

    #[test]
    fn trusted_and_null_sender() {
        let i = alice();
        assert_eq!(
            i.envelope_sender(Some("x@y.example"), true, SenderPolicy::Reject)
                .unwrap()
                .sender,
            "x@y.example"
        );
        assert_eq!(
            i.envelope_sender(Some(""), false, SenderPolicy::Reject)
                .unwrap()
                .sender,
            ""
        );
    }
}
