//! The SMTP client: a session over a socket that `connect` bound and
//! verified (`session`), one transaction on it (`transaction`), replies read as hostile input (`reply`), STARTTLS
//! and implicit TLS (`tls`), a relay's own TLS settings: client certificate,
//! pinned or verified server certificate (`relay_tls`), AUTH to relays (`auth`).

pub mod auth;
pub mod relay_tls;
pub mod reply;
pub mod session;
pub mod tls;
pub mod transaction;
