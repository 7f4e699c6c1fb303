//! The message: stdin (or an SMTP DATA stream) into the spool file, once, in a
//! streaming pass, with vsendmail's header changes made on the way.

pub mod headers;
pub mod intake;
pub mod lines;

pub use intake::{IntakeError, IntakeOptions, Limits, Taken, take};
