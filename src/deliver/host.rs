//! One try of one address of a destination: a pooled session or a new one
//! (`open`), the SMTP transaction for the recipients still open, the audit
//! records of the connection (one written before `MAIL FROM`, without which
//! nothing is sent, and one with the outcome), and each recipient's outcome
//! from the replies, bounded (a reply's first line, `MAX_REPLY` bytes).

use crate::base::clock::unix_now;
use crate::deliver::connect;
use crate::deliver::context::{Context, PoolKey};
use crate::deliver::open::open_session;
use crate::deliver::outcome::{Outcome, Outcomes, TryError};
use crate::deliver::route::Destination;
use crate::deliver::smtp::session::{Session, SmtpError};
use crate::deliver::smtp::transaction::Transaction;
use crate::identity::profile::Identity;
use crate::spool::store::Locked;
use std::net::{IpAddr, SocketAddr};

/// Try one address. `Ok(left)`: the transaction ran; `left` are the
/// recipients deferred by it (to try at the next host).
#[allow(clippy::too_many_arguments)]
pub fn try_address(
    ctx: &mut Context,
    msg: &Locked,
    identity: &Identity,
    sources: &[IpAddr],
    dest: &Destination,
    host_name: &str,
    addr: SocketAddr,
    remaining: &[usize],
    outcomes: &mut Outcomes,
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
            if let Some((mut s, t)) = pool.sessions.remove(&key) {
                if s.rset().is_ok() {
                    connect_time = t;
                    session = Some(s);
                    break;
                }
                // An idle pooled session closed with 421 is no "slow down".
                let _ = crate::deliver::smtp::session::take_slow_down();
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
    let mut record = crate::account::audit::Record {
        connect: connect_time,
        close: connect_time,
        uid: identity.uid,
        user: identity.login.clone(),
        identity: identity.sender.clone(),
        src: session.local,
        public: identity.public_for(session.local.ip()),
        dst: addr,
        relay: dest.relay.as_ref().map(|r| r.text.clone()),
        queue_id: env.id.clone(),
        message_id: env.message_id.clone().unwrap_or_default(),
        rcpts: remaining.len(),
        result: String::new(),
        phase: crate::account::audit::Phase::Close,
        cwd: env.attribution.cwd.clone(),
        script: env.attribution.script.clone(),
    };
    // Written ahead: no MAIL FROM before the trail holds this connection.
    if let Err(why) = crate::account::audit::append_open(ctx.cfg, &record) {
        session.quit();
        return Err(TryError::Stop {
            why,
            permanent: false,
        });
    }
    // Without a pool this is the session's only transaction.
    session.last_transaction = ctx.pool.is_none();
    let result = session.send(&tx, &mut body);
    record.close = unix_now().max(connect_time);
    let audit = |result_text: &str, rcpt_count: usize| {
        crate::account::audit::append(
            ctx.cfg,
            &crate::account::audit::Record {
                rcpts: rcpt_count,
                result: result_text.to_string(),
                ..record.clone()
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
                    Outcome::Waiting(d, _) => format!("deferred ({d})"),
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
