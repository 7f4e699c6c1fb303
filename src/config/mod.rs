//! Stage 2, the files an administrator writes: `vsendmail.conf` (`conf`),
//! the identity table `virtusers` (and its `-bi` index), `/etc/aliases`, the
//! relay `secrets`. Each is read strictly, once, into typed values with
//! `file:line` errors. May use `base` only.

pub mod aliases;
pub mod conf;
pub mod secrets;
pub mod virtusers;
pub mod virtusers_index;
