//! The integration tests: each module drives the built `vsendmail` binary (or,
//! for `support_selftest`, the harness itself) against real receivers on
//! loopback. `support` is the shared harness.

mod accountability;
mod core;
mod queue;
mod support;
mod support_selftest;
mod trust;
mod transport;
mod deliverability;
