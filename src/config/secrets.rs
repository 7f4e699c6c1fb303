//! The relay credentials file (`secrets`, default `/etc/vsendmail.secrets`):
//! one `host[:port] user password` line per relay account (or `host[:port]
//! user oauth2 token_url=… client_id=… client_secret=… refresh_token=…
//! [scope=…]` for OAuth2), optionally ending in `fingerprint=sha256:HEX`
//! (the relay's certificate, pinned), `#` comments and blank lines ignored. It owns reading that file safely and choosing the line
//! for a relay: the file is refused when any user may read it (mode `o+r`, or
//! any other bit for "others"), and nothing secret ever leaves this module in a
//! printable form: [`Credentials`]' `Debug` shows the user only, and error
//! messages name the file and line, never the line's text.
//!
//! Choosing a line for `smtp[s]://[user@]host[:port]`: the host must match
//! (case-insensitive; `[v6]` or a bare IPv6 literal); a line with a port only
//! matches that port, and wins over a line without one; when the URL names a
//! user, only that user's line is taken; without a user, the first matching
//! line gives both user and password.

use crate::base::relay::{Relay, Scheme};
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "{path}: mode {mode:04o} lets every user read the relay passwords; refusing to use it (chmod 0640, owner root, group vsendmail)"
    )]
    WorldReadable { path: String, mode: u32 },
    #[error("{path}: cannot read: {err}")]
    Read { path: String, err: std::io::Error },
    #[error("{path}:{line}: {why} (expected `host[:port] user password`)")]
    Syntax {
        path: String,
        line: usize,
        why: String,
    },
}

/// A user and password for one relay. The password is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    password: String,
    /// Where it came from, `file:line`, for messages.
    pub location: String,
    /// `fingerprint=sha256:HEX` on the line: the SHA-256 of the relay's
    /// certificate, accepted instead of a verified one.
    pub pin: Option<[u8; 32]>,
    /// An `oauth2` line: AUTH with an access token instead of the password.
    pub oauth: Option<Box<OAuth>>,
}

/// The OAuth2 fields of a secrets line `host[:port] user oauth2
/// token_url=URL client_id=ID client_secret=SECRET refresh_token=TOKEN
/// [scope=S] [fingerprint=…]`. The secret and the token are never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuth {
    pub token_url: String,
    pub client_id: String,
    client_secret: String,
    refresh_token: String,
    pub scope: Option<String>,
}

impl OAuth {
    /// For the one place that sends them: the token request.
    pub fn client_secret(&self) -> &str {
        &self.client_secret
    }
    pub fn refresh_token(&self) -> &str {
        &self.refresh_token
    }

    /// Parse the words after `oauth2`.
    fn parse(words: &[&str]) -> Result<OAuth, String> {
        let (mut url, mut id, mut secret, mut refresh, mut scope) = (None, None, None, None, None);
        for w in words {
            let Some((k, v)) = w.split_once('=') else {
                return Err("an oauth2 field is not key=value".into());
            };
            if v.is_empty() {
                return Err(format!("oauth2 field {k}= is empty"));
            }
            let slot = match k {
                "token_url" => &mut url,
                "client_id" => &mut id,
                "client_secret" => &mut secret,
                "refresh_token" => &mut refresh,
                "scope" => &mut scope,
                _ => {
                    return Err(format!(
                        "unknown oauth2 field `{}` (known: token_url, client_id, client_secret, refresh_token, scope, fingerprint)",
                        crate::base::address::printable(k)
                    ));
                }
            };
            *slot = Some(v.to_string());
        }
        let need =
            |v: Option<String>, k: &str| v.ok_or_else(|| format!("oauth2 line without {k}="));
        let token_url = need(url, "token_url")?;
        if !token_url.starts_with("https://") || url::Url::parse(&token_url).is_err() {
            return Err("token_url= must be an https:// URL".into());
        }
        Ok(OAuth {
            token_url,
            client_id: need(id, "client_id")?,
            // Public clients (Google's installed apps have one, Microsoft's may not).
            client_secret: secret.unwrap_or_default(),
            refresh_token: need(refresh, "refresh_token")?,
            scope,
        })
    }
}

impl fmt::Debug for OAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"****")
            .field("refresh_token", &"****")
            .finish()
    }
}

impl Credentials {
    pub fn new(user: &str, password: &str, location: &str) -> Credentials {
        Credentials {
            user: user.to_string(),
            password: password.to_string(),
            location: location.to_string(),
            pin: None,
            oauth: None,
        }
    }

    /// The password, for the one place that puts it on the wire.
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"****")
            .field("oauth", &self.oauth)
            .field("location", &self.location)
            .finish()
    }
}

/// One line of the file.
#[derive(Clone, PartialEq, Eq)]
struct Entry {
    host: String,
    port: Option<u16>,
    creds: Credentials,
}

/// The parsed file.
#[derive(Clone, Default)]
pub struct Secrets {
    entries: Vec<Entry>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} entries)", self.entries.len())
    }
}

impl Secrets {
    /// Read the file. `Ok(None)`: it does not exist (no relay credentials).
    pub fn load(path: &Path) -> Result<Option<Secrets>, SecretsError> {
        let p = path.display().to_string();
        // Kept in memory when the set-gid process gave up its group (`hold`).
        let c = match crate::config::held::read(path, 1 << 20) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(SecretsError::Read { path: p, err }),
        };
        if c.mode & 0o007 != 0 {
            return Err(SecretsError::WorldReadable {
                path: p,
                mode: c.mode & 0o7777,
            });
        }
        Secrets::parse(&c.text, &p).map(Some)
    }

    /// Parse the text of a secrets file named `path` (for messages).
    pub fn parse(text: &str, path: &str) -> Result<Secrets, SecretsError> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let syntax = |why: &str| SecretsError::Syntax {
                path: path.to_string(),
                line: i + 1,
                why: why.to_string(),
            };
            let (hostport, rest) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| syntax("missing user and password"))?;
            let rest = rest.trim_start();
            let (user, password) = rest
                .split_once(char::is_whitespace)
                .ok_or_else(|| syntax("missing password"))?;
            let mut password = password.trim();
            // A last word `fingerprint=sha256:HEX` pins the relay's certificate.
            let mut pin = None;
            if let Some((before, last)) = password.rsplit_once(char::is_whitespace)
                && last.starts_with("fingerprint=")
            {
                pin =
                    Some(parse_fingerprint(&last["fingerprint=".len()..]).map_err(|w| syntax(&w))?);
                password = before.trim_end();
            }
            if user.is_empty() || password.is_empty() {
                return Err(syntax("missing password"));
            }
            let (host, port) = split_host_port(hostport).map_err(|w| syntax(&w))?;
            let words: Vec<&str> = password.split_whitespace().collect();
            let oauth = if words.first() == Some(&"oauth2")
                && (words.len() == 1 || words[1].contains('='))
            {
                Some(OAuth::parse(&words[1..]).map_err(|w| syntax(&w))?)
            } else {
                None
            };
            let mut creds = Credentials::new(
                user,
                if oauth.is_some() { "" } else { password },
                &format!("{path}:{}", i + 1),
            );
            creds.pin = pin;
            creds.oauth = oauth.map(Box::new);
            entries.push(Entry { host, port, creds });
        }
        Ok(Secrets { entries })
    }

    /// Every line's host and credentials, in file order.
    pub fn accounts(&self) -> impl Iterator<Item = (&str, &Credentials)> {
        self.entries.iter().map(|e| (e.host.as_str(), &e.creds))
    }

    /// The credentials for a relay (see the module documentation).
    pub fn lookup(&self, host: &str, port: u16, user: Option<&str>) -> Option<&Credentials> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let fits = |e: &&Entry| {
            e.host.eq_ignore_ascii_case(host) && user.is_none_or(|u| e.creds.user == u)
        };
        self.entries
            .iter()
            .filter(fits)
            .find(|e| e.port == Some(port))
            .or_else(|| self.entries.iter().filter(fits).find(|e| e.port.is_none()))
            .map(|e| &e.creds)
    }

    /// Some line names `host` without a port.
    fn has_portless_line(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.entries
            .iter()
            .any(|e| e.port.is_none() && e.host.eq_ignore_ascii_case(host))
    }
}

/// `sha256:HEX` (64 hex digits, colons allowed between pairs).
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], String> {
    let hex = s
        .strip_prefix("sha256:")
        .ok_or("fingerprint= takes sha256:HEX (openssl x509 -noout -fingerprint -sha256)")?
        .replace(':', "");
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("fingerprint=sha256: needs 64 hex digits".into());
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex");
    }
    Ok(out)
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 literal.
fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let port = |p: &str| match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(format!(
            "bad port \"{}\"",
            crate::base::address::printable(p)
        )),
    };
    if let Some(v6) = s.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
        let p = match after.strip_prefix(':') {
            Some(p) => port(p)?,
            None if after.is_empty() => None,
            None => return Err("unexpected text after ]".into()),
        };
        return Ok((h.to_string(), p));
    }
    if s.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok((s.to_string(), None));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => Ok((h.to_string(), port(p)?)),
        Some(_) => Err("empty host".into()),
        None => Ok((s.to_string(), None)),
    }
}

/// The port of `relay` (DESIGN.md, `relay` URLs): as written; else 465 for
/// `smtps://`; else 587, the submission port, when the URL names a user or
/// the file at `path` has a line for the host without a port; else 25. A
/// file that cannot be read counts as no line: opening the session says why.
pub fn relay_port(path: &Path, relay: &Relay) -> u16 {
    if relay.port.is_some() || relay.user.is_some() || relay.scheme == Scheme::Smtps {
        return relay.port();
    }
    match Secrets::load(path) {
        Ok(Some(s)) if s.has_portless_line(&relay.host) => 587,
        _ => relay.port(),
    }
}

/// Read the file now, before the set-gid process gives up its group, and
/// keep only the lines for the hosts of `relays` (the relays this message's
/// routes may use; none for MX): the delivery process never holds another
/// relay's password. Line numbers stay
/// as in the file (the other lines become blank).
pub fn hold(path: &Path, relays: &[&Relay]) {
    let hosts: Vec<String> = relays
        .iter()
        .map(|r| {
            r.host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase()
        })
        .collect();
    crate::config::held::keep(path, 1 << 20, |text| {
        let mut kept = String::new();
        for line in text.lines() {
            let first = line.trim().split(char::is_whitespace).next().unwrap_or("");
            let mine = hosts
                .iter()
                .any(|h| split_host_port(first).is_ok_and(|(lh, _)| lh.eq_ignore_ascii_case(h)));
            if mine {
                kept.push_str(line);
            }
            kept.push('\n');
        }
        kept
    });
}

/// What delivery needs to know about a relay's credentials.
#[derive(Debug)]
pub enum RelayAuth {
    /// No credentials: no AUTH.
    None,
    /// Authenticate with these.
    Use(Credentials),
}

/// Find the credentials for `relay` in the file at `path`. An error (the file
/// unusable, or the URL's user missing from it) is a reason to keep the
/// message queued: sending without the intended AUTH would only be refused.
pub fn for_relay(path: &Path, relay: &Relay) -> Result<RelayAuth, String> {
    let shown = PathBuf::from(path).display().to_string();
    let secrets = match Secrets::load(path) {
        Ok(s) => s,
        Err(e) if relay.user.is_none() => return Err(format!("relay {}: {e}", relay.host)),
        Err(e) => {
            return Err(format!(
                "relay {} (user {}): {e}",
                relay.host,
                relay.user.as_deref().unwrap_or("")
            ));
        }
    };
    let found = secrets
        .as_ref()
        .and_then(|s| s.lookup(&relay.host, relay.port(), relay.user.as_deref()));
    match (found, &relay.user) {
        (Some(c), _) => Ok(RelayAuth::Use(c.clone())),
        (None, None) => Ok(RelayAuth::None),
        (None, Some(u)) => Err(format!(
            "relay {}:{} names user {u} but {shown} has no line `{}:{} {u} PASSWORD`; add it (mode 0640, group vsendmail)",
            relay.host,
            relay.port(),
            host_for_line(&relay.host),
            relay.port()
        )),
    }
}

fn host_for_line(h: &str) -> String {
    if h.contains(':') {
        format!("[{h}]")
    } else {
        h.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const FILE: &str = "# relays\n\
        relay.example:587 bob s3cret pass\n\
        relay.example alice al1ce\n\
        relay.example:2525 carol c4rol\n\
        [::1]:2525 dave d4ve\n\
        2001:db8::1 erin 3rin\n";

    #[test]
    fn chooses_lines() {
        let s = Secrets::parse(FILE, "f").unwrap();
        let l = |h: &str, p: u16, u: Option<&str>| {
            s.lookup(h, p, u)
                .map(|c| (c.user.clone(), c.password().to_string()))
        };
        assert_eq!(
            l("relay.example", 587, None),
            Some(("bob".into(), "s3cret pass".into()))
        );
        assert_eq!(
            l("RELAY.example", 587, Some("alice")),
            Some(("alice".into(), "al1ce".into()))
        );
        assert_eq!(
            l("relay.example", 25, None),
            Some(("alice".into(), "al1ce".into()))
        );
        assert_eq!(
            l("relay.example", 2525, None),
            Some(("carol".into(), "c4rol".into()))
        );
        assert_eq!(l("relay.example", 2525, Some("bob")), None);
        assert_eq!(l("::1", 2525, None), Some(("dave".into(), "d4ve".into())));
        assert_eq!(l("::1", 25, None), None);
        assert_eq!(
            l("2001:db8::1", 465, Some("erin")),
            Some(("erin".into(), "3rin".into()))
        );
        assert_eq!(l("other.example", 587, None), None);
    }

    #[test]
    fn errors_never_show_the_line() {
        let e = Secrets::parse("relay.example:x bob hunter2\n", "/etc/s")
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("/etc/s:1: bad port"), "{e}");
        assert!(!e.contains("hunter2"));
        let e = Secrets::parse("\nrelay.example hunter2\n", "/etc/s")
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("/etc/s:2: missing password"), "{e}");
        assert!(!e.contains("hunter2"));
    }

    #[test]
    fn fingerprints_pin_the_certificate() {
        let hex = "ab".repeat(32);
        assert_eq!(
            parse_fingerprint(&format!("sha256:{hex}")).unwrap(),
            [0xab; 32]
        );
        let colons: Vec<String> = (0..32).map(|_| "AB".to_string()).collect();
        assert_eq!(
            parse_fingerprint(&format!("sha256:{}", colons.join(":"))).unwrap(),
            [0xab; 32]
        );
        for bad in ["ab", "sha1:ab", "sha256:zz", "sha256:abab"] {
            assert!(parse_fingerprint(bad).is_err(), "{bad}");
        }
        let s = Secrets::parse(
            &format!("r.example bob pass word fingerprint=sha256:{hex}\n"),
            "f",
        )
        .unwrap();
        let c = s.lookup("r.example", 25, None).unwrap();
        assert_eq!((c.password(), c.pin), ("pass word", Some([0xab; 32])));
        let e = Secrets::parse("r.example bob hunter2 fingerprint=sha256:12\n", "f")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("f:1: fingerprint") && !e.contains("hunter2"),
            "{e}"
        );
    }

    #[test]
    fn oauth2_lines() {
        let s = Secrets::parse(
            "smtp.office365.com:587 shop@x.example oauth2 token_url=https://login.example/t client_id=abc client_secret=S3cr refresh_token=R3fr scope=https://outlook.office.com/SMTP.Send\n",
            "f",
        )
        .unwrap();
        let c = s.lookup("smtp.office365.com", 587, None).unwrap();
        let o = c.oauth.as_ref().unwrap();
        assert_eq!(
            (o.client_id.as_str(), o.client_secret(), o.refresh_token()),
            ("abc", "S3cr", "R3fr")
        );
        assert!(!format!("{c:?}").contains("S3cr") && !format!("{c:?}").contains("R3fr"));
        for (line, why) in [
            (
                "h u oauth2 client_id=a refresh_token=R3fr",
                "without token_url=",
            ),
            (
                "h u oauth2 token_url=https://t/ refresh_token=R3fr",
                "without client_id=",
            ),
            (
                "h u oauth2 token_url=https://t/ client_id=a",
                "without refresh_token=",
            ),
            (
                "h u oauth2 token_url=http://t/ client_id=a refresh_token=R3fr",
                "https://",
            ),
            (
                "h u oauth2 token_url=https://t/ client_id=a refresh_token=R3fr colour=x",
                "unknown oauth2 field",
            ),
            ("h u oauth2", "without token_url="),
        ] {
            let e = Secrets::parse(&format!("{line}\n"), "f")
                .err()
                .unwrap()
                .to_string();
            assert!(
                e.starts_with("f:1: ") && e.contains(why) && !e.contains("R3fr"),
                "{e}"
            );
        }
        // A password that happens to start with the word is a password.
        let s = Secrets::parse("h u oauth2 is my password\n", "f").unwrap();
        assert!(s.lookup("h", 25, None).unwrap().oauth.is_none());
    }

    #[test]
    fn debug_hides_the_password() {
        let s = Secrets::parse("relay.example bob hunter2\n", "f").unwrap();
        let c = s.lookup("relay.example", 25, None).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn refuses_a_world_readable_file() {
        let dir = std::env::temp_dir().join(format!("vs-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("secrets");
        std::fs::write(&p, "relay.example bob hunter2\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Secrets::load(&p).err().unwrap().to_string();
        assert!(e.contains("mode 0644") && !e.contains("hunter2"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(Secrets::load(&p).unwrap().is_some());
        assert!(Secrets::load(&dir.join("absent")).unwrap().is_none());
        let r = Relay::parse("smtp://frank@relay.example").unwrap();
        let e = for_relay(&p, &r).err().unwrap();
        assert!(e.contains("names user frank"), "{e}");
        let r = Relay::parse("smtp://relay.example:2525").unwrap();
        assert!(matches!(for_relay(&p, &r), Ok(RelayAuth::Use(c)) if c.user == "bob"));
        // The line has no port: the relay's default port is 587, submission.
        let port = |u: &str| relay_port(&p, &Relay::parse(u).unwrap());
        assert_eq!(port("smtp://relay.example"), 587);
        assert_eq!(port("smtp://RELAY.example"), 587);
        assert_eq!(port("smtp://relay.example:25"), 25);
        assert_eq!(port("smtp://other.example"), 25);
        assert_eq!(port("smtps://relay.example"), 465);
        assert_eq!(port("smtp://bob@other.example"), 587);
        std::fs::write(&p, "relay.example:2525 bob hunter2\n").unwrap();
        assert_eq!(
            port("smtp://relay.example"),
            25,
            "only a line without a port"
        );
        assert_eq!(
            relay_port(
                &dir.join("absent"),
                &Relay::parse("smtp://relay.example").unwrap()
            ),
            25
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
