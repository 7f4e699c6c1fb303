//! What was typed: the [`Invocation`] that `parse` makes of sendmail's argv
//! (modes, flags, recipients as given, our own `--commands`), and the
//! command line's error. Nothing here is looked up or checked against the
//! system.

use crate::base::dsn::ErrorMode;
use std::path::PathBuf;
use std::time::Duration;

/// Longest `-F` full name (it becomes a display name in a header line).
pub const MAX_FULL_NAME: usize = 256;

pub const USAGE: &str = "usage: sendmail [-t] [-i] [-f sender] [-F name] [-bm|-bs|-bp|-bi|-bv] [-q[time]] [-odi|-odb|-odq] [-oem|-oep|-oeq] [-v] [-C file] [--] recipient ...";

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}\n{USAGE}")]
    Usage(String),
    #[error(transparent)]
    BadAddress(#[from] crate::base::address::AddressError),
    #[error("{0}")]
    Refused(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Deliver,
    Smtp,
    PrintQueue,
    Init,
    Verify,
    QueueRun(QueueRun),
    Daemon(String),
    Own(Own),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueRun {
    /// `-q<time>`: only messages whose retry time has come. `None`: `-q`, all now.
    pub interval: Option<Duration>,
    pub filters: Vec<QueueFilter>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueFilter {
    Id(String),
    Recipient(String),
    Sender(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeliveryMode {
    #[default]
    Interactive,
    Background,
    QueueOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    SevenBit,
    EightBitMime,
}

/// vsendmail's own commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Own {
    Who {
        query: String,
        time: Option<String>,
        window: Option<String>,
    },
    /// `--log [--user L] [--since T] [--status S] [--rcpt A] [--json]`.
    Log(LogQuery),
    /// `--stats [--since D] [--json]`.
    Stats {
        since: Option<String>,
        json: bool,
    },
    /// `--suspend LOGIN [--action hold|refuse] [--reason TEXT]`.
    Suspend {
        login: String,
        action: Option<String>,
        reason: Option<String>,
    },
    Unsuspend(String),
    Suspended,
    Hold(String),
    Release(String),
    Delete(String),
    BatvCheck(String),
    Policy,
    Doctor(Vec<String>),
    Version,
    Help,
}

/// `--log`'s filters, as typed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogQuery {
    pub user: Option<String>,
    pub since: Option<String>,
    pub status: Option<String>,
    pub rcpt: Option<String>,
    pub json: bool,
}

/// The program name we were called by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgName {
    Sendmail,
    Mailq,
    Newaliases,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub mode: Mode,
    pub read_recipients: bool,
    pub ignore_dots: bool,
    /// `-f`/`-r` as typed, validated; `Some("")` for `<>`.
    pub sender: Option<String>,
    pub full_name: Option<String>,
    pub delivery: DeliveryMode,
    /// `-oe?` as typed; `None` when no `-oe` flag was given, which has a
    /// rule of its own (see `ErrorMode`).
    pub errors: Option<ErrorMode>,
    pub verbose: bool,
    pub dsn_notify: Option<String>,
    pub dsn_ret: Option<String>,
    pub envid: Option<String>,
    pub body: Option<BodyType>,
    pub tag: Option<String>,
    pub config: Option<PathBuf>,
    pub recipients: Vec<String>,
    /// Warnings for stderr (refused `-X`, ignored queue directory options).
    pub warnings: Vec<String>,
}

impl Default for Invocation {
    fn default() -> Self {
        Invocation {
            mode: Mode::Deliver,
            read_recipients: false,
            ignore_dots: false,
            sender: None,
            full_name: None,
            delivery: DeliveryMode::Interactive,
            errors: None,
            verbose: false,
            dsn_notify: None,
            dsn_ret: None,
            envid: None,
            body: None,
            tag: None,
            config: None,
            recipients: Vec::new(),
            warnings: Vec::new(),
        }
    }
}
