//! `/etc/vsendmail.conf` (TOML): every key optional, unknown keys refused with
//! file:line. Owns parsing and defaults. Values with a grammar of their own
//! (durations, the relay URL, the rate, nameservers) are parsed here, once,
//! into the typed fields of [`Loaded`]; a bad one is a load error with the
//! line of its value (from `toml::Spanned`), never a silent default later.

use crate::base::duration::parse_duration;
use crate::base::limit::{Limit, Rate, Share};
use crate::base::relay::Relays;
use crate::config::routes::{RelaySpec, Routes};
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

/// What a suspension does to the user's new messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SuspendAction {
    /// Exit 77 with the suspension's text.
    #[default]
    Refuse,
    /// Accepted (exit 0) and queued as held, until `--release`.
    Hold,
}

impl SuspendAction {
    pub fn parse(s: &str) -> Option<SuspendAction> {
        match s {
            "refuse" => Some(SuspendAction::Refuse),
            "hold" => Some(SuspendAction::Hold),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            SuspendAction::Refuse => "refuse",
            SuspendAction::Hold => "hold",
        }
    }
}

/// `[breaker]` as written (raw values keep their line for errors).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConf {
    pub distinct_rcpts: Option<Spanned<String>>,
    pub failures: Option<Spanned<String>>,
    pub unknown_users: Option<Spanned<String>>,
    pub action: Option<Spanned<String>>,
    pub cooldown: Option<Spanned<String>>,
    pub notify: Option<Spanned<String>>,
    pub notify_user: bool,
}

/// The circuit breaker, parsed: what trips it and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    /// Distinct recipient addresses per identity per period.
    pub distinct_rcpts: Option<Limit>,
    /// Failed + deferred share of the recipients tried in the last hour.
    pub failures: Option<Share>,
    /// "No such user" replies per period.
    pub unknown_users: Option<Limit>,
    pub action: SuspendAction,
    /// `None` ("0"): only an administrator lifts a breaker suspension.
    pub cooldown: Option<Duration>,
    /// Who is told (an address or a local name; aliases apply).
    pub notify: String,
    pub notify_user: bool,
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
    /// Raw: read [`Loaded::relay`] (one URL or a failover list).
    pub relay: Option<Spanned<RelaySpec>>,
    /// Raw: read [`Loaded::routes`].
    pub routes: std::collections::BTreeMap<Spanned<String>, Spanned<RelaySpec>>,
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
    /// Raw: read [`Loaded::rcpt_rate`].
    pub rcpt_rate: Option<Spanned<String>>,
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
    /// Users besides root and `trusted_users` who may run `--policy` and
    /// `--batv-check` (the Postfix policy service's user).
    pub policy_users: Vec<String>,
    /// Raw: read [`Loaded::policy_rate`].
    pub policy_rate: Option<Spanned<String>>,
    /// Leave PHP's `X-PHP-Originating-Script:` in the message.
    pub keep_php_header: bool,
    /// Raw: read [`Loaded::identity_header`].
    pub identity_header: Option<Spanned<String>>,
    /// Raw: read [`Loaded::breaker`].
    pub breaker: Option<BreakerConf>,
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
            routes: Default::default(),
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
            rcpt_rate: None,
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
            policy_users: Vec::new(),
            policy_rate: None,
            keep_php_header: false,
            identity_header: None,
            breaker: None,
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
    /// The global `relay` (a failover list); `None`: direct delivery by MX.
    pub relay: Option<Relays>,
    /// The line of the global `relay` (for `-bi`'s messages).
    pub relay_line: Option<usize>,
    /// The `[routes]` table.
    pub routes: Routes,
    /// The global `rate`; `None` (absent or `none`): no limit.
    pub rate: Option<Rate>,
    /// The global `rcpt_rate` (recipients); `None`: no limit.
    pub rcpt_rate: Option<Rate>,
    /// `identity_header`: the header naming the identity, when set.
    pub identity_header: Option<String>,
    /// `[breaker]`, when present.
    pub breaker: Option<Breaker>,
    /// The `dns` nameservers (empty: /etc/resolv.conf).
    pub nameservers: Vec<std::net::SocketAddr>,
    /// How long one delivery attempt of one message may take in all;
    /// `None` (`message_time_budget = "0"`): no bound but the timeouts.
    pub message_time_budget: Option<Duration>,
    /// BATV tag checks per caller of `--policy`/`--batv-check`
    /// (`policy_rate`, default 600/m); `None` (`none`): no limit.
    pub policy_rate: Option<crate::base::limit::Limit>,
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

    /// May run `--policy` and `--batv-check`: root, trusted_users, policy_users.
    pub fn may_check_tags(&self, login: &str) -> bool {
        self.is_trusted(login) || self.cfg.policy_users.iter().any(|u| u == login)
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
    let policy_rate = match &cfg.policy_rate {
        Some(r) => Rate::parse(r.get_ref())
            .map_err(|m| bad(r, format!("policy_rate = \"{}\": {m}", r.get_ref())))?,
        None => Rate::parse("600/m").expect("the default parses"),
    }
    .limits()
    .first()
    .copied();
    relative_paths(text, &p)?;
    let rcpt_rate = match &cfg.rcpt_rate {
        Some(r) => Some(
            Rate::parse(r.get_ref())
                .map_err(|m| bad(r, format!("rcpt_rate = \"{}\": {m}", r.get_ref())))?,
        ),
        None => None,
    };
    let identity_header = match &cfg.identity_header {
        Some(h) => {
            let n = h.get_ref();
            let ok = !n.is_empty()
                && n.len() <= 76
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            let ours = [
                "received",
                "from",
                "to",
                "cc",
                "bcc",
                "date",
                "message-id",
                "subject",
                "sender",
                "dkim-signature",
            ];
            if !ok || ours.contains(&n.to_ascii_lowercase().as_str()) {
                return Err(bad(
                    h,
                    format!(
                        "identity_header = \"{n}\": use a header field name of letters, digits and '-' that is not a standard one (e.g. \"X-AuthUser\")"
                    ),
                ));
            }
            Some(n.clone())
        }
        None => None,
    };
    let breaker = match &cfg.breaker {
        Some(b) => Some(parse_breaker(b, &bad)?),
        None => None,
    };
    let relay = match &cfg.relay {
        Some(r) => Some(r.get_ref().relays().map_err(|m| ConfigError::Syntax {
            path: p.clone(),
            line: line_of(r.span().start),
            msg: format!("relay: {m}"),
        })?),
        None => None,
    };
    let relay_line = cfg.relay.as_ref().map(|r| line_of(r.span().start));
    let routes = Routes::parse(
        cfg.routes
            .iter()
            .map(|(k, v)| {
                (
                    k.get_ref().clone(),
                    line_of(k.span().start),
                    v.get_ref().clone(),
                    line_of(v.span().start),
                )
            })
            .collect(),
    )
    .map_err(|(line, msg)| ConfigError::Syntax {
        path: p.clone(),
        line,
        msg,
    })?;
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
        relay_line,
        relay,
        routes,
        rate: rate.filter(|r| *r != Rate::Unlimited),
        rcpt_rate: rcpt_rate.filter(|r| *r != Rate::Unlimited),
        identity_header,
        breaker,
        nameservers,
        message_time_budget: (!budget.is_zero()).then_some(budget),
        backoff,
        policy_rate,
    })
}

/// The keys that name files and directories: each must be an absolute
/// path, since a relative one would be read from the caller's working
/// directory, which the sending user chooses.
const PATH_KEYS: [&str; 6] = [
    "virtusers",
    "aliases",
    "secrets",
    "spool",
    "audit_dir",
    "tls_ca_file",
];

/// Refuse a relative path in any of [`PATH_KEYS`], with its line.
fn relative_paths(text: &str, p: &str) -> Result<(), ConfigError> {
    #[derive(Deserialize)]
    struct Paths {
        virtusers: Option<Spanned<PathBuf>>,
        aliases: Option<Spanned<PathBuf>>,
        secrets: Option<Spanned<PathBuf>>,
        spool: Option<Spanned<PathBuf>>,
        audit_dir: Option<Spanned<PathBuf>>,
        tls_ca_file: Option<Spanned<PathBuf>>,
    }
    let Ok(paths) = toml::from_str::<Paths>(text) else {
        return Ok(()); // the full parse above has judged the file
    };
    let values = [
        paths.virtusers,
        paths.aliases,
        paths.secrets,
        paths.spool,
        paths.audit_dir,
        paths.tls_ca_file,
    ];
    for (key, v) in PATH_KEYS.iter().zip(values) {
        if let Some(v) = v.filter(|v| !v.get_ref().is_absolute()) {
            return Err(ConfigError::Syntax {
                path: p.to_string(),
                line: text[..v.span().start.min(text.len())].matches('\n').count() + 1,
                msg: format!(
                    "{key} = \"{}\" is a relative path (it would be read from the caller's working directory); write the absolute path",
                    v.get_ref().display()
                ),
            });
        }
    }
    Ok(())
}

/// `[breaker]`'s values, each error with the line of its value.
fn parse_breaker(
    b: &BreakerConf,
    bad: &dyn Fn(&Spanned<String>, String) -> ConfigError,
) -> Result<Breaker, ConfigError> {
    let limit = |key: &str, v: &Option<Spanned<String>>| match v {
        None => Ok(None),
        Some(v) if v.get_ref() == "none" => Ok(None),
        Some(v) => Limit::parse(v.get_ref())
            .map(Some)
            .map_err(|m| bad(v, format!("[breaker] {key} = \"{}\": {m}", v.get_ref()))),
    };
    let distinct_rcpts = limit("distinct_rcpts", &b.distinct_rcpts)?;
    let unknown_users = limit("unknown_users", &b.unknown_users)?;
    let failures = match &b.failures {
        None => None,
        Some(v) if v.get_ref() == "none" => None,
        Some(v) => Some(
            Share::parse(v.get_ref())
                .map_err(|m| bad(v, format!("[breaker] failures = \"{}\": {m}", v.get_ref())))?,
        ),
    };
    let action = match &b.action {
        None => SuspendAction::Hold,
        Some(v) => SuspendAction::parse(v.get_ref()).ok_or_else(|| {
            bad(
                v,
                format!(
                    "[breaker] action = \"{}\": use \"hold\" or \"refuse\"",
                    v.get_ref()
                ),
            )
        })?,
    };
    let cooldown = match &b.cooldown {
        None => None,
        Some(v) => {
            let d = parse_duration(v.get_ref()).ok_or_else(|| {
                bad(
                    v,
                    format!(
                        "[breaker] cooldown = \"{}\" is not a duration (\"0\" for none, or e.g. \"2h\")",
                        v.get_ref()
                    ),
                )
            })?;
            (!d.is_zero()).then_some(d)
        }
    };
    let notify = match &b.notify {
        None => "postmaster".to_string(),
        Some(v) => {
            let n = v.get_ref();
            if n.is_empty()
                || n.starts_with('-')
                || n.chars()
                    .any(|c| c.is_control() || c.is_whitespace() || c == ',')
            {
                return Err(bad(
                    v,
                    format!(
                        "[breaker] notify = \"{n}\": use one address or local name (e.g. \"postmaster\")"
                    ),
                ));
            }
            n.clone()
        }
    };
    Ok(Breaker {
        distinct_rcpts,
        failures,
        unknown_users,
        action,
        cooldown,
        notify,
        notify_user: b.notify_user,
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
        assert_eq!(l.policy_rate.map(|r| r.count), Some(600));
        assert!(l.cfg.policy_users.is_empty());
    }

    #[test]
    fn relative_file_paths_are_errors_with_their_line() {
        for key in PATH_KEYS {
            let text = format!("hostname = \"h.example\"\n{key} = \"etc/x\"\n");
            let e = parse(&text, Path::new("c")).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("c:2: {key} = \"etc/x\" is a relative path")),
                "{e}"
            );
            let ok = format!("{key} = \"/etc/x\"\n");
            assert!(parse(&ok, Path::new("c")).is_ok(), "{key}");
        }
    }

    #[test]
    fn routes_and_failover_lists() {
        let l = parse(
            "relay = [\"smtp://a.example\", \"smtp://b.example\"]\n\n[routes]\n\"outlook.com,hotmail.com\" = \"smtps://r.example\"\n\"*.example.org\" = \"mx\"\n",
            Path::new("c"),
        )
        .unwrap();
        assert_eq!(l.relay.as_ref().unwrap().list().len(), 2);
        assert_eq!(l.routes.routes.len(), 3);
        assert_eq!(l.routes.find("hotmail.com").unwrap().0.line, 4);
        let e = parse("queue = true\nrelay = []\n", Path::new("c")).unwrap_err();
        assert!(
            e.to_string().starts_with("c:2: relay: an empty list"),
            "{e}"
        );
        let e = parse(
            "[routes]\n\"a.example\" = \"mx\"\n\"no domain\" = \"mx\"\n",
            Path::new("c"),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("c:3: [routes]"), "{e}");
        let e = parse("[routes]\n\"a.example\" = [\n]\n", Path::new("c")).unwrap_err();
        assert!(e.to_string().starts_with("c:2: [routes]"), "{e}");
    }

    #[test]
    fn breaker_values_are_checked_with_their_line() {
        let l = parse(
            "[breaker]\ndistinct_rcpts = \"300/h\"\nfailures = \"50%/20\"\nunknown_users = \"20/h\"\naction = \"refuse\"\ncooldown = \"2h\"\nnotify = \"abuse\"\n",
            Path::new("c"),
        )
        .unwrap();
        let b = l.breaker.unwrap();
        assert_eq!(b.distinct_rcpts.unwrap().count, 300);
        assert_eq!(b.failures.unwrap().min, 20);
        assert_eq!(b.action, SuspendAction::Refuse);
        assert_eq!(b.cooldown, Some(Duration::from_secs(7200)));
        for (text, line) in [
            ("[breaker]\n\nfailures = \"50/20\"\n", 3),
            ("[breaker]\naction = \"drop\"\n", 2),
            ("[breaker]\ndistinct_rcpts = \"0/h\"\n", 2),
            ("[breaker]\ncooldown = \"soon\"\n", 2),
            ("[breaker]\nnotify = \"a b\"\n", 2),
            ("[breaker]\nbogus = 1\n", 2),
        ] {
            let e = parse(text, Path::new("c")).unwrap_err().to_string();
            assert!(e.starts_with(&format!("c:{line}: ")), "{text}: {e}");
        }
        let e = parse("identity_header = \"From\"\n", Path::new("c")).unwrap_err();
        assert!(e.to_string().starts_with("c:1: identity_header"), "{e}");
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
        assert_eq!(l.relay.as_ref().map(|r| r.first().port()), Some(2525));
        assert!(l.rate.is_some());
        assert_eq!(l.nameservers.len(), 2);
        assert_eq!(l.nameservers[1].port(), 53);
        let e = parse("queue = true\n\nrelay = \"smtp://x:y:z\"\n", Path::new("c")).unwrap_err();
        assert!(e.to_string().starts_with("c:3: relay: "), "{e}");
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
