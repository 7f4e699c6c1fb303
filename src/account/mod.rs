//! Stage 7, what is recorded about each user's sending: the audit trail of
//! every outgoing connection (`audit`) and the per-identity rate counters
//! (`rate`), the per-recipient log (`rcpt_log`), all group-owned files in the spool. May use the stages before
//! it; delivery calls it, never the other way round.

pub mod audit;
pub mod breaker;
pub mod rate;
pub mod rcpt_log;
pub mod scan;
pub mod suspend;
pub mod tally;
