//! Stage 6, what vouches for a message: DKIM signatures over the spooled
//! message (`dkim`) and BATV tags on the envelope sender (`batv`); each owns
//! its key files. May use the stages before it.

pub mod batv;
pub mod dkim;
