//! The spool: durable storage of queued messages, and nothing else (who
//! delivers them is `commands::queue_run` and `deliver`).
//!
//! Layout under `spool` (directories mode 2770, group vsendmail; files 0660):
//! ```text
//! tmp/ID.msg, tmp/ID.env   being written; never read by queue runs
//! queue/ID.msg             the message exactly as it goes on the wire before
//!                          dot-stuffing: CRLF line ends, vsendmail's headers added
//! queue/ID.env             the envelope (JSON, see `envelope.rs`), version field
//! ```
//! A message is complete exactly when `queue/ID.env` exists. Commit order:
//! write and fsync the message, write and fsync the envelope, rename the
//! message, rename the envelope, fsync `queue/`. A crash before the envelope's
//! rename leaves at most an orphan `.msg` (removed by queue runs after an hour,
//! never sent) and the caller gets no exit 0. Envelope updates are written to
//! tmp/ and renamed over. Removal unlinks the envelope first.
//!
//! Locking: `flock(LOCK_EX)` on `queue/ID.msg`, whose inode never changes while
//! queued. A delivering process holds it from commit to the end; queue runners
//! take it non-blocking and skip locked messages; the kernel releases it when a
//! process dies. After taking a lock, check the envelope still exists.
//!
//! Shares: a new draft from any user but root is refused (exit 75) when the
//! filesystem has less than `spool_min_free` percent free, or when that
//! user's `queue/*.msg` files, bytes (with drafts) or `tmp/new.*` drafts,
//! counted by file owner, reach `max_user_queued_messages`,
//! `max_user_queued_bytes` or `max_user_drafts`.

use super::envelope::Envelope;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot create a spool file in {dir}: {err}; the message was NOT accepted")]
    Create { dir: String, err: std::io::Error },
    #[error("{what} {path}: {err}")]
    Io {
        what: &'static str,
        path: String,
        err: std::io::Error,
    },
    #[error("queue file {path} is damaged: {why}")]
    Corrupt { path: String, why: String },
    #[error("no queued message {0}")]
    NotFound(String),
    /// One user's share of the spool is used up.
    #[error(
        "user uid {uid} has {count} {what} in the spool ({key} {max}); the message was NOT accepted, try again once the queue has drained"
    )]
    UserLimit {
        uid: u32,
        what: &'static str,
        count: u64,
        key: &'static str,
        max: u64,
    },
    /// The headroom kept for root's queue runs and bounces.
    #[error(
        "the spool {dir} has only {free_pct}% of its space free (spool_min_free {min}%, kept for queue runs and bounces); the message was NOT accepted, try again later"
    )]
    Full {
        dir: String,
        free_pct: u64,
        min: u32,
    },
}

impl SpoolError {
    fn io(what: &'static str, path: &Path, err: std::io::Error) -> Self {
        SpoolError::Io {
            what,
            path: path.display().to_string(),
            err,
        }
    }
}

/// An opened spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
    /// `spool_min_free`: the share of the filesystem (percent) below which
    /// no user but root may start a message.
    min_free: u32,
    /// Per-uid shares: queued messages, queued bytes, drafts (0: none).
    user_limits: (u64, u64, u64),
}

impl Spool {
    /// The spool the configuration names (`spool`).
    pub fn of(cfg: &crate::config::conf::Loaded) -> Result<Spool, SpoolError> {
        let mut s = Spool::open(&cfg.cfg.spool)?;
        s.min_free = cfg.cfg.spool_min_free.min(100);
        s.user_limits = (
            cfg.cfg.max_user_queued_messages,
            cfg.cfg.max_user_queued_bytes,
            cfg.cfg.max_user_drafts,
        );
        Ok(s)
    }

    /// Open the spool, creating its directories when we may.
    pub fn open(root: &Path) -> Result<Spool, SpoolError> {
        for sub in ["", "tmp", "queue"] {
            let d = root.join(sub);
            if !d.is_dir() {
                // Trust boundary (issue 6): a directory made here by the
                // set-gid binary for a non-root user would belong to that
                // user, who could then unlink or expose everybody's queued
                // mail. Only root (make install, or any run as root) makes
                // the spool's directories.
                if running_setid_for_user() {
                    return Err(SpoolError::Create {
                        dir: d.display().to_string(),
                        err: std::io::Error::other(
                            "the directory is missing and must be created by root (make install, or run `vsendmail -q` as root once), so that no user owns it",
                        ),
                    });
                }
                std::fs::create_dir_all(&d).map_err(|err| SpoolError::Create {
                    dir: d.display().to_string(),
                    err,
                })?;
                let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o2770));
            }
        }
        Ok(Spool {
            root: root.to_path_buf(),
            min_free: 0,
            user_limits: (0, 0, 0),
        })
    }

    /// Refuse a user's new message when that user's share of the spool is
    /// used up. Root is never limited.
    fn check_user_share(&self) -> Result<(), SpoolError> {
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        if uid == 0 {
            return Ok(());
        }
        match self.limits_reached(uid).into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every per-user limit `uid` has reached (`SpoolError::UserLimit`, in
    /// the order messages, bytes, drafts): what refuses its next message,
    /// and what `-bp` tells it. Counted from what no user can fake: the
    /// owner (the uid that created it, through this binary) of each
    /// `queue/ID.msg` and `tmp/new.*` draft, and their sizes.
    pub fn limits_reached(&self, uid: u32) -> Vec<SpoolError> {
        use std::os::unix::fs::MetadataExt;
        let (max_msgs, max_bytes, max_drafts) = self.user_limits;
        if (max_msgs, max_bytes, max_drafts) == (0, 0, 0) {
            return Vec::new();
        }
        let (mut msgs, mut bytes, mut drafts) = (0u64, 0u64, 0u64);
        let mut scan = |dir: PathBuf, draft: bool| {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return;
            };
            for e in rd.flatten() {
                let name = e.file_name();
                let Some(n) = name.to_str() else { continue };
                let ours = if draft {
                    n.starts_with("new.")
                } else {
                    n.ends_with(".msg")
                };
                if !ours {
                    continue;
                }
                let Ok(m) = e.metadata() else { continue };
                if m.uid() != uid {
                    continue;
                }
                bytes += m.len();
                if draft {
                    drafts += 1;
                } else {
                    msgs += 1;
                }
            }
        };
        scan(self.queue(), false);
        scan(self.tmp(), true);
        let over = |what, count: u64, key, max: u64| {
            (max > 0 && count >= max).then_some(SpoolError::UserLimit {
                uid,
                what,
                count,
                key,
                max,
            })
        };
        [
            over(
                "messages queued",
                msgs,
                "max_user_queued_messages",
                max_msgs,
            ),
            over("bytes queued", bytes, "max_user_queued_bytes", max_bytes),
            over(
                "messages being submitted",
                drafts,
                "max_user_drafts",
                max_drafts,
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Refuse a user's new message when the spool's filesystem is nearly
    /// full, so root's queue runs and bounces still have room.
    fn check_headroom(&self) -> Result<(), SpoolError> {
        // SAFETY: getuid has no preconditions.
        if self.min_free == 0 || unsafe { libc::getuid() } == 0 {
            return Ok(());
        }
        use std::os::unix::ffi::OsStrExt;
        let Ok(path) = std::ffi::CString::new(self.root.as_os_str().as_bytes()) else {
            return Ok(());
        };
        // SAFETY: statvfs with a valid path and a zeroed struct to fill.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 || st.f_blocks == 0 {
            return Ok(());
        }
        let free_pct = (st.f_bavail as u128 * 100 / st.f_blocks as u128) as u64;
        if free_pct < self.min_free as u64 {
            return Err(SpoolError::Full {
                dir: self.root.display().to_string(),
                free_pct,
                min: self.min_free,
            });
        }
        Ok(())
    }

    /// The spool the configuration names, for a command that only reads
    /// (`-bp`): nothing is created; `Ok(None)` when it does not exist yet.
    pub fn of_existing(cfg: &crate::config::conf::Loaded) -> Result<Option<Spool>, SpoolError> {
        Ok(Spool::open_existing(&cfg.cfg.spool)?.map(|mut s| {
            s.min_free = cfg.cfg.spool_min_free.min(100);
            s.user_limits = (
                cfg.cfg.max_user_queued_messages,
                cfg.cfg.max_user_queued_bytes,
                cfg.cfg.max_user_drafts,
            );
            s
        }))
    }

    /// Open the spool without creating anything: `Ok(None)` when its root or
    /// its `queue/` is missing (nothing can be queued there yet).
    pub fn open_existing(root: &Path) -> Result<Option<Spool>, SpoolError> {
        let q = root.join("queue");
        match std::fs::metadata(&q) {
            Ok(m) if m.is_dir() => Ok(Some(Spool {
                root: root.to_path_buf(),
                min_free: 0,
                user_limits: (0, 0, 0),
            })),
            Ok(_) => Err(SpoolError::io(
                "not a directory:",
                &q,
                std::io::Error::from(std::io::ErrorKind::NotADirectory),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SpoolError::io("cannot look at", &q, e)),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn queue(&self) -> PathBuf {
        self.root.join("queue")
    }

    pub fn msg_path(&self, id: &str) -> PathBuf {
        self.queue().join(format!("{id}.msg"))
    }

    pub fn env_path(&self, id: &str) -> PathBuf {
        self.queue().join(format!("{id}.env"))
    }

    /// Start a new message: an exclusive, never-followed file in tmp/.
    pub fn draft(&self) -> Result<Draft, SpoolError> {
        self.check_headroom()?;
        self.check_user_share()?;
        // A temporary name first; the id then comes from the file's inode,
        // which no other live spool file can have (Postfix derives its queue
        // ids the same way): ids never collide, however fast messages arrive.
        for _ in 0..16 {
            let name = format!("new.{}.{:08x}", std::process::id(), rand::random::<u32>());
            let path = self.tmp().join(name);
            match create_excl(&path) {
                Ok(file) => {
                    let ino = match file.metadata() {
                        Ok(m) => std::os::unix::fs::MetadataExt::ino(&m),
                        Err(err) => {
                            let _ = std::fs::remove_file(&path);
                            return Err(SpoolError::Create {
                                dir: self.tmp().display().to_string(),
                                err,
                            });
                        }
                    };
                    return Ok(Draft {
                        spool: self.clone(),
                        id: new_id(ino),
                        file: Some(file),
                        path,
                        committed: false,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(err) => {
                    return Err(SpoolError::Create {
                        dir: self.tmp().display().to_string(),
                        err,
                    });
                }
            }
        }
        Err(SpoolError::Create {
            dir: self.tmp().display().to_string(),
            err: std::io::Error::other("no free temporary name after 16 tries"),
        })
    }

    /// Ids of complete messages, oldest first (ids sort by arrival time).
    pub fn list(&self) -> Result<Vec<String>, SpoolError> {
        let q = self.queue();
        let rd = std::fs::read_dir(&q).map_err(|e| SpoolError::io("cannot list", &q, e))?;
        let mut ids: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".env")
                    .map(str::to_string)
            })
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Read an envelope without locking (for listing).
    pub fn load(&self, id: &str) -> Result<Envelope, SpoolError> {
        let p = self.env_path(id);
        let data = match std::fs::read(&p) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SpoolError::NotFound(id.to_string()));
            }
            Err(e) => return Err(SpoolError::io("cannot read", &p, e)),
        };
        Envelope::decode(&data).map_err(|why| SpoolError::Corrupt {
            path: p.display().to_string(),
            why,
        })
    }

    /// Take the message's lock. `Ok(None)`: someone else holds it, or the
    /// message is gone.
    pub fn lock(&self, id: &str, wait: bool) -> Result<Option<Locked>, SpoolError> {
        let mp = self.msg_path(id);
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&mp)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SpoolError::io("cannot open", &mp, e)),
        };
        let op = if wait {
            libc::LOCK_EX
        } else {
            libc::LOCK_EX | libc::LOCK_NB
        };
        // SAFETY: flock on a valid open descriptor.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), op) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Ok(None);
            }
            return Err(SpoolError::io("cannot lock", &mp, e));
        }
        let env = match self.load(id) {
            Ok(e) => e,
            Err(SpoolError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(Locked {
            spool: self.clone(),
            env,
            msg: file,
            durable: true,
        }))
    }

    /// Remove orphans: tmp files and envelope-less messages older than an hour.
    pub fn sweep(&self) {
        let cutoff = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let old = |p: &Path| {
            std::fs::symlink_metadata(p)
                .and_then(|m| m.modified())
                .map(|t| t < cutoff)
                .unwrap_or(false)
        };
        if let Ok(rd) = std::fs::read_dir(self.tmp()) {
            for e in rd.flatten() {
                if old(&e.path()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.queue()) {
            for e in rd.flatten() {
                let name = e.file_name();
                let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".msg")) else {
                    continue;
                };
                if !self.env_path(id).exists() && old(&e.path()) {
                    if let Ok(Some(_l)) = self.lock(id, false) {
                        // lock() found an envelope after all: leave it.
                        continue;
                    }
                    if !self.env_path(id).exists() {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
    }

    /// Write a file durably under tmp/ then rename it to `dest`.
    fn write_atomic(&self, dest: &Path, data: &[u8]) -> Result<(), SpoolError> {
        let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("x");
        let tmp = self
            .tmp()
            .join(format!("{name}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let mut f = create_excl(&tmp).map_err(|err| SpoolError::Create {
            dir: self.tmp().display().to_string(),
            err,
        })?;
        let res = f
            .write_all(data)
            .and_then(|_| f.sync_data())
            .and_then(|_| std::fs::rename(&tmp, dest));
        if let Err(e) = res {
            let _ = std::fs::remove_file(&tmp);
            return Err(SpoolError::io("cannot write", dest, e));
        }
        Ok(())
    }
}

/// Whether we run set-uid/set-gid for a real user other than root (issue 6:
/// then we must not create directories that user would own).
pub(crate) fn running_setid_for_user() -> bool {
    // SAFETY: these four calls cannot fail and have no side effects.
    unsafe {
        libc::getuid() != 0
            && (libc::getuid() != libc::geteuid() || libc::getgid() != libc::getegid())
    }
}

fn create_excl(path: &Path) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .mode(0o660)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    // The umask may have taken the group bits; the group must keep them.
    let _ = f.set_permissions(std::fs::Permissions::from_mode(0o660));
    Ok(f)
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A queue id, as Postfix's long queue ids: 8 hex digits of the arrival
/// second, 5 of its microsecond, then the hex inode number of the message
/// file (unique among live spool files). The inode alone is reused as soon
/// as a delivered message is removed; with the microsecond beside it, an id
/// repeats only if a file is created, delivered, removed and its inode
/// handed out again within one microsecond, so ids are unique for the life
/// of the audit trail. The time part has a fixed width: ids sort by arrival.
/// Upper-case hex only, so `--delete ID` in any case finds it.
fn new_id(ino: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    id_of(now.as_secs(), now.subsec_micros(), ino)
}

fn id_of(secs: u64, micros: u32, ino: u64) -> String {
    format!("{:08X}{:05X}{ino:X}", secs as u32, micros.min(999_999))
}

/// rename() that fails instead of replacing an existing file.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let f = std::ffi::CString::new(from.as_os_str().as_bytes())?;
    let t = std::ffi::CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: two valid NUL-terminated paths.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A message being written to tmp/. Dropped without `commit`: removed.
pub struct Draft {
    spool: Spool,
    pub id: String,
    file: Option<File>,
    path: PathBuf,
    committed: bool,
}

impl Draft {
    /// The open message file, for the intake to stream into.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("draft file open until commit")
    }

    /// Make the message durable and visible in the queue, locked by us.
    pub fn commit(self, env: &Envelope) -> Result<Locked, SpoolError> {
        self.commit_with(env, true)
    }

    /// Make the message visible in the queue, locked by us, without waiting
    /// for the disk: for a delivery attempt that starts at once. The caller
    /// must not report acceptance before the message was either delivered or
    /// made durable with [`Locked::save`] (which syncs everything).
    pub fn commit_for_delivery(self, env: &Envelope) -> Result<Locked, SpoolError> {
        self.commit_with(env, false)
    }

    fn commit_with(mut self, env: &Envelope, durable: bool) -> Result<Locked, SpoolError> {
        let file = self.file.take().expect("draft committed once");
        let tmpdir = self.spool.tmp();
        let create_err = |err: std::io::Error| SpoolError::Create {
            dir: tmpdir.display().to_string(),
            err,
        };
        if durable {
            file.sync_data().map_err(create_err)?;
        }
        // SAFETY: flock on a valid descriptor we own.
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) };
        let env_tmp = tmpdir.join(format!("{}.env", self.id));
        let mut ef = create_excl(&env_tmp).map_err(create_err)?;
        let res = ef
            .write_all(&env.encode())
            .and_then(|_| if durable { ef.sync_data() } else { Ok(()) });
        if let Err(e) = res {
            let _ = std::fs::remove_file(&env_tmp);
            return Err(create_err(e));
        }
        let q = self.spool.queue();
        let msg_dest = self.spool.msg_path(&self.id);
        let env_dest = self.spool.env_path(&self.id);
        // Undo only what this commit made, never another message's files.
        if let Err(e) = rename_noreplace(&self.path, &msg_dest) {
            let _ = std::fs::remove_file(&env_tmp);
            return Err(create_err(e));
        }
        if let Err(e) = rename_noreplace(&env_tmp, &env_dest) {
            let _ = std::fs::remove_file(&env_tmp);
            let _ = std::fs::rename(&msg_dest, &self.path);
            return Err(create_err(e));
        }
        if durable && let Err(e) = fsync_dir(&q) {
            let _ = std::fs::remove_file(&env_dest);
            let _ = std::fs::rename(&msg_dest, &self.path);
            return Err(create_err(e));
        }
        self.committed = true;
        Ok(Locked {
            spool: self.spool.clone(),
            env: env.clone(),
            msg: file,
            durable,
        })
    }
}

impl Drop for Draft {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A queued message whose lock we hold.
pub struct Locked {
    spool: Spool,
    pub env: Envelope,
    msg: File,
    /// Message and envelope are known to be on disk.
    durable: bool,
}

impl Locked {
    pub fn id(&self) -> &str {
        &self.env.id
    }

    /// A reader of the message bytes from the start: the locked descriptor
    /// itself (duplicated, one reader at a time), never the path again, so
    /// that a delivery process that gave up the group can still read it.
    pub fn open_message(&self) -> Result<File, SpoolError> {
        use std::io::Seek;
        let p = self.spool.msg_path(&self.env.id);
        let mut f = self
            .msg
            .try_clone()
            .map_err(|e| SpoolError::io("cannot open", &p, e))?;
        f.rewind()
            .map_err(|e| SpoolError::io("cannot open", &p, e))?;
        Ok(f)
    }

    pub fn message_path(&self) -> PathBuf {
        self.spool.msg_path(&self.env.id)
    }

    /// Write the envelope's current state durably (and the message too, when
    /// it was committed for an immediate delivery attempt).
    pub fn save(&mut self) -> Result<(), SpoolError> {
        let create_err = |err: std::io::Error| SpoolError::Create {
            dir: self.spool.queue().display().to_string(),
            err,
        };
        if !self.durable {
            self.msg.sync_data().map_err(create_err)?;
        }
        self.spool
            .write_atomic(&self.spool.env_path(&self.env.id), &self.env.encode())?;
        fsync_dir(&self.spool.queue()).map_err(create_err)?;
        self.durable = true;
        Ok(())
    }

    /// The message file's length matches the envelope (a file damaged by a
    /// crash of the machine is never sent).
    pub fn check_size(&self) -> Result<(), String> {
        let len = self
            .msg
            .metadata()
            .map(|m| m.len())
            .map_err(|e| e.to_string())?;
        if len != self.env.size {
            return Err(format!(
                "queue file {} is damaged ({len} bytes, {} expected); not sent — inspect it, then vsendmail --delete {}",
                self.message_path().display(),
                self.env.size,
                self.env.id
            ));
        }
        Ok(())
    }

    /// Remove the message from the queue (envelope first).
    pub fn remove(self) -> Result<(), SpoolError> {
        let ep = self.spool.env_path(&self.env.id);
        std::fs::remove_file(&ep).map_err(|e| SpoolError::io("cannot remove", &ep, e))?;
        let _ = std::fs::remove_file(self.spool.msg_path(&self.env.id));
        drop(self.msg);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(id: &str) -> Envelope {
        Envelope::new_for_test(id)
    }

    #[test]
    fn commit_makes_message_visible_and_locked() {
        let d = tempdir();
        let s = Spool::open(&d).unwrap();
        let mut dr = s.draft().unwrap();
        dr.file().write_all(b"Subject: x\r\n\r\nhi\r\n").unwrap();
        let id = dr.id.clone();
        assert!(s.list().unwrap().is_empty());
        let l = dr.commit(&env(&id)).unwrap();
        assert_eq!(s.list().unwrap(), vec![id.clone()]);
        assert!(
            s.lock(&id, false).unwrap().is_none(),
            "second lock must fail"
        );
        drop(l);
        let l = s.lock(&id, false).unwrap().unwrap();
        l.remove().unwrap();
        assert!(s.list().unwrap().is_empty());
        assert!(!s.msg_path(&id).exists());
    }

    #[test]
    fn open_existing_creates_nothing() {
        let d = std::env::temp_dir().join(format!("vs-spool-none-{}", rand::random::<u64>()));
        assert!(Spool::open_existing(&d).unwrap().is_none());
        assert!(!d.exists(), "open_existing created {}", d.display());
        std::fs::create_dir_all(&d).unwrap();
        assert!(Spool::open_existing(&d).unwrap().is_none());
        assert!(!d.join("queue").exists() && !d.join("tmp").exists());
        let s = Spool::open(&d).unwrap();
        let e = Spool::open_existing(&d).unwrap().unwrap();
        assert_eq!(e.root(), s.root());
        assert!(e.list().unwrap().is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn dropped_draft_leaves_nothing() {
        let d = tempdir();
        let s = Spool::open(&d).unwrap();
        let mut dr = s.draft().unwrap();
        dr.file().write_all(b"partial").unwrap();
        drop(dr);
        assert_eq!(std::fs::read_dir(d.join("tmp")).unwrap().count(), 0);
        assert!(s.list().unwrap().is_empty());
    }

    #[test]
    fn ids_never_collide_however_fast_messages_arrive() {
        let d = tempdir();
        let s = Spool::open(&d).unwrap();
        let mut ids = std::collections::HashSet::new();
        for _ in 0..3000 {
            let dr = s.draft().unwrap();
            let id = dr.id.clone();
            let l = dr.commit_for_delivery(&env(&id)).unwrap();
            drop(l);
            assert!(ids.insert(id), "duplicate id");
        }
        assert_eq!(
            s.list().unwrap().len(),
            3000,
            "no commit replaced another message"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn ids_sort_by_arrival_and_never_repeat_a_reused_inode() {
        // The same inode, handed out again after a delivered message was
        // removed, in the same second: two ids, not one.
        let (a, b) = (id_of(0x6931_A2B3, 1, 0x1234), id_of(0x6931_A2B3, 2, 0x1234));
        assert_ne!(a, b);
        assert_eq!(a, "6931A2B3000011234");
        assert!(a < b);
        assert!(id_of(0x6931_A2B3, 999_999, 0xFFFF_FFFF) < id_of(0x6931_A2B4, 0, 1));
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
    }

    fn tempdir() -> PathBuf {
        let p = std::env::temp_dir().join(format!("vs-spool-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}
