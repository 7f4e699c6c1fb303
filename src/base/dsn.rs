//! What the caller asked about failure reports: the DSN parameters of
//! RFC 3461 (`-N`, `-R`, `-V`) and sendmail's `-oe` error mode. Set by the
//! command line (or `-bs`), stored in the envelope, used by SMTP and bounces.

use serde::{Deserialize, Serialize};

/// DSN parameters (RFC 3461) from -N, -R, -V.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dsn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
}

/// `-oem` (mail a bounce), `-oep` (print, exit 69), `-oeq` (quiet, exit 69).
/// Without any `-oe` flag (the command line's `None`) failures are printed,
/// and the exit is 69 only when no recipient was delivered or queued; when
/// some were, the failed ones are bounced as with `-oem` and the exit is 0,
/// so that a caller that retries on failure sends no duplicates. `Print` is
/// what the envelope records then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ErrorMode {
    Mail,
    #[default]
    Print,
    Quiet,
}
