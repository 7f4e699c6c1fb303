//! Gathering the attribution of a message at intake (see
//! `base::attribution`): the working directory, our own argv from
//! `/proc/self/cmdline`, and the parent's executable and command line from
//! `/proc/PPID/exe` and `/proc/PPID/cmdline`. The parent's `exe` link is
//! readable only with the caller's own credentials (a set-gid run's file
//! system gid is the spool's group, which the kernel's ptrace check does not
//! accept), so it is read with the real gid for that one call. What cannot
//! be read stays empty. Bounded reads only: a caller's argv is at most what
//! the kernel keeps, and each value is cut to `MAX_VALUE` bytes.

use crate::base::attribution::{Attribution, clean};
use std::io::Read;

/// The most bytes read of one `cmdline`.
const MAX_CMDLINE: u64 = 4096;

/// The attribution the process can see now (the `script` comes later,
/// from the message's header).
pub fn gather() -> Attribution {
    let cwd = std::env::current_dir()
        .map(|p| clean(&p.to_string_lossy()))
        .unwrap_or_default();
    let argv = cmdline("/proc/self/cmdline");
    let ppid = std::os::unix::process::parent_id();
    let mut caller = process(ppid);
    // popen() (PHP's mail(), many others) runs us through `sh -c`: the
    // shell's own parent is the one that matters.
    let exe = caller.split(' ').next().unwrap_or("");
    if ["sh", "dash", "bash"].contains(&exe.rsplit('/').next().unwrap_or(""))
        && let Some(gp) = parent_of(ppid)
    {
        let above = process(gp);
        if !above.is_empty() {
            caller = clean(&format!("{caller} < {above}"));
        }
    }
    Attribution {
        cwd,
        argv,
        caller,
        script: String::new(),
    }
}

/// `EXE (ARGS)` of process `pid`, what of it is readable.
fn process(pid: u32) -> String {
    let exe = parent_exe(pid);
    let args = cmdline(&format!("/proc/{pid}/cmdline"));
    match (exe.is_empty(), args.is_empty()) {
        (true, _) => args,
        (false, true) => exe,
        (false, false) => clean(&format!("{exe} ({args})")),
    }
}

/// The parent of `pid`, from `/proc/PID/stat` (the field after the
/// parenthesised command name, which may itself hold spaces and parentheses).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// A `cmdline` file's arguments, joined by spaces, printable and bounded.
fn cmdline(path: &str) -> String {
    let mut buf = Vec::new();
    let Ok(f) = std::fs::File::open(path) else {
        return String::new();
    };
    if f.take(MAX_CMDLINE).read_to_end(&mut buf).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&buf);
    clean(text.trim_end_matches('\0').replace('\0', " ").trim())
}

/// `readlink /proc/PID/exe`, with the file system gid set to the real gid
/// for the call (and back after).
fn parent_exe(ppid: u32) -> String {
    let path = format!("/proc/{ppid}/exe");
    // SAFETY: getgid/getegid/setfsgid have no memory preconditions;
    // setfsgid to the real or the effective gid is always permitted.
    let (real, eff) = unsafe { (libc::getgid(), libc::getegid()) };
    if real != eff {
        unsafe { libc::setfsgid(real) };
    }
    let link = std::fs::read_link(&path);
    if real != eff {
        unsafe { libc::setfsgid(eff) };
    }
    link.map(|p| clean(&p.to_string_lossy()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sees_this_process() {
        let a = super::gather();
        assert!(!a.cwd.is_empty());
        assert!(!a.argv.is_empty());
        assert!(!a.caller.is_empty(), "{a:?}");
    }
}
