//! vsendmail: a sendmail-compatible drop-in that delivers each Unix user's mail as
//! that user's virtual identity, from the identity's own source address.
//!
//! The stages, in the order a message flows through them; each module
//! imports only from the ones above it in this list (a test in
//! `tests/integration/layout.rs` checks it, and that the graph has no circle).

/// Leaf value types and facilities: addresses, clock, durations, limits, relay URLs, DSN, syslog.
pub mod base;
/// The command line: argv into an `Invocation`.
pub mod cli;
/// The administrator's files: vsendmail.conf, virtusers, aliases, secrets.
pub mod config;
/// Who is sending: the invoker, its virtual identity and sender policy, the run's `Job`.
pub mod identity;
/// Storage: the queue directory, the envelope format, the group-owned shared files.
pub mod spool;
/// The message: stdin into a spool draft, headers, bounded lines.
pub mod intake;
/// What vouches for a message: DKIM signatures and BATV tags.
pub(crate) mod sign;
/// What is recorded: the audit trail and the rate counters.
pub(crate) mod account;
/// Delivery: route, DNS, bound connect, SMTP, the attempt and its outcome, bounces.
pub(crate) mod deliver;
/// `--doctor`'s checks of what receivers will see.
pub(crate) mod doctor;
/// The crate's `Error` and its one map to sysexits codes.
pub mod exit;
/// The modes and commands, one file each.
pub(crate) mod commands;
/// The entry point: argv to exit code.
pub mod app;
