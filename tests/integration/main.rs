//! The integration tests: each module drives the built `vsendmail` binary (or,
//! for `support_selftest`, the harness itself) against real receivers on
//! loopback. `support` is the shared harness.

mod accountability;
mod core;
mod deliverability;
mod docs;
mod first_hour_checks;
mod layout;
mod queue;
mod support;
mod support_selftest;
mod transport;
mod trust;
