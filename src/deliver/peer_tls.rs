//! Which TLS the host being tried gets (chosen by `tls_choice`, used when the
//! session is opened): the configured `tls` policy, DANE's TLSA match, or
//! MTA-STS's verified certificate (`enforce`) or check (`testing`).

use crate::deliver::dane::Tlsa;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HostTls {
    /// The `tls` key's policy (opportunistic by default).
    #[default]
    Configured,
    /// TLS whose certificate matches these authenticated TLSA records.
    Dane(Vec<Tlsa>),
    /// TLS with a certificate verified for the MX host name, required by
    /// this policy (its description).
    StsEnforce(String),
    /// The configured policy; a certificate that would fail is logged.
    StsTesting(String),
}
