//! vsendmail: a sendmail-compatible drop-in that delivers each Unix user's mail as
//! that user's virtual identity, from the identity's own source address.
//!
//! The flow, one module per stage: `cli` (what was typed) -> `config`, `invoker`,
//! `virtusers`/`identity` (who is sending) -> `job` (what will happen) ->
//! `message` (stdin into the spool) -> `spool` (durable storage) -> `deliver`
//! (`route`, `dns`, `connect`, `smtp`) -> `syslog`/`audit` (what happened).

pub mod address;
pub mod admin;
pub mod aliases;
pub mod app;
pub mod audit;
pub mod base;
pub mod batv;
pub mod bounce;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connect;
pub mod deliver;
pub mod dkim;
pub mod dns;
pub mod doctor;
pub mod exit;
pub mod identity;
pub mod invoker;
pub mod job;
pub mod mailq;
pub mod message;
pub mod policy;
pub mod rate;
pub mod route;
pub mod runner;
pub mod secrets;
pub mod serve;
pub mod smtp;
pub mod spool;
pub mod submit;
pub mod syslog;
pub mod verify;
pub mod virtusers;
