//! Stage 9, what receivers will see of each identity: DNS (PTR, FCrDNS, SPF,
//! DKIM, DMARC), source addresses and keys, checked and reported for
//! `--doctor`. May use the stages before it.

pub mod report;
