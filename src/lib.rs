//! vsendmail: a sendmail-compatible drop-in that delivers each Unix user's mail as
//! that user's virtual identity, from the identity's own source address.
//!
//! The stages, in the order a message flows through them; each module
//! imports only from the ones above it in this list (a unit test checks it).

/// What is recorded: the audit trail and the rate counters.
pub mod account;
/// The entry point: argv to exit code.
pub mod app;
/// Leaf value types and facilities: addresses, clock, durations, limits, relay URLs, DSN, syslog.
pub mod base;
/// The command line: argv into an `Invocation`.
pub mod cli;
/// Modes and commands, one file each.
pub mod commands;
/// The administrator's files: vsendmail.conf, virtusers, aliases, secrets.
pub mod config;
/// Delivery: route, DNS, bound connect, SMTP, the attempt and its outcome, bounces.
pub mod deliver;
/// `--doctor`'s checks of what receivers see.
pub mod doctor;
/// The crate's `Error` and its one map to sysexits codes.
pub mod exit;
/// Who is sending: the invoker, its virtual identity and sender policy, the run's `Job`.
pub mod identity;
/// The message: stdin into a spool draft, headers, bounded lines.
pub mod intake;
/// DKIM signatures and BATV tags.
pub mod sign;
/// Storage: the queue directory and the envelope format.
pub mod spool;
