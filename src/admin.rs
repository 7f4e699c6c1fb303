//! Queue control: `--hold`, `--release`, `--delete` with a queue id,
//! `user=LOGIN` or `ALL`; root and trusted users on any message, others on
//! their own only.

use crate::app::Run;
use crate::{Error, Result};

pub fn hold(_run: &Run, sel: &str) -> Result<i32> {
    Err(Error::Usage(format!("--hold {sel}: not available in this build yet")))
}

pub fn release(_run: &Run, sel: &str) -> Result<i32> {
    Err(Error::Usage(format!("--release {sel}: not available in this build yet")))
}

pub fn delete(_run: &Run, sel: &str) -> Result<i32> {
    Err(Error::Usage(format!("--delete {sel}: not available in this build yet")))
}
