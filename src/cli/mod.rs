//! Stage 1, the command line: sendmail's argv (`parse`) turned into an
//! `Invocation` (`invocation`: what was typed, nothing looked up). May use
//! `base` only.

pub mod invocation;
pub mod parse;
