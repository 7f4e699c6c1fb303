//! Stage 1, the command line: sendmail's argv turned into an `Invocation`
//! (what was typed, nothing looked up). May use `base` only.

pub mod parse;
