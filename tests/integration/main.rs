//! The integration tests: each module drives the built `vsendmail` binary (or,
//! for `support_selftest`, the harness itself) against real receivers on
//! loopback. `support` is the shared harness.

mod accountability;
mod backoff;
mod core;
mod dane;
mod deliverability;
mod delivery_results;
mod docs;
mod doctor_more;
mod dots;
mod hostile_accountability;
mod hostile_queue;
mod first_hour_checks;
mod layout;
mod mta_sts;
mod queue;
mod queue_unreachable;
mod relay_port;
mod support;
mod support_selftest;
mod transport;
mod trust;
