//! The `[routes]` table of vsendmail.conf: recipient domains (exact,
//! `*.` wildcard for subdomains, comma-separated lists) mapped to a relay
//! URL, a failover list of them (TOML array), or `"mx"` (direct delivery).
//! Parsed once with each key's line; the choice for one domain is the most
//! specific match: an exact domain before any wildcard, a longer wildcard
//! before a shorter one.

use crate::base::relay::{Relay, Relays};
use serde::Deserialize;

/// What a route (or the global `relay`) says: one URL or a list, as written.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum RelaySpec {
    One(String),
    Many(Vec<String>),
}

impl RelaySpec {
    /// The relays, in order; `Err` names what is wrong (without the line).
    pub fn relays(&self) -> Result<Relays, String> {
        let urls: Vec<&String> = match self {
            RelaySpec::One(u) => vec![u],
            RelaySpec::Many(v) => v.iter().collect(),
        };
        let mut list = Vec::new();
        for u in urls {
            list.push(Relay::parse(u).map_err(|m| format!("\"{u}\": {m}"))?);
        }
        Relays::new(list)
    }
}

/// Where a route sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Mx,
    Relays(Relays),
}

/// One domain pattern of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Exact(String),
    /// `*.example.org`: the subdomains of `example.org` (lower case, no `*.`).
    Below(String),
}

/// One pattern and its target, with the key as written and its line.
#[derive(Debug, Clone)]
pub struct Route {
    pub pattern: Pattern,
    pub target: Target,
    pub key: String,
    pub line: usize,
}

/// The whole table.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    pub routes: Vec<Route>,
}

impl Routes {
    /// Parse the table's entries `(key, key line, value, value line)`;
    /// `Err((line, message))`.
    pub fn parse(
        entries: Vec<(String, usize, RelaySpec, usize)>,
    ) -> Result<Routes, (usize, String)> {
        let mut routes = Vec::new();
        for (key, kline, value, vline) in entries {
            let target = match &value {
                RelaySpec::One(s) if s.eq_ignore_ascii_case("mx") => Target::Mx,
                v => Target::Relays(
                    v.relays()
                        .map_err(|m| (vline, format!("[routes] \"{key}\": {m}")))?,
                ),
            };
            for part in key.split(',') {
                let part = part.trim();
                let pattern =
                    pattern(part).map_err(|m| (kline, format!("[routes] \"{key}\": {m}")))?;
                if routes.iter().any(|r: &Route| r.pattern == pattern) {
                    return Err((
                        kline,
                        format!("[routes] \"{key}\": {part} is already routed by another key"),
                    ));
                }
                routes.push(Route {
                    pattern,
                    target: target.clone(),
                    key: key.clone(),
                    line: kline,
                });
            }
        }
        Ok(Routes { routes })
    }

    /// The most specific route for `domain`, and whether it matched exactly.
    pub fn find(&self, domain: &str) -> Option<(&Route, bool)> {
        let d = domain.trim_end_matches('.').to_ascii_lowercase();
        if let Some(r) = self
            .routes
            .iter()
            .find(|r| matches!(&r.pattern, Pattern::Exact(e) if *e == d))
        {
            return Some((r, true));
        }
        self.routes
            .iter()
            .filter_map(|r| match &r.pattern {
                Pattern::Below(s) if d.len() > s.len() + 1 && d.ends_with(&format!(".{s}")) => {
                    Some((r, s.len()))
                }
                _ => None,
            })
            .max_by_key(|x| x.1)
            .map(|(r, _)| (r, false))
    }
}

/// `example.org` or `*.example.org`, checked to be a domain name.
fn pattern(p: &str) -> Result<Pattern, String> {
    let (below, name) = match p.strip_prefix("*.") {
        Some(n) => (true, n),
        None => (false, p),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "`{}` is not a domain (write example.org, *.example.org, or a comma-separated list of them)",
            crate::base::address::printable(p)
        ));
    }
    Ok(if below {
        Pattern::Below(name)
    } else {
        Pattern::Exact(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(k: &str, v: &str) -> (String, usize, RelaySpec, usize) {
        (k.into(), 3, RelaySpec::One(v.into()), 3)
    }

    #[test]
    fn most_specific_wins() {
        let r = Routes::parse(vec![
            one("outlook.com, Hotmail.com", "smtps://relay.example.net"),
            one("*.example.org", "mx"),
            one("*.eu.example.org", "smtp://eu.example.net"),
            one("a.eu.example.org", "mx"),
        ])
        .unwrap();
        let t = |d: &str| r.find(d).map(|(x, exact)| (x.key.clone(), exact));
        assert_eq!(
            t("hotmail.com"),
            Some(("outlook.com, Hotmail.com".into(), true))
        );
        assert_eq!(
            t("OUTLOOK.COM."),
            Some(("outlook.com, Hotmail.com".into(), true))
        );
        assert_eq!(t("example.org"), None, "a wildcard matches subdomains only");
        assert_eq!(t("x.example.org"), Some(("*.example.org".into(), false)));
        assert_eq!(
            t("b.eu.example.org"),
            Some(("*.eu.example.org".into(), false))
        );
        assert_eq!(
            t("a.eu.example.org"),
            Some(("a.eu.example.org".into(), true))
        );
        assert_eq!(t("xexample.org"), None);
    }

    #[test]
    fn bad_keys_and_values_name_the_line() {
        for k in [
            "not a domain",
            "*",
            "*.",
            "a..b",
            "-a.example",
            "a@b.example",
            "",
        ] {
            let e = Routes::parse(vec![one(k, "mx")]).unwrap_err();
            assert_eq!(e.0, 3);
            assert!(e.1.contains("is not a domain"), "{k}: {}", e.1);
        }
        let e =
            Routes::parse(vec![("a.example".into(), 2, RelaySpec::Many(vec![]), 4)]).unwrap_err();
        assert_eq!(e.0, 4);
        assert!(e.1.contains("empty list"), "{}", e.1);
        let e = Routes::parse(vec![one("a.example", "http://x")]).unwrap_err();
        assert!(e.1.contains("smtp://"), "{}", e.1);
        let e = Routes::parse(vec![
            one("a.example", "mx"),
            one("b.example,A.example", "mx"),
        ])
        .unwrap_err();
        assert!(e.1.contains("already routed"), "{}", e.1);
    }
}
