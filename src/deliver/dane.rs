//! DANE for SMTP (RFC 7672) with `dnssec = "trust-ad"`: the TLSA records at
//! `_25._tcp.HOST` of an MX host, taken only from an answer with the AD bit
//! of the configured (validating) resolver, and the certificate check they
//! call for, as a rustls `ServerCertVerifier`.
//!
//! No Rust crate validates DNSSEC reliably (see CRATES.md), so, as Postfix and
//! Exim do, the AD bit of a local validating resolver is trusted. The TLSA
//! match is written here (no crate does it on rustls): usages 2 (DANE-TA: a
//! certificate of the presented chain, or the record's own full certificate,
//! is the trust anchor of a chain valid for the MX host name) and 3 (DANE-EE:
//! the server's certificate or key itself, no name or date check, RFC 7672
//! 3.1.1); selectors 0 (certificate) and 1 (SubjectPublicKeyInfo); matching
//! types 0 (exact), 1 (SHA-256) and 2 (SHA-512). Usages 0 and 1 are unusable
//! for SMTP (RFC 7672 3.1.3).

use crate::deliver::dns::Dns;
use crate::deliver::smtp::tls::{CertCheck, Checked};
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, RootCertStore};
use std::sync::Arc;

/// One TLSA record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

impl Tlsa {
    /// Usable for SMTP by us: usage 2 or 3, selector 0/1, matching 0/1/2.
    pub fn usable(&self) -> bool {
        matches!(self.usage, 2 | 3) && self.selector <= 1 && self.matching <= 2
    }

    /// `3 1 1` style.
    pub fn params(&self) -> String {
        format!("{} {} {}", self.usage, self.selector, self.matching)
    }

    /// Whether `cert` (DER) matches this record's selector and matching type.
    pub fn matches(&self, cert: &CertificateDer<'_>) -> bool {
        let selected: Vec<u8> = match self.selector {
            0 => cert.as_ref().to_vec(),
            1 => match webpki::EndEntityCert::try_from(cert) {
                Ok(c) => c.subject_public_key_info().as_ref().to_vec(),
                Err(_) => return false,
            },
            _ => return false,
        };
        let digest = match self.matching {
            0 => return selected == self.data,
            1 => ring::digest::digest(&ring::digest::SHA256, &selected),
            2 => ring::digest::digest(&ring::digest::SHA512, &selected),
            _ => return false,
        };
        digest.as_ref() == self.data.as_slice()
    }
}

/// What DNS says about a host's TLSA records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// No TLSA, or an answer without the AD bit (treated as none).
    None { why: String },
    /// Authenticated records, at least one usable (only the usable kept).
    Usable(Vec<Tlsa>),
    /// Authenticated records, none usable, or the lookup failed: the host
    /// is not used (deferred) with this reason.
    Unusable(String),
}

/// The TLSA records of `host` on port 25 (`_25._tcp.HOST`).
pub fn lookup(dns: &Dns, host: &str) -> Answer {
    let name = format!("_25._tcp.{}", host.trim_end_matches('.'));
    match dns.tlsa(&name) {
        Err(e) => Answer::Unusable(format!(
            "TLSA lookup of {name} failed ({e}); with dnssec = \"trust-ad\" the host is not used without it"
        )),
        Ok((recs, _)) if recs.is_empty() => Answer::None {
            why: format!("no TLSA records at {name}"),
        },
        Ok((_, false)) => Answer::None {
            why: format!(
                "TLSA records at {name} are not authenticated (no AD bit from the resolver)"
            ),
        },
        Ok((recs, true)) => {
            let all: Vec<Tlsa> = recs
                .into_iter()
                .map(|(usage, selector, matching, data)| Tlsa {
                    usage,
                    selector,
                    matching,
                    data,
                })
                .collect();
            let usable: Vec<Tlsa> = all.iter().filter(|t| t.usable()).cloned().collect();
            if usable.is_empty() {
                let kinds: Vec<String> = all.iter().map(Tlsa::params).collect();
                Answer::Unusable(format!(
                    "the TLSA records at {name} ({}) are none usable for SMTP (usages 2 and 3, selectors 0 and 1, matching types 0 to 2); the host is not used",
                    kinds.join(", ")
                ))
            } else {
                Answer::Usable(usable)
            }
        }
    }
}

/// A TLS client configuration that accepts only a certificate matching
/// `records` (for MX host `host`).
pub fn client_config(
    provider: Arc<CryptoProvider>,
    records: Vec<Tlsa>,
    host: &str,
) -> Result<Arc<ClientConfig>, String> {
    let verifier = Checked {
        provider: provider.clone(),
        check: Dane {
            provider: provider.clone(),
            records,
            host: host.to_string(),
        },
    };
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

#[derive(Debug)]
struct Dane {
    provider: Arc<CryptoProvider>,
    records: Vec<Tlsa>,
    host: String,
}

#[derive(Debug)]
struct NoMatch(String);

impl std::fmt::Display for NoMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no TLSA record of {} matches the certificate presented (DANE)",
            self.0
        )
    }
}

impl std::error::Error for NoMatch {}

impl Dane {
    /// DANE-TA: `anchor` as the only root, the chain valid for the host name.
    fn chain_to(
        &self,
        anchor: &CertificateDer<'_>,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> bool {
        let mut roots = RootCertStore::empty();
        if roots.add(anchor.clone().into_owned()).is_err() {
            return false;
        }
        let Ok(v) = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build() else {
            return false;
        };
        v.verify_server_cert(end_entity, intermediates, server_name, &[], now)
            .is_ok()
    }
}

impl CertCheck for Dane {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        for r in &self.records {
            match r.usage {
                3 if r.matches(end_entity) => return Ok(ServerCertVerified::assertion()),
                2 => {
                    for c in intermediates {
                        if r.matches(c)
                            && self.chain_to(c, end_entity, intermediates, server_name, now)
                        {
                            return Ok(ServerCertVerified::assertion());
                        }
                    }
                    // A full certificate in the record is an anchor itself.
                    if r.selector == 0 && r.matching == 0 {
                        let own = CertificateDer::from(r.data.clone());
                        if self.chain_to(&own, end_entity, intermediates, server_name, now) {
                            return Ok(ServerCertVerified::assertion());
                        }
                    }
                }
                _ => {}
            }
        }
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Other(rustls::OtherError(Arc::new(NoMatch(
                self.host.clone(),
            )))),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls::client::danger::ServerCertVerifier;

    fn sha256(b: &[u8]) -> Vec<u8> {
        ring::digest::digest(&ring::digest::SHA256, b)
            .as_ref()
            .to_vec()
    }

    fn spki_of(der: &CertificateDer<'_>) -> Vec<u8> {
        webpki::EndEntityCert::try_from(der)
            .unwrap()
            .subject_public_key_info()
            .as_ref()
            .to_vec()
    }

    #[test]
    fn selectors_and_matching_types() {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["mx.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().clone();
        let spki = spki_of(&der);
        let t = |usage, selector, matching, data: Vec<u8>| Tlsa {
            usage,
            selector,
            matching,
            data,
        };
        assert!(t(3, 0, 0, der.to_vec()).matches(&der));
        assert!(t(3, 0, 1, sha256(&der)).matches(&der));
        assert!(t(3, 1, 1, sha256(&spki)).matches(&der));
        assert!(t(3, 1, 0, spki.clone()).matches(&der));
        let sha512 = ring::digest::digest(&ring::digest::SHA512, &spki);
        assert!(t(3, 1, 2, sha512.as_ref().to_vec()).matches(&der));
        assert!(!t(3, 1, 1, sha256(b"other")).matches(&der));
        assert!(!t(3, 1, 3, sha256(&spki)).matches(&der));
        assert!(t(2, 1, 1, vec![]).usable() && !t(1, 1, 1, vec![]).usable());
        assert!(!t(3, 2, 1, vec![]).usable() && !t(3, 1, 3, vec![]).usable());
    }

    #[test]
    fn verifier_ee_and_ta() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["mx.test".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let leaf = leaf.der().clone();
        let ca_der = ca.der().clone();
        let name = ServerName::try_from("mx.test").unwrap();
        let other = ServerName::try_from("other.test").unwrap();
        let now = UnixTime::now();
        let v = |records: Vec<Tlsa>| Checked {
            provider: provider.clone(),
            check: Dane {
                provider: provider.clone(),
                records,
                host: "mx.test".into(),
            },
        };
        let ta = Tlsa {
            usage: 2,
            selector: 0,
            matching: 1,
            data: sha256(&ca_der),
        };
        let chain = [ca_der.clone()];
        assert!(
            v(vec![ta.clone()])
                .verify_server_cert(&leaf, &chain, &name, &[], now)
                .is_ok()
        );
        // DANE-TA checks the name; DANE-EE does not.
        assert!(
            v(vec![ta.clone()])
                .verify_server_cert(&leaf, &chain, &other, &[], now)
                .is_err()
        );
        let ee = Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: sha256(&spki_of(&leaf)),
        };
        assert!(
            v(vec![ee])
                .verify_server_cert(&leaf, &[], &other, &[], now)
                .is_ok()
        );
        // TA not in the chain but in the record in full.
        let full = Tlsa {
            usage: 2,
            selector: 0,
            matching: 0,
            data: ca_der.to_vec(),
        };
        assert!(
            v(vec![full])
                .verify_server_cert(&leaf, &[], &name, &[], now)
                .is_ok()
        );
        let e = v(vec![ta])
            .verify_server_cert(&leaf, &[], &name, &[], now)
            .unwrap_err();
        assert!(format!("{e:?}").contains("mx.test"), "{e}");
    }
}
