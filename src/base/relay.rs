//! Relay (smarthost) URLs: `smtp://[user@]host[:port]` (STARTTLS when
//! offered) and `smtps://…` (implicit TLS), `[v6]` literals, and an optional
//! client certificate `?cert=PATH&key=PATH`. Parsed once, where the config or
//! virtusers line is read, with the `url` crate; the text as written is kept
//! for messages and the envelope. [`Relays`] is a failover list of them
//! (`URL|URL` in virtusers, a TOML array in the config).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `smtp://`: STARTTLS when offered.
    Smtp,
    /// `smtps://`: implicit TLS.
    Smtps,
}

/// A smarthost URL, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Relay {
    pub scheme: Scheme,
    pub user: Option<String>,
    /// The host name, or the address of a literal (without brackets).
    pub host: String,
    pub port: Option<u16>,
    /// A client certificate and its key (PEM files), from `?cert=&key=`.
    pub client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// The URL as written.
    pub text: String,
}

impl Relay {
    pub fn parse(s: &str) -> Result<Relay, String> {
        let scheme = if s.starts_with("smtp://") {
            Scheme::Smtp
        } else if s.starts_with("smtps://") {
            Scheme::Smtps
        } else {
            return Err("use smtp://host[:port] or smtps://host[:port]".into());
        };
        let url = url::Url::parse(s).map_err(|e| match e {
            url::ParseError::InvalidPort => "bad port".to_string(),
            url::ParseError::InvalidIpv6Address => "bad IPv6 literal in [ ]".to_string(),
            url::ParseError::EmptyHost => "missing or malformed host".to_string(),
            e => format!("missing or malformed host ({e})"),
        })?;
        if url.password().is_some() {
            return Err("a password in the URL is not allowed; put it in the secrets file".into());
        }
        if !matches!(url.path(), "" | "/") || url.fragment().is_some() {
            return Err("missing or malformed host".into());
        }
        let client_cert = client_cert(&url)?;
        let user = match url.username() {
            "" if s[s.find("//").map_or(0, |i| i + 2)..].contains('@') => {
                return Err("empty user name before @".into());
            }
            "" => None,
            u => Some(
                percent_encoding::percent_decode_str(u)
                    .decode_utf8()
                    .map_err(|_| "the user name is not UTF-8".to_string())?
                    .into_owned(),
            ),
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() && !d.contains(['%', ' ']) => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            _ => return Err("missing or malformed host".into()),
        };
        let port = url.port();
        if port == Some(0) {
            return Err("port 0".into());
        }
        Ok(Relay {
            scheme,
            user,
            host,
            port,
            client_cert,
            text: s.to_string(),
        })
    }

    /// The port: as given, else 465 for smtps, 587 for smtp with a user, else 25.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match (self.scheme, &self.user) {
            (Scheme::Smtps, _) => 465,
            (Scheme::Smtp, Some(_)) => 587,
            (Scheme::Smtp, None) => 25,
        })
    }
}

/// `?cert=PATH&key=PATH`: both or neither, absolute paths, nothing else.
fn client_cert(url: &url::Url) -> Result<Option<(std::path::PathBuf, std::path::PathBuf)>, String> {
    if url.query().is_none() {
        return Ok(None);
    }
    let (mut cert, mut key) = (None, None);
    for (k, v) in url.query_pairs() {
        let slot = match &*k {
            "cert" => &mut cert,
            "key" => &mut key,
            other => {
                return Err(format!(
                    "unknown URL parameter `{other}` (known: cert, key)"
                ));
            }
        };
        if !v.starts_with('/') {
            return Err(format!("{k}= must be an absolute path"));
        }
        *slot = Some(std::path::PathBuf::from(&*v));
    }
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some((c, k))),
        (Some(_), None) => Err("cert= without key= (give both: ?cert=PATH&key=PATH)".into()),
        (None, _) => Err("key= without cert= (give both: ?cert=PATH&key=PATH)".into()),
    }
}

/// A failover list of relays, tried in order: never empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Relays(Vec<Relay>);

impl Relays {
    /// From parsed URLs; `Err` for an empty list.
    pub fn new(list: Vec<Relay>) -> Result<Relays, String> {
        if list.is_empty() {
            return Err("an empty list of relays; give at least one URL".into());
        }
        Ok(Relays(list))
    }

    /// `URL|URL|…` (virtusers' `relay=`, and the envelope's form).
    pub fn parse(s: &str) -> Result<Relays, String> {
        let mut v = Vec::new();
        for part in s.split('|') {
            if part.is_empty() {
                return Err("an empty URL in the failover list".into());
            }
            v.push(Relay::parse(part).map_err(|m| format!("{part}: {m}"))?);
        }
        Relays::new(v)
    }

    pub fn list(&self) -> &[Relay] {
        &self.0
    }

    pub fn list_mut(&mut self) -> &mut [Relay] {
        &mut self.0
    }

    pub fn first(&self) -> &Relay {
        &self.0[0]
    }
}

impl From<Relay> for Relays {
    fn from(r: Relay) -> Relays {
        Relays(vec![r])
    }
}

impl std::fmt::Display for Relays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            f.write_str(&r.text)?;
        }
        Ok(())
    }
}

impl TryFrom<String> for Relays {
    type Error = String;
    fn try_from(s: String) -> Result<Relays, String> {
        Relays::parse(&s)
    }
}

impl From<Relays> for String {
    fn from(r: Relays) -> String {
        r.to_string()
    }
}

impl std::fmt::Display for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl TryFrom<String> for Relay {
    type Error = String;
    fn try_from(s: String) -> Result<Relay, String> {
        Relay::parse(&s)
    }
}

impl From<Relay> for String {
    fn from(r: Relay) -> String {
        r.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_urls() {
        let r = Relay::parse("smtps://relay.example.net:465").unwrap();
        assert_eq!(
            (r.scheme, r.host.as_str(), r.port()),
            (Scheme::Smtps, "relay.example.net", 465)
        );
        let r = Relay::parse("smtp://bob@relay.example.net").unwrap();
        assert_eq!((r.user.as_deref(), r.port()), (Some("bob"), 587));
        let r = Relay::parse("smtp://[::1]:2525").unwrap();
        assert_eq!((r.host.as_str(), r.port()), ("::1", 2525));
        assert_eq!(Relay::parse("smtp://127.0.0.1").unwrap().port(), 25);
        assert_eq!(Relay::parse("smtps://h.example").unwrap().port(), 465);
        let r = Relay::parse("smtp://alice@example.com@relay.example.net:587/").unwrap();
        assert_eq!(
            (r.user.as_deref(), r.host.as_str()),
            (Some("alice@example.com"), "relay.example.net")
        );
        assert_eq!(
            r.to_string(),
            "smtp://alice@example.com@relay.example.net:587/"
        );
        for bad in [
            "http://x",
            "smtp://x:notaport",
            "smtp://",
            "smtp://@host",
            "smtp://h:0",
            "smtp://[::1",
            "smtp://[zz]:25",
            "smtp://a:b@host",
            "smtp://host/path",
            "smtp://host?x=1",
            "smtp://host?cert=/c.pem",
            "smtp://host?key=/k.pem",
            "smtp://host?cert=c.pem&key=/k.pem",
            "smtp://ho st",
        ] {
            assert!(Relay::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn client_certificates_and_failover_lists() {
        let r = Relay::parse("smtps://h.example?cert=/etc/c.pem&key=/etc/k.pem").unwrap();
        assert_eq!(
            r.client_cert,
            Some(("/etc/c.pem".into(), "/etc/k.pem".into()))
        );
        assert_eq!(r.port(), 465);
        let l = Relays::parse("smtp://a.example:2525|smtps://b.example").unwrap();
        assert_eq!(l.list().len(), 2);
        assert_eq!(l.to_string(), "smtp://a.example:2525|smtps://b.example");
        // An envelope written before failover lists holds one URL.
        let j = serde_json::to_string(&l).unwrap();
        assert_eq!(serde_json::from_str::<Relays>(&j).unwrap(), l);
        assert_eq!(
            serde_json::from_str::<Relays>("\"smtp://a.example\"")
                .unwrap()
                .list()
                .len(),
            1
        );
        for bad in ["", "smtp://a|", "|smtp://a", "smtp://a||smtp://b"] {
            assert!(Relays::parse(bad).is_err(), "{bad}");
        }
        assert!(Relays::new(Vec::new()).is_err());
    }

    #[test]
    fn serialises_as_written() {
        let r = Relay::parse("smtp://u@[::1]:2525").unwrap();
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(j, "\"smtp://u@[::1]:2525\"");
        assert_eq!(serde_json::from_str::<Relay>(&j).unwrap(), r);
    }
}
