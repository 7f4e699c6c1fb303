//! Files the spool shares with every user's set-gid run: the audit trail and
//! the rate counters. Each lives in a directory of the spool's group, mode
//! 2770, made by root only, so that no user owns it; each file is 0660 of
//! that group, opened never through a symlink. Users reach them only
//! through the binary, so they can neither edit the trail nor reset a
//! counter.

use crate::config::conf::Loaded;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How a shared file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `O_APPEND`: each record one `write(2)` (the audit trail).
    Append,
    /// Read and write in place, under the caller's `flock` (a counter).
    ReadWrite,
}

/// The spool directory's group: the group that owns the trail and counters.
pub fn spool_gid(cfg: &Loaded) -> Option<u32> {
    std::fs::metadata(&cfg.cfg.spool).ok().map(|m| m.gid())
}

/// Open `path` in the shared directory `dir` (created when missing and we
/// may), creating the file 0660 of group `gid`.
pub fn open(dir: &Path, path: &Path, gid: Option<u32>, access: Access) -> std::io::Result<File> {
    ensure_dir(dir, gid)?;
    let mut o = OpenOptions::new();
    match access {
        Access::Append => o.append(true),
        Access::ReadWrite => o.read(true).write(true),
    };
    let f = o
        .create(true)
        .mode(0o660)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    fix_owner(&f, gid);
    Ok(f)
}

/// `flock(LOCK_EX)` on `file`, waiting at most `wait` for another process's
/// lock: retried without blocking, so a stopped process cannot hang this one.
pub fn lock(file: &File, wait: std::time::Duration) -> std::io::Result<()> {
    let end = std::time::Instant::now() + wait;
    loop {
        let fd = std::os::fd::AsRawFd::as_raw_fd(file);
        // SAFETY: flock on a valid descriptor we own.
        if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if std::time::Instant::now() < end => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Some(libc::EWOULDBLOCK) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    format!(
                        "locked by another process for more than {}s",
                        wait.as_secs()
                    ),
                ));
            }
            _ => return Err(e),
        }
    }
}

/// Create `dir` (mode 2770, group `gid`) when it is missing.
fn ensure_dir(dir: &Path, gid: Option<u32>) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    // Made by a user's set-gid run, the directory would belong to that user,
    // who could then edit the trail or reset the counters: only root makes it
    // (`make install` does).
    if crate::spool::store::running_setid_for_user() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is missing; root must create it (make install does)",
                dir.display()
            ),
        ));
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(g) = gid {
        let _ = std::os::unix::fs::chown(dir, None, Some(g));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o2770))
}

/// A file we created: mode 0660 (whatever the umask), group `gid`.
fn fix_owner(f: &File, gid: Option<u32>) {
    let Ok(m) = f.metadata() else { return };
    // Only the owner may change them; a file made by another run is left alone.
    // SAFETY: geteuid has no preconditions.
    if m.uid() != unsafe { libc::geteuid() } {
        return;
    }
    if let Some(g) = gid.filter(|g| *g != m.gid()) {
        let _ = std::os::unix::fs::fchown(f, None, Some(g));
    }
    if m.mode() & 0o7777 != 0o660 {
        let _ = f.set_permissions(std::fs::Permissions::from_mode(0o660));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_group_mode_and_never_followed() {
        let dir = std::env::temp_dir().join(format!(
            "vs-shared-{}-{}",
            std::process::id(),
            crate::base::clock::unix_ms()
        ));
        let sub = dir.join("audit");
        std::fs::create_dir_all(&dir).unwrap();
        let f = open(&sub, &sub.join("a"), None, Access::Append).unwrap();
        assert_eq!(f.metadata().unwrap().mode() & 0o7777, 0o660);
        assert_eq!(std::fs::metadata(&sub).unwrap().mode() & 0o7777, 0o2770);
        std::os::unix::fs::symlink("/etc/passwd", sub.join("link")).unwrap();
        assert!(open(&sub, &sub.join("link"), None, Access::ReadWrite).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Small state files of the spool that delivery reads and replaces whole
/// (`backoff/`, `mta-sts/`): read bounded, without following a link, and
/// replaced by a temporary file renamed into place (no lock to hold).
///
/// Split delivery (`deliver::privsep`): the network child has given up the
/// group and can neither read nor write them, so the parent reads the
/// directories first ([`hold_small`]); in the child ([`split_child`]) reads
/// come from that copy and replacements are kept ([`take_small_writes`]) for
/// the parent, which checks and performs them ([`replace_small`]).
static SMALL: Mutex<Option<Small>> = Mutex::new(None);

#[derive(Default)]
struct Small {
    reads: std::collections::HashMap<PathBuf, String>,
    writes: Vec<(PathBuf, String)>,
    child: bool,
}

fn small() -> std::sync::MutexGuard<'static, Option<Small>> {
    SMALL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The text of the small state file `path` (at most `limit` bytes).
pub fn read_small(path: &Path, limit: u64) -> Option<String> {
    if let Some(s) = small().as_ref()
        && s.child
    {
        return s.reads.get(path).cloned();
    }
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let mut text = String::new();
    Read::by_ref(&mut f)
        .take(limit)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// Replace the small state file `path` in `dir` with `text`.
pub fn replace_small(dir: &Path, path: &Path, gid: Option<u32>, text: &str) -> std::io::Result<()> {
    if let Some(s) = small().as_mut()
        && s.child
    {
        s.reads.insert(path.to_path_buf(), text.to_string());
        s.writes.push((path.to_path_buf(), text.to_string()));
        return Ok(());
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let tmp = dir.join(format!(
        ".{name}.{}.{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = open(dir, &tmp, gid, Access::ReadWrite)?;
        f.set_len(0)?;
        std::io::Write::write_all(&mut f, text.as_bytes())?;
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Before the fork of a split delivery: read every small state file of
/// `dirs` (at most 4096 files of `limit` bytes each per directory).
pub fn hold_small(dirs: &[PathBuf], limit: u64) {
    let mut s = Small::default();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        for e in rd.flatten().take(4096) {
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if let Some(t) = read_small(&p, limit) {
                s.reads.insert(p, t);
            }
        }
    }
    *small() = Some(s);
}

/// In the child, after it gave up the group: reads and writes go to the
/// copy [`hold_small`] made.
pub fn split_child() {
    if let Some(s) = small().as_mut() {
        s.child = true;
    } else {
        *small() = Some(Small {
            child: true,
            ..Small::default()
        });
    }
}

/// Whether this process is a split delivery's network child.
pub fn in_split_child() -> bool {
    small().as_ref().is_some_and(|s| s.child)
}

/// The replacements the child made (for its answer to the parent).
pub fn take_small_writes() -> Vec<(PathBuf, String)> {
    small()
        .as_mut()
        .map(|s| std::mem::take(&mut s.writes))
        .unwrap_or_default()
}

/// In the parent: forget the copy.
pub fn release_small() {
    *small() = None;
}
