//! DNS for delivery: MX (with null MX, RFC 7505), A/AAAA, TXT, and plain PTR
//! and TLSA (with the AD bit) questions, through hickory-resolver on a current-thread tokio runtime
//! (hickory 0.26 has no synchronous resolver). Nameservers come from the
//! `dns` config key (tests point it at their own server on a loopback port),
//! else from /etc/resolv.conf.

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as HDnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot set up the DNS resolver: {0}")]
    Setup(String),
    #[error("{name} does not exist (NXDOMAIN)")]
    NxDomain { name: String },
    #[error("DNS lookup of {name} failed temporarily: {why}")]
    Temporary { name: String, why: String },
}

impl DnsError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, DnsError::NxDomain { .. })
    }
}

/// The mail exchangers of a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mx {
    /// MX hosts as (preference, host), sorted by preference.
    Hosts(Vec<(u16, String)>),
    /// RFC 7505 `MX 0 .`: the domain accepts no mail.
    Null,
    /// No MX records: deliver to the domain's own A/AAAA (RFC 5321 5.1).
    Implicit,
}

/// One TLSA record: (usage, selector, matching type, association data).
pub type TlsaData = (u8, u8, u8, Vec<u8>);

pub struct Dns {
    rt: tokio::runtime::Runtime,
    resolver: TokioResolver,
    /// The servers asked directly by plain queries (`ptr`); port 53 from
    /// /etc/resolv.conf when none are configured.
    servers: Vec<SocketAddr>,
    timeout: Duration,
    /// No question is waited for past this (`--doctor`'s time budget).
    deadline: Option<std::time::Instant>,
}

/// A resolver configuration asking exactly these servers (UDP, then TCP),
/// each on its own port: the `dns` config key, also used for SPF.
pub fn resolver_config(nameservers: &[SocketAddr]) -> ResolverConfig {
    let servers = nameservers
        .iter()
        .map(|sa| {
            let mut ns = NameServerConfig::udp_and_tcp(sa.ip());
            for c in ns.connections.iter_mut() {
                c.port = sa.port();
            }
            ns
        })
        .collect();
    ResolverConfig::from_parts(None, vec![], servers)
}

/// The runtime every resolver of ours runs on: one current thread (hickory
/// 0.26 has no synchronous resolver), driven by `block_on`.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// The options every resolver of ours uses (delivery's and SPF's): `timeout`
/// per question, two attempts, every name taken as absolute.
pub fn tune(opts: &mut ResolverOpts, timeout: Duration) {
    opts.timeout = timeout;
    opts.attempts = 2;
    opts.ndots = 0;
}

impl Dns {
    pub fn new(nameservers: &[SocketAddr], timeout: Duration) -> Result<Dns, DnsError> {
        let rt = runtime().map_err(|e| DnsError::Setup(e.to_string()))?;
        let mut builder = if nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| DnsError::Setup(e.to_string()))?
        } else {
            TokioResolver::builder_with_config(
                resolver_config(nameservers),
                TokioRuntimeProvider::default(),
            )
        };
        tune(builder.options_mut(), timeout);
        let resolver = {
            let _g = rt.enter();
            builder
                .build()
                .map_err(|e| DnsError::Setup(e.to_string()))?
        };
        let servers = if nameservers.is_empty() {
            resolv_conf_servers()
        } else {
            nameservers.to_vec()
        };
        Ok(Dns {
            rt,
            resolver,
            servers,
            timeout,
            deadline: None,
        })
    }

    /// From now on, give up on any answer not in by `at`: such a question
    /// fails as `Temporary` ("no answer in time").
    pub fn set_deadline(&mut self, at: std::time::Instant) {
        self.deadline = Some(at);
    }

    /// How long a question may still wait.
    fn wait(&self) -> Duration {
        match self.deadline {
            Some(d) => self
                .timeout
                .min(d.saturating_duration_since(std::time::Instant::now())),
            None => self.timeout,
        }
    }

    fn out_of_time(&self, name: &str) -> DnsError {
        DnsError::Temporary {
            name: name.into(),
            why: "no answer in time".into(),
        }
    }

    fn lookup(&self, name: &str, rt: RecordType) -> Result<Vec<RData>, DnsError> {
        let fqdn = if name.ends_with('.') {
            name.to_string()
        } else {
            format!("{name}.")
        };
        let answer = match self.deadline {
            None => self.rt.block_on(self.resolver.lookup(fqdn.as_str(), rt)),
            Some(d) => {
                let fut = self.resolver.lookup(fqdn.as_str(), rt);
                let at = tokio::time::Instant::from_std(d);
                match self
                    .rt
                    .block_on(async { tokio::time::timeout_at(at, fut).await })
                {
                    Ok(r) => r,
                    Err(_) => return Err(self.out_of_time(name)),
                }
            }
        };
        match answer {
            Ok(l) => Ok(l.answers().iter().map(|r| r.data.clone()).collect()),
            Err(e) => classify(name, e),
        }
    }

    /// MX records of `domain`.
    pub fn mx(&self, domain: &str) -> Result<Mx, DnsError> {
        let recs = self.lookup(domain, RecordType::MX)?;
        let mut hosts: Vec<(u16, String)> = recs
            .into_iter()
            .filter_map(|r| match r {
                RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                _ => None,
            })
            .collect();
        if hosts.is_empty() {
            return Ok(Mx::Implicit);
        }
        if hosts.len() == 1 && (hosts[0].1 == "." || hosts[0].1.is_empty()) {
            return Ok(Mx::Null);
        }
        hosts.retain(|(_, h)| h != ".");
        for h in hosts.iter_mut() {
            h.1 = h.1.trim_end_matches('.').to_ascii_lowercase();
        }
        hosts.sort_by_key(|h| h.0);
        Ok(Mx::Hosts(hosts))
    }

    /// Addresses of `host` in the families asked for, IPv6 first when `v6_first`.
    pub fn addrs(
        &self,
        host: &str,
        v4: bool,
        v6: bool,
        v6_first: bool,
    ) -> Result<Vec<IpAddr>, DnsError> {
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Ok(vec![ip]);
        }
        let mut six = Vec::new();
        let mut four = Vec::new();
        let mut last_err = None;
        if v6 {
            match self.lookup(host, RecordType::AAAA) {
                Ok(r) => six.extend(r.into_iter().filter_map(|d| match d {
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })),
                Err(e) => last_err = Some(e),
            }
        }
        if v4 {
            match self.lookup(host, RecordType::A) {
                Ok(r) => four.extend(r.into_iter().filter_map(|d| match d {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    _ => None,
                })),
                Err(e) => last_err = Some(e),
            }
        }
        let mut out = if v6_first {
            six.into_iter().chain(four).collect::<Vec<_>>()
        } else {
            four.into_iter().chain(six).collect()
        };
        out.dedup();
        if out.is_empty()
            && let Some(e) = last_err
        {
            return Err(e);
        }
        Ok(out)
    }

    /// TXT strings of `name`, each record's strings joined.
    pub fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        Ok(self
            .lookup(name, RecordType::TXT)?
            .into_iter()
            .filter_map(|d| match d {
                RData::TXT(t) => Some(
                    t.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect())
    }

    /// PTR names of an address, asked of the configured servers with a plain
    /// query (UDP, then TCP when truncated): the resolver would answer
    /// 127.in-addr.arpa and ::1 itself with `localhost`.
    pub fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
        let name = reverse_name(ip);
        let resp = self.plain(&name, RecordType::PTR, false)?;
        Ok(resp
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::PTR(p) => Some(p.0.to_ascii().trim_end_matches('.').to_ascii_lowercase()),
                _ => None,
            })
            .collect())
    }

    /// TLSA records of `name` (`_25._tcp.HOST`) as (usage, selector,
    /// matching type, data), and whether the answer was authenticated: the
    /// AD bit of the configured servers' answer (asked for with AD set, RFC
    /// 6840 5.7). No records: empty. Only a validating resolver's AD bit
    /// means anything (`dnssec = "trust-ad"`).
    pub fn tlsa(&self, name: &str) -> Result<(Vec<TlsaData>, bool), DnsError> {
        let resp = match self.plain(name, RecordType::TLSA, true) {
            Ok(r) => r,
            Err(DnsError::NxDomain { .. }) => return Ok((Vec::new(), false)),
            Err(e) => return Err(e),
        };
        let recs = resp
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::TLSA(t) => Some((
                    u8::from(t.cert_usage),
                    u8::from(t.selector),
                    u8::from(t.matching),
                    t.cert_data.clone(),
                )),
                _ => None,
            })
            .collect();
        Ok((recs, resp.metadata.authentic_data))
    }

    /// One question asked of the configured servers in turn with a plain
    /// query (UDP, then TCP when truncated), `ad`: with the AD bit set. The
    /// answer of the first server that gives one; NXDOMAIN as an error.
    fn plain(
        &self,
        name: &str,
        rtype: RecordType,
        ad: bool,
    ) -> Result<hickory_resolver::proto::op::Message, DnsError> {
        use hickory_resolver::proto::op::{Message, Query};
        use hickory_resolver::proto::rr::Name;
        use std::io::{Read, Write};
        let name = name.trim_end_matches('.').to_string();
        let temp = |why: String| DnsError::Temporary {
            name: name.clone(),
            why,
        };
        let qname = Name::from_ascii(format!("{name}.")).map_err(|e| temp(e.to_string()))?;
        let mut last = temp("no nameserver configured".into());
        for server in &self.servers {
            let wait = self.wait();
            if wait.is_zero() {
                return Err(self.out_of_time(&name));
            }
            let mut q = Message::query();
            q.metadata.recursion_desired = true;
            q.metadata.authentic_data = ad;
            q.add_query(Query::query(qname.clone(), rtype));
            let id = q.metadata.id;
            let wire = q.to_vec().map_err(|e| temp(e.to_string()))?;
            let bind: SocketAddr = if server.is_ipv4() {
                "0.0.0.0:0".parse().expect("literal")
            } else {
                "[::]:0".parse().expect("literal")
            };
            let udp = (|| -> std::io::Result<Vec<u8>> {
                let s = std::net::UdpSocket::bind(bind)?;
                s.set_read_timeout(Some(wait))?;
                s.connect(server)?;
                s.send(&wire)?;
                let mut buf = vec![0u8; 4096];
                loop {
                    let n = s.recv(&mut buf)?;
                    if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                        buf.truncate(n);
                        return Ok(buf);
                    }
                }
            })();
            let mut resp = match udp
                .map_err(|e| e.to_string())
                .and_then(|b| Message::from_vec(&b).map_err(|e| e.to_string()))
            {
                Ok(m) => m,
                Err(why) => {
                    last = temp(format!("{server}: {why}"));
                    continue;
                }
            };
            if resp.metadata.truncation {
                let tcp = (|| -> std::io::Result<Vec<u8>> {
                    let mut s = std::net::TcpStream::connect_timeout(server, wait)?;
                    s.set_read_timeout(Some(wait))?;
                    let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&wire);
                    s.write_all(&framed)?;
                    let mut len = [0u8; 2];
                    s.read_exact(&mut len)?;
                    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
                    s.read_exact(&mut buf)?;
                    Ok(buf)
                })();
                resp = match tcp
                    .map_err(|e| e.to_string())
                    .and_then(|b| Message::from_vec(&b).map_err(|e| e.to_string()))
                {
                    Ok(m) => m,
                    Err(why) => {
                        last = temp(format!("{server} (TCP): {why}"));
                        continue;
                    }
                };
            }
            match resp.metadata.response_code {
                ResponseCode::NoError => return Ok(resp),
                ResponseCode::NXDomain => return Err(DnsError::NxDomain { name: name.clone() }),
                rc => last = temp(format!("{server}: {rc}")),
            }
        }
        Err(last)
    }
}

/// `nameserver` lines of /etc/resolv.conf, port 53.
fn resolv_conf_servers() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some("nameserver")).then_some(())?;
            let ip: IpAddr = f.next()?.split('%').next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

/// `10.2.0.192.in-addr.arpa` / nibble form for IPv6.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

fn classify(name: &str, e: NetError) -> Result<Vec<RData>, DnsError> {
    if let NetError::Dns(HDnsError::NoRecordsFound(nr)) = &e {
        return match nr.response_code {
            ResponseCode::NXDomain => Err(DnsError::NxDomain { name: name.into() }),
            ResponseCode::NoError => Ok(Vec::new()),
            rc => Err(DnsError::Temporary {
                name: name.into(),
                why: rc.to_string(),
            }),
        };
    }
    Err(DnsError::Temporary {
        name: name.into(),
        why: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("192.0.2.10".parse().unwrap()),
            "10.2.0.192.in-addr.arpa"
        );
        assert!(reverse_name("2001:db8::1".parse().unwrap()).starts_with("1.0.0.0."));
        assert!(
            reverse_name("2001:db8::1".parse().unwrap()).ends_with(".8.b.d.0.1.0.0.2.ip6.arpa")
        );
    }
}
