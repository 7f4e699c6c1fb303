//! Stage 0, the leaf: value types and facilities that every stage uses and
//! that use nothing of the crate but each other: addresses, the clock,
//! durations, rate limits, relay URLs, DSN options, the syslog writer.
//! Nothing here reads a file of the host or decides a policy.

pub mod address;
pub mod clock;
pub mod dsn;
pub mod duration;
pub mod limit;
pub mod relay;
pub mod syslog;
