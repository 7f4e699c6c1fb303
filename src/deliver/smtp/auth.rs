//! SMTP AUTH to relays (RFC 4954): PLAIN, else LOGIN, with credentials from
//! the secrets file (`crate::config::secrets`); OAUTHBEARER or XOAUTH2 with
//! an OAuth2 access token (`deliver::oauth2` gets it); EXTERNAL for a TLS
//! client certificate. Credentials are sent only over TLS, to a verified or
//! pinned certificate (`smtp::relay_tls`).
//! Secrets never reach the `-v` transcript (`AUTH PLAIN ****`), logs or
//! error messages: replies are quoted, what we sent never is.
//!
//! Outcomes: `235` authenticated; a 5xx reply (`535` bad credentials) is a
//! permanent failure of the message, which says so; a 4xx reply or a lost
//! connection is temporary. A relay that offers no AUTH gets none (as Postfix
//! does): the caller logs that and goes on.

use super::reply::Reply;
use super::session::{Session, SmtpError};
use crate::config::secrets::Credentials;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// The mechanisms we speak, in order of preference.
pub const MECHANISMS: [&str; 2] = ["PLAIN", "LOGIN"];

/// Authenticate with `creds`. `Ok(Some(mechanism))` when done, `Ok(None)` when
/// the server offers no AUTH.
pub fn authenticate(
    s: &mut Session,
    creds: &Credentials,
) -> Result<Option<&'static str>, SmtpError> {
    if !s.tls {
        return Err(SmtpError::Deferred(format!(
            "not sending the credentials of {} to relay {} over an unencrypted connection; the relay must offer STARTTLS (or use smtps://)",
            creds.user, s.peer_name
        )));
    }
    if s.ext.auth.is_empty() {
        return Ok(None);
    }
    let Some(mech) = MECHANISMS
        .iter()
        .copied()
        .find(|m| s.ext.auth.iter().any(|a| a == m))
    else {
        return Err(SmtpError::Deferred(format!(
            "relay {} offers AUTH {}, vsendmail speaks {}",
            s.peer_name,
            s.ext.auth.join(" "),
            MECHANISMS.join(" and ")
        )));
    };
    let t = s.timeouts.command();
    let step = format!("AUTH {mech}");
    let reply = match mech {
        "PLAIN" => {
            let token = B64.encode(format!("\0{}\0{}", creds.user, creds.password()));
            s.command_shown(&format!("AUTH PLAIN {token}"), "AUTH PLAIN ****", t)
                .map_err(|e| rename(e, &step))?
        }
        _ => {
            let r = s.command("AUTH LOGIN", t)?;
            if r.code != 334 {
                return Err(failed(s, creds, &step, r));
            }
            let user = B64.encode(&creds.user);
            let r = s.command(&user, t).map_err(|e| rename(e, &step))?;
            if r.code != 334 {
                return Err(failed(s, creds, &step, r));
            }
            let pass = B64.encode(creds.password());
            s.command_shown(&pass, "****", t)
                .map_err(|e| rename(e, &step))?
        }
    };
    if reply.code == 235 {
        return Ok(Some(mech));
    }
    if reply.code == 334 {
        // A challenge we did not expect: cancel the exchange (RFC 4954 4).
        let _ = s.command("*", t);
    }
    Err(failed(s, creds, &step, reply))
}

/// AUTH with an OAuth2 access token: `OAUTHBEARER` (RFC 7628) when the
/// relay offers it, else `XOAUTH2` (Google's and Microsoft's). The token is
/// shown as `****`. A refusal is `SmtpError::Refused` (the caller refreshes
/// the token once and tries again) or, for a 4xx, `Deferred`.
pub fn oauth(
    s: &mut Session,
    creds: &Credentials,
    token: &str,
    (host, port): (&str, u16),
) -> Result<&'static str, SmtpError> {
    if !s.tls {
        return Err(SmtpError::Deferred(format!(
            "not sending the OAuth2 token of {} to relay {} over an unencrypted connection; the relay must offer STARTTLS (or use smtps://)",
            creds.user, s.peer_name
        )));
    }
    let offered = |m: &str| s.ext.auth.iter().any(|a| a == m);
    let (mech, raw) = if offered("OAUTHBEARER") {
        (
            "OAUTHBEARER",
            format!(
                "n,a={},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01",
                creds.user.replace('=', "=3D").replace(',', "=2C")
            ),
        )
    } else if offered("XOAUTH2") {
        (
            "XOAUTH2",
            format!("user={}\x01auth=Bearer {token}\x01\x01", creds.user),
        )
    } else {
        return Err(SmtpError::Deferred(format!(
            "relay {} offers AUTH {}, but the secrets line {} is for OAuth2 (OAUTHBEARER or XOAUTH2)",
            s.peer_name,
            s.ext.auth.join(" "),
            creds.location
        )));
    };
    let t = s.timeouts.command();
    let step = format!("AUTH {mech}");
    let mut reply = s
        .command_shown(
            &format!("{step} {}", B64.encode(raw)),
            &format!("{step} ****"),
            t,
        )
        .map_err(|e| rename(e, &step))?;
    if reply.code == 334 {
        // The error challenge (a JSON status): answer it to get the final reply.
        let answer = if mech == "OAUTHBEARER" { "AQ==" } else { "" };
        reply = s.command(answer, t).map_err(|e| rename(e, &step))?;
    }
    if reply.code == 235 {
        return Ok(mech);
    }
    if reply.is_permanent() {
        Err(SmtpError::Refused(format!(
            "{step} as {} rejected by relay {}: {reply}",
            creds.user, s.peer_name
        )))
    } else {
        Err(SmtpError::Deferred(format!(
            "{step} as {} at relay {}: {reply}; will retry",
            creds.user, s.peer_name
        )))
    }
}

/// `AUTH EXTERNAL` (RFC 4422 appendix A): the TLS client certificate is the
/// credential; the empty authorization identity (`=`) lets the relay derive
/// it from the certificate. A 5xx refusal is permanent, as for a password.
pub fn external(s: &mut Session) -> Result<(), SmtpError> {
    let t = s.timeouts.command();
    let reply = s.command("AUTH EXTERNAL =", t)?;
    match reply.code {
        235 => Ok(()),
        _ if reply.is_permanent() => Err(SmtpError::Refused(format!(
            "AUTH EXTERNAL rejected by relay {}: {reply}; permanent failure: the relay does not accept the client certificate of the relay URL (check its cert= and key=), the message is not retried",
            s.peer_name
        ))),
        _ => Err(SmtpError::Deferred(format!(
            "AUTH EXTERNAL at relay {}: {reply}; will retry",
            s.peer_name
        ))),
    }
}

/// The error for a refused AUTH: permanent for 5xx, temporary otherwise.
fn failed(s: &Session, creds: &Credentials, step: &str, reply: Reply) -> SmtpError {
    if reply.is_permanent() {
        SmtpError::Refused(format!(
            "{step} as {} rejected by relay {}: {reply}; permanent failure: the relay refused these credentials (check {}), the message is not retried",
            creds.user, s.peer_name, creds.location
        ))
    } else {
        SmtpError::Deferred(format!(
            "{step} as {} at relay {}: {reply}; will retry",
            creds.user, s.peer_name
        ))
    }
}

/// Name the AUTH step in timeouts and I/O errors (the shown command is masked).
fn rename(e: SmtpError, step: &str) -> SmtpError {
    match e {
        SmtpError::Timeout { peer, secs, .. } => SmtpError::Timeout {
            step: step.to_string(),
            peer,
            secs,
        },
        SmtpError::Io { peer, err, .. } => SmtpError::Io {
            step: step.to_string(),
            peer,
            err,
        },
        SmtpError::Protocol { peer, why, .. } => SmtpError::Protocol {
            step: step.to_string(),
            peer,
            why,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_token() {
        assert_eq!(B64.encode("\0bob\0pw"), "AGJvYgBwdw==");
    }
}
