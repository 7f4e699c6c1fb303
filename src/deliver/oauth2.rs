//! OAuth2 access tokens for relay AUTH (XOAUTH2, OAUTHBEARER): the
//! refresh-token grant (RFC 6749 section 6) over `deliver::https`, a cache
//! per relay account in `<spool>/oauth2/` (the access token, its expiry, the
//! refresh token the endpoint rotated to), and one refresh at a time under
//! `flock` on that file, waited for at most `LOCK_WAIT`, so that concurrent
//! senders refresh once and the others read the new token.
//!
//! Secrets stay in this module, the secrets file and the cache: errors name
//! the token endpoint, the account and the secrets line, never a token or
//! the client secret. The cache holds secrets only when root owns it (root's
//! runs create it 0660, group vsendmail, in a directory only root makes); a
//! file a user's run created would be that user's to read, so such a file
//! serves as the lock only, and root's next run replaces it. Queue runs
//! create every oauth2 line's file ([`prepare`]); a split delivery's parent
//! opens the files of its relays before the fork ([`hold`]).

use crate::base::clock::unix_now;
use crate::config::secrets::{Credentials, OAuth};
use crate::deliver::context::Context;
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

/// How long a sender waits for another one's refresh.
const LOCK_WAIT: Duration = Duration::from_secs(30);
/// A token this close to its expiry is refreshed first.
const MARGIN: u64 = 60;

/// Why no token could be had.
#[derive(Debug)]
pub enum TokenError {
    /// Try again later (the endpoint unreachable, a 5xx, the lock busy).
    Temporary(String),
    /// The endpoint refused the refresh (`invalid_grant`, a bad client):
    /// an admin must renew what the message names.
    Refused(String),
}

#[derive(Serialize, Deserialize, Default)]
struct Cache {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires: u64,
    /// The refresh token as rotated by the endpoint (else the secrets line's).
    #[serde(default)]
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct Grant {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// An access token for `creds`. `stale`: the relay refused this token, so a
/// cached copy of it is not to be used again (another sender's newer one is).
pub fn token(
    ctx: &mut Context,
    creds: &Credentials,
    oauth: &OAuth,
    relay_host: &str,
    stale: Option<&str>,
) -> Result<String, TokenError> {
    let dir = ctx.cfg.cfg.spool.join("oauth2");
    let path = cache_path(ctx.cfg, relay_host, creds, oauth);
    let gid = crate::spool::shared::spool_gid(ctx.cfg);
    let opened = match held(&path) {
        Some(f) => Ok(f),
        None => open_cache(&dir, &path, gid),
    };
    let mut f = match opened {
        Ok(f) => f,
        Err(e) => {
            // No cache (its directory is root's to make): refresh for this
            // send only, rather than not send.
            ctx.log.warning(&format!(
                "OAuth2 token cache {}: {e}; refreshing without it",
                path.display()
            ));
            let refresh = oauth.refresh_token().to_string();
            return refresh_grant(ctx, creds, oauth, &refresh).map(|g| g.access_token);
        }
    };
    lock(&f).map_err(TokenError::Temporary)?;
    // Secrets only in a file root owns (see the module documentation).
    let keeps_secrets = f
        .metadata()
        .is_ok_and(|m| m.uid() == 0 && m.mode() & 0o007 == 0);
    let mut cache: Cache = if keeps_secrets {
        let mut text = String::new();
        let _ = (&f).take(64 * 1024).read_to_string(&mut text);
        serde_json::from_str(&text).unwrap_or_default()
    } else {
        Cache::default()
    };
    let now = unix_now();
    if !cache.access_token.is_empty()
        && cache.expires > now + MARGIN
        && stale != Some(cache.access_token.as_str())
    {
        return Ok(cache.access_token);
    }
    let refresh = cache
        .refresh_token
        .clone()
        .unwrap_or_else(|| oauth.refresh_token().to_string());
    let grant = refresh_grant(ctx, creds, oauth, &refresh)?;
    cache.access_token = grant.access_token.clone();
    cache.expires = now + grant.expires_in.unwrap_or(3600);
    if let Some(r) = grant.refresh_token.filter(|r| !r.is_empty()) {
        cache.refresh_token = Some(r);
    }
    if keeps_secrets {
        let text = serde_json::to_vec(&cache).expect("cache serialises");
        let ok = f.set_len(0).is_ok()
            && f.rewind().is_ok()
            && f.write_all(&text).is_ok()
            && f.sync_data().is_ok();
        if !ok {
            ctx.log.warning(&format!(
                "OAuth2 token cache {}: cannot write it; the next send refreshes again",
                path.display()
            ));
        }
    }
    Ok(grant.access_token)
}

/// The cache file of one relay account.
fn cache_path(
    cfg: &crate::config::conf::Loaded,
    relay_host: &str,
    creds: &Credentials,
    oauth: &OAuth,
) -> std::path::PathBuf {
    let name = crate::deliver::smtp::relay_tls::fingerprint(
        format!("{relay_host}\0{}\0{}", creds.user, oauth.token_url).as_bytes(),
    );
    let file_name: String = name[..12].iter().map(|b| format!("{b:02x}")).collect();
    cfg.cfg
        .spool
        .join("oauth2")
        .join(format!("{file_name}.json"))
}

/// Cache files opened before the set-gid process gave up its group
/// (`deliver::privsep`): the network child refreshes and rewrites them
/// through these descriptors.
static HELD: std::sync::Mutex<Vec<(std::path::PathBuf, std::fs::File)>> =
    std::sync::Mutex::new(Vec::new());

fn held(path: &std::path::Path) -> Option<std::fs::File> {
    let held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    held.iter()
        .find(|(p, _)| p == path)
        .and_then(|(_, f)| f.try_clone().ok())
}

/// Open now, with the group, the cache file of every OAuth2 account of
/// `relays` (their secrets lines already held), for the network child.
pub fn hold(cfg: &crate::config::conf::Loaded, relays: &[&crate::base::relay::Relay]) {
    let Ok(Some(secrets)) = crate::config::secrets::Secrets::load(&cfg.cfg.secrets) else {
        return;
    };
    let dir = cfg.cfg.spool.join("oauth2");
    let gid = crate::spool::shared::spool_gid(cfg);
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    for r in relays {
        let Some(c) = secrets.lookup(&r.host, r.port(), r.user.as_deref()) else {
            continue;
        };
        let Some(o) = &c.oauth else { continue };
        let host = r.host.trim_start_matches('[').trim_end_matches(']');
        let path = cache_path(cfg, host, c, o);
        if held.iter().any(|(p, _)| *p == path) {
            continue;
        }
        if let Ok(f) = open_cache(&dir, &path, gid) {
            held.push((path, f));
        }
    }
}

/// Create (as root, in queue runs) the cache file of every OAuth2 line of
/// the secrets file, so that it is root's and may keep tokens even when a
/// user's send is the first to use it.
pub fn prepare(cfg: &crate::config::conf::Loaded) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let Ok(Some(secrets)) = crate::config::secrets::Secrets::load(&cfg.cfg.secrets) else {
        return;
    };
    let dir = cfg.cfg.spool.join("oauth2");
    let gid = crate::spool::shared::spool_gid(cfg);
    for (host, c) in secrets.accounts() {
        if let Some(o) = &c.oauth {
            let _ = open_cache(&dir, &cache_path(cfg, host, c, o), gid);
        }
    }
}

/// Open (root: create, replacing a file a user's run made) the cache file.
fn open_cache(
    dir: &std::path::Path,
    path: &std::path::Path,
    gid: Option<u32>,
) -> std::io::Result<std::fs::File> {
    use crate::spool::shared::{Access, open};
    let f = open(dir, path, gid, Access::ReadWrite)?;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root && f.metadata()?.uid() != 0 {
        drop(f);
        std::fs::remove_file(path)?;
        return open(dir, path, gid, Access::ReadWrite);
    }
    Ok(f)
}

/// `flock(LOCK_EX)`, polled for at most `LOCK_WAIT`: a stopped sender that
/// holds it makes the others defer, not hang.
fn lock(f: &std::fs::File) -> Result<(), String> {
    let end = Instant::now() + LOCK_WAIT;
    loop {
        // SAFETY: flock on a valid descriptor we own.
        if unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(f),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        } == 0
        {
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(format!(
                "another sender has been refreshing the OAuth2 token for {}s; will retry",
                LOCK_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The refresh-token grant.
fn refresh_grant(
    ctx: &mut Context,
    creds: &Credentials,
    oauth: &OAuth,
    refresh: &str,
) -> Result<Grant, TokenError> {
    let url = url::Url::parse(&oauth.token_url)
        .map_err(|e| TokenError::Refused(format!("token_url on {}: {e}", creds.location)))?;
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = if let Ok(ip) = host.parse::<IpAddr>() {
        vec![SocketAddr::new(ip, port)]
    } else {
        let Some(dns) = ctx.dns() else {
            return Err(TokenError::Temporary(format!(
                "cannot resolve the OAuth2 token endpoint {host}: no resolver"
            )));
        };
        dns.addrs(&host, true, true, true)
            .map_err(|e| {
                TokenError::Temporary(format!(
                    "cannot resolve the OAuth2 token endpoint {host}: {e}"
                ))
            })?
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect()
    };
    ctx.init_tls().map_err(TokenError::Temporary)?;
    let tls = ctx.tls.as_ref().expect("initialised above");
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("client_id", oauth.client_id.as_str()),
    ];
    if !oauth.client_secret().is_empty() {
        form.push(("client_secret", oauth.client_secret()));
    }
    if let Some(s) = &oauth.scope {
        form.push(("scope", s.as_str()));
    }
    let req = crate::deliver::https::Request {
        url: &oauth.token_url,
        addrs: &addrs,
        timeout: crate::deliver::smtp::session::bounded(ctx.cfg.cfg.timeouts.command()),
        max_body: 64 * 1024,
    };
    let a = crate::deliver::https::post_form(tls, &req, &form).map_err(|e| {
        TokenError::Temporary(format!(
            "OAuth2 token refresh for {}: {e}; will retry",
            creds.user
        ))
    })?;
    if a.status == 200 {
        return serde_json::from_slice::<Grant>(&a.body)
            .ok()
            .filter(|g| !g.access_token.is_empty())
            .ok_or_else(|| {
                TokenError::Temporary(format!(
                    "OAuth2 token endpoint {} answered without an access_token; will retry",
                    oauth.token_url
                ))
            });
    }
    // The error code only (RFC 6749 5.2): the description may echo input.
    let code = serde_json::from_slice::<serde_json::Value>(&a.body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .map(|c| crate::base::address::printable(&c))
        .unwrap_or_else(|| "no error code".into());
    // 408 and 429 (timeout, rate limit) say "later", every other 4xx "no".
    if (400..500).contains(&a.status) && a.status != 408 && a.status != 429 {
        return Err(TokenError::Refused(format!(
            "the OAuth2 token endpoint {} refused the refresh for {} (HTTP {}, {code}): renew the refresh token (or the client id and secret) on {} (see OAUTH2 in vsendmail.conf(5)); the message is not retried",
            oauth.token_url, creds.user, a.status, creds.location
        )));
    }
    Err(TokenError::Temporary(format!(
        "OAuth2 token endpoint {} answered HTTP {} ({code}); will retry",
        oauth.token_url, a.status
    )))
}
