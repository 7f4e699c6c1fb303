//! BATV (draft-levine-smtp-batv) `prvs=` tags: signing the envelope sender at
//! send time, and checking tags (`--batv-check`, `--policy`).
//!
//! Owns the key file format (lines `N SECRET`, N a digit; the last line signs,
//! every line verifies; blank lines and `#` comments allowed) and the tag:
//! `prvs=KDDDSSSSSS=local@domain`, K the key digit, DDD the expiry day (days
//! since 1970-01-01 plus `batv_days`, modulo 1000), SSSSSS the first three
//! octets, lower-case hex, of HMAC-SHA1(SECRET, "KDDD" + "local@domain"), the
//! address hashed exactly as it stands after the tag.
//!
//! Checking: the tag type and the hex digits are read case-insensitively; the
//! HMAC is computed over the address as received and, when that does not
//! match, over the address in lower case (a relay that changed the case of a
//! lower-case address). A tag is valid from signing until its expiry day
//! inclusive: with `today` and DDD taken modulo 1000, it is valid while
//! (DDD - today) mod 1000 <= batv_days, otherwise expired (a day beyond
//! that window is in the past, wrapped around).

use crate::config::conf::Loaded;
use crate::identity::profile::Identity;
use hmac::{KeyInit, Mac};
use std::path::{Path, PathBuf};

type HmacSha1 = hmac::Hmac<sha1::Sha1>;

/// The keys of one key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// (digit, secret) in file order; the last one signs.
    pub keys: Vec<(u8, Vec<u8>)>,
}

impl Keys {
    /// The signing key (the last line).
    pub fn signing(&self) -> (u8, &[u8]) {
        let (d, s) = self.keys.last().expect("a key file has at least one key");
        (*d, s)
    }

    pub fn get(&self, digit: u8) -> Option<&[u8]> {
        self.keys
            .iter()
            .find(|(d, _)| *d == digit)
            .map(|(_, s)| s.as_slice())
    }
}

/// Parse a key file's text. Errors name the line.
pub fn parse_keys(text: &str) -> Result<Keys, String> {
    let mut keys: Vec<(u8, Vec<u8>)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let n = i + 1;
        let mut f = line.split_ascii_whitespace();
        let (Some(d), Some(secret), None) = (f.next(), f.next(), f.next()) else {
            return Err(format!(
                "line {n}: expected `N SECRET` (a key digit 0-9, white space, a secret without spaces)"
            ));
        };
        let digit = match d.as_bytes() {
            [c @ b'0'..=b'9'] => c - b'0',
            _ => {
                return Err(format!(
                    "line {n}: the key number `{d}` is not one digit 0-9"
                ));
            }
        };
        if keys.iter().any(|(k, _)| *k == digit) {
            return Err(format!("line {n}: key {digit} is listed twice"));
        }
        keys.push((digit, secret.as_bytes().to_vec()));
    }
    if keys.is_empty() {
        return Err("no key: add a line `N SECRET` (e.g. `0 $(openssl rand -hex 16)`)".into());
    }
    Ok(Keys { keys })
}

/// Read and parse a key file.
/// (Kept in memory by [`hold`] when the set-gid process gave up its group.)
pub fn read_keys(path: &Path) -> Result<Keys, String> {
    let c = crate::config::held::read(path, KEY_FILE_LIMIT)
        .map_err(|e| format!("cannot read the key file: {e}"))?;
    parse_keys(&c.text)
}

const KEY_FILE_LIMIT: u64 = 1024 * 1024;

/// Read `identity`'s key file now, before the set-gid process gives up its
/// group, for the envelope senders of this delivery.
pub fn hold(identity: &Identity) {
    if let Some(path) = &identity.batv {
        crate::config::held::keep(path, KEY_FILE_LIMIT, str::to_string);
    }
}

/// Days since 1970-01-01 (UTC).
pub fn today() -> u64 {
    crate::base::clock::unix_now() / 86400
}

/// The six hex digits for `K DDD` and `addr`.
pub fn signature(digit: u8, ddd: u16, addr: &str, secret: &[u8]) -> String {
    let mut mac = HmacSha1::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(format!("{digit}{ddd:03}").as_bytes());
    mac.update(addr.as_bytes());
    let h = mac.finalize().into_bytes();
    format!("{:02x}{:02x}{:02x}", h[0], h[1], h[2])
}

/// `prvs=KDDDSSSSSS=addr` for an address, signed on day `today` with `days` of life.
pub fn tag_address(addr: &str, keys: &Keys, today: u64, days: u32) -> String {
    let (digit, secret) = keys.signing();
    let ddd = ((today + days.min(999) as u64) % 1000) as u16;
    format!(
        "prvs={digit}{ddd:03}{}={addr}",
        signature(digit, ddd, addr, secret)
    )
}

/// A `prvs=` address taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    pub digit: u8,
    pub ddd: u16,
    /// Lower-case hex as received.
    pub sig: String,
    /// The original address after the tag.
    pub orig: String,
    /// The tag value was well-formed (`K DDD SSSSSS`).
    pub well_formed: bool,
}

/// Split `prvs=TAG=local@domain`; `None` when the address carries no prvs tag.
pub fn parse_tagged(addr: &str) -> Option<Tagged> {
    let head = addr.get(..5)?;
    if !head.eq_ignore_ascii_case("prvs=") {
        return None;
    }
    let rest = &addr[5..];
    let (val, orig) = rest.split_once('=')?;
    if orig.is_empty() || !orig.contains('@') {
        return None;
    }
    let b = val.as_bytes();
    let well_formed = b.len() == 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4..].iter().all(u8::is_ascii_hexdigit);
    Some(Tagged {
        digit: if well_formed { b[0] - b'0' } else { 0 },
        ddd: if well_formed {
            val[1..4].parse().unwrap_or(0)
        } else {
            0
        },
        sig: if well_formed {
            val[4..].to_ascii_lowercase()
        } else {
            String::new()
        },
        orig: orig.to_string(),
        well_formed,
    })
}

/// The outcome of checking an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Expired,
    BadSignature,
    Untagged,
    NoKey(String),
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Valid => f.write_str("valid"),
            Verdict::Expired => f.write_str("expired"),
            Verdict::BadSignature => f.write_str("bad signature"),
            Verdict::Untagged => f.write_str("untagged"),
            Verdict::NoKey(d) => write!(f, "no key for {d}"),
        }
    }
}

/// Check a tag against the key files of its domain (`keysets` non-empty).
pub fn verify_tag(t: &Tagged, keysets: &[Keys], today: u64, days: u32) -> Verdict {
    if !t.well_formed {
        return Verdict::BadSignature;
    }
    let lower = t.orig.to_lowercase();
    let mut candidates = vec![t.orig.as_str()];
    if lower != t.orig {
        candidates.push(&lower);
    }
    let good = keysets.iter().filter_map(|k| k.get(t.digit)).any(|secret| {
        candidates.iter().any(|a| {
            constant_time_eq(
                signature(t.digit, t.ddd, a, secret).as_bytes(),
                t.sig.as_bytes(),
            )
        })
    });
    if !good {
        return Verdict::BadSignature;
    }
    let left = (t.ddd as u64 + 1000 - today % 1000) % 1000;
    if left <= days.min(999) as u64 {
        Verdict::Valid
    } else {
        Verdict::Expired
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The BATV key files of every identity (every virtusers line) by sender domain.
pub struct Domains {
    /// (domain in lower case, key file, virtusers file:line)
    files: Vec<(String, PathBuf, String)>,
}

impl Domains {
    /// Read every virtusers line (lines with errors are skipped; `-bi` reports them).
    pub fn load(cfg: &Loaded) -> Result<Domains, crate::config::virtusers::VirtusersError> {
        let table = crate::config::virtusers::Table::read(&cfg.cfg.virtusers)?;
        let (entries, _) = table.check_all();
        let mut files = Vec::new();
        for e in entries {
            let Some(path) = e.batv.clone() else { continue };
            let domain = match &e.sender {
                crate::config::virtusers::SenderSpec::Address(a) => {
                    crate::base::address::domain(a).unwrap_or_default()
                }
                crate::config::virtusers::SenderSpec::AtDomain(d) => d.to_ascii_lowercase(),
            };
            files.push((domain, path, e.location()));
        }
        Ok(Domains { files })
    }

    /// Whether some identity of `domain` has `batv=`.
    pub fn has(&self, domain: &str) -> bool {
        let d = domain.to_ascii_lowercase();
        self.files.iter().any(|(fd, _, _)| *fd == d)
    }

    /// The keys of `domain`; an unreadable or malformed file is an error
    /// naming the file and the virtusers line.
    pub fn keys(&self, domain: &str) -> Result<Vec<Keys>, String> {
        let d = domain.to_ascii_lowercase();
        let mut out = Vec::new();
        for (fd, path, loc) in &self.files {
            if *fd != d {
                continue;
            }
            let k = read_keys(path).map_err(|m| format!("{loc}: batv={}: {m}", path.display()))?;
            out.push(k);
        }
        Ok(out)
    }

    /// Check an address: the full answer of `--batv-check`.
    pub fn check(&self, addr: &str, today: u64, days: u32) -> Result<Verdict, String> {
        let addr = addr.trim().trim_start_matches('<').trim_end_matches('>');
        let domain = crate::base::address::domain(addr).unwrap_or_default();
        if domain.is_empty() || !self.has(&domain) {
            return Ok(Verdict::NoKey(if domain.is_empty() {
                addr.to_string()
            } else {
                domain
            }));
        }
        let Some(t) = parse_tagged(addr) else {
            return Ok(Verdict::Untagged);
        };
        let keys = self.keys(&domain)?;
        Ok(verify_tag(&t, &keys, today, days))
    }
}

/// The envelope sender as it goes on the wire: tagged when the identity has
/// `batv=` and the sender is in the identity's own domain, never for `<>` and
/// never twice. A key file that cannot be read at send time leaves the sender
/// untagged (logged; `-bi` and `--doctor` report the file).
pub fn envelope_sender(sender: &str, identity: &Identity, cfg: &Loaded) -> String {
    let Some(path) = &identity.batv else {
        return sender.to_string();
    };
    if sender.is_empty() || parse_tagged(sender).is_some() {
        return sender.to_string();
    }
    let dom = crate::base::address::domain(sender).unwrap_or_default();
    if dom.is_empty() || !dom.eq_ignore_ascii_case(&identity.domain()) {
        return sender.to_string();
    }
    match read_keys(path) {
        Ok(keys) => tag_address(sender, &keys, today(), cfg.cfg.batv_days),
        Err(m) => {
            crate::base::syslog::Syslog::open(&cfg.cfg.syslog_socket, "vsendmail").warning(
                &format!(
                    "identity {}: batv={}: {m}; sending <{sender}> untagged",
                    identity.sender,
                    path.display()
                ),
            );
            sender.to_string()
        }
    }
}

/// Check a BATV key file: readable, lines `N SECRET`.
pub fn check_key_file(path: &Path) -> Result<(), String> {
    read_keys(path).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        parse_keys("# old\n0 oldsecret\n\n3 newsecret\n").unwrap()
    }

    #[test]
    fn key_file_format() {
        let k = keys();
        assert_eq!(k.signing(), (3, &b"newsecret"[..]));
        assert_eq!(k.get(0), Some(&b"oldsecret"[..]));
        assert!(parse_keys("").unwrap_err().contains("no key"));
        assert!(parse_keys("x secret\n").unwrap_err().starts_with("line 1:"));
        assert!(
            parse_keys("10 secret\n")
                .unwrap_err()
                .contains("not one digit")
        );
        assert!(parse_keys("1 a b\n").unwrap_err().contains("expected"));
        assert!(
            parse_keys("1 a\n1 b\n")
                .unwrap_err()
                .contains("line 2: key 1 is listed twice")
        );
    }

    #[test]
    fn known_vector() {
        // HMAC-SHA1("key", "0123user@example.com"), computed independently.
        let mut mac = HmacSha1::new_from_slice(b"key").unwrap();
        mac.update(b"0123user@example.com");
        let h = mac.finalize().into_bytes();
        let want = format!("{:02x}{:02x}{:02x}", h[0], h[1], h[2]);
        assert_eq!(signature(0, 123, "user@example.com", b"key"), want);
        let k = parse_keys("0 key\n").unwrap();
        assert_eq!(
            tag_address("user@example.com", &k, 116, 7),
            format!("prvs=0123{want}=user@example.com")
        );
    }

    #[test]
    fn expiry_wraps_modulo_1000() {
        let k = keys();
        let day = 20_995; // ddd of expiry = (20995 + 7) % 1000 = 2
        let a = tag_address("bob@shop.test", &k, day, 7);
        assert!(a.starts_with("prvs=3002"), "{a}");
        let t = parse_tagged(&a).unwrap();
        for d in day..=day + 7 {
            assert_eq!(
                verify_tag(&t, std::slice::from_ref(&k), d, 7),
                Verdict::Valid,
                "day {d}"
            );
        }
        assert_eq!(
            verify_tag(&t, std::slice::from_ref(&k), day + 8, 7),
            Verdict::Expired
        );
        assert_eq!(
            verify_tag(&t, std::slice::from_ref(&k), day + 500, 7),
            Verdict::Expired
        );
        // A tag whose expiry lies beyond batv_days ahead was not made now.
        assert_eq!(
            verify_tag(&t, std::slice::from_ref(&k), day - 1, 7),
            Verdict::Expired
        );
    }

    #[test]
    fn signature_key_digit_and_case() {
        let k = keys();
        let a = tag_address("bob@shop.test", &k, 20_000, 7);
        let t = parse_tagged(&a).unwrap();
        assert_eq!(
            verify_tag(&t, std::slice::from_ref(&k), 20_000, 7),
            Verdict::Valid
        );
        // Upper case tag type, hex and address: still valid.
        let up = a.to_uppercase();
        let tu = parse_tagged(&up).unwrap();
        assert_eq!(
            verify_tag(&tu, std::slice::from_ref(&k), 20_000, 7),
            Verdict::Valid
        );
        // Another key digit, a changed signature, another address.
        let other = a.replacen("prvs=3", "prvs=0", 1);
        assert_eq!(
            verify_tag(
                &parse_tagged(&other).unwrap(),
                std::slice::from_ref(&k),
                20_000,
                7
            ),
            Verdict::BadSignature
        );
        let unknown = a.replacen("prvs=3", "prvs=5", 1);
        assert_eq!(
            verify_tag(
                &parse_tagged(&unknown).unwrap(),
                std::slice::from_ref(&k),
                20_000,
                7
            ),
            Verdict::BadSignature
        );
        let moved = a.replace("bob@", "eve@");
        assert_eq!(
            verify_tag(
                &parse_tagged(&moved).unwrap(),
                std::slice::from_ref(&k),
                20_000,
                7
            ),
            Verdict::BadSignature
        );
        // A mixed-case original is signed as it is; its lower-case form is another address.
        let m = tag_address("Bob.Smith@shop.test", &k, 20_000, 7);
        assert!(m.ends_with("=Bob.Smith@shop.test"));
        assert_eq!(
            verify_tag(
                &parse_tagged(&m).unwrap(),
                std::slice::from_ref(&k),
                20_000,
                7
            ),
            Verdict::Valid
        );
        let ml = m.replace("Bob.Smith", "bob.smith");
        assert_eq!(
            verify_tag(
                &parse_tagged(&ml).unwrap(),
                std::slice::from_ref(&k),
                20_000,
                7
            ),
            Verdict::BadSignature
        );
    }

    #[test]
    fn parse_tagged_forms() {
        assert_eq!(parse_tagged("bob@shop.test"), None);
        assert_eq!(parse_tagged("prvs=bob@shop.test"), None);
        let t = parse_tagged("prvs=12x=bob@shop.test").unwrap();
        assert!(!t.well_formed);
        assert_eq!(verify_tag(&t, &[keys()], 0, 7), Verdict::BadSignature);
    }
}
