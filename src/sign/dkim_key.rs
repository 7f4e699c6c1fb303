//! DKIM private key files: reading them (PEM: RSA in PKCS#1 or PKCS#8, or
//! Ed25519 in PKCS#8; at most 64 KiB), refusing weak, encrypted or malformed
//! keys with a message that says what to do, and the public key record to
//! publish (`SELECTOR._domainkey.DOMAIN TXT "v=DKIM1; k=...; p=..."`, used by
//! `--doctor`).
//!
//! Hand-written on purpose, and kept small: RSA keys of 2048 bits and more
//! sign through mail-auth's own key type (ring), but ring refuses to sign
//! with 1024..2047-bit keys, which receivers still accept (RFC 8301) and
//! hosts still publish; those sign through aws-lc's `RSA_sign` directly
//! (`LegacyRsa`; the RustCrypto `rsa` crate has an open timing side channel,
//! RUSTSEC-2023-0071). Neither mail-auth nor rustls-pki-types gives a key's
//! algorithm, size or public half, so a minimal DER reader finds the
//! algorithm OID and RSA's n and e, and writes the SubjectPublicKeyInfo.
//! PEM itself is rustls-pki-types'.

use mail_auth::common::crypto::{
    Algorithm, Ed25519Key, HashContext, HashImpl, RsaKey, Sha256, SigningKey,
};
use mail_auth::common::headers::Writable;
use std::path::Path;

/// The smallest RSA modulus accepted (RFC 8301).
pub const MIN_RSA_BITS: usize = 1024;
const MAX_RSA_BITS: usize = 8192;
/// Key files are small; refuse to read anything larger.
const MAX_KEY_FILE: u64 = 64 * 1024;
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

impl Key {
    /// A 1024..2047-bit RSA key, signed through aws-lc (see the module comment).
    #[cfg(test)]
    pub(crate) fn signs_through_aws_lc(&self) -> bool {
        matches!(self.signer, Signer::LegacyRsa(_))
    }
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
    use rustls::pki_types::pem::{self, PemObject};
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound => format!("no PEM private key in the file; {GENERATE_HINT}"),
        e => format!("not a PEM private key ({e}); {GENERATE_HINT}"),
    })?;
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
