//! DKIM signing per identity (`dkim=SELECTOR:PATH`), with mail-auth, over the
//! exact bytes that go on the wire.
//!
//! The signature: relaxed/relaxed over the fixed header list, body hashed in
//! chunks from the spool file (mail-auth's `sign_streaming`), so a message of
//! any size signs in constant memory. The keys are `dkim_key`'s.

use crate::identity::profile::Identity;
use crate::sign::dkim_key::{Key, load_key};
use crate::spool::store::Draft;
use mail_auth::common::crypto::{Algorithm, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use std::os::unix::fs::FileExt;

#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    #[error("{0}")]
    Key(String),
    #[error("{0}")]
    Io(String),
}

/// The headers signed, in this order, where present (From always).
pub const SIGNED_HEADERS: [&str; 10] = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

const CHUNK: usize = 64 * 1024;

/// The `DKIM-Signature:` header (CRLF-terminated) for the spooled message, or
/// `None` when the identity does not sign. The key is the one of the From:
/// domain (`from_domain`) when `dkim=` lists it, else the identity's own, so
/// that an addon domain's message aligns for DMARC.
pub fn sign_draft(
    identity: &Identity,
    from_domain: Option<&str>,
    draft: &mut Draft,
) -> Result<Option<String>, DkimError> {
    let Some((domain, selector, path)) = identity.dkim_key_for(from_domain) else {
        return Ok(None);
    };
    let where_ = identity
        .location
        .clone()
        .unwrap_or_else(|| "virtusers".into());
    let key = load_key(path).map_err(|m| {
        DkimError::Key(format!(
            "{where_}: dkim={selector}:{}: {m}; no message was accepted (fix the key, then check with vsendmail -bi)",
            path.display()
        ))
    })?;
    let file = draft.file();
    let sig = sign_file(&key, &domain, selector, |off, buf| file.read_at(buf, off))
        .map_err(|e| DkimError::Io(format!("cannot sign the spooled message: {e}")))?;
    Ok(Some(sig))
}

/// Sign a message read through `read_at(offset, buf)` (the spooled bytes):
/// the `DKIM-Signature:` header line(s), CRLF-terminated.
pub fn sign_file(
    key: &Key,
    domain: &str,
    selector: &str,
    mut read_at: impl FnMut(u64, &mut [u8]) -> std::io::Result<usize>,
) -> std::io::Result<String> {
    let mut buf = vec![0u8; CHUNK];
    // First pass over the header section only: which of the list are present.
    let mut head: Vec<u8> = Vec::new();
    let mut off = 0u64;
    loop {
        let n = read_at(off, &mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        off += n as u64;
        if let Some(p) = memchr::memmem::find(&head, b"\r\n\r\n") {
            head.truncate(p + 2);
            break;
        }
        if head.len() > 16 * 1024 * 1024 {
            break;
        }
    }
    let present = present_headers(&head);
    drop(head);
    let names: Vec<&str> = SIGNED_HEADERS
        .iter()
        .copied()
        .filter(|h| *h == "From" || present.iter().any(|p| p.eq_ignore_ascii_case(h)))
        .collect();
    let signer = DkimSigner::from_key(KeyRef(key))
        .domain(domain)
        .selector(selector)
        .headers(names)
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed);
    let mut stream = signer.sign_streaming();
    let mut off = 0u64;
    loop {
        let n = match read_at(off, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        stream.write(&buf[..n]);
        off += n as u64;
    }
    let sig = stream
        .finish()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(sig.to_header())
}

/// The names of the header fields of a header section.
fn present_headers(head: &[u8]) -> Vec<String> {
    head.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty() && l[0] != b' ' && l[0] != b'\t')
        .filter_map(|l| {
            let colon = l.iter().position(|b| *b == b':')?;
            Some(String::from_utf8_lossy(&l[..colon]).trim().to_string())
        })
        .collect()
}

/// A borrowed key for the signer (the signer takes its key by value).
struct KeyRef<'a>(&'a Key);

impl SigningKey for KeyRef<'_> {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::dkim_key::parse_key;

    fn openssl(args: &[&str]) -> Vec<u8> {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn genkey(args: &[&str]) -> Vec<u8> {
        let mut a = vec!["genpkey"];
        a.extend_from_slice(args);
        openssl(&a)
    }

    fn sign_bytes(key: &Key, msg: &[u8]) -> String {
        sign_file(key, "shop.test", "sel", |off, buf| {
            let off = off as usize;
            if off >= msg.len() {
                return Ok(0);
            }
            let n = buf.len().min(msg.len() - off).min(7);
            buf[..n].copy_from_slice(&msg[off..off + n]);
            Ok(n)
        })
        .unwrap()
    }

    #[test]
    fn rsa_2048_pkcs8_and_pkcs1_give_the_same_public_key() {
        let p8 = genkey(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
        let k = parse_key(&p8).unwrap();
        assert_eq!(k.public.bits, 2048);
        assert!(!k.signs_through_aws_lc());
        let dir = std::env::temp_dir().join(format!("vs-dkim-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("k8.pem");
        std::fs::write(&f, &p8).unwrap();
        let p1 = openssl(&["rsa", "-traditional", "-in", f.to_str().unwrap()]);
        assert!(String::from_utf8_lossy(&p1).contains("BEGIN RSA PRIVATE KEY"));
        let k1 = parse_key(&p1).unwrap();
        assert_eq!(k1.public, k.public);
        // The SPKI we build is what openssl derives.
        let spki = openssl(&[
            "pkey",
            "-in",
            f.to_str().unwrap(),
            "-pubout",
            "-outform",
            "DER",
        ]);
        assert_eq!(spki, k.public.p);
        let _ = std::fs::remove_dir_all(&dir);
        let sig = sign_bytes(
            &k,
            b"From: a@shop.test\r\nTo: b@x.test\r\nSubject: hi\r\n\r\nbody\r\n",
        );
        assert!(
            sig.starts_with(
                "DKIM-Signature: v=1; a=rsa-sha256; s=sel; d=shop.test; c=relaxed/relaxed;"
            ),
            "{sig}"
        );
        assert!(sig.ends_with(";\r\n"), "{sig}");
        assert!(sig.contains("h=Subject:To:From"), "{sig}");
    }

    #[test]
    fn rsa_1024_signs_through_the_legacy_path_and_512_is_refused() {
        let k = parse_key(&genkey(&[
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
        ]))
        .unwrap();
        assert_eq!(k.public.bits, 1024);
        assert!(k.signs_through_aws_lc());
        let sig = sign_bytes(&k, b"From: a@shop.test\r\n\r\nx\r\n");
        assert!(sig.contains("a=rsa-sha256"));
        let e = parse_key(&genkey(&[
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:512",
        ]))
        .err()
        .unwrap();
        assert!(e.contains("512 bits: too weak"), "{e}");
    }

    #[test]
    fn ed25519_key() {
        let k = parse_key(&genkey(&["-algorithm", "ed25519"])).unwrap();
        assert_eq!(k.public.k, "ed25519");
        assert_eq!(k.public.p.len(), 32);
        assert!(k.public.txt().starts_with("v=DKIM1; k=ed25519; p="));
        let sig = sign_bytes(&k, b"From: a@shop.test\r\n\r\nx\r\n");
        assert!(sig.contains("a=ed25519-sha256"), "{sig}");
        assert!(sig.contains("h=From;"), "{sig}");
    }

    #[test]
    fn malformed_keys() {
        assert!(
            parse_key(b"hello")
                .err()
                .unwrap()
                .contains("no PEM private key")
        );
        let bad = "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";
        assert!(parse_key(bad.as_bytes()).is_err());
        let ec = genkey(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
        assert!(parse_key(&ec).is_err());
    }

    #[test]
    fn only_present_headers_are_listed() {
        let h = present_headers(b"From: a\r\nsubject: x\r\n folded\r\nX-Other: y\r\n");
        assert_eq!(h, vec!["From", "subject", "X-Other"]);
    }
}
