//! Which of DANE, MTA-STS or the configured (opportunistic) TLS applies to a
//! destination's host, and why (for delivery and `-bv`), and STARTTLS as it
//! says. Only direct delivery: a relay gets the `tls` policy.
//!
//! - `dnssec = "trust-ad"` and authenticated, usable TLSA records at
//!   `_25._tcp.HOST`: DANE (it wins over MTA-STS); TLSA present but none
//!   usable, or a failed TLSA lookup: the host is not used (deferred).
//! - Else an MTA-STS policy (`mta_sts`): `enforce` uses only the MX hosts it
//!   names, each over TLS verified for the MX name; `testing` delivers as
//!   usual and logs what would have failed; `none` is as no policy.
//! - Else the `tls` policy.

use crate::deliver::context::Context;
use crate::deliver::dane::{self, Answer};
use crate::deliver::mta_sts::{Lookup, Mode, Policy};
use crate::deliver::peer_tls::HostTls;
use crate::deliver::route::Destination;
use crate::deliver::smtp::session::Session;
use crate::deliver::smtp::tls::{self, StartTlsError, Started};

/// What to do with one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Try it with this TLS; the text says why this one.
    Use(HostTls, String),
    /// Do not use it; the text is the deferral reason.
    Skip(String),
}

/// The MTA-STS policy of a direct destination (once per run and domain).
pub fn sts_policy(ctx: &mut Context, dest: &Destination) -> Option<Policy> {
    if dest.relay.is_some() || !ctx.cfg.cfg.mta_sts {
        return None;
    }
    let domain = dest.name.trim_end_matches('.').to_ascii_lowercase();
    if domain.is_empty() || domain.starts_with('[') {
        return None;
    }
    if let Some(p) = ctx.sts.get(&domain) {
        return p.clone();
    }
    let (cfg, log, verbose) = (ctx.cfg, ctx.log, ctx.verbose);
    let p = match ctx.dns_and_tls() {
        (Some(dns), Some(tls)) => crate::deliver::mta_sts::find(
            &Lookup {
                cfg,
                log,
                verbose,
                dns,
                tls,
            },
            &domain,
        ),
        _ => None,
    };
    ctx.sts.insert(domain, p.clone());
    p
}

/// The TLS for `host` of `dest`, given the destination's MTA-STS policy.
pub fn for_host(ctx: &mut Context, dest: &Destination, sts: Option<&Policy>, host: &str) -> Choice {
    let configured = || {
        format!(
            "tls = \"{}\" (no DANE, no MTA-STS)",
            tls::policy_name(ctx.cfg.cfg.tls)
        )
    };
    if dest.relay.is_some() {
        return Choice::Use(HostTls::Configured, format!("relay: {}", configured()));
    }
    let no_dane;
    if ctx.cfg.cfg.dnssec == crate::config::conf::Dnssec::TrustAd {
        match ctx.dns().map(|d| dane::lookup(d, host)) {
            Some(Answer::Usable(recs)) => {
                let kinds: Vec<String> = recs.iter().map(dane::Tlsa::params).collect();
                let why = format!(
                    "DANE: authenticated TLSA records at _25._tcp.{host} ({}); only TLS matching them",
                    kinds.join(", ")
                );
                return Choice::Use(HostTls::Dane(recs), why);
            }
            Some(Answer::Unusable(why)) => return Choice::Skip(why),
            Some(Answer::None { why }) => no_dane = format!("{why}; "),
            None => no_dane = "no resolver for TLSA; ".into(),
        }
    } else {
        no_dane = "dnssec = \"off\": no DANE; ".into();
    }
    match sts {
        Some(p) if p.mode == Mode::Enforce => {
            if !p.allows(host) {
                return Choice::Skip(format!(
                    "MX host {host} is not named by the {}; not used",
                    p.describe()
                ));
            }
            let why = format!(
                "{no_dane}MTA-STS: {}; only TLS with a certificate verified for {host}",
                p.describe()
            );
            Choice::Use(HostTls::StsEnforce(p.describe()), why)
        }
        Some(p) if p.mode == Mode::Testing => {
            let mut why = format!(
                "{no_dane}MTA-STS: {}; delivered with tls = \"{}\", failures logged",
                p.describe(),
                tls::policy_name(ctx.cfg.cfg.tls)
            );
            if !p.allows(host) {
                why.push_str(&format!(" (MX host {host} is not named by the policy)"));
                note(
                    ctx,
                    &format!(
                        "{}: MX host {host} is not named by it (testing: used anyway)",
                        p.describe()
                    ),
                );
            }
            Choice::Use(HostTls::StsTesting(p.describe()), why)
        }
        Some(p) => Choice::Use(
            HostTls::Configured,
            format!("{no_dane}{} (mode none): {}", p.describe(), configured()),
        ),
        None => {
            let sts = if ctx.cfg.cfg.mta_sts {
                "no MTA-STS policy; "
            } else {
                "mta_sts = false; "
            };
            Choice::Use(
                HostTls::Configured,
                format!("{no_dane}{sts}{}", configured()),
            )
        }
    }
}

/// STARTTLS on a new session as `ctx.peer_tls` says (see `smtp::tls` for
/// the configured policy's own rules).
pub fn starttls(
    ctx: &Context,
    tls_ctx: &crate::deliver::smtp::tls::TlsContext,
    s: &mut Session,
    host: &str,
    policy: crate::config::conf::TlsPolicy,
    plain_retry: bool,
    credentials: bool,
) -> Result<Started, StartTlsError> {
    match &ctx.peer_tls {
        HostTls::Dane(recs) => {
            let c = dane::client_config(tls_ctx.provider(), recs.clone(), host)
                .map_err(StartTlsError::Policy)?;
            tls::starttls_with(s, host, c, &format!("DANE TLSA records of {host}"))
        }
        HostTls::StsEnforce(p) => {
            let c = tls_ctx.verified_config().map_err(StartTlsError::Policy)?;
            tls::starttls_with(s, host, c, p)
        }
        HostTls::Configured => tls::starttls(s, host, tls_ctx, policy, plain_retry, credentials),
        HostTls::StsTesting(p) => {
            let r = tls::starttls(s, host, tls_ctx, policy, plain_retry, credentials);
            match &r {
                Ok(Started::Tls(i)) if !i.verified => {
                    if let Err(why) = tls::peer_verifies(tls_ctx, s, host) {
                        note(
                            ctx,
                            &format!(
                                "{p} (testing): the certificate of {} would fail: {why}",
                                s.peer_name
                            ),
                        );
                    }
                }
                Ok(Started::Plain { .. }) => note(
                    ctx,
                    &format!("{p} (testing): {} would fail: no TLS", s.peer_name),
                ),
                Err(e) => note(ctx, &format!("{p} (testing): {e}")),
                _ => {}
            }
            r
        }
    }
}

fn note(ctx: &Context, text: &str) {
    if ctx.verbose {
        crate::base::stderr::line(&format!("*** {text}"));
    }
    ctx.log.warning(text);
}
