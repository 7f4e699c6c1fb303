//! Stage 0, the leaf: value types and facilities that every stage uses and
//! that use nothing of the crate but each other: addresses, the clock,
//! durations, rate limits, the attribution of a message,, relay URLs, DSN options, the syslog writer, the
//! stderr writer that never fails.
//! Nothing here reads a file of the host or decides a policy.

pub mod address;
pub(crate) mod attribution;
pub(crate) mod clock;
pub(crate) mod dsn;
pub(crate) mod duration;
pub(crate) mod limit;
pub(crate) mod relay;
pub mod stderr;
pub(crate) mod syslog;
