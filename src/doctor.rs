//! `--doctor [LOGIN...]`: what receivers will see of each identity.

/// Check the identities of `logins` (all when empty).
pub fn run(_run: &crate::app::Run, _logins: &[String]) -> crate::Result<i32> {
    Err(crate::Error::Usage("--doctor: not available in this build yet".into()))
}
