//! A relay's own TLS client configuration: the client certificate of its URL
//! (`?cert=&key=`, PEM, readable by the vsendmail group only) and how the
//! relay's certificate is checked. Whenever credentials (a password or an
//! OAuth2 token) are to be sent, the certificate must be verified (system
//! CAs and `tls_ca_file`, the relay's host name) or match the SHA-256
//! fingerprint pinned on the secrets line, whatever `tls =` says: a local
//! user who binds the relay's port while it is down must not receive them
//! (issue 13, point 12).

use super::tls::{AcceptAny, CertCheck, Checked, TlsContext};
use rustls::client::danger::ServerCertVerified;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, RootCertStore};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How the relay's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerCheck {
    /// Not checked (opportunistic TLS, no credentials).
    Any,
    /// Chain to a trusted CA and the relay's host name.
    Verified,
    /// The end-entity certificate's SHA-256 is this.
    Pinned([u8; 32]),
}

/// A client certificate chain and key, loaded and checked to match.
pub type ClientCert = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// Load `cert` and `key` (PEM): the key must not be readable by others, and
/// must be the certificate's. The error names the file and says what to do.
pub fn load_client_cert(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<ClientCert, String> {
    let meta = std::fs::metadata(key).map_err(|e| {
        format!(
            "client key {}: cannot read: {e}; give a PEM key readable by the vsendmail group",
            key.display()
        )
    })?;
    if meta.mode() & 0o007 != 0 {
        return Err(format!(
            "client key {}: mode {:04o} lets every user read it; chmod 0640, owner root, group vsendmail",
            key.display(),
            meta.mode() & 0o7777
        ));
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("client certificate {}: cannot read: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("client certificate {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "client certificate {}: no PEM certificate in it",
            cert.display()
        ));
    }
    let k = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "client key {}: no usable PEM private key ({e})",
            key.display()
        )
    })?;
    rustls::sign::CertifiedKey::from_der(chain.clone(), k.clone_key(), provider).map_err(|e| {
        format!(
            "client certificate {} and key {} do not match ({e}); give the key of that certificate",
            cert.display(),
            key.display()
        )
    })?;
    Ok((chain, k))
}

/// The client configuration for one relay.
pub fn config(
    ctx: &TlsContext,
    check: ServerCheck,
    client: Option<&(PathBuf, PathBuf)>,
) -> Result<Arc<ClientConfig>, String> {
    let provider = ctx.provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = match check {
        ServerCheck::Any => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Checked {
                provider: provider.clone(),
                check: AcceptAny,
            })),
        ServerCheck::Pinned(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Checked {
                provider: provider.clone(),
                check: Pinned { pin },
            })),
        ServerCheck::Verified => {
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(ctx.roots()?);
            let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| format!("TLS setup: {e}"))?;
            builder.with_webpki_verifier(v)
        }
    };
    let cfg = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let (chain, k) = load_client_cert(cert, key, &provider)?;
            builder
                .with_client_auth_cert(chain, k)
                .map_err(|e| format!("client certificate {}: {e}", cert.display()))?
        }
    };
    Ok(Arc::new(cfg))
}

/// The SHA-256 of a certificate (DER), as pinned.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A pinned certificate: accepted when the end-entity certificate's SHA-256
/// is the pin (its handshake signatures are checked as always).
#[derive(Debug)]
struct Pinned {
    pin: [u8; 32],
}

impl CertCheck for Pinned {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if fingerprint(end_entity.as_ref()) == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the relay's certificate does not match the fingerprint pinned on its secrets line"
                    .into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints() {
        assert_eq!(
            fingerprint(b"abc")[..4],
            [0xba, 0x78, 0x16, 0xbf],
            "SHA-256 of abc"
        );
    }
}
