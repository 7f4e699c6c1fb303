//! Suspensions: which users may not send now, why, since when and who said
//! so. One file per login, `<spool>/suspended/<login>` (bytes outside
//! `[a-z0-9@._+-]` as `%XX`), one JSON object `{"v":1,"login","since" (Unix
//! seconds),"reason","by","action" ("refuse"|"hold"),"breaker" (set by the
//! circuit breaker),"until" (Unix seconds when a breaker cooldown lifts it;
//! 0: never by itself)}`, mode 0660 in a 2770 directory of the spool's
//! group. A file is complete when it parses; it is written to a temporary
//! name and renamed, so a reader sees the old one or the new one. The file
//! existing is the suspension: a submission checks it with one `open`.
//! Set by `--suspend` (root and `trusted_users`) and by the breaker (under
//! the identity's breaker lock, which makes the trip happen once); lifted by
//! `--unsuspend` or, for a breaker suspension with a cooldown, by the first
//! submission or queue run after `until`.

use crate::base::clock::unix_now;
use crate::config::conf::{Loaded, SuspendAction};
use crate::spool::shared::{self, Access};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;

/// One suspension.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Suspension {
    #[serde(default)]
    pub v: u32,
    pub login: String,
    pub since: u64,
    pub reason: String,
    pub by: String,
    pub action: SuspendAction,
    #[serde(default)]
    pub breaker: bool,
    #[serde(default)]
    pub until: u64,
}

fn dir(cfg: &Loaded) -> PathBuf {
    cfg.cfg.spool.join("suspended")
}

fn path(cfg: &Loaded, login: &str) -> PathBuf {
    dir(cfg).join(crate::account::rate::key(login))
}

/// The user's suspension, if any. A breaker suspension whose cooldown has
/// passed is lifted now (and `None` returned).
pub fn get(cfg: &Loaded, login: &str) -> Option<Suspension> {
    read(cfg, login, true)
}

/// [`get`], logging nothing (for callers that hold a lock).
pub fn peek(cfg: &Loaded, login: &str) -> Option<Suspension> {
    read(cfg, login, false)
}

fn read(cfg: &Loaded, login: &str, log: bool) -> Option<Suspension> {
    let p = path(cfg, login);
    let data = std::fs::read(&p).ok()?;
    let s: Suspension = serde_json::from_slice(&data).ok()?;
    if s.breaker && s.until > 0 && unix_now() >= s.until {
        let _ = std::fs::remove_file(&p);
        if log {
            let log = crate::base::syslog::Syslog::open(&cfg.cfg.syslog_socket, "vsendmail");
            log.info(&format!(
                "user={} breaker suspension lifted by its cooldown",
                crate::base::syslog::value(login)
            ));
        }
        return None;
    }
    Some(s)
}

/// Write (or replace) a suspension.
pub fn set(cfg: &Loaded, s: &Suspension) -> std::io::Result<()> {
    let d = dir(cfg);
    let final_path = path(cfg, &s.login);
    let tmp = d.join(format!(
        ".{}.{}",
        crate::account::rate::key(&s.login),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let f = shared::open(&d, &tmp, shared::spool_gid(cfg), Access::ReadWrite)?;
    let mut data = serde_json::to_vec(s).map_err(std::io::Error::other)?;
    data.push(b'\n');
    (&f).write_all(&data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &final_path)
}

/// Lift a suspension; false when there was none.
pub fn lift(cfg: &Loaded, login: &str) -> std::io::Result<bool> {
    match std::fs::remove_file(path(cfg, login)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Every suspension, oldest first.
pub fn list(cfg: &Loaded) -> Vec<Suspension> {
    let Ok(rd) = std::fs::read_dir(dir(cfg)) else {
        return Vec::new();
    };
    let mut v: Vec<Suspension> = rd
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|d| serde_json::from_slice::<Suspension>(&d).ok())
        .filter(|s| get(cfg, &s.login).is_some())
        .collect();
    v.sort_by(|a, b| (a.since, &a.login).cmp(&(b.since, &b.login)));
    v
}

/// Create the directory (as root, in queue runs), so no user owns it.
pub fn prepare(cfg: &Loaded) {
    let d = dir(cfg);
    if !d.is_dir() {
        let probe = d.join(".probe");
        if shared::open(&d, &probe, shared::spool_gid(cfg), Access::ReadWrite).is_ok() {
            let _ = std::fs::remove_file(probe);
        }
    }
}

impl Suspension {
    /// What a refused sender hears (after `vsendmail: `).
    pub fn refusal(&self) -> String {
        format!(
            "sending is suspended for {} since {} ({}); contact the administrator",
            self.login,
            crate::base::clock::rfc3339_utc(self.since as i64),
            crate::base::attribution::clean(&self.reason)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_list_lift_and_cooldown() {
        let dir = std::env::temp_dir().join(format!(
            "vs-susp-{}-{}",
            std::process::id(),
            crate::base::clock::unix_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = crate::config::conf::parse(
            &format!(
                "spool = \"{}\"\nsyslog_socket = \"/nonexistent\"\n",
                dir.display()
            ),
            std::path::Path::new("t.conf"),
        )
        .unwrap();
        let mut s = Suspension {
            v: 1,
            login: "alice".into(),
            since: 1,
            reason: "r".into(),
            by: "root".into(),
            action: SuspendAction::Hold,
            breaker: false,
            until: 0,
        };
        set(&cfg, &s).unwrap();
        assert_eq!(get(&cfg, "alice"), Some(s.clone()));
        assert_eq!(list(&cfg).len(), 1);
        assert!(lift(&cfg, "alice").unwrap());
        assert!(!lift(&cfg, "alice").unwrap());
        // A breaker suspension whose cooldown has passed lifts itself.
        s.breaker = true;
        s.until = 2;
        set(&cfg, &s).unwrap();
        assert_eq!(peek(&cfg, "alice"), None);
        assert!(list(&cfg).is_empty());
        s.until = unix_now() + 3600;
        set(&cfg, &s).unwrap();
        assert!(get(&cfg, "alice").is_some(), "not yet");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
