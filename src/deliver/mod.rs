//! Stage 8, delivery of a queued message: `route` (relay or MX, via `dns`),
//! `connect` (bind the identity's source, then verify it), `smtp` (the
//! client session, TLS, AUTH), `attempt` (one delivery attempt of one
//! message and its per-recipient outcome), `bounce` (failure and delay
//! reports). May use the stages before it.

pub mod attempt;
pub mod bounce;
pub mod connect;
pub mod dns;
pub mod route;
pub mod smtp;
