//! Opening a session for delivery: connect from the first of the
//! identity's sources that binds (verified by `connect`), greet, TLS as the
//! policy and the relay's credentials require (a verified or pinned
//! certificate before any credential is sent; the relay's client
//! certificate), AUTH when configured (EXTERNAL for a client certificate
//! without a password, when offered).

use crate::base::clock::unix_now;
use crate::base::relay::Scheme;
use crate::config::conf::TlsPolicy;
use crate::deliver::connect::{self, ConnectError};
use crate::deliver::context::Context;
use crate::deliver::outcome::TryError;
use crate::deliver::route::Destination;
use crate::deliver::smtp::session::{Session, SmtpError};
use crate::identity::profile::Identity;
use std::net::{IpAddr, SocketAddr};

/// Connect from the first candidate source that binds, then greet, TLS, AUTH.
///
/// TLS follows `smtp::tls`'s policy; a relay with credentials (its URL names a
/// user, or the secrets file has a line for it) raises `opportunistic` to
/// `required`, so credentials never travel unencrypted: a relay that offers no
/// STARTTLS is then a temporary failure (the message stays queued). A failed
/// opportunistic handshake is retried once on a new connection without TLS.
/// `opened` gets (local, peer, connect time) of every connection made.
#[allow(clippy::too_many_arguments)]
pub fn open_session(
    ctx: &mut Context,
    identity: &Identity,
    candidates: &[Option<IpAddr>],
    dest: &Destination,
    host_name: &str,
    addr: SocketAddr,
    connect_time: &mut u64,
    opened: &mut Vec<(SocketAddr, SocketAddr, u64)>,
) -> Result<Session, TryError> {
    use crate::deliver::smtp::tls::{self, StartTlsError, Started};
    let timeouts = ctx.cfg.cfg.timeouts.clone();
    let mut last_local = None;
    let implicit_tls = dest
        .relay
        .as_ref()
        .is_some_and(|r| r.scheme == Scheme::Smtps);
    // Credentials decide the TLS policy before anything is sent.
    let creds = match &dest.relay {
        Some(r) => match crate::config::secrets::for_relay(&ctx.cfg.cfg.secrets, r) {
            Ok(crate::config::secrets::RelayAuth::Use(c)) => Some(c),
            Ok(crate::config::secrets::RelayAuth::None) => None,
            Err(why) => {
                return Err(TryError::Stop {
                    why,
                    permanent: false,
                });
            }
        },
        None => None,
    };
    // With credentials, `opportunistic` counts as `required` (see smtp::tls::starttls).
    let mut policy = tls::policy_for(ctx.cfg, dest);
    if let Err(e) = ctx.init_tls() {
        return Err(TryError::Stop {
            why: e,
            permanent: false,
        });
    }
    // The relay's own TLS: its client certificate, and with credentials a
    // verified or pinned certificate whatever `tls =` says (smtp::relay_tls).
    let relay_ctx = match &dest.relay {
        Some(r) if creds.is_some() || r.client_cert.is_some() => {
            use crate::deliver::smtp::relay_tls::{self, ServerCheck};
            let check = match &creds {
                Some(c) => c.pin.map_or(ServerCheck::Verified, ServerCheck::Pinned),
                None if policy == TlsPolicy::Verify => ServerCheck::Verified,
                None => ServerCheck::Any,
            };
            let base = ctx.tls.as_ref().expect("initialised above");
            match relay_tls::config(base, check, r.client_cert.as_ref()) {
                Ok(c) => {
                    if creds.is_some() {
                        policy = TlsPolicy::Verify;
                    }
                    Some(base.with_config(c, check != ServerCheck::Any))
                }
                Err(why) => {
                    return Err(TryError::Stop {
                        why: format!("relay {}: {why}", r.text),
                        permanent: false,
                    });
                }
            }
        }
        _ => None,
    };
    // Why a TLS failure keeps the credentials home.
    let unsent = |why: String| match &creds {
        Some(c) => format!(
            "{why}; the credentials of {} ({}) are sent only to a relay whose certificate is verified (system CAs and tls_ca_file, for the name {host_name}) or pinned with fingerprint=sha256:HEX on that secrets line: not sent",
            c.user, c.location
        ),
        None => why,
    };
    let next = |why: String, permanent: bool| TryError::Next {
        why,
        permanent,
        local: false,
    };
    for plain_retry in [false, true] {
        let mut conn = None;
        for src in candidates {
            if let Some(why) = ctx.not_again((*src, addr)) {
                return Err(next(why, false));
            }
            // Never past the message's time budget.
            let t = crate::deliver::smtp::session::bounded(timeouts.connect());
            match connect::connect(*src, addr, t, &identity.sender) {
                Ok(c) => {
                    conn = Some((c, *src));
                    break;
                }
                Err(e @ (ConnectError::NotConfigured { .. } | ConnectError::Bind { .. })) => {
                    last_local = Some(e.to_string());
                    continue;
                }
                Err(e) => {
                    if matches!(
                        e,
                        ConnectError::Timeout { .. } | ConnectError::Connect { .. }
                    ) {
                        ctx.unreachable((*src, addr), &e.to_string());
                    }
                    let local = e.is_local();
                    return Err(TryError::Next {
                        why: e.to_string(),
                        permanent: false,
                        local,
                    });
                }
            }
        }
        let Some((conn, src)) = conn else {
            return Err(TryError::Next {
                why: last_local.unwrap_or_else(|| "no source address could be bound".into()),
                permanent: false,
                local: true,
            });
        };
        *connect_time = unix_now();
        let local = conn.local;
        let peer = conn.peer;
        opened.push((local, peer, *connect_time));
        let tls_ctx = relay_ctx
            .as_ref()
            .unwrap_or_else(|| ctx.tls.as_ref().expect("initialised above"));
        let mut implicit_info = None;
        let stream = if implicit_tls {
            let (st, info) =
                tls::implicit(conn.stream, host_name, tls_ctx, policy, timeouts.greeting())
                    .map_err(|e| next(unsent(e.to_string()), false))?;
            implicit_info = Some(info);
            st
        } else {
            crate::deliver::smtp::session::Stream::Plain(conn.stream)
        };
        let mut s = Session::open(
            stream,
            local,
            peer,
            host_name,
            &identity.helo,
            &timeouts,
            ctx.verbose,
        )
        .map_err(|e| {
            // No greeting (or EHLO reply) in time: the run's other messages
            // would wait just as long.
            if matches!(e, SmtpError::Io { .. } | SmtpError::Timeout { .. }) {
                ctx.unreachable((src, addr), &e.to_string());
            }
            next(e.to_string(), e.is_permanent())
        })?;
        if let Some(info) = implicit_info {
            s.tls = true;
            tls_note(ctx, &info.describe(&s.peer_name), false);
        } else {
            // DANE or MTA-STS when `attempt` chose them for this host.
            // A relay's own TLS context (client certificate, pinned or
            // verified certificate) when it has one.
            match crate::deliver::tls_choice::starttls(
                ctx,
                tls_ctx,
                &mut s,
                host_name,
                policy,
                plain_retry,
                creds.is_some(),
            ) {
                Ok(Started::Tls(info)) => tls_note(ctx, &info.describe(&s.peer_name), false),
                Ok(Started::Plain { note }) => {
                    if let Some(n) = note {
                        tls_note(ctx, &n, true);
                    }
                }
                Err(StartTlsError::HandshakeFailed {
                    retry_plain: true,
                    peer,
                    why,
                }) if !plain_retry => {
                    tls_note(
                        ctx,
                        &format!(
                            "TLS handshake with {peer} failed ({why}); retrying once without TLS"
                        ),
                        true,
                    );
                    continue;
                }
                Err(e @ StartTlsError::Policy(_)) => {
                    s.quit();
                    return Err(next(unsent(e.to_string()), false));
                }
                // The connection is unusable (broken TLS, timeout): no QUIT.
                Err(e) => return Err(next(unsent(e.to_string()), false)),
            }
        }
        let external = creds.is_none()
            && s.tls
            && dest.relay.as_ref().is_some_and(|r| r.client_cert.is_some())
            && s.ext.auth.iter().any(|m| m == "EXTERNAL");
        if external && let Err(e) = crate::deliver::smtp::auth::external(&mut s) {
            let permanent = e.is_permanent();
            if !matches!(e, SmtpError::Io { .. } | SmtpError::Timeout { .. }) {
                s.quit();
            }
            return Err(TryError::Stop {
                why: e.to_string(),
                permanent,
            });
        }
        if let Some(c) = &creds
            && let Some(o) = &c.oauth
        {
            if let Err(e) = oauth_auth(ctx, &mut s, c, o, (host_name, addr.port())) {
                let permanent = e.is_permanent();
                if !matches!(e, SmtpError::Io { .. } | SmtpError::Timeout { .. }) {
                    s.quit();
                }
                return Err(TryError::Stop {
                    why: e.to_string(),
                    permanent,
                });
            }
            return Ok(s);
        }
        if let Some(c) = &creds {
            match crate::deliver::smtp::auth::authenticate(&mut s, c) {
                Ok(Some(_)) => {}
                Ok(None) => tls_note(
                    ctx,
                    &format!(
                        "relay {} offers no AUTH; sending without authentication (credentials from {} not used)",
                        s.peer_name, c.location
                    ),
                    true,
                ),
                Err(e) => {
                    let permanent = e.is_permanent();
                    if !matches!(e, SmtpError::Io { .. } | SmtpError::Timeout { .. }) {
                        s.quit();
                    }
                    return Err(TryError::Stop {
                        why: e.to_string(),
                        permanent,
                    });
                }
            }
        }
        return Ok(s);
    }
    Err(next("TLS failed twice".into(), false))
}

/// AUTH with an OAuth2 token (`deliver::oauth2`): a refused token is
/// refreshed once and tried again; a refused refresh is permanent and says
/// what to renew.
fn oauth_auth(
    ctx: &mut Context,
    s: &mut Session,
    c: &crate::config::secrets::Credentials,
    o: &crate::config::secrets::OAuth,
    peer: (&str, u16),
) -> Result<(), SmtpError> {
    use crate::deliver::oauth2::{TokenError, token};
    let get = |ctx: &mut Context, stale: Option<&str>| {
        token(ctx, c, o, peer.0, stale).map_err(|e| match e {
            TokenError::Temporary(w) => SmtpError::Deferred(w),
            TokenError::Refused(w) => SmtpError::Refused(w),
        })
    };
    let t = get(ctx, None)?;
    match crate::deliver::smtp::auth::oauth(s, c, &t, peer) {
        Ok(_) => Ok(()),
        Err(SmtpError::Refused(first)) => {
            tls_note(
                ctx,
                &format!("{first}; refreshing the OAuth2 token once and trying again"),
                true,
            );
            let t = get(ctx, Some(&t))?;
            crate::deliver::smtp::auth::oauth(s, c, &t, peer).map(|_| ()).map_err(|e| match e {
                SmtpError::Refused(w) => SmtpError::Refused(format!(
                    "{w}; a freshly refreshed token was refused too: permanent failure, check that the account {} may send by SMTP AUTH with OAuth2 (its scope and the tenant's SMTP AUTH setting, secrets line {}); the message is not retried",
                    c.user, c.location
                )),
                e => e,
            })
        }
        Err(e) => Err(e),
    }
}

/// A TLS or AUTH event: to syslog, and to stderr with `-v`.
fn tls_note(ctx: &Context, text: &str, warning: bool) {
    if ctx.verbose {
        crate::base::stderr::line(&format!("*** {text}"));
    }
    if warning {
        ctx.log.warning(text);
    } else {
        ctx.log.info(text);
    }
}
