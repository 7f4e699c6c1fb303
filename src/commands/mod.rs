//! Stage 11, the modes and commands, one file each, on top of every stage:
//! a submission (`submit`), the `-bs` server (`serve`), the `-q` queue run
//! (`queue_run`), `-bp` (`mailq`), `-bi` (`check`), `-bv` (`verify`),
//! `--hold/--release/--delete` (`admin`), `--policy` (`policy`),
//! `--batv-check` (`batv_check`), `--doctor` (`doctor`), `--who`
//! (`who`), `--log` (`log`), `--stats` (`stats`), `--suspend`/`--unsuspend`/
//! `--suspended` (`suspend`), and the abuse desk's part of a submission
//! (`abuse`). They
//! return `exit::Error`; only `app` calls them.

pub mod abuse;
pub mod admin;
pub mod batv_check;
pub mod check;
pub mod doctor;
pub mod log;
pub mod mailq;
pub mod policy;
pub mod queue_run;
pub mod serve;
pub mod stats;
pub mod submit;
pub mod suspend;
pub mod verify;
pub mod who;
