//! The integration-test harness: everything a test needs around the binary.
//!
//! It owns the test-side world that vsendmail talks to, all on loopback and
//! all private to one test: [`sink`] (a scriptable SMTP receiver), [`dns`]
//! (an authoritative DNS server), [`https`] (an HTTPS server for MTA-STS
//! policies), [`pki`] (a test CA and its certificates), [`postfix`] (a private Postfix instance as a
//! real MTA), [`users`] (throwaway Unix users and groups) and [`vs`] (running
//! the built binary with its own config, files, spool and syslog socket).
//! Each test picks free ports and unique temporary directories, so tests run
//! in parallel. The shared helpers below ([`TempDir`], [`wait_until`]) are
//! used by those modules and by tests.
#![allow(dead_code)]

pub mod client;
pub mod dns;
pub mod https;
pub mod oauth;
pub mod pki;
pub mod postfix;
pub mod sink;
pub mod users;
pub mod vs;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A fresh directory `/tmp/PREFIX-XXXXXX` (mode 0755, so that throwaway users
/// and Postfix's daemons can traverse it). Removed when dropped, except when
/// the thread is panicking: then it is kept and its path printed.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let path = nix::unistd::mkdtemp(format!("/tmp/{prefix}-XXXXXX").as_str())
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test files kept for inspection: {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Poll `cond` (every 10 ms) until it returns `Some`, or panic after `timeout`
/// naming `what`. For conditions that have no notification of their own.
pub fn wait_until<T>(what: &str, timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if Instant::now() >= end {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
pub mod setgid;
