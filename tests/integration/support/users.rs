//! Throwaway Unix users and groups for tests (which run as root).
//!
//! It owns the creation of test accounts: [`user`] creates a user without a
//! home directory and with the nologin shell (idempotently), [`group`] a
//! group, [`add_to_group`] a membership. Every test user is a member of the
//! group [`VSTEST`], which owns the test spools. Account files may be locked by
//! a concurrent useradd (another test thread or process): calls are
//! serialised inside this process and retried while the files are locked.
//! Users are left in place after the tests (they are reused next time).

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::unistd::{Group, User};

/// The group every test user belongs to (it owns the test spools).
pub const VSTEST: &str = "vstest";

static LOCK: Mutex<()> = Mutex::new(());

/// Run an account tool, retrying while /etc/passwd or /etc/group is locked.
fn run(tool: &str, args: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new(tool)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("users: cannot run {tool}: {e}"));
        if out.status.success() {
            return;
        }
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        // useradd/groupadd/usermod exit 10 (cannot update/lock) or say "lock".
        let locked = out.status.code() == Some(10) || err.contains("lock");
        if !locked || Instant::now() > deadline {
            panic!("users: {tool} {args:?} failed ({}): {err}", out.status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn find_user(name: &str) -> Option<User> {
    User::from_name(name).ok().flatten()
}

fn find_group(name: &str) -> Option<Group> {
    Group::from_name(name).ok().flatten()
}

/// Create the group `name` (if missing) and return its gid.
pub fn group(name: &str) -> u32 {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    group_locked(name)
}

fn group_locked(name: &str) -> u32 {
    if let Some(g) = find_group(name) {
        return g.gid.as_raw();
    }
    let out = Command::new("groupadd")
        .arg(name)
        .output()
        .expect("users: cannot run groupadd");
    // Exit 9: the group exists (created meanwhile by another process).
    if !out.status.success() && out.status.code() != Some(9) {
        run("groupadd", &[name]);
    }
    find_group(name)
        .unwrap_or_else(|| panic!("users: group {name} missing after groupadd"))
        .gid
        .as_raw()
}

/// Create the user `name` (if missing): no home directory, shell nologin,
/// primary group of its own name, member of [`VSTEST`]. Returns (uid, gid).
pub fn user(name: &str) -> (u32, u32) {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    group_locked(VSTEST);
    if find_user(name).is_none() {
        let mut args = vec!["-M", "-s", "/usr/sbin/nologin", "-G", VSTEST];
        if find_group(name).is_some() {
            args.extend(["-g", name]);
        } else {
            args.push("-U");
        }
        args.push(name);
        let out = Command::new("useradd")
            .args(&args)
            .output()
            .expect("users: cannot run useradd");
        // Exit 9: the user exists (created meanwhile by another process).
        if !out.status.success() && out.status.code() != Some(9) && find_user(name).is_none() {
            run("useradd", &args);
        }
    }
    let u = find_user(name).unwrap_or_else(|| panic!("users: user {name} missing after useradd"));
    if !is_member(name, VSTEST) {
        run("usermod", &["-a", "-G", VSTEST, name]);
    }
    (u.uid.as_raw(), u.gid.as_raw())
}

fn is_member(user: &str, group: &str) -> bool {
    find_group(group).is_some_and(|g| g.mem.iter().any(|m| m == user))
}

/// Make `user` a (supplementary) member of `group`, creating the group when missing.
pub fn add_to_group(user: &str, group: &str) {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    group_locked(group);
    if !is_member(user, group) {
        run("usermod", &["-a", "-G", group, user]);
    }
}

/// Make sure the [`VSTEST`] group exists; returns its gid.
pub fn vstest_gid() -> u32 {
    group(VSTEST)
}
