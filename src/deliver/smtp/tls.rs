//! TLS for SMTP sessions (STARTTLS and implicit TLS) with rustls and ring.
//! It owns the `tls` policy and the certificate checks:
//!
//! - `opportunistic` (default): STARTTLS whenever the server offers it, any
//!   certificate accepted (logged as an *untrusted* TLS connection); a failed
//!   handshake is retried once on a new connection without TLS (the caller
//!   does that when [`StartTlsError::HandshakeFailed`] says `retry_plain`).
//! - `required`: no STARTTLS, a refused STARTTLS or a failed handshake fails
//!   the attempt (temporarily: the message stays queued).
//! - `verify`: as `required`, and the certificate chain must lead to a CA of
//!   [`SYSTEM_CA_FILE`] or `tls_ca_file`, and name the host connected to (the
//!   MX host name, or the relay's host name or address literal).
//!
//! Trusted roots come only from those two files, read at fixed paths: never
//! from `SSL_CERT_FILE`/`SSL_CERT_DIR`, which a caller of a set-gid binary
//! controls.

use super::session::{Session, SmtpError, Stream};
use crate::config::conf::{Loaded, TlsPolicy};
use crate::deliver::route::Destination;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
    StreamOwned,
};
use std::io;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The system's CA bundle (Debian's `ca-certificates`), read at this fixed path.
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// Client configurations, each built on first use (a session whose server
/// offers no STARTTLS never touches the TLS code: fewer pages per send).
pub struct TlsContext {
    provider: OnceLock<Arc<CryptoProvider>>,
    ca_file: Option<PathBuf>,
    system_ca_file: PathBuf,
    untrusted: OnceLock<Result<Arc<ClientConfig>, String>>,
    verified: OnceLock<Result<Arc<ClientConfig>, String>>,
}

impl TlsContext {
    pub fn new(cfg: &Loaded) -> Result<TlsContext, TlsError> {
        TlsContext::with_roots(Path::new(SYSTEM_CA_FILE), cfg.cfg.tls_ca_file.as_deref())
    }

    /// A context trusting the CAs of `system_ca_file` (when it exists) and `ca_file`.
    pub fn with_roots(
        system_ca_file: &Path,
        ca_file: Option<&Path>,
    ) -> Result<TlsContext, TlsError> {
        Ok(TlsContext {
            provider: OnceLock::new(),
            ca_file: ca_file.map(Path::to_path_buf),
            system_ca_file: system_ca_file.to_path_buf(),
            untrusted: OnceLock::new(),
            verified: OnceLock::new(),
        })
    }

    /// The configuration for `policy`, and whether it verifies certificates.
    fn config(&self, policy: TlsPolicy) -> Result<(Arc<ClientConfig>, bool), String> {
        if policy != TlsPolicy::Verify {
            return self
                .untrusted
                .get_or_init(|| self.build_untrusted())
                .clone()
                .map(|c| (c, false));
        }
        self.verified
            .get_or_init(|| self.build_verified())
            .clone()
            .map(|c| (c, true))
    }

    fn build_untrusted(&self) -> Result<Arc<ClientConfig>, String> {
        let provider = self.provider();
        let cfg = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()).to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Checked {
                provider,
                check: AcceptAny,
            }))
            .with_no_client_auth();
        Ok(Arc::new(cfg))
    }

    /// The trusted CA certificates: the system bundle (when it exists) and
    /// `tls_ca_file`; used by verified SMTP TLS and by HTTPS (`deliver::https`).
    pub fn roots(&self) -> Result<Vec<CertificateDer<'static>>, String> {
        let mut all: Vec<CertificateDer<'static>> = Vec::new();
        if let Ok(it) = CertificateDer::pem_file_iter(&self.system_ca_file) {
            all.extend(it.filter_map(Result::ok));
        }
        if let Some(p) = &self.ca_file {
            let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(p)
                .map_err(|e| format!("tls_ca_file {}: cannot read: {e}", p.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("tls_ca_file {}: {e}", p.display()))?;
            let mut probe = RootCertStore::empty();
            let (added, _) = probe.add_parsable_certificates(certs.iter().cloned());
            if added == 0 {
                return Err(format!(
                    "tls_ca_file {}: no usable CA certificate (PEM) in it",
                    p.display()
                ));
            }
            all.extend(certs);
        }
        if all.is_empty() {
            return Err(format!(
                "no CA certificate was found in {} or tls_ca_file; install ca-certificates or set tls_ca_file",
                self.system_ca_file.display()
            ));
        }
        Ok(all)
    }

    /// A context whose every policy uses `config` (a relay's own, from
    /// `smtp::relay_tls`: a client certificate, a pinned or verified server
    /// certificate); `verified`: it checks the server's certificate.
    pub fn with_config(&self, config: Arc<ClientConfig>, verified: bool) -> TlsContext {
        let v = OnceLock::new();
        let _ = v.set(Ok(config.clone()));
        TlsContext {
            provider: self.provider.clone(),
            ca_file: self.ca_file.clone(),
            system_ca_file: self.system_ca_file.clone(),
            untrusted: if verified {
                self.untrusted.clone()
            } else {
                OnceLock::from(Ok(config))
            },
            verified: v,
        }
    }

    /// The configuration that verifies certificates (chain and host name).
    pub fn verified_config(&self) -> Result<Arc<ClientConfig>, String> {
        self.config(TlsPolicy::Verify).map(|(c, _)| c)
    }

    /// The crypto provider every TLS client of the run uses (ring).
    pub fn provider(&self) -> Arc<CryptoProvider> {
        self.provider
            .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
            .clone()
    }

    fn build_verified(&self) -> Result<Arc<ClientConfig>, String> {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(self.roots()?);
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider(),
        )
        .build()
        .map_err(|e| format!("TLS setup: {e}"))?;
        let cfg = ClientConfig::builder_with_provider(self.provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_webpki_verifier(verifier)
            .with_no_client_auth();
        Ok(Arc::new(cfg))
    }
}

/// A certificate check of our own (opportunistic, pinned, DANE); wrapped in
/// [`Checked`], the handshake signatures are checked by the provider as
/// rustls's own verifier does.
pub(crate) trait CertCheck: std::fmt::Debug + Send + Sync {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error>;
}

/// A rustls verifier from a [`CertCheck`].
#[derive(Debug)]
pub(crate) struct Checked<C> {
    pub(crate) provider: Arc<CryptoProvider>,
    pub(crate) check: C,
}

impl<C: CertCheck> ServerCertVerifier for Checked<C> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check
            .check(end_entity, intermediates, server_name, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Opportunistic TLS: any certificate is accepted (the handshake signatures
/// are still checked, so the session is at least bound to the presented key).
#[derive(Debug)]
pub(super) struct AcceptAny;

impl CertCheck for AcceptAny {
    fn check(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
}

/// What a TLS session negotiated, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    pub version: String,
    pub cipher: String,
    /// The certificate was verified (chain and host name).
    pub verified: bool,
}

impl TlsInfo {
    fn of(c: &ClientConnection, verified: bool) -> TlsInfo {
        let version = match c.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(v) => format!("{v:?}"),
            None => "TLS".to_string(),
        };
        let cipher = c
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default();
        TlsInfo {
            version,
            cipher,
            verified,
        }
    }

    /// A log line in Postfix's words: `Verified TLS connection established to
    /// PEER: TLSv1.3 with cipher …`, or `Untrusted …` (not verified) with why.
    pub fn describe(&self, peer: &str) -> String {
        if self.verified {
            format!(
                "Verified TLS connection established to {peer}: {} with cipher {}",
                self.version, self.cipher
            )
        } else {
            format!(
                "Untrusted TLS connection established to {peer}: {} with cipher {} (certificate not verified: tls = \"opportunistic\")",
                self.version, self.cipher
            )
        }
    }
}

/// `opportunistic`, `required`, `verify`, as written in the config.
pub fn policy_name(p: TlsPolicy) -> &'static str {
    match p {
        TlsPolicy::Opportunistic => "opportunistic",
        TlsPolicy::Required => "required",
        TlsPolicy::Verify => "verify",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartTlsError {
    /// The handshake (or the STARTTLS exchange around it) failed; the
    /// connection is unusable. `retry_plain`: the policy is opportunistic, so
    /// one new connection without TLS may be tried.
    #[error("TLS handshake with {peer} failed: {why}")]
    HandshakeFailed {
        peer: String,
        why: String,
        retry_plain: bool,
    },
    /// The policy forbids going on without TLS; the session is intact (QUIT it).
    #[error("{0}")]
    Policy(String),
    #[error(transparent)]
    Smtp(#[from] SmtpError),
}

/// How a session went on after [`starttls`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    Tls(TlsInfo),
    /// Without TLS; `note` says why when it is worth a log line.
    Plain {
        note: Option<String>,
    },
}

/// The TLS policy for a destination: the global `tls` key. (A relay with
/// credentials is raised to at least `required` by the caller.)
pub fn policy_for(cfg: &Loaded, _dest: &Destination) -> TlsPolicy {
    cfg.cfg.tls
}

/// Explain a handshake error; certificate problems in words an admin can act on.
fn describe_error(e: &io::Error, timeout: Duration) -> String {
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        return format!("no reply within {}s (timeout)", timeout.as_secs());
    }
    if e.kind() == io::ErrorKind::UnexpectedEof {
        return "connection closed by the server during the handshake".into();
    }
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) => {
            format!(
                "invalid peer certificate: issued by a CA that is neither in {SYSTEM_CA_FILE} nor in tls_ca_file (unknown issuer)"
            )
        }
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Expired)) => {
            "invalid peer certificate: certificate expired".into()
        }
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)) => {
            "invalid peer certificate: certificate not valid for the host name".into()
        }
        // A verifier's own reason (DANE's): its text, not its Debug form.
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o))) => {
            format!("invalid peer certificate: {}", o.0)
        }
        Some(r) => r.to_string(),
        None => e.to_string(),
    }
}

/// The name the certificate must carry; an address literal for IP hosts.
fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let h = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.');
    ServerName::try_from(h.to_string()).map_err(|_| {
        format!(
            "\"{}\" is not a valid TLS server name",
            crate::base::address::printable(h)
        )
    })
}

/// Run the client handshake on `tcp` to completion within `timeout` of the
/// call (and the message deadline), however the bytes dribble in.
fn handshake(
    tcp: TcpStream,
    host: &str,
    config: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<StreamOwned<ClientConnection, TcpStream>, String> {
    let name = server_name(host)?;
    let mut conn = ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let mut tcp = tcp;
    let end = super::session::deadline(timeout);
    while conn.is_handshaking() {
        let Some(t) = super::session::left(end) else {
            return Err(describe_error(
                &io::Error::new(io::ErrorKind::TimedOut, "timeout"),
                timeout,
            ));
        };
        let _ = tcp.set_read_timeout(Some(t));
        let _ = tcp.set_write_timeout(Some(t));
        match conn.complete_io(&mut tcp) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(describe_error(&e, timeout)),
        }
    }
    Ok(StreamOwned::new(conn, tcp))
}

/// Implicit TLS (`smtps://`): the handshake before the greeting. Only
/// `verify` checks the certificate. A failure is temporary.
pub fn implicit(
    tcp: TcpStream,
    host: &str,
    ctx: &TlsContext,
    policy: TlsPolicy,
    timeout: Duration,
) -> Result<(Stream, TlsInfo), SmtpError> {
    let peer = match tcp.peer_addr() {
        Ok(a) => format!("{host}[{}]:{}", a.ip(), a.port()),
        Err(_) => host.to_string(),
    };
    let (config, verified) = ctx.config(policy).map_err(SmtpError::Deferred)?;
    let t = handshake(tcp, host, config, timeout)
        .map_err(|why| SmtpError::Deferred(format!("TLS handshake with {peer} failed: {why}")))?;
    let info = TlsInfo::of(&t.conn, verified);
    Ok((Stream::Tls(Box::new(t)), info))
}

/// STARTTLS as the policy says, then EHLO again over TLS. `plain_retry`: this
/// connection is the one retry without TLS after a failed opportunistic
/// handshake, so STARTTLS is not tried. `credentials`: the relay has
/// credentials, which raises `opportunistic` to `required` (they are never
/// sent unencrypted).
pub fn starttls(
    s: &mut Session,
    host: &str,
    ctx: &TlsContext,
    policy: TlsPolicy,
    plain_retry: bool,
    credentials: bool,
) -> Result<Started, StartTlsError> {
    let required_by = if credentials && policy == TlsPolicy::Opportunistic {
        "the relay has credentials, which are never sent unencrypted".to_string()
    } else {
        format!("tls = \"{}\"", policy_name(policy))
    };
    let policy = if credentials && policy == TlsPolicy::Opportunistic {
        TlsPolicy::Required
    } else {
        policy
    };
    let opportunistic = policy == TlsPolicy::Opportunistic;
    if plain_retry && opportunistic {
        return Ok(Started::Plain { note: None });
    }
    if !s.ext.starttls {
        if opportunistic {
            return Ok(Started::Plain { note: None });
        }
        return Err(StartTlsError::Policy(format!(
            "{} does not offer STARTTLS, and TLS is required ({required_by})",
            s.peer_name
        )));
    }
    let (config, verified) = ctx.config(policy).map_err(StartTlsError::Policy)?;
    upgrade(s, host, config, verified, opportunistic, &required_by)
}

/// STARTTLS with `config` (DANE's TLSA check, MTA-STS's verified chain):
/// TLS is required (`required_by` says by what), the certificate checked
/// by `config`; then EHLO again over TLS.
pub fn starttls_with(
    s: &mut Session,
    host: &str,
    config: Arc<ClientConfig>,
    required_by: &str,
) -> Result<Started, StartTlsError> {
    if !s.ext.starttls {
        return Err(StartTlsError::Policy(format!(
            "{} does not offer STARTTLS, and TLS is required ({required_by})",
            s.peer_name
        )));
    }
    upgrade(s, host, config, true, false, required_by)
}

/// Whether the session's TLS certificate chain leads to a trusted CA and
/// names `host` (MTA-STS `testing` checks it after an opportunistic
/// handshake): `Err` says why not.
pub fn peer_verifies(ctx: &TlsContext, s: &Session, host: &str) -> Result<(), String> {
    let Stream::Tls(t) = &s.stream else {
        return Err("no TLS".into());
    };
    let certs = t.conn.peer_certificates().unwrap_or_default();
    let Some((ee, rest)) = certs.split_first() else {
        return Err("no certificate".into());
    };
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(ctx.roots()?);
    let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        ctx.provider(),
    )
    .build()
    .map_err(|e| format!("TLS setup: {e}"))?;
    v.verify_server_cert(ee, rest, &server_name(host)?, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| {
            describe_error(
                &io::Error::new(io::ErrorKind::InvalidData, e),
                Duration::ZERO,
            )
        })
}

/// The STARTTLS command, the handshake with `config`, EHLO over TLS.
fn upgrade(
    s: &mut Session,
    host: &str,
    config: Arc<ClientConfig>,
    verified: bool,
    opportunistic: bool,
    required_by: &str,
) -> Result<Started, StartTlsError> {
    let t = s.timeouts.command();
    let r = s.command("STARTTLS", t)?;
    if r.code != 220 {
        if opportunistic {
            return Ok(Started::Plain {
                note: Some(format!(
                    "STARTTLS refused by {} ({r}); going on without TLS",
                    s.peer_name
                )),
            });
        }
        return Err(StartTlsError::Policy(format!(
            "STARTTLS refused by {}: {r}; TLS is required ({required_by})",
            s.peer_name
        )));
    }
    let fail = |s: &Session, why: String| StartTlsError::HandshakeFailed {
        peer: s.peer_name.clone(),
        why: if opportunistic {
            why
        } else {
            format!("{why}; TLS is required ({required_by})")
        },
        retry_plain: opportunistic,
    };
    if s.has_buffered() {
        // Bytes after the 220 would be read as if they came over TLS (CVE-2011-0411 class).
        return Err(fail(
            s,
            "the server sent data after its STARTTLS reply".into(),
        ));
    }
    let tcp = match s.stream.tcp().try_clone() {
        Ok(t) => t,
        Err(e) => return Err(fail(s, e.to_string())),
    };
    let tls = handshake(tcp, host, config, t).map_err(|why| fail(s, why))?;
    let info = TlsInfo::of(&tls.conn, verified);
    s.stream = Stream::Tls(Box::new(tls));
    s.tls = true;
    s.hello()?;
    Ok(Started::Tls(info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        assert!(matches!(
            server_name("mx.example."),
            Ok(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("127.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(server_name("::1"), Ok(ServerName::IpAddress(_))));
        assert!(server_name("bad name").is_err());
    }

    #[test]
    fn verify_without_roots_is_a_clear_error() {
        let ctx = TlsContext::with_roots(Path::new("/nonexistent/ca.crt"), None).unwrap();
        assert!(ctx.config(TlsPolicy::Opportunistic).is_ok());
        let e = ctx.config(TlsPolicy::Verify).err().unwrap();
        assert!(e.contains("no CA certificate"), "{e}");
        let ctx = TlsContext::with_roots(
            Path::new("/nonexistent/ca.crt"),
            Some(Path::new("/nonexistent/x.pem")),
        )
        .unwrap();
        let e = ctx.config(TlsPolicy::Verify).err().unwrap();
        assert!(
            e.starts_with("tls_ca_file /nonexistent/x.pem: cannot read"),
            "{e}"
        );
    }
}
