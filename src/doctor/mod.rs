//! Stage 9, what receivers will see of each identity, checked for
//! `--doctor`: per identity (`identity`), its source addresses (`source`:
//! binding, PTR, FCrDNS, HELO, SPF via `spf`) and its domain's records and
//! keys (`records`: DKIM, DMARC, BATV), `dnsbl` (blocklists), `alignment`
//! (DMARC alignment), `transport_records` (MTA-STS, TLS-RPT of the
//! identity's domain), reported one line each (`report`).
//! May use the stages before it.

pub mod alignment;
pub mod dnsbl;
pub mod identity;
pub mod records;
pub mod report;
pub mod source;
pub mod spf;
pub mod transport_records;
