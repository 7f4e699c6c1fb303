//! Stage 5, the message: stdin (or an SMTP DATA stream) into a spool draft,
//! once, in a streaming pass (`message`), with vsendmail's header changes
//! made on the way (`headers`) and untrusted input split into bounded lines
//! (`lines`), and the attribution of where it came from
//! (`attribution`). May use the stages before it.

pub mod attribution;
pub mod headers;
pub(crate) mod lines;
pub mod mailbox;
pub mod message;
