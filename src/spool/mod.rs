//! Stage 4, storage only: the queue directory (`store`: drafts, commits,
//! locks, removal), the envelope file format (`envelope`), and the
//! group-owned files shared with every user's run (`shared`: the audit
//! trail's and the rate counters'). Who delivers what is not
//! decided here. May use `base`, `config`, `identity`.

pub(crate) mod envelope;
pub(crate) mod shared;
pub mod store;
