//! vsendmail: a sendmail-compatible drop-in that delivers each Unix user's mail as
//! that user's virtual identity, from the identity's own source address.
//!
//! The flow, one module per stage: `cli` (what was typed) -> `config`, `invoker`,
//! `virtusers`/`identity` (who is sending) -> `job` (what will happen) ->
//! `message` (stdin into the spool) -> `spool` (durable storage) -> `deliver`
//! (`route`, `dns`, `connect`, `smtp`) -> `syslog`/`audit` (what happened).

pub mod address;
pub mod admin;
pub mod aliases;
pub mod app;
pub mod audit;
pub mod base;
pub mod batv;
pub mod bounce;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connect;
pub mod deliver;
pub mod dkim;
pub mod dns;
pub mod doctor;
pub mod exit;
pub mod identity;
pub mod invoker;
pub mod job;
pub mod mailq;
pub mod message;
pub mod policy;
pub mod rate;
pub mod route;
pub mod runner;
pub mod secrets;
pub mod serve;
pub mod smtp;
pub mod spool;
pub mod submit;
pub mod syslog;
pub mod verify;
pub mod virtusers;

/// Every error that can end a run; `exit::code` maps each to a sysexits code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Cli(#[from] cli::CliError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Virtusers(#[from] virtusers::VirtusersError),
    #[error(transparent)]
    Invoker(#[from] invoker::InvokerError),
    #[error(transparent)]
    Policy(#[from] identity::PolicyError),
    #[error(transparent)]
    Address(#[from] address::AddressError),
    #[error(transparent)]
    Intake(#[from] message::IntakeError),
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
    #[error(transparent)]
    Rate(#[from] rate::RateError),
    /// Bad usage found after argv parsing (64).
    #[error("{0}")]
    Usage(String),
    /// Bad message or address found later (65).
    #[error("{0}")]
    Data(String),
    /// Permission refused (77).
    #[error("{0}")]
    NoPerm(String),
    /// Permanent delivery failure reported on stderr (69).
    #[error("{0}")]
    Unavailable(String),
    /// Temporary failure and the message could not be queued (75).
    #[error("{0}")]
    TempFail(String),
    /// OS or I/O error, nothing accepted (74).
    #[error("{0}")]
    Io(String),
    /// Internal error (70).
    #[error("{0}")]
    Software(String),
    /// A configuration problem found outside the config parser (78).
    #[error("{0}")]
    Config78(String),
    /// A query or selector matched nothing (exit 1, as grep).
    #[error("nothing matched")]
    NoMatch,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
