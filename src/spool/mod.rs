//! Stage 4, storage only: the queue directory (`store`: drafts, commits,
//! locks, removal; files shared by group for the audit trail and counters)
//! and the envelope file format (`envelope`). Who delivers what is not
//! decided here. May use `base`, `config`, `identity`.

pub mod envelope;
pub mod store;
