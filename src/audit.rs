//! The audit trail: one JSON line per outgoing connection, appended with one
//! O_APPEND write to `audit_dir/YYYY-MM-DD.jsonl`; and `--who`.

use crate::config::Loaded;
use std::net::SocketAddr;

/// One connection's record.
#[derive(Debug, Clone)]
pub struct Record {
    pub connect: u64,
    pub close: u64,
    pub uid: u32,
    pub user: String,
    pub identity: String,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub queue_id: String,
    pub message_id: String,
    pub rcpts: usize,
    pub result: String,
}

/// Append a record. Failures are logged, never fatal to delivery.
pub fn append(_cfg: &Loaded, _rec: &Record) {}

/// Remove daily files older than `audit_days` (queue runs call this).
pub fn expire(_cfg: &Loaded) {}

/// `--who QUERY [TIME] [--window D]`.
pub fn who(_run: &crate::app::Run, query: &str, _time: Option<&str>, _window: Option<&str>) -> crate::Result<i32> {
    Err(crate::Error::Usage(format!("--who {query}: not available in this build yet")))
}
