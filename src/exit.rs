//! The one map from every error of every layer to a sysexits(3) code.
//!
//! Each layer has its own error enum (`config::ConfigError`, `intake::IntakeError`,
//! ...); they meet in [`crate::Error`], and only this file decides which code a
//! caller sees. `main` prints the error's message and exits with [`code`].

use crate::Error;

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

/// The sysexits code for an error.
pub fn code(err: &Error) -> i32 {
    use crate::cli::CliError;
    use crate::message::IntakeError;
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
        Error::Rate(_) => TEMPFAIL,
        Error::Usage(_) => USAGE,
        Error::Data(_) => DATAERR,
        Error::NoPerm(_) => NOPERM,
        Error::Unavailable(_) => UNAVAILABLE,
        Error::TempFail(_) => TEMPFAIL,
        Error::Io(_) => IOERR,
        Error::Software(_) => SOFTWARE,
        Error::Config78(_) => CONFIG,
        Error::NoMatch => 1,
    }
}

fn spool_code(e: &crate::spool::SpoolError) -> i32 {
    use crate::spool::SpoolError;
    match e {
        SpoolError::Create { .. } => CANTCREAT,
        SpoolError::NotFound(_) => 1,
        SpoolError::Corrupt { .. } => SOFTWARE,
        SpoolError::Io { .. } => IOERR,
    }
}
