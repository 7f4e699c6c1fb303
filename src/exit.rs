//! The end of a run: the crate's [`Error`], which every command returns, and
//! the one map from it to a sysexits(3) code ([`code`]).
//!
//! Each stage below has its own error type (`cli::invocation::CliError`,
//! `config::conf::ConfigError`, `intake::message::IntakeError`,
//! `spool::store::SpoolError`, `account::rate::RateError`, ...); they meet here, beside what the commands
//! themselves refuse, each variant carrying what a person needs to fix it.
//! Only [`code`] decides which code a caller sees; nothing below imports
//! this module, and the commands above never pick a code themselves.

use crate::account::rate::RateError;
use crate::base::address::AddressError;
use crate::cli::invocation::CliError;
use crate::config::conf::ConfigError;
use crate::config::virtusers::VirtusersError;
use crate::identity::invoker::InvokerError;
use crate::identity::profile::PolicyError;
use crate::intake::message::IntakeError;
use crate::sign::dkim::DkimError;
use crate::spool::store::SpoolError;

pub const OK: i32 = 0;
pub const USAGE: i32 = 64;
pub const DATAERR: i32 = 65;
pub const NOUSER: i32 = 67;
pub const UNAVAILABLE: i32 = 69;
pub const SOFTWARE: i32 = 70;
pub const OSERR: i32 = 71;
pub const CANTCREAT: i32 = 73;
pub const IOERR: i32 = 74;
pub const TEMPFAIL: i32 = 75;
pub const NOPERM: i32 = 77;
pub const CONFIG: i32 = 78;

/// Every error that can end a run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Cli(#[from] CliError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Virtusers(#[from] VirtusersError),
    #[error(transparent)]
    Invoker(#[from] InvokerError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error(transparent)]
    Intake(#[from] IntakeError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Dkim(#[from] DkimError),
    #[error(transparent)]
    Rate(#[from] RateError),

    // What the commands refuse.
    #[error("the command line is longer than 256 KiB; pass recipients with -t instead")]
    CommandLineTooLong,
    #[error(
        "{flag}: vsendmail has no daemon mode; it delivers when called, and `vsendmail -q` from cron or the systemd timer retries the queue"
    )]
    NoDaemon { flag: String },
    #[error(
        "-C {path} refused: vsendmail runs set-id, and only root may choose another configuration"
    )]
    OtherConfig { path: String },
    #[error(
        "no recipients: give recipient addresses as arguments, or use -t to read them from the message"
    )]
    NoRecipients,
    #[error(
        "no recipients: -t found no address in To:, Cc: or Bcc:, and none was given as an argument"
    )]
    NoHeaderRecipients,
    #[error("{count} recipients exceed the limit of {max} (max_recipients)")]
    TooManyRecipients { count: usize, max: usize },
    #[error("-bv needs recipient addresses")]
    VerifyNeedsRecipients,
    #[error("{shown}: {why}")]
    BadSelector { shown: String, why: &'static str },
    #[error(
        "{what}; user {login} may act only on their own messages (root and trusted_users on any)"
    )]
    NotYours { what: String, login: String },
    /// The owner tried to release or delete a message whose hold it did not set.
    #[error(
        "{ids}: only root or a trusted user can release or delete a message held by the administrator or for a changed identity; ask the administrator"
    )]
    HoldBinds { ids: String },
    /// `--policy` or `--batv-check` by a user who is not allowed to test tags.
    #[error(
        "{what} is for root, trusted_users and policy_users only (user {login} is none of them); ask the administrator to add the user to policy_users in the configuration"
    )]
    NotPolicyUser { what: &'static str, login: String },
    #[error(
        "--who {shown}: not an address (192.0.2.10, 2001:db8::11), an address and port (192.0.2.10:40312, [2001:db8::11]:40312) or a Message-ID (<id@example.org>)"
    )]
    WhoQuery { shown: String },
    #[error("--window {shown}: not a duration (e.g. 10m, 1h, 30s)")]
    WhoWindow { shown: String },
    #[error(
        "--who: time {shown}: use 2026-11-23T12:03, \"2026-11-23 12:03:04\" (UTC) or add an offset (2026-11-23T13:03+01:00)"
    )]
    WhoTime { shown: String },
    /// `-bi` found problems (each was printed as `file:line: …`).
    #[error("{count} problem(s) found; fix them and run -bi again")]
    CheckFailed { count: usize },
    /// `-bv` found what would make this user's send fail (each was printed
    /// as a `FAIL` line).
    #[error(
        "{count} problem(s) would make this user's mail fail; fix them (vsendmail -bi lists every problem)"
    )]
    VerifyFailed { count: usize },
    /// A BATV key file cannot be used by `--batv-check`.
    #[error("{0}")]
    BatvKeys(String),
    /// `--doctor`'s resolvers cannot be set up.
    #[error("{0}")]
    DoctorSetup(String),
    /// `--policy`: the keys cannot be loaded.
    #[error("policy: {0}; ending the policy run")]
    PolicyKeys(String),
    /// `--policy`: input that is not the Postfix policy protocol.
    #[error("policy: {0}")]
    PolicyInput(String),

    // What failed on the way.
    /// Recipients failed permanently (each was reported on its own line).
    #[error("{count} recipient(s) could not be delivered")]
    Undelivered { count: usize },
    /// `--doctor` found a problem (each is a FAIL line of the report).
    #[error("--doctor found problems")]
    DoctorFailed,
    /// Temporary failure and the message could not be queued (`queue = false`).
    #[error("temporary failure, message not queued (queue = false): {reasons}")]
    NotQueued { reasons: String },
    #[error("cannot read the audit trail {path}: {err}")]
    AuditRead { path: String, err: std::io::Error },
    /// The `-bs` client or the policy client went away or cannot be read.
    #[error("{what}: {err}")]
    Client {
        what: &'static str,
        err: std::io::Error,
    },

    /// `--hold/--release/--delete`: messages another process kept locked
    /// for the whole bounded wait (the others were changed).
    #[error("{ids}: busy (being delivered by another process); try again")]
    Busy { ids: String },

    /// The user is suspended (`--suspend`, or the breaker) with `refuse`.
    #[error("{text}")]
    Suspended { text: String },
    #[error(
        "cannot use the breaker counters of {identity} ({err}); the message was not accepted, try again later"
    )]
    Breaker {
        identity: String,
        err: std::io::Error,
    },
    #[error(
        "cannot write the per-recipient log in {path} ({err}); the message was not accepted, try again later"
    )]
    LogWrite { path: String, err: std::io::Error },
    #[error(
        "--suspend, --unsuspend: only root and trusted_users may change suspensions (user {login})"
    )]
    SuspendNotAllowed { login: String },
    #[error("{login}: no such user; give the login name of a local account")]
    UnknownLogin { login: String },
    #[error("--action {shown}: use hold or refuse")]
    BadAction { shown: String },
    #[error(
        "--since {shown}: use a duration (24h, 30m, 7d) or a time (2026-11-23T12:03, \"2026-11-23 12:03:04\", UTC unless an offset is given)"
    )]
    BadSince { shown: String },
    #[error(
        "--status {shown}: use one of sent, deferred, failed, held, bounced, suspended, refused"
    )]
    BadStatus { shown: String },
    #[error("cannot write the suspension of {login} ({err})")]
    SuspendWrite { login: String, err: std::io::Error },

    /// A query or selector matched nothing (exit 1, as grep); prints nothing.
    #[error("nothing matched")]
    NoMatch,
    /// An error already reported where its reader looks (syslog, for
    /// `--policy`, whose stderr belongs to Postfix): nothing on stderr.
    #[error("{0}")]
    Quiet(Box<Error>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The sysexits code for an error.
pub fn code(err: &Error) -> i32 {
    match err {
        Error::Cli(CliError::BadAddress(..)) => DATAERR,
        Error::Cli(CliError::Refused(..)) => NOPERM,
        Error::Cli(_) => USAGE,
        Error::Config(_) => CONFIG,
        Error::Virtusers(_) => CONFIG,
        Error::Invoker(_) => NOUSER,
        Error::Policy(_) => NOPERM,
        Error::Address(_) => DATAERR,
        Error::Intake(IntakeError::Io(_)) => IOERR,
        // A From: refused by from_policy is a policy refusal like -f (77), not bad data.
        Error::Intake(IntakeError::Policy(_)) => NOPERM,
        Error::Intake(IntakeError::Spool(e)) => spool_code(e),
        Error::Intake(_) => DATAERR,
        Error::Spool(e) => spool_code(e),
        Error::Dkim(_) => CONFIG,
        Error::Rate(_) => TEMPFAIL,
        Error::NoDaemon { .. }
        | Error::CommandLineTooLong
        | Error::NoRecipients
        | Error::VerifyNeedsRecipients
        | Error::BadSelector { .. }
        | Error::WhoQuery { .. }
        | Error::WhoWindow { .. }
        | Error::WhoTime { .. } => USAGE,
        Error::NoHeaderRecipients | Error::TooManyRecipients { .. } | Error::PolicyInput(_) => {
            DATAERR
        }
        Error::OtherConfig { .. }
        | Error::NotYours { .. }
        | Error::HoldBinds { .. }
        | Error::NotPolicyUser { .. } => NOPERM,
        Error::CheckFailed { .. }
        | Error::VerifyFailed { .. }
        | Error::BatvKeys(_)
        | Error::DoctorSetup(_)
        | Error::PolicyKeys(_) => CONFIG,
        Error::NotQueued { .. } | Error::Busy { .. } => TEMPFAIL,
        Error::Undelivered { .. } => UNAVAILABLE,
        Error::DoctorFailed => 1,
        Error::AuditRead { .. } | Error::Client { .. } => IOERR,
        Error::NoMatch => 1,
        Error::Suspended { .. } | Error::SuspendNotAllowed { .. } => NOPERM,
        Error::Breaker { .. } | Error::LogWrite { .. } => TEMPFAIL,
        Error::UnknownLogin { .. } => NOUSER,
        Error::BadAction { .. } | Error::BadSince { .. } | Error::BadStatus { .. } => USAGE,
        Error::SuspendWrite { .. } => CANTCREAT,
        Error::Quiet(e) => code(e),
    }
}

fn spool_code(e: &SpoolError) -> i32 {
    match e {
        SpoolError::Create { .. } => CANTCREAT,
        SpoolError::NotFound(_) => 1,
        SpoolError::Corrupt { .. } => SOFTWARE,
        SpoolError::Io { .. } => IOERR,
        SpoolError::Full { .. } | SpoolError::UserLimit { .. } => TEMPFAIL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io() -> std::io::Error {
        std::io::Error::other("x")
    }

    #[test]
    fn every_layer_maps_to_its_code() {
        let cases: Vec<(Error, i32)> = vec![
            (CliError::Usage("x".into()).into(), USAGE),
            (CliError::Refused("x".into()).into(), NOPERM),
            (
                ConfigError::Syntax {
                    path: "c".into(),
                    line: 1,
                    msg: "m".into(),
                }
                .into(),
                CONFIG,
            ),
            (InvokerError::Unknown(1).into(), NOUSER),
            (IntakeError::Io(io()).into(), IOERR),
            (
                SpoolError::Create {
                    dir: "d".into(),
                    err: io(),
                }
                .into(),
                CANTCREAT,
            ),
            (SpoolError::NotFound("ID".into()).into(), 1),
            (
                SpoolError::Full {
                    dir: "d".into(),
                    free_pct: 1,
                    min: 5,
                }
                .into(),
                TEMPFAIL,
            ),
            (
                SpoolError::Corrupt {
                    path: "p".into(),
                    why: "w".into(),
                }
                .into(),
                SOFTWARE,
            ),
            (DkimError::Key("k".into()).into(), CONFIG),
            (
                RateError::Over {
                    hit: crate::account::rate::Hit {
                        who: "a@b".into(),
                        sent: 3,
                        limit: crate::base::limit::Limit {
                            count: 3,
                            period: std::time::Duration::from_secs(3600),
                        },
                        key: "rate",
                    },
                }
                .into(),
                TEMPFAIL,
            ),
            (Error::NoRecipients, USAGE),
            (Error::NoHeaderRecipients, DATAERR),
            (Error::TooManyRecipients { count: 2, max: 1 }, DATAERR),
            (Error::OtherConfig { path: "/x".into() }, NOPERM),
            (
                Error::NotQueued {
                    reasons: "r".into(),
                },
                TEMPFAIL,
            ),
            (Error::CheckFailed { count: 1 }, CONFIG),
            (Error::VerifyFailed { count: 1 }, CONFIG),
            (Error::PolicyInput("p".into()), DATAERR),
            (
                Error::Client {
                    what: "w",
                    err: io(),
                },
                IOERR,
            ),
            (Error::NoMatch, 1),
            (Error::Busy { ids: "ABC".into() }, TEMPFAIL),
            (Error::Undelivered { count: 1 }, UNAVAILABLE),
            (Error::DoctorFailed, 1),
            (Error::CommandLineTooLong, USAGE),
            (
                Error::Quiet(Box::new(Error::PolicyKeys("k".into()))),
                CONFIG,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(code(&e), want, "{e:?}");
        }
    }

    #[test]
    fn messages_name_the_problem() {
        let e = Error::TooManyRecipients {
            count: 1001,
            max: 1000,
        };
        assert_eq!(
            e.to_string(),
            "1001 recipients exceed the limit of 1000 (max_recipients)"
        );
        let e = Error::NotYours {
            what: "ABC: another user's message".into(),
            login: "bob".into(),
        };
        assert!(
            e.to_string()
                .contains("user bob may act only on their own messages")
        );
    }
}
