//! `/etc/vsendmail.conf` (TOML): every key optional, unknown keys refused with
//! file:line. Owns parsing and defaults. Values with a grammar of their own
//! (durations, the relay URL, the rate, nameservers) are parsed here, once,
//! into the typed fields of [`Loaded`]; a bad one is a load error with the
//! line of its value (from `toml::Spanned`), never a silent default later.

use crate::base::duration::parse_duration;
use crate::base::limit::Rate;
use crate::base::relay::Relay;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

pub const DEFAULT_PATH: &str = "/etc/vsendmail.conf";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {err}; create it or point -C at a readable file")]
    Read { path: String, err: std::io::Error },
    #[error("{path}:{line}: {msg}")]
    Syntax {
        path: String,
        line: usize,
        msg: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TlsPolicy {
    #[default]
    Opportunistic,
    Required,
    Verify,
}

/// Whose word authenticates a DNS answer (DANE's TLSA records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Dnssec {
    /// No DNSSEC: no DANE.
    #[default]
    Off,
    /// The `dns` nameservers are a validating resolver: its AD bit is trusted.
    TrustAd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Prefer {
    #[default]
    Ipv6,
    Ipv4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SenderPolicy {
    #[default]
    Rewrite,
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FromPolicy {
    #[default]
    Keep,
    Rewrite,
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OverRate {
    #[default]
    Defer,
    Refuse,
}

/// RFC 5321 section 4.5.3.2 timeouts, in seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    pub connect: u64,
    pub greeting: u64,
    pub command: u64,
    pub data_block: u64,
    pub final_dot: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: 30,
            greeting: 300,
            command: 300,
            data_block: 180,
            final_dot: 600,
        }
    }
}

impl Timeouts {
    pub fn connect(&self) -> Duration {
        secs(self.connect)
    }
    pub fn greeting(&self) -> Duration {
        secs(self.greeting)
    }
    pub fn command(&self) -> Duration {
        secs(self.command)
    }
    pub fn data_block(&self) -> Duration {
        secs(self.data_block)
    }
    pub fn final_dot(&self) -> Duration {
        secs(self.final_dot)
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n.max(1))
}

/// The whole configuration, defaults filled in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub hostname: Option<String>,
    pub virtusers: PathBuf,
    pub aliases: PathBuf,
    pub spool: PathBuf,
    /// Raw: read [`Loaded::relay`].
    pub relay: Option<Spanned<String>>,
    pub mx_port: u16,
    /// Raw: read [`Loaded::nameservers`].
    pub dns: Vec<Spanned<String>>,
    pub tls: TlsPolicy,
    pub tls_ca_file: Option<PathBuf>,
    pub secrets: PathBuf,
    pub prefer: Prefer,
    pub sender_policy: SenderPolicy,
    pub from_policy: FromPolicy,
    pub trusted_users: Vec<String>,
    pub queue: bool,
    /// Raw durations: read the fields of [`Loaded`].
    pub retry_min: Option<Spanned<String>>,
    pub retry_max: Option<Spanned<String>>,
    pub max_age: Option<Spanned<String>>,
    pub warn_after: Option<Spanned<String>>,
    pub audit_dir: Option<PathBuf>,
    pub audit_days: u32,
    /// Raw: read [`Loaded::rate`].
    pub rate: Option<Spanned<String>>,
    pub over_rate: OverRate,
    pub max_queued: u32,
    pub batv_days: u32,
    pub timeouts: Timeouts,
    pub syslog_socket: PathBuf,
    pub max_message_size: u64,
    pub max_header_size: usize,
    pub max_line_length: usize,
    pub max_recipients: usize,
    /// Addresses tried per destination and delivery attempt (0: no limit).
    pub mx_address_limit: u32,
    /// Sessions that got past the greeting, per destination and attempt (0: no limit).
    pub mx_session_limit: u32,
    /// Raw: read [`Loaded::message_time_budget`].
    pub message_time_budget: Option<Spanned<String>>,
    /// Percent of the spool's filesystem kept free of users' new messages.
    pub spool_min_free: u32,
    /// Per uid (never root): queued messages, their bytes, drafts being written.
    pub max_user_queued_messages: u64,
    pub max_user_queued_bytes: u64,
    pub max_user_drafts: u64,
    /// Raw: read [`Loaded::backoff`].
    pub backoff: Option<Spanned<String>>,
    /// Queue runs talking to one destination host at once.
    pub destination_concurrency: u32,
    /// MTA-STS (RFC 8461) for direct delivery.
    pub mta_sts: bool,
    /// The port MTA-STS policies are fetched from (443; tests use their own).
    pub mta_sts_port: u16,
    pub dnssec: Dnssec,
    /// DNS blocklist zones `--doctor` checks each source address against.
    pub dnsbl: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: None,
            virtusers: "/etc/virtusers".into(),
            aliases: "/etc/aliases".into(),
            spool: "/var/spool/vsendmail".into(),
            relay: None,
            mx_port: 25,
            dns: Vec::new(),
            tls: TlsPolicy::Opportunistic,
            tls_ca_file: None,
            secrets: "/etc/vsendmail.secrets".into(),
            prefer: Prefer::Ipv6,
            sender_policy: SenderPolicy::Rewrite,
            from_policy: FromPolicy::Keep,
            trusted_users: vec!["root".into()],
            queue: true,
            retry_min: None,
            retry_max: None,
            max_age: None,
            warn_after: None,
            audit_dir: None,
            audit_days: 90,
            rate: None,
            over_rate: OverRate::Defer,
            max_queued: 1000,
            batv_days: 7,
            timeouts: Timeouts::default(),
            syslog_socket: "/dev/log".into(),
            max_message_size: 50 * 1024 * 1024,
            max_header_size: 256 * 1024,
            max_line_length: 998,
            max_recipients: 1000,
            mx_address_limit: 5,
            mx_session_limit: 2,
            message_time_budget: None,
            spool_min_free: 5,
            max_user_queued_messages: 1000,
            max_user_queued_bytes: 500 * 1024 * 1024,
            max_user_drafts: 20,
            backoff: None,
            destination_concurrency: 2,
            mta_sts: true,
            mta_sts_port: 443,
            dnssec: Dnssec::Off,
            dnsbl: Vec::new(),
        }
    }
}

/// A loaded configuration and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub cfg: Config,
    pub path: PathBuf,
    /// The system's host name (FQDN), or `hostname` from the file.
    pub hostname: String,
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub max_age: Duration,
    /// `None` when warnings are off (`warn_after = "0"`).
    pub warn_after: Option<Duration>,
    /// The global `relay`; `None`: direct delivery by MX.
    pub relay: Option<Relay>,
    /// The global `rate`; `None` (absent or `none`): no limit.
    pub rate: Option<Rate>,
    /// The `dns` nameservers (empty: /etc/resolv.conf).
    pub nameservers: Vec<std::net::SocketAddr>,
    /// How long one delivery attempt of one message may take in all;
    /// `None` (`message_time_budget = "0"`): no bound but the timeouts.
    pub message_time_budget: Option<Duration>,
    /// How long a destination that said "slow down" is left alone at first.
    pub backoff: Duration,
}

impl Loaded {
    pub fn audit_dir(&self) -> PathBuf {
        self.cfg
            .audit_dir
            .clone()
            .unwrap_or_else(|| self.cfg.spool.join("audit"))
    }

    pub fn is_trusted(&self, login: &str) -> bool {
        login == "root" || self.cfg.trusted_users.iter().any(|u| u == login)
    }
}

/// Load a config file. A missing default file means "all defaults"; a missing
/// file named with `-C` is an error.
pub fn load(path: &Path, explicit: bool) -> Result<Loaded, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => String::new(),
        Err(err) => {
            return Err(ConfigError::Read {
                path: path.display().to_string(),
                err,
            });
        }
    };
    parse(&text, path)
}

/// Parse config text; errors carry file:line.
pub fn parse(text: &str, path: &Path) -> Result<Loaded, ConfigError> {
    let p = path.display().to_string();
    let cfg: Config = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(1);
        ConfigError::Syntax {
            path: p.clone(),
            line,
            msg: e.message().to_string(),
        }
    })?;
    let line_of = |at: usize| text[..at.min(text.len())].matches('\n').count() + 1;
    let bad = |v: &Spanned<String>, msg: String| ConfigError::Syntax {
        path: p.clone(),
        line: line_of(v.span().start),
        msg,
    };
    let dur = |key: &str, v: &Option<Spanned<String>>, default: &str| match v {
        None => Ok(parse_duration(default).expect("default durations parse")),
        Some(v) => parse_duration(v.get_ref()).ok_or_else(|| {
            bad(
                v,
                format!(
                    "{key} = \"{}\" is not a duration (use e.g. \"30s\", \"5m\", \"4h\", \"5d\")",
                    v.get_ref()
                ),
            )
        }),
    };
    let retry_min = dur("retry_min", &cfg.retry_min, "5m")?;
    let retry_max = dur("retry_max", &cfg.retry_max, "4h")?;
    let max_age = dur("max_age", &cfg.max_age, "5d")?;
    let warn = dur("warn_after", &cfg.warn_after, "4h")?;
    let budget = dur("message_time_budget", &cfg.message_time_budget, "5m")?;
    let backoff = dur("backoff", &cfg.backoff, "15m")?;
    let rate = match &cfg.rate {
        Some(r) => Some(
            Rate::parse(r.get_ref())
                .map_err(|m| bad(r, format!("rate = \"{}\": {m}", r.get_ref())))?,
        ),
        None => None,
    };
    let relay = match &cfg.relay {
        Some(r) => Some(
            Relay::parse(r.get_ref())
                .map_err(|m| bad(r, format!("relay = \"{}\": {m}", r.get_ref())))?,
        ),
        None => None,
    };
    let mut nameservers = Vec::new();
    for d in &cfg.dns {
        nameservers.push(parse_nameserver(d.get_ref()).ok_or_else(|| {
            bad(
                d,
                format!("dns: \"{}\" is not an IP address with an optional port (\"127.0.0.1:5353\", \"[::1]:53\")", d.get_ref()),
            )
        })?);
    }
    let hostname = match &cfg.hostname {
        Some(h) => h.clone(),
        None => system_hostname(),
    };
    Ok(Loaded {
        cfg,
        path: path.to_path_buf(),
        hostname,
        retry_min,
        retry_max,
        max_age,
        warn_after: if warn.is_zero() { None } else { Some(warn) },
        relay,
        rate: rate.filter(|r| *r != Rate::Unlimited),
        nameservers,
        message_time_budget: (!budget.is_zero()).then_some(budget),
        backoff,
    })
}

/// `"127.0.0.1:5353"`, `"127.0.0.1"` (port 53), `"[::1]:53"`, `"::1"`.
pub fn parse_nameserver(s: &str) -> Option<std::net::SocketAddr> {
    if let Ok(sa) = s.parse() {
        return Some(sa);
    }
    s.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| std::net::SocketAddr::new(ip, 53))
}

/// The system's fully qualified host name: gethostname(), qualified through
/// getaddrinfo's canonical name when it has no dot.
pub fn system_hostname() -> String {
    let short = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    if short.contains('.') {
        return short;
    }
    canonical_name(&short).unwrap_or(short)
}

fn canonical_name(host: &str) -> Option<String> {
    use std::ffi::{CStr, CString};
    let c = CString::new(host).ok()?;
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_flags = libc::AI_CANONNAME;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: plain getaddrinfo call with valid pointers; the result is freed below.
    let rc = unsafe { libc::getaddrinfo(c.as_ptr(), std::ptr::null(), &hints, &mut res) };
    if rc != 0 || res.is_null() {
        return None;
    }
    // SAFETY: res is a valid list returned by getaddrinfo.
    let name = unsafe {
        let cn = (*res).ai_canonname;
        let n = if cn.is_null() {
            None
        } else {
            CStr::from_ptr(cn).to_str().ok().map(str::to_string)
        };
        libc::freeaddrinfo(res);
        n
    };
    name.filter(|n| n.contains('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_empty() {
        let l = parse("", Path::new("x.conf")).unwrap();
        assert_eq!(l.cfg.mx_port, 25);
        assert_eq!(l.retry_min, Duration::from_secs(300));
        assert_eq!(l.warn_after, Some(Duration::from_secs(4 * 3600)));
        assert_eq!(l.message_time_budget, Some(Duration::from_secs(300)));
        assert_eq!((l.cfg.mx_address_limit, l.cfg.mx_session_limit), (5, 2));
        assert_eq!(l.backoff, Duration::from_secs(900));
        assert_eq!(l.cfg.destination_concurrency, 2);
        assert!(l.cfg.mta_sts && l.cfg.mta_sts_port == 443 && l.cfg.dnssec == Dnssec::Off);
        let l = parse("dnssec = \"trust-ad\"\n", Path::new("x.conf")).unwrap();
        assert_eq!(l.cfg.dnssec, Dnssec::TrustAd);
        let l = parse("message_time_budget = \"0\"\n", Path::new("x.conf")).unwrap();
        assert_eq!(l.message_time_budget, None);
    }

    #[test]
    fn unknown_key_is_error_with_line() {
        let e = parse("hostname = \"a.b\"\nbogus = 1\n", Path::new("x.conf")).unwrap_err();
        let m = e.to_string();
        assert!(m.starts_with("x.conf:2:"), "{m}");
        assert!(m.contains("bogus"), "{m}");
    }

    #[test]
    fn bad_duration_names_key_and_line() {
        let e = parse("queue = true\nretry_min = \"5x\"\n", Path::new("c")).unwrap_err();
        assert!(e.to_string().starts_with("c:2: retry_min"), "{e}");
    }

    #[test]
    fn typed_values_parsed_once_with_their_line() {
        let l = parse(
            "# c\nrelay = \"smtp://u@relay.example:2525\"\nrate = \"5/m\"\ndns = [\"127.0.0.1:5353\", \"::1\"]\n",
            Path::new("c"),
        )
        .unwrap();
        assert_eq!(l.relay.as_ref().map(|r| r.port()), Some(2525));
        assert!(l.rate.is_some());
        assert_eq!(l.nameservers.len(), 2);
        assert_eq!(l.nameservers[1].port(), 53);
        let e = parse("queue = true\n\nrelay = \"smtp://x:y:z\"\n", Path::new("c")).unwrap_err();
        assert!(e.to_string().starts_with("c:3: relay = "), "{e}");
        let e = parse("rate = \"none\"\n\n\nrate2 = 1\n", Path::new("c")).unwrap_err();
        assert!(e.to_string().starts_with("c:4:"), "{e}");
        let e = parse(
            "dns = [\n  \"127.0.0.1\",\n  \"nope\",\n]\n",
            Path::new("c"),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("c:3: dns: \"nope\""), "{e}");
        assert!(
            parse("rate = \"none\"\n", Path::new("c"))
                .unwrap()
                .rate
                .is_none()
        );
    }
}
