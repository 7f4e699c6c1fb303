//! vsendmail's own commands, dispatched: `--hold`, `--release`, `--delete`
//! (queue control by owner), and the hand-off to `--who`, `--batv-check`,
//! `--policy`, `--doctor`.

use crate::app::Run;
use crate::cli::Own;
use crate::{Error, Result};

pub fn dispatch(_run: &Run, own: Own) -> Result<i32> {
    match own {
        Own::Version | Own::Help => Ok(0),
        other => Err(Error::Usage(format!("{other:?} is not available in this build yet"))),
    }
}
