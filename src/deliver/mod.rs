//! Stage 8, delivery of a queued message: `route` (relay or MX, via `dns`),
//! `connect` (bind the identity's source, then verify it), `smtp` (the
//! client session, TLS, AUTH), and the attempt at one message: `attempt`
//! (the destinations in turn), `host` (one try of one address of a host),
//! `open` (a bound, greeted, TLS'd, authenticated session), `outcome` (per
//! recipient, merged into the envelope), `context` (resolver, TLS, session
//! pool); `bounce` (failure and delay reports); `https` (the HTTPS requests
//! of delivery: MTA-STS policies, OAuth2 tokens); `oauth2` (relay access
//! tokens: refresh, cache, one refresh at a time); `backoff` (destinations
//! that said slow down, connection slots per host); the authenticated TLS of
//! direct delivery: `tls_choice` (DANE, MTA-STS or the `tls` policy, per
//! host, into `peer_tls`), `dane` (TLSA records and their check), `mta_sts`
//! (policies and their cache); `privsep` (run set-gid, the network part of
//! an attempt in a child without the group) and `sockets` (where `connect`
//! gets its sockets). May use the stages before it.

pub mod attempt;
pub mod backoff;
pub mod bounce;
pub mod connect;
pub mod context;
pub mod dane;
pub mod dns;
pub mod host;
pub mod https;
pub mod mta_sts;
pub mod oauth2;
pub mod open;
pub mod outcome;
pub mod peer_tls;
pub mod privsep;
pub mod route;
pub mod smtp;
pub mod sockets;
pub mod tls_choice;
