//! DKIM signing per identity (`dkim=SELECTOR:PATH`), with mail-auth, over the
//! exact bytes that go on the wire.
//!
//! Owns the private key files: reading them (PEM: RSA in PKCS#1 or PKCS#8, or
//! Ed25519 in PKCS#8), refusing weak or malformed keys, the public key record
//! to publish (`SELECTOR._domainkey.DOMAIN TXT "v=DKIM1; k=...; p=..."`, used by
//! `--doctor`), and the signature itself: relaxed/relaxed over the fixed header
//! list, body hashed in chunks from the spool file (mail-auth's
//! `sign_streaming`), so a message of any size signs in constant memory.
//! RSA keys of 2048 bits and more sign through mail-auth's own key type;
//! 1024..2047-bit keys (still accepted by receivers, refused by the crypto
//! backend's safe API) sign through aws-lc's `RSA_sign` directly.

use crate::identity::profile::Identity;
use crate::spool::store::Draft;
use mail_auth::common::crypto::{
    Algorithm, Ed25519Key, HashContext, HashImpl, RsaKey, Sha256, SigningKey,
};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use std::os::unix::fs::FileExt;
use std::path::Path;

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

/// The smallest RSA modulus accepted (RFC 8301).
pub const MIN_RSA_BITS: usize = 1024;
const MAX_RSA_BITS: usize = 8192;
/// Key files are small; refuse to read anything larger.
const MAX_KEY_FILE: u64 = 64 * 1024;
const CHUNK: usize = 64 * 1024;

/// The `DKIM-Signature:` header (CRLF-terminated) for the spooled message, or
/// `None` when the identity does not sign.
pub fn sign_draft(identity: &Identity, draft: &mut Draft) -> Result<Option<String>, DkimError> {
    let Some((selector, path)) = &identity.dkim else {
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
    let domain = identity.domain();
    let file = draft.file();
    let sig = sign_file(&key, &domain, selector, |off, buf| file.read_at(buf, off))
        .map_err(|e| DkimError::Io(format!("cannot sign the spooled message: {e}")))?;
    Ok(Some(sig))
}

/// Check a key file: readable, PEM, RSA >= 1024 bits or Ed25519.
pub fn check_key(path: &Path) -> Result<(), String> {
    load_key(path).map(|_| ())
}

/// The public half of a key file, as published in DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// `rsa` or `ed25519` (the `k=` tag).
    pub k: &'static str,
    /// RSA: modulus size in bits; Ed25519: 256.
    pub bits: usize,
    /// The `p=` value: SubjectPublicKeyInfo (RSA) or the raw 32 bytes (Ed25519).
    pub p: Vec<u8>,
    /// Other encodings a `p=` may carry for the same key (RSA: the bare
    /// PKCS#1 RSAPublicKey, which verifiers also accept).
    pub also: Vec<Vec<u8>>,
}

impl PublicKey {
    /// `v=DKIM1; k=rsa; p=MIIB...`
    pub fn txt(&self) -> String {
        use base64::Engine;
        format!(
            "v=DKIM1; k={}; p={}",
            self.k,
            base64::engine::general_purpose::STANDARD.encode(&self.p)
        )
    }

    /// Whether a decoded `p=` value is this key.
    pub fn matches(&self, p: &[u8]) -> bool {
        p == self.p.as_slice() || self.also.iter().any(|a| a == p)
    }
}

/// Read a key file and return its public half.
pub fn public_key(path: &Path) -> Result<PublicKey, String> {
    load_key(path).map(|k| k.public)
}

/// A loaded private key, ready to sign.
pub struct Key {
    signer: Signer,
    pub public: PublicKey,
}

enum Signer {
    Rsa(RsaKey<Sha256>),
    LegacyRsa(LegacyRsa),
    Ed25519(Ed25519Key),
}

impl SigningKey for Key {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        match &self.signer {
            Signer::Rsa(k) => k.sign(input),
            Signer::Ed25519(k) => k.sign(input),
            Signer::LegacyRsa(k) => {
                let mut hasher = <Sha256 as HashImpl>::hasher();
                input.write(&mut hasher);
                let digest = hasher.complete();
                k.sign_sha256(digest.as_ref()).map_err(|e| {
                    mail_auth::Error::Crypto(mail_auth::common::crypto::CryptoError::Library(e))
                })
            }
        }
    }

    fn algorithm(&self) -> Algorithm {
        match &self.signer {
            Signer::Ed25519(_) => Algorithm::Ed25519Sha256,
            _ => Algorithm::RsaSha256,
        }
    }
}

/// Read and check a private key file. Errors say what is wrong and what to do.
pub fn load_key(path: &Path) -> Result<Key, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read the key: {e}"))?;
    let mut pem = Vec::new();
    f.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut pem)
        .map_err(|e| format!("cannot read the key: {e}"))?;
    if pem.len() as u64 > MAX_KEY_FILE {
        return Err("the key file is larger than 64 KiB: not a PEM private key".into());
    }
    parse_key(&pem)
}

const GENERATE_HINT: &str = "make one with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out KEY` or `openssl genpkey -algorithm ed25519 -out KEY`";

/// Parse a PEM private key.
pub fn parse_key(pem: &[u8]) -> Result<Key, String> {
    use rustls::pki_types::PrivateKeyDer;
    let text = String::from_utf8_lossy(pem);
    if text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(
            "the key is encrypted with a passphrase; store it unencrypted (`openssl pkey -in KEY -out PLAIN`), readable by the vsendmail group only"
                .into(),
        );
    }
    let der = rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| format!("not a PEM private key ({e}); {GENERATE_HINT}"))?
        .ok_or_else(|| format!("no PEM private key in the file; {GENERATE_HINT}"))?;
    match der {
        PrivateKeyDer::Pkcs1(k) => rsa_key(k.secret_pkcs1_der(), None),
        PrivateKeyDer::Pkcs8(k) => {
            let p8 = k.secret_pkcs8_der();
            match pkcs8_inner(p8) {
                Some((Alg::Rsa, inner)) => rsa_key(inner, Some(p8)),
                Some((Alg::Ed25519, _)) => ed25519_key(p8),
                None => Err(format!(
                    "a PKCS#8 key that is neither RSA nor Ed25519; DKIM signs with RSA or Ed25519: {GENERATE_HINT}"
                )),
            }
        }
        PrivateKeyDer::Sec1(_) => Err(format!(
            "an EC (SEC1) key; DKIM signs with RSA or Ed25519 only: {GENERATE_HINT}"
        )),
        _ => Err(format!("an unsupported key format; {GENERATE_HINT}")),
    }
}

fn malformed() -> String {
    format!("the key is malformed (not a valid RSA or Ed25519 private key); {GENERATE_HINT}")
}

fn rsa_key(pkcs1: &[u8], pkcs8: Option<&[u8]>) -> Result<Key, String> {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer};
    let (n, e) = rsa_public_parts(pkcs1).ok_or_else(malformed)?;
    let bits = integer_bits(n);
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "the RSA key has {bits} bits: too weak, receivers ignore DKIM signatures of RSA keys under {MIN_RSA_BITS} bits; {GENERATE_HINT}"
        ));
    }
    if bits > MAX_RSA_BITS {
        return Err(format!(
            "the RSA key has {bits} bits, more than {MAX_RSA_BITS}; {GENERATE_HINT}"
        ));
    }
    let rsa_pub = der_tlv(0x30, &[n, e].concat());
    let public = PublicKey {
        k: "rsa",
        bits,
        p: spki_rsa(&rsa_pub),
        also: vec![rsa_pub],
    };
    let signer = if bits >= 2048 {
        let der = match pkcs8 {
            Some(p8) => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(p8)),
            None => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(pkcs1)),
        };
        Signer::Rsa(RsaKey::<Sha256>::from_key_der(der).map_err(|_| malformed())?)
    } else {
        Signer::LegacyRsa(LegacyRsa::from_pkcs1(pkcs1).ok_or_else(malformed)?)
    };
    Ok(Key { signer, public })
}

fn ed25519_key(pkcs8: &[u8]) -> Result<Key, String> {
    let k = Ed25519Key::from_pkcs8_maybe_unchecked_der(pkcs8).map_err(|_| malformed())?;
    let public = PublicKey {
        k: "ed25519",
        bits: 256,
        p: k.public_key(),
        also: Vec::new(),
    };
    Ok(Key {
        signer: Signer::Ed25519(k),
        public,
    })
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

/// An RSA key of 1024..2047 bits, signed with aws-lc's RSA_sign
/// (PKCS#1 v1.5 over a SHA-256 digest).
struct LegacyRsa {
    rsa: std::ptr::NonNull<aws_lc_sys::RSA>,
}

impl LegacyRsa {
    fn from_pkcs1(der: &[u8]) -> Option<LegacyRsa> {
        // SAFETY: aws-lc parses `der.len()` bytes at `der.as_ptr()` and returns
        // a new RSA object (or null), which we own and free in Drop.
        let p = unsafe { aws_lc_sys::RSA_private_key_from_bytes(der.as_ptr(), der.len()) };
        let rsa = std::ptr::NonNull::new(p)?;
        let k = LegacyRsa { rsa };
        // SAFETY: a valid RSA object owned by `k`.
        if unsafe { aws_lc_sys::RSA_check_key(k.rsa.as_ptr()) } != 1 {
            return None;
        }
        Some(k)
    }

    fn sign_sha256(&self, digest: &[u8]) -> Result<Vec<u8>, String> {
        // SAFETY: a valid RSA object owned by self.
        let size = unsafe { aws_lc_sys::RSA_size(self.rsa.as_ptr()) } as usize;
        let mut out = vec![0u8; size];
        let mut len: std::os::raw::c_uint = 0;
        // SAFETY: `digest` is readable for its length, `out` writable for
        // RSA_size bytes (the most RSA_sign writes), `len` a valid out-pointer.
        let ok = unsafe {
            aws_lc_sys::RSA_sign(
                aws_lc_sys::NID_sha256,
                digest.as_ptr(),
                digest.len(),
                out.as_mut_ptr(),
                &mut len,
                self.rsa.as_ptr(),
            )
        };
        if ok != 1 {
            return Err("RSA signing failed".into());
        }
        out.truncate(len as usize);
        Ok(out)
    }
}

impl Drop for LegacyRsa {
    fn drop(&mut self) {
        // SAFETY: we own the object and free it once.
        unsafe { aws_lc_sys::RSA_free(self.rsa.as_ptr()) };
    }
}

// ---- a minimal DER reader: just enough to find the key type and RSA's n and e ----

enum Alg {
    Rsa,
    Ed25519,
}

/// One TLV: (tag, the whole TLV, the contents, the rest after it).
type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// Read one TLV.
fn tlv(d: &[u8]) -> Option<Tlv<'_>> {
    let tag = *d.first()?;
    let first = *d.get(1)? as usize;
    let (len, hdr) = if first < 0x80 {
        (first, 2)
    } else {
        let nb = first & 0x7f;
        if nb == 0 || nb > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..nb {
            len = (len << 8) | *d.get(2 + i)? as usize;
        }
        (len, 2 + nb)
    };
    let end = hdr.checked_add(len)?;
    if end > d.len() {
        return None;
    }
    Some((tag, &d[..end], &d[hdr..end], &d[end..]))
}

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// PKCS#8: the algorithm and the inner private key.
fn pkcs8_inner(p8: &[u8]) -> Option<(Alg, &[u8])> {
    let (t, _, seq, _) = tlv(p8)?;
    if t != 0x30 {
        return None;
    }
    let (t, _, _version, rest) = tlv(seq)?;
    if t != 0x02 {
        return None;
    }
    let (t, _, algid, rest) = tlv(rest)?;
    if t != 0x30 {
        return None;
    }
    let (t, _, oid, _) = tlv(algid)?;
    if t != 0x06 {
        return None;
    }
    let (t, _, inner, _) = tlv(rest)?;
    if t != 0x04 {
        return None;
    }
    match oid {
        OID_RSA => Some((Alg::Rsa, inner)),
        OID_ED25519 => Some((Alg::Ed25519, inner)),
        _ => None,
    }
}

/// PKCS#1 RSAPrivateKey: the DER TLVs of the modulus and the public exponent.
fn rsa_public_parts(pkcs1: &[u8]) -> Option<(&[u8], &[u8])> {
    let (t, _, seq, _) = tlv(pkcs1)?;
    if t != 0x30 {
        return None;
    }
    let (t, _, _version, rest) = tlv(seq)?;
    if t != 0x02 {
        return None;
    }
    let (t, n, _, rest) = tlv(rest)?;
    if t != 0x02 {
        return None;
    }
    let (t, e, _, _) = tlv(rest)?;
    if t != 0x02 {
        return None;
    }
    Some((n, e))
}

/// The size in bits of a DER INTEGER (given as a whole TLV).
fn integer_bits(int_tlv: &[u8]) -> usize {
    let Some((_, _, v, _)) = tlv(int_tlv) else {
        return 0;
    };
    let v = match v.iter().position(|b| *b != 0) {
        Some(i) => &v[i..],
        None => return 0,
    };
    v.len() * 8 - v[0].leading_zeros() as usize
}

/// A DER TLV with a definite length.
fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

/// SubjectPublicKeyInfo for an RSAPublicKey.
fn spki_rsa(rsa_pub: &[u8]) -> Vec<u8> {
    let mut algid = der_tlv(0x06, OID_RSA);
    algid.extend_from_slice(&[0x05, 0x00]);
    let algid = der_tlv(0x30, &algid);
    let mut bits = vec![0u8];
    bits.extend_from_slice(rsa_pub);
    let bitstring = der_tlv(0x03, &bits);
    der_tlv(0x30, &[algid, bitstring].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(matches!(k.signer, Signer::Rsa(_)));
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
        assert!(matches!(k.signer, Signer::LegacyRsa(_)));
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
