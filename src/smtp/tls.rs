//! TLS for SMTP sessions (STARTTLS and implicit TLS) with rustls. The policy
//! (`opportunistic`, `required`, `verify`) and certificate checks live here.
//! (First cut: plain sessions only; the transport issue completes it.)

use super::{Session, SmtpError, Stream};
use crate::config::{Loaded, TlsPolicy};
use crate::route::Destination;
use std::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// Roots and client configs, built once per run.
pub struct TlsContext {}

impl TlsContext {
    pub fn new(_cfg: &Loaded) -> Result<TlsContext, TlsError> {
        Ok(TlsContext {})
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartTlsError {
    #[error("TLS handshake failed: {0}")]
    HandshakeFailed(String),
    #[error("{0}")]
    Policy(String),
    #[error(transparent)]
    Smtp(#[from] SmtpError),
}

/// The TLS policy for a destination.
pub fn policy_for(cfg: &Loaded, _dest: &Destination) -> TlsPolicy {
    cfg.cfg.tls
}

/// Implicit TLS (smtps://).
pub fn implicit(_tcp: TcpStream, host: &str, _ctx: &TlsContext) -> Result<Stream, SmtpError> {
    Err(SmtpError::Deferred(format!("implicit TLS to {host} is not available in this build")))
}

/// STARTTLS as the policy says. `plain_retry`: this is the one retry without
/// TLS after a failed opportunistic handshake.
pub fn starttls(
    s: &mut Session,
    _host: &str,
    _ctx: &TlsContext,
    policy: TlsPolicy,
    _plain_retry: bool,
) -> Result<(), StartTlsError> {
    if policy != TlsPolicy::Opportunistic {
        return Err(StartTlsError::Policy(format!(
            "tls = {policy:?} but TLS to {} is not available in this build",
            s.peer_name
        )));
    }
    Ok(())
}
