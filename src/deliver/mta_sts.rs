//! MTA-STS (RFC 8461) for direct delivery: the `_mta-sts.DOMAIN` TXT record
//! (parsed by mail-auth), the policy fetched from
//! `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` with `deliver::https`
//! (certificate verified, no redirects, `MAX_POLICY` bytes, `FETCH_TIMEOUT`,
//! port `mta_sts_port`), and its cache in the spool's `mta-sts/` directory
//! (group-owned as the rate counters', see `spool::shared`), kept until its
//! `max_age` and fetched again when the TXT id changes. A policy that cannot
//! be had (malformed, too big, redirected, badly certified, unreachable) is
//! no policy: logged, the cached one used while it lasts, never an error.
//! The policy file's grammar (RFC 8461 3.2) is parsed here: mail-auth parses
//! only the TXT record.

use crate::base::syslog::Syslog;
use crate::config::conf::Loaded;
use crate::deliver::dns::Dns;
use crate::deliver::smtp::tls::TlsContext;
use mail_auth::common::parse::TxtRecordParser;

use std::path::PathBuf;
use std::time::Duration;

/// The largest policy file accepted (RFC 8461 3.3 suggests 64 KiB).
pub const MAX_POLICY: u64 = 64 * 1024;
/// The whole fetch: connect, TLS, headers, body.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `max_age` honoured (RFC 8461: 31557600, about a year).
const MAX_AGE_CAP: u64 = 31_557_600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

/// A domain's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub domain: String,
    /// The TXT record's id it was fetched for.
    pub id: String,
    pub mode: Mode,
    /// MX patterns: `mx.example.com` or `*.example.com` (one label).
    pub mx: Vec<String>,
    pub max_age: u64,
    /// When it was fetched (unix seconds).
    pub fetched: u64,
}

impl Policy {
    /// Whether MX host `host` is one the policy names.
    pub fn allows(&self, host: &str) -> bool {
        let h = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx.iter().any(|p| {
            let p = p.trim_end_matches('.').to_ascii_lowercase();
            match p.strip_prefix("*.") {
                Some(suffix) => h
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
                None => h == p,
            }
        })
    }

    /// `mode enforce, mx mx1.example.com *.example.net, id 2024…`.
    pub fn describe(&self) -> String {
        format!(
            "MTA-STS policy of {} (mode {}, mx {}, id {})",
            self.domain,
            self.mode.name(),
            self.mx.join(" "),
            self.id
        )
    }
}

/// Parse a policy file (RFC 8461 3.2): (mode, mx patterns, max_age).
pub fn parse(text: &str) -> Result<(Mode, Vec<String>, u64), String> {
    let (mut version, mut mode, mut max_age) = (None, None, None);
    let mut mx = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(format!(
                "line \"{}\" is not \"key: value\"",
                crate::base::address::printable(line)
            ));
        };
        let v = v.trim();
        match k.trim() {
            "version" => version = Some(v.to_string()),
            "mode" => {
                mode = Some(match v {
                    "enforce" => Mode::Enforce,
                    "testing" => Mode::Testing,
                    "none" => Mode::None,
                    _ => {
                        return Err(format!(
                            "mode \"{}\" is none of enforce, testing, none",
                            crate::base::address::printable(v)
                        ));
                    }
                })
            }
            "max_age" => {
                max_age = Some(
                    v.parse::<u64>()
                        .ok()
                        .filter(|_| v.len() <= 10 && v.bytes().all(|b| b.is_ascii_digit()))
                        .ok_or_else(|| "max_age is not a number of seconds".to_string())?
                        .min(MAX_AGE_CAP),
                )
            }
            "mx" => {
                let ok = !v.is_empty()
                    && v.len() <= 253
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.*_".contains(&b));
                if !ok {
                    return Err(format!(
                        "mx \"{}\" is not a host name pattern",
                        crate::base::address::printable(v)
                    ));
                }
                mx.push(v.to_ascii_lowercase());
            }
            _ => {}
        }
    }
    if version.as_deref() != Some("STSv1") {
        return Err("no \"version: STSv1\" line".into());
    }
    let mode = mode.ok_or("no mode line")?;
    let max_age = max_age.ok_or("no max_age line")?;
    if mode != Mode::None && mx.is_empty() {
        return Err("no mx line".into());
    }
    Ok((mode, mx, max_age))
}

/// What finding a policy needs: the configuration and log, the resolver,
/// the TLS roots and provider.
pub struct Lookup<'a> {
    pub cfg: &'a Loaded,
    pub log: &'a Syslog,
    pub verbose: bool,
    pub dns: &'a Dns,
    pub tls: &'a TlsContext,
}

type Context<'a> = Lookup<'a>;

fn cache_dir(ctx: &Context) -> PathBuf {
    ctx.cfg.cfg.spool.join("mta-sts")
}

fn cache_path(ctx: &Context, domain: &str) -> PathBuf {
    let name: String = domain
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(253)
        .collect();
    cache_dir(ctx).join(name.trim_start_matches('.'))
}

/// The cached policy of `domain`, expired or not.
/// The largest state file of `mta-sts/` and `backoff/` (a policy and its
/// first line).
pub const MAX_STATE: u64 = MAX_POLICY + 512;

fn cached(ctx: &Context, domain: &str) -> Option<Policy> {
    let text = crate::spool::shared::read_small(&cache_path(ctx, domain), MAX_STATE)?;
    let (head, body) = text.split_once('\n')?;
    let (id, fetched) = head.split_once(' ')?;
    let (mode, mx, max_age) = parse(body).ok()?;
    Some(Policy {
        domain: domain.to_string(),
        id: id.to_string(),
        mode,
        mx,
        max_age,
        fetched: fetched.trim().parse().ok()?,
    })
}

fn store(ctx: &Context, domain: &str, id: &str, now: u64, body: &str) -> Result<(), String> {
    use crate::spool::shared;
    let dir = cache_dir(ctx);
    let text = format!("{id} {now}\n{body}");
    shared::replace_small(
        &dir,
        &cache_path(ctx, domain),
        shared::spool_gid(ctx.cfg),
        &text,
    )
    .map_err(|e| format!("cannot cache it in {}: {e}", dir.display()))
}

/// The current policy id of `domain` from `_mta-sts.DOMAIN` TXT: `Ok(None)`
/// when there is none (no record, or not exactly one valid `v=STSv1` one).
fn txt_id(ctx: &Context, domain: &str) -> Result<Option<String>, String> {
    let name = format!("_mta-sts.{domain}");
    let recs = match ctx.dns.txt(&name) {
        Ok(r) => r,
        Err(e) if e.is_permanent() => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let ids: Vec<String> = recs
        .iter()
        .filter(|t| t.starts_with("v=STSv1"))
        .filter_map(|t| mail_auth::mta_sts::MtaSts::parse(t.as_bytes()).ok())
        .map(|m| m.id)
        .collect();
    Ok(match &ids[..] {
        [one] => Some(one.clone()),
        _ => None,
    })
}

/// Fetch the policy file of `domain` from `https://mta-sts.DOMAIN:PORT/`
/// (also `--doctor`'s check of the identity's own domain).
pub fn fetch(dns: &Dns, tls: &TlsContext, domain: &str, port: u16) -> Result<String, String> {
    let host = format!("mta-sts.{domain}");
    let addrs: Vec<std::net::SocketAddr> = dns
        .addrs(&host, true, true, false)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|ip| std::net::SocketAddr::new(ip, port))
        .collect();
    let url = if port == 443 {
        format!("https://{host}/.well-known/mta-sts.txt")
    } else {
        format!("https://{host}:{port}/.well-known/mta-sts.txt")
    };
    let a = crate::deliver::https::get(
        tls,
        &crate::deliver::https::Request {
            url: &url,
            addrs: &addrs,
            timeout: FETCH_TIMEOUT,
            max_body: MAX_POLICY,
        },
    )
    .map_err(|e| e.to_string())?;
    if a.status != 200 {
        return Err(format!("{url}: HTTP {}", a.status));
    }
    String::from_utf8(a.body).map_err(|_| format!("{url}: not UTF-8 text"))
}

/// The MTA-STS policy that applies to mail for `domain` (lower case) now,
/// if any: the cached one while its id is current, else fetched.
pub fn find(ctx: &Context, domain: &str) -> Option<Policy> {
    let now = crate::base::clock::unix_now();
    let cache = cached(ctx, domain);
    let fresh = cache
        .clone()
        .filter(|c| c.fetched.saturating_add(c.max_age) > now);
    let id = match txt_id(ctx, domain) {
        Ok(Some(id)) => id,
        // No record (or a lookup that failed): a cached policy still holds.
        Ok(None) => return fresh,
        Err(why) => {
            note(ctx, &format!("MTA-STS record of {domain}: {why}"));
            return fresh;
        }
    };
    if let Some(c) = &fresh
        && c.id == id
    {
        return fresh;
    }
    let fetched = fetch(ctx.dns, ctx.tls, domain, ctx.cfg.cfg.mta_sts_port).and_then(|body| {
        let (mode, mx, max_age) = parse(&body).map_err(|e| format!("malformed policy: {e}"))?;
        Ok((body, mode, mx, max_age))
    });
    match fetched {
        Ok((body, mode, mx, max_age)) => {
            if let Err(why) = store(ctx, domain, &id, now, &body) {
                note(ctx, &format!("MTA-STS policy of {domain}: {why}"));
            }
            Some(Policy {
                domain: domain.to_string(),
                id,
                mode,
                mx,
                max_age,
                fetched: now,
            })
        }
        Err(why) => {
            let what = match &fresh {
                Some(_) => "the cached policy is used until it expires",
                None => "treated as no policy",
            };
            note(
                ctx,
                &format!("MTA-STS policy of {domain} could not be had ({why}); {what}"),
            );
            fresh
        }
    }
}

fn note(ctx: &Context, text: &str) {
    if ctx.verbose {
        crate::base::stderr::line(&format!("*** {text}"));
    }
    ctx.log.warning(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_files() {
        let (m, mx, age) = parse(
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.Example.net\r\nmax_age: 86400\r\n",
        )
        .unwrap();
        assert_eq!((m, age), (Mode::Enforce, 86400));
        assert_eq!(mx, ["mail.example.com", "*.example.net"]);
        assert_eq!(
            parse("version: STSv1\nmode: none\nmax_age: 9999999999\n")
                .unwrap()
                .2,
            MAX_AGE_CAP
        );
        for bad in [
            "",
            "<html>hello</html>",
            "version: STSv2\nmode: enforce\nmx: a\nmax_age: 1\n",
            "version: STSv1\nmode: strict\nmx: a\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a\nmax_age: -1\n",
            "version: STSv1\nmode: enforce\nmx: a b\nmax_age: 1\n",
            "version: STSv1\nmode: testing\nmx: a\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mx_patterns() {
        let p = Policy {
            domain: "example.com".into(),
            id: "1".into(),
            mode: Mode::Enforce,
            mx: vec!["mail.example.com".into(), "*.example.net".into()],
            max_age: 1,
            fetched: 0,
        };
        assert!(p.allows("MAIL.example.com."));
        assert!(p.allows("mx1.example.net"));
        assert!(!p.allows("a.b.example.net"));
        assert!(!p.allows("example.net"));
        assert!(!p.allows("evil-mail.example.com"));
    }
}
