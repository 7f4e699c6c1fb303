//! A test certificate authority (rcgen) and the certificates it issues:
//! server certificates for receivers and HTTPS servers, expired ones, and
//! self-signed ones no CA vouches for. `ca_pem` goes into `tls_ca_file`.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A test CA and the certificates it issues.
pub struct Pki {
    pub ca: CertifiedIssuer<'static, KeyPair>,
}

pub type Chain = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

pub fn key_der(k: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(k.serialize_der()))
}

pub fn leaf_params(names: &[&str], expired: bool) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut p = CertificateParams::new(names.clone()).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, names[0].clone());
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    if expired {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    p
}

/// One test CA for the whole test binary (relays that get credentials need a
/// certificate vsendmail can verify: `tls_ca_file` = its `ca_pem`, written by
/// [`shared_ca_file`]).
pub fn shared() -> &'static Pki {
    static CA: std::sync::OnceLock<Pki> = std::sync::OnceLock::new();
    CA.get_or_init(Pki::new)
}

/// Write the shared CA's PEM into `dir` and return its path (for `tls_ca_file`).
pub fn shared_ca_file(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("shared-ca.pem");
    std::fs::write(&p, shared().ca_pem()).unwrap();
    p
}

impl Pki {
    pub fn new() -> Pki {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "vsendmail test CA");
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        Pki { ca }
    }

    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A client certificate for `name` (clientAuth), as PEM (cert, key), for
    /// a relay URL's `?cert=&key=`.
    pub fn client_pem(&self, name: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// The CA's own certificate (DER): for a chain that includes it, or a
    /// DANE-TA TLSA record.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// A server certificate for `names` (DNS names or IP literals) issued by the CA.
    pub fn leaf(&self, names: &[&str], expired: bool) -> Chain {
        let key = KeyPair::generate().unwrap();
        let cert = leaf_params(names, expired)
            .signed_by(&key, &self.ca)
            .unwrap();
        (vec![cert.der().clone()], key_der(&key))
    }
}

/// A self-signed server certificate (no CA vouches for it).
pub fn self_signed(names: &[&str]) -> Chain {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params(names, false).self_signed(&key).unwrap();
    (vec![cert.der().clone()], key_der(&key))
}
