//! Stage 6, what vouches for a message: DKIM signatures over the spooled
//! message (`dkim`) with the private keys read by `dkim_key`, and BATV tags
//! on the envelope sender (`batv`, which owns its key files). May use the
//! stages before it.

pub mod batv;
pub mod dkim;
pub mod dkim_key;
