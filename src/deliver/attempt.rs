//! Delivery of one queued message: route its pending recipients, open a
//! session per destination host (bound, verified, TLS and AUTH as policy
//! says), run the transaction, and record per recipient one of three
//! outcomes: sent, deferred (with the reason), failed (with the reply).
//! The envelope is updated in place; the caller saves or removes it.

use crate::base::clock::unix_now;
use crate::base::relay::Scheme;
use crate::base::syslog::{Attempt, Syslog, attempt_line};
use crate::config::conf::Loaded;
use crate::deliver::connect::{self, ConnectError};
use crate::deliver::dns::Dns;
use crate::deliver::route::{Destination, Router};
use crate::deliver::smtp::session::{Session, SmtpError, Transaction};
use crate::identity::profile::Identity;
use crate::spool::envelope::RcptState;
use crate::spool::store::Locked;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// What happened to one recipient in this attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent(String),
    Deferred(String),
    Failed(String),
}

/// The result of one delivery attempt of a message.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub sent: Vec<(String, String)>,
    pub deferred: Vec<(String, String)>,
    pub failed: Vec<(String, String)>,
    /// Problems of this host's own configuration (source not configured...).
    pub local_errors: Vec<String>,
}

/// Sessions kept open across messages of one queue job, keyed by
/// (source, destination, HELO, relay user): a queue run reuses one SMTP
/// connection for several messages to the same host from the same source.
/// (source, destination, HELO, relay user) of a reusable session.
type PoolKey = (Option<IpAddr>, SocketAddr, String, Option<String>);

#[derive(Default)]
pub struct Pool {
    sessions: HashMap<PoolKey, (Session, u64)>,
}

impl Pool {
    pub fn close_all(&mut self) {
        for (_, (mut s, _)) in self.sessions.drain() {
            s.quit();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.close_all();
    }
}

/// Everything delivery needs besides the message.
pub struct Context<'a> {
    pub cfg: &'a Loaded,
    pub log: &'a Syslog,
    pub verbose: bool,
    dns: Option<Dns>,
    dns_err: Option<String>,
    pub pool: Option<Pool>,
    tls: Option<crate::deliver::smtp::tls::TlsContext>,
}

impl<'a> Context<'a> {
    pub fn new(cfg: &'a Loaded, log: &'a Syslog, verbose: bool, reuse: bool) -> Context<'a> {
        Context {
            cfg,
            log,
            verbose,
            dns: None,
            dns_err: None,
            pool: reuse.then(Pool::default),
            tls: None,
        }
    }

    /// The resolver, created on first use (a relay-only run never needs it).
    pub fn dns(&mut self) -> Option<&Dns> {
        if self.dns.is_none() && self.dns_err.is_none() {
            match Dns::new(&self.cfg.nameservers, std::time::Duration::from_secs(5)) {
                Ok(d) => self.dns = Some(d),
                Err(e) => self.dns_err = Some(e.to_string()),
            }
        }
        self.dns.as_ref()
    }

    fn init_tls(&mut self) -> Result<(), String> {
        if self.tls.is_none() {
            self.tls = Some(
                crate::deliver::smtp::tls::TlsContext::new(self.cfg).map_err(|e| e.to_string())?,
            );
        }
        Ok(())
    }
}

/// Why one try of one address did not settle every recipient.
enum TryError {
    /// Try the next address/host; the reason applies to every remaining recipient.
    Next {
        why: String,
        permanent: bool,
        local: bool,
    },
    /// Stop trying for this destination; the remaining recipients get `why`.
    Stop { why: String, permanent: bool },
}

/// Deliver the pending recipients of `msg`. Updates the recipients' states,
/// attempts and retry time in `msg.env` (not saved).
pub fn deliver(ctx: &mut Context, msg: &mut Locked) -> Report {
    let env = &msg.env;
    let identity = env.identity.clone();
    let pending: Vec<(usize, String)> = env
        .recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| r.state == RcptState::Pending)
        .map(|(i, r)| (i, r.addr.clone()))
        .collect();
    let mut outcomes: HashMap<usize, (Outcome, Option<SocketAddr>, Option<String>)> =
        HashMap::new();
    let mut report = Report::default();
    if let Err(why) = msg.check_size() {
        ctx.log.err(&format!("{}: {why}", msg.env.id));
        report.local_errors.push(why.clone());
        for (i, _) in &pending {
            outcomes.insert(*i, (Outcome::Deferred(why.clone()), None, None));
        }
    }

    let relay = crate::deliver::route::relay_for(ctx.cfg, &identity).cloned();
    let sources = if !outcomes.is_empty() {
        Vec::new()
    } else {
        match resolve_sources(ctx, &identity) {
            Ok(s) => s,
            Err(why) => {
                for (i, _) in &pending {
                    outcomes.insert(*i, (Outcome::Deferred(why.clone()), None, None));
                }
                report.local_errors.push(why);
                Vec::new()
            }
        }
    };
    if outcomes.is_empty() {
        let families = crate::deliver::route::families(&sources);
        let v6_first = ctx.cfg.cfg.prefer == crate::config::conf::Prefer::Ipv6;
        let mx_port = ctx.cfg.cfg.mx_port;
        let needs_dns = relay
            .as_ref()
            .map(|r| r.host.parse::<IpAddr>().is_err())
            .unwrap_or(true);
        let (dests, bad) = {
            let dns = if needs_dns { ctx.dns() } else { None };
            let router = Router {
                dns,
                mx_port,
                v6_first,
                families,
            };
            router.plan(&pending, relay.as_ref())
        };
        for u in bad {
            let o = if u.permanent {
                Outcome::Failed(u.why)
            } else {
                Outcome::Deferred(u.why)
            };
            outcomes.insert(u.rcpt, (o, None, None));
        }
        for d in dests {
            deliver_destination(
                ctx,
                msg,
                &identity,
                &sources,
                &d,
                &mut outcomes,
                &mut report,
            );
        }
    }

    // Record outcomes in the envelope, log each recipient.
    let now = unix_now();
    let delay_precise = precise_delay(&msg.env);
    let mut any_deferred = false;
    for (i, r) in msg.env.recipients.iter_mut().enumerate() {
        let Some((o, src, relay_name)) = outcomes.remove(&i) else {
            continue;
        };
        r.tries += 1;
        let (status, detail) = match &o {
            Outcome::Sent(d) => {
                r.state = RcptState::Sent;
                report.sent.push((r.addr.clone(), d.clone()));
                ("sent", d.clone())
            }
            Outcome::Deferred(d) => {
                any_deferred = true;
                report.deferred.push((r.addr.clone(), d.clone()));
                ("deferred", d.clone())
            }
            Outcome::Failed(d) => {
                r.state = RcptState::Failed;
                report.failed.push((r.addr.clone(), d.clone()));
                ("failed", d.clone())
            }
        };
        r.reply = Some(detail.clone());
        ctx.log.info(&attempt_line(&Attempt {
            queue_id: &msg.env.id,
            uid: identity.uid,
            user: &identity.login,
            identity: &identity.sender,
            src,
            to: &r.addr,
            relay: relay_name.as_deref(),
            delay: delay_precise,
            status,
            detail: &detail,
        }));
    }
    msg.env.attempts += 1;
    msg.env.last_try = now;
    if any_deferred {
        msg.env.next_try = now + backoff(ctx.cfg, msg.env.attempts).as_secs();
    }
    report
}

/// Seconds since the message arrived.
fn precise_delay(env: &crate::spool::envelope::Envelope) -> f64 {
    let now = crate::base::clock::unix_ms();
    let arrived = if env.arrival_ms > 0 {
        env.arrival_ms
    } else {
        env.created * 1000
    };
    now.saturating_sub(arrived) as f64 / 1000.0
}

/// retry_min doubled per attempt, capped at retry_max.
pub fn backoff(cfg: &Loaded, attempts: u32) -> std::time::Duration {
    let base = cfg.retry_min.as_secs().max(1);
    let factor = 1u64 << attempts.saturating_sub(1).min(20);
    std::time::Duration::from_secs(
        base.saturating_mul(factor)
            .min(cfg.retry_max.as_secs().max(base)),
    )
}

/// The identity's source addresses; a `source_host` is resolved now.
fn resolve_sources(ctx: &mut Context, id: &Identity) -> Result<Vec<IpAddr>, String> {
    let Some(h) = &id.source_host else {
        return Ok(id.sources.clone());
    };
    let Some(dns) = ctx.dns() else {
        return Err(format!(
            "cannot resolve source host {h} (identity {}): no resolver",
            id.sender
        ));
    };
    let mut v = dns.addrs(h, true, true, true).map_err(|e| {
        format!(
            "cannot resolve source host {h} (identity {}): {e}",
            id.sender
        )
    })?;
    // Never bind a link-local address picked up by a name.
    v.retain(|ip| !matches!(ip, IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80));
    if v.is_empty() {
        return Err(format!(
            "source host {h} (identity {}) has no address",
            id.sender
        ));
    }
    Ok(v)
}

#[allow(clippy::too_many_arguments)]
fn deliver_destination(
    ctx: &mut Context,
    msg: &Locked,
    identity: &Identity,
    sources: &[IpAddr],
    dest: &Destination,
    outcomes: &mut HashMap<usize, (Outcome, Option<SocketAddr>, Option<String>)>,
    report: &mut Report,
) {
    let mut remaining: Vec<usize> = dest.rcpts.clone();
    let mut last: Option<(String, bool)> = None;
    'hosts: for host in &dest.hosts {
        for addr in &host.addrs {
            if remaining.is_empty() {
                break 'hosts;
            }
            match try_address(
                ctx, msg, identity, sources, dest, &host.name, *addr, &remaining, outcomes,
            ) {
                Ok(left) => {
                    remaining = left;
                    // The session ran; a different address of the same host won't do better.
                    continue 'hosts;
                }
                Err(TryError::Next {
                    why,
                    permanent,
                    local,
                }) => {
                    if local && !report.local_errors.contains(&why) {
                        report.local_errors.push(why.clone());
                    }
                    last = Some((why, permanent));
                }
                Err(TryError::Stop { why, permanent }) => {
                    last = Some((why, permanent));
                    break 'hosts;
                }
            }
        }
    }
    let (why, permanent) = last.unwrap_or_else(|| ("no host could be reached".into(), false));
    for i in remaining {
        if outcomes
            .get(&i)
            .is_some_and(|(o, _, _)| !matches!(o, Outcome::Deferred(_)))
        {
            continue;
        }
        if outcomes.contains_key(&i) && !permanent {
            continue; // keep the recipient's own deferral reply
        }
        let o = if permanent {
            Outcome::Failed(why.clone())
        } else {
            Outcome::Deferred(why.clone())
        };
        outcomes.insert(i, (o, None, Some(dest.name.clone())));
    }
}

/// Try one address. `Ok(left)`: the transaction ran; `left` are the
/// recipients deferred by it (to try at the next host).
#[allow(clippy::too_many_arguments)]
fn try_address(
    ctx: &mut Context,
    msg: &Locked,
    identity: &Identity,
    sources: &[IpAddr],
    dest: &Destination,
    host_name: &str,
    addr: SocketAddr,
    remaining: &[usize],
    outcomes: &mut HashMap<usize, (Outcome, Option<SocketAddr>, Option<String>)>,
) -> Result<Vec<usize>, TryError> {
    let env = &msg.env;
    let relay_user = dest.relay.as_ref().and_then(|r| r.user.clone());
    let candidates = connect::candidates(sources, &addr);
    if candidates.is_empty() {
        return Err(TryError::Next {
            why: format!(
                "identity {} has no source address of {}'s family",
                identity.sender, addr
            ),
            permanent: false,
            local: false,
        });
    }
    // Reuse a pooled session when one matches.
    let mut session: Option<Session> = None;
    let mut connect_time = unix_now();
    if let Some(pool) = ctx.pool.as_mut() {
        for src in &candidates {
            let key = (*src, addr, identity.helo.clone(), relay_user.clone());
            if let Some((mut s, t)) = pool.sessions.remove(&key)
                && s.rset().is_ok()
            {
                connect_time = t;
                session = Some(s);
                break;
            }
        }
    }
    let mut session = match session {
        Some(s) => s,
        None => {
            // Connections that fail after connect get their audit record too.
            let mut opened = Vec::new();
            let r = open_session(
                ctx,
                identity,
                &candidates,
                dest,
                host_name,
                addr,
                &mut connect_time,
                &mut opened,
            );
            let failure = match &r {
                Ok(_) => None,
                Err(TryError::Next { why, permanent, .. } | TryError::Stop { why, permanent }) => {
                    Some((why.as_str(), *permanent))
                }
            };
            crate::account::audit::sessions_failed(ctx.cfg, env, &opened, failure, remaining.len());
            r?
        }
    };
    let src = Some(session.local);
    let peer_name = session.peer_name.clone();

    let from = crate::sign::batv::envelope_sender(&env.sender, identity, ctx.cfg);
    let rcpts: Vec<String> = remaining
        .iter()
        .map(|i| env.recipients[*i].addr.clone())
        .collect();
    let orcpts: Vec<Option<String>> = remaining
        .iter()
        .map(|i| env.recipients[*i].orig.clone())
        .collect();
    let tx = Transaction {
        from: &from,
        rcpts: &rcpts,
        orcpts: &orcpts,
        size: env.size,
        eightbit: env.eightbit,
        smtputf8: env.smtputf8,
        utf8_headers: env.utf8_headers,
        dsn: &env.dsn,
        prepend: env.prepend.as_bytes(),
    };
    let mut body = match msg.open_message() {
        Ok(f) => std::io::BufReader::with_capacity(64 * 1024, f),
        Err(e) => {
            session.quit();
            return Err(TryError::Stop {
                why: e.to_string(),
                permanent: false,
            });
        }
    };
    // Without a pool this is the session's only transaction.
    session.last_transaction = ctx.pool.is_none();
    let result = session.send(&tx, &mut body);
    let close_time = unix_now();
    let audit = |result_text: &str, rcpt_count: usize| {
        crate::account::audit::append(
            ctx.cfg,
            &crate::account::audit::Record {
                connect: connect_time,
                close: close_time,
                uid: identity.uid,
                user: identity.login.clone(),
                identity: identity.sender.clone(),
                src: session.local,
                dst: addr,
                queue_id: env.id.clone(),
                message_id: env.message_id.clone().unwrap_or_default(),
                rcpts: rcpt_count,
                result: result_text.to_string(),
            },
        )
    };
    match result {
        Ok(out) => {
            let mut left = Vec::new();
            let mut sent = 0;
            let mut first: Option<String> = None;
            for (k, idx) in remaining.iter().enumerate() {
                let rr = &out.rcpts[k];
                let rcpt_step = format!("RCPT TO:<{}>", rcpts[k]);
                let o = if !rr.is_positive() {
                    let text = format!("{rcpt_step} rejected by {peer_name}: {rr}");
                    if rr.is_permanent() {
                        Outcome::Failed(text)
                    } else {
                        left.push(*idx);
                        Outcome::Deferred(text)
                    }
                } else {
                    match &out.data {
                        Some(d) if d.is_positive() => {
                            sent += 1;
                            Outcome::Sent(d.to_string())
                        }
                        Some(d) if d.is_permanent() => Outcome::Failed(format!(
                            "message rejected by {peer_name} after end of data: {d}"
                        )),
                        Some(d) => {
                            left.push(*idx);
                            Outcome::Deferred(format!(
                                "message deferred by {peer_name} after end of data: {d}"
                            ))
                        }
                        None => {
                            left.push(*idx);
                            Outcome::Deferred("no reply to end of data".into())
                        }
                    }
                };
                first.get_or_insert_with(|| match &o {
                    Outcome::Sent(d) => format!("sent ({d})"),
                    Outcome::Deferred(d) => format!("deferred ({d})"),
                    Outcome::Failed(d) => format!("failed ({d})"),
                });
                outcomes.insert(*idx, (o, src, Some(peer_name.clone())));
            }
            // The record says "sent" when the message went to anyone, else the
            // first recipient's outcome (there is at least one recipient).
            let summary = match (&out.data, sent) {
                (Some(d), 1..) => format!("sent ({d})"),
                _ => first.unwrap_or_default(),
            };
            audit(&summary, if sent > 0 { sent } else { remaining.len() });
            // Pooled under the source it was opened from (None: the kernel's).
            let key = (
                candidates[0].map(|_| session.local.ip()),
                addr,
                identity.helo.clone(),
                relay_user,
            );
            keep_or_quit(ctx, session, key, connect_time);
            Ok(left)
        }
        Err(e) => {
            let permanent = e.is_permanent();
            let status = if permanent { "failed" } else { "deferred" };
            audit(&format!("{status} ({e})"), remaining.len());
            let why = e.to_string();
            // MAIL or DATA refused permanently, or a refusal of ours: final for all.
            let stop = permanent
                || matches!(&e, SmtpError::Io { step, .. } | SmtpError::Timeout { step, .. } if step == "end of data" || step == "message data");
            // A session that still talks is ended politely; a broken one is dropped.
            if !matches!(e, SmtpError::Io { .. } | SmtpError::Timeout { .. }) {
                session.quit();
            }
            for idx in remaining {
                outcomes.insert(
                    *idx,
                    (
                        if permanent {
                            Outcome::Failed(why.clone())
                        } else {
                            Outcome::Deferred(why.clone())
                        },
                        src,
                        Some(peer_name.clone()),
                    ),
                );
            }
            if stop {
                Err(TryError::Stop { why, permanent })
            } else {
                Err(TryError::Next {
                    why,
                    permanent,
                    local: false,
                })
            }
        }
    }
}

fn keep_or_quit(ctx: &mut Context, mut session: Session, key: PoolKey, connect_time: u64) {
    match ctx.pool.as_mut() {
        Some(pool) => {
            pool.sessions.insert(key, (session, connect_time));
        }
        None => session.quit(),
    }
}

/// Connect from the first candidate source that binds, then greet, TLS, AUTH.
///
/// TLS follows `smtp::tls`'s policy; a relay with credentials (its URL names a
/// user, or the secrets file has a line for it) raises `opportunistic` to
/// `required`, so credentials never travel unencrypted: a relay that offers no
/// STARTTLS is then a temporary failure (the message stays queued). A failed
/// opportunistic handshake is retried once on a new connection without TLS.
/// `opened` gets (local, peer, connect time) of every connection made.
#[allow(clippy::too_many_arguments)]
fn open_session(
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
    let policy = tls::policy_for(ctx.cfg, dest);
    if let Err(e) = ctx.init_tls() {
        return Err(TryError::Stop {
            why: e,
            permanent: false,
        });
    }
    let next = |why: String, permanent: bool| TryError::Next {
        why,
        permanent,
        local: false,
    };
    for plain_retry in [false, true] {
        let mut conn = None;
        for src in candidates {
            match connect::connect(*src, addr, timeouts.connect(), &identity.sender) {
                Ok(c) => {
                    conn = Some(c);
                    break;
                }
                Err(e @ (ConnectError::NotConfigured { .. } | ConnectError::Bind { .. })) => {
                    last_local = Some(e.to_string());
                    continue;
                }
                Err(e) => {
                    let local = e.is_local();
                    return Err(TryError::Next {
                        why: e.to_string(),
                        permanent: false,
                        local,
                    });
                }
            }
        }
        let Some(conn) = conn else {
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
        let tls_ctx = ctx.tls.as_ref().expect("initialised above");
        let mut implicit_info = None;
        let stream = if implicit_tls {
            let (st, info) =
                tls::implicit(conn.stream, host_name, tls_ctx, policy, timeouts.greeting())
                    .map_err(|e| next(e.to_string(), false))?;
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
        .map_err(|e| next(e.to_string(), e.is_permanent()))?;
        if let Some(info) = implicit_info {
            s.tls = true;
            tls_note(ctx, &info.describe(&s.peer_name), false);
        } else {
            match tls::starttls(
                &mut s,
                host_name,
                tls_ctx,
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
                    return Err(next(e.to_string(), false));
                }
                // The connection is unusable (broken TLS, timeout): no QUIT.
                Err(e) => return Err(next(e.to_string(), false)),
            }
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

/// A TLS or AUTH event: to syslog, and to stderr with `-v`.
fn tls_note(ctx: &Context, text: &str, warning: bool) {
    if ctx.verbose {
        eprintln!("*** {text}");
    }
    if warning {
        ctx.log.warning(text);
    } else {
        ctx.log.info(text);
    }
}
