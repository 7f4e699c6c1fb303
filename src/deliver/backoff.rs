//! Good manners towards a destination host that says "slow down": after a
//! `421`, or a `4xx` reply with enhanced code `4.7.x` (rate limiting,
//! reputation), that host is left alone from that source address for
//! `backoff` (15 minutes), doubled each time it says so again within one
//! period of the last wait, up to `retry_max`. The wait is a file in the
//! spool's `backoff/` directory (the vsendmail group's, mode 2770, as the rate
//! counters' directory: see `spool::shared`), so that every later process and
//! queue run, root's and users', respects it. A record is written whole to a
//! temporary name and renamed into place (no lock to hold, so a stopped
//! process blocks nobody); readers read it without a lock.
//!
//! Also the queue runs' cap on connections to one host
//! (`destination_concurrency`): slot files `backoff/HOST.slot.N`, each held
//! with a non-blocking `flock` by the queue run talking to that host until
//! the run ends; when every slot is held, the host is not tried in this run.
//! Only root's (and trusted users') queue runs take slots, so no user's
//! process can hold one and keep root's runs from a host.

use crate::config::conf::Loaded;
use crate::spool::shared::{self, Access};
use std::fs::File;

use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// A wait in force: until when (unix seconds), how long it is, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    pub host: String,
    pub until: u64,
    pub delay: u64,
    pub reason: String,
}

impl Wait {
    /// `destination HOST backing off until DATE (REASON)`, as `-bp` shows it.
    pub fn describe(&self) -> String {
        format!(
            "destination {} backing off until {} ({})",
            self.host,
            crate::base::clock::rfc3339_utc(self.until as i64),
            self.reason
        )
    }
}

fn dir(cfg: &Loaded) -> PathBuf {
    cfg.cfg.spool.join("backoff")
}

/// A file name for (host, source): the host's name in safe characters.
fn name(host: &str, src: Option<IpAddr>) -> String {
    let h: String = host
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    let h = h.trim_start_matches('.');
    match src {
        Some(ip) => format!("{h}@{}", ip.to_string().replace(':', "_")),
        None => format!("{h}@any"),
    }
}

/// The wait recorded for (host, src), whether or not it is over.
fn read(cfg: &Loaded, host: &str, src: Option<IpAddr>) -> Option<Wait> {
    let text = shared::read_small(&dir(cfg).join(name(host, src)), 2048)?;
    let (head, reason) = text.split_once('\n').unwrap_or((&text, ""));
    let mut it = head.split_whitespace();
    let until = it.next()?.parse().ok()?;
    let delay = it.next()?.parse().ok()?;
    Some(Wait {
        host: host.to_string(),
        until,
        delay,
        reason: reason.trim_end().to_string(),
    })
}

/// The wait in force for `host` from every one of `sources` (the identity's;
/// empty: the kernel's choice), the one ending first; `None` when some
/// source may talk to the host now.
pub fn waiting(cfg: &Loaded, host: &str, sources: &[IpAddr], now: u64) -> Option<Wait> {
    let keys: Vec<Option<IpAddr>> = if sources.is_empty() {
        vec![None]
    } else {
        sources.iter().copied().map(Some).collect()
    };
    let mut first: Option<Wait> = None;
    for k in keys {
        let w = read(cfg, host, k).filter(|w| w.until > now)?;
        if first.as_ref().is_none_or(|f| w.until < f.until) {
            first = Some(w);
        }
    }
    first
}

/// Record that `host` said `reply` to `src`: the wait starts now.
pub fn record(
    cfg: &Loaded,
    host: &str,
    src: Option<IpAddr>,
    reply: &str,
    now: u64,
) -> Result<Wait, String> {
    let base = cfg.backoff.as_secs().max(1);
    let max = cfg.retry_max.as_secs().max(base);
    // Said again within one period after the last wait ended: twice as long.
    let delay = match read(cfg, host, src) {
        Some(prev) if now < prev.until.saturating_add(prev.delay) => {
            prev.delay.saturating_mul(2).clamp(base, max)
        }
        _ => base,
    };
    let reason = crate::base::syslog::text(reply, 200);
    let w = Wait {
        host: host.to_string(),
        until: now + delay,
        delay,
        reason,
    };
    let d = dir(cfg);
    let text = format!("{} {}\n{}\n", w.until, w.delay, w.reason);
    shared::replace_small(&d, &d.join(name(host, src)), shared::spool_gid(cfg), &text).map_err(
        |e| {
            format!(
                "cannot record the backoff of {host} in {}: {e}",
                d.display()
            )
        },
    )?;
    Ok(w)
}

/// One held connection slot of a host (released when dropped).
#[derive(Debug)]
pub struct Slot(#[allow(dead_code)] File);

/// Take a free connection slot of `host` (non-blocking); `Err` says why
/// there is none.
pub fn slot(cfg: &Loaded, host: &str) -> Result<Slot, String> {
    let n = cfg.cfg.destination_concurrency;
    if n == 0 {
        return Err("destination_concurrency is 0".into());
    }
    let d = dir(cfg);
    let gid = shared::spool_gid(cfg);
    let mut last = String::new();
    for i in 0..n {
        let p = d.join(format!("{}.slot.{i}", name(host, None)));
        let f = match shared::open(&d, &p, gid, Access::ReadWrite) {
            Ok(f) => f,
            Err(e) => {
                // Cannot count: go on without a cap rather than never deliver.
                last = format!("{}: {e}", p.display());
                continue;
            }
        };
        // SAFETY: flock on a descriptor we own; LOCK_NB never waits.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Slot(f));
        }
    }
    if !last.is_empty() {
        return Err(format!("cannot take a connection slot: {last}"));
    }
    Err(format!(
        "{n} queue run(s) already talking to {host} (destination_concurrency {n}); left to the next queue run"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &std::path::Path) -> Loaded {
        crate::config::conf::parse(
            &format!(
                "spool = \"{}\"\nbackoff = \"10m\"\nretry_max = \"35m\"\ndestination_concurrency = 2\n",
                dir.display()
            ),
            std::path::Path::new("t.conf"),
        )
        .unwrap()
    }

    #[test]
    fn waits_double_up_to_retry_max_per_source() {
        let dir = std::env::temp_dir().join(format!(
            "vs-backoff-{}-{}",
            std::process::id(),
            crate::base::clock::unix_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let c = cfg(&dir);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "::1".parse().unwrap();
        assert_eq!(waiting(&c, "mx.test", &[a], 1000), None);
        let w = record(&c, "MX.test", Some(a), "421 4.7.0 slow down", 1000).unwrap();
        assert_eq!((w.until, w.delay), (1600, 600));
        assert_eq!(waiting(&c, "mx.test", &[a], 1000).unwrap().until, 1600);
        assert!(
            waiting(&c, "mx.test", &[a], 1000)
                .unwrap()
                .describe()
                .starts_with("destination mx.test backing off until ")
        );
        // Another source may still talk to it; the wait ends in time.
        assert_eq!(waiting(&c, "mx.test", &[a, b], 1000), None);
        assert_eq!(waiting(&c, "mx.test", &[a], 1600), None);
        // Again soon after: doubled, then capped.
        assert_eq!(
            record(&c, "mx.test", Some(a), "421", 1700).unwrap().delay,
            1200
        );
        assert_eq!(
            record(&c, "mx.test", Some(a), "421", 2000).unwrap().delay,
            2100
        );
        // Long after the last wait: from the start again.
        assert_eq!(
            record(&c, "mx.test", Some(a), "421", 99999).unwrap().delay,
            600
        );
        assert!(record(&c, "../../etc/x", None, "421", 1).is_ok());
        assert!(
            dir.join("backoff").join("etc_x@any").exists()
                || dir.join("backoff").join("_.._etc_x@any").exists()
        );
        // Slots: two, then none until one is released.
        let s1 = slot(&c, "mx.test").unwrap();
        let _s2 = slot(&c, "mx.test").unwrap();
        assert!(
            slot(&c, "mx.test")
                .unwrap_err()
                .contains("destination_concurrency 2")
        );
        drop(s1);
        assert!(slot(&c, "mx.test").is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
