//! Stage 3, who is sending: the invoking Unix user (`invoker`, from the real
//! uid), the virtual identity that user sends as and the sender policy
//! (`profile`), and the run's context built from both (`job`). May use
//! `base`, `cli`, `config`.

pub(crate) mod invoker;
pub(crate) mod job;
pub mod profile;
