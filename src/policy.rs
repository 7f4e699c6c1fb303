//! `--policy`: the Postfix SMTP access policy delegation protocol on
//! stdin/stdout, rejecting bounces to untagged or badly tagged BATV addresses.

/// Serve policy requests until end of input.
pub fn serve(_run: &crate::app::Run) -> crate::Result<i32> {
    Err(crate::Error::Usage("--policy: not available in this build yet".into()))
}
