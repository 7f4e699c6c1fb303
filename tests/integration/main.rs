//! The integration tests: each module drives the built `vsendmail` binary (or,
//! for `support_selftest`, the harness itself) against real receivers on
//! loopback. `support` is the shared harness.

mod abuse_attribution;
mod abuse_breaker;
mod abuse_limits;
mod abuse_log;
mod abuse_suspend;
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
mod hostile_oracles;
mod hostile_policies;
mod hostile_privileges;
mod hostile_queue;
mod first_hour_checks;
mod layout;
mod mta_sts;
mod queue;
mod queue_unreachable;
mod failover;
mod nat;
mod oauth2;
mod relay_credentials;
mod relay_port;
mod routes;
mod support;
mod support_selftest;
mod transport;
mod trust;
