//! Stage 2, the files an administrator writes: `vsendmail.conf` (`conf`),
//! the identity table `virtusers` (and its `-bi` index), `/etc/aliases`, the
//! relay `secrets`; the
//! small files a delivery keeps in memory before the set-gid process gives
//! up its group (`held`). Each is read strictly, once, into typed values with
//! `file:line` errors; and whether the vsendmail group can read a file a
//! send opens (`access`). May use `base` only.

pub(crate) mod access;
pub(crate) mod aliases;
pub mod conf;
pub mod routes;
pub(crate) mod held;
pub(crate) mod secrets;
pub mod virtusers;
pub(crate) mod virtusers_index;
