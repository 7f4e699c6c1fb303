//! The binary as `make install` installs it: a set-group-id copy in a
//! temporary prefix, run by throwaway users with its real default config.
//!
//! It owns [`SetGid`]: a temporary prefix holding `sbin/vsendmail` (a copy of
//! the built binary, owner root, group [`GROUP`], mode 2755), a spool of its
//! own (`root:GROUP`, mode 2770, with `tmp/`, `queue/`, `rate/`, `audit/`, `backoff/` and `mta-sts/` made by root, as
//! `make install` must), and an `etc/` directory. The set-gid binary refuses
//! `-C` for a non-root user, so it reads `/etc/vsendmail.conf`: each run
//! happens in a private mount namespace (`unshare --mount`) in which `/etc` is
//! a read-only overlay of the prefix's `etc/` over the real `/etc`, and the
//! prefix's `etc/vsendmail.conf` is a copy of the test's [`Env`] config made
//! just before the run. The host's `/etc` is never written, so these tests run
//! in parallel with every other test. The users are not members of [`GROUP`]:
//! only the set-gid bit gives the process that group.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::TempDir;
use super::users;
use super::vs::{self, Env, Out};

/// The group the test copy is set-gid to (stands for `vsendmail`; test users
/// are never members of it).
pub const GROUP: &str = "vstrust";

/// A set-gid installation in a temporary prefix.
pub struct SetGid {
    dir: TempDir,
    gid: u32,
}

fn mkdir_owned(p: &Path, gid: u32, mode: u32) {
    fs::create_dir_all(p).unwrap_or_else(|e| panic!("setgid: mkdir {}: {e}", p.display()));
    nix::unistd::chown(p, Some(0.into()), Some(gid.into())).expect("setgid: chown");
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("setgid: chmod");
}

impl SetGid {
    /// Install the built binary set-gid [`GROUP`] (creating the group) into a
    /// fresh prefix, with its spool.
    pub fn install() -> SetGid {
        let gid = users::group(GROUP);
        let dir = TempDir::new("vs-setgid");
        let d = dir.path();
        mkdir_owned(&d.join("sbin"), 0, 0o755);
        mkdir_owned(&d.join("etc"), 0, 0o755);
        let bin = d.join("sbin/vsendmail");
        fs::copy(vs::bin(), &bin).expect("setgid: copy the binary");
        // chown first: it clears the set-id bits.
        nix::unistd::chown(&bin, Some(0.into()), Some(gid.into())).expect("setgid: chown binary");
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o2755)).expect("setgid: chmod 2755");
        let sg = SetGid { dir, gid };
        // As `make install`: the audit trail's, the rate counters', the
        // breaker's, the suspensions', the backoffs' and the MTA-STS
        // policies' too.
        for sub in [
            "",
            "tmp",
            "queue",
            "rate",
            "audit",
            "breaker",
            "suspended",
            "backoff",
            "mta-sts",
        ] {
            mkdir_owned(&sg.spool().join(sub), gid, 0o2770);
        }
        sg
    }

    pub fn bin(&self) -> PathBuf {
        self.dir.path().join("sbin/vsendmail")
    }

    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// The installation's spool (`root:GROUP` 2770).
    pub fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    /// The prefix (to create further files in, e.g. a plain copy of the binary).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Point `env`'s config at this installation's spool.
    pub fn attach(&self, env: &Env) {
        env.conf(&format!("spool = \"{}\"", self.spool().display()));
    }

    /// A command that runs the set-gid binary with `args` as `user` (root when
    /// `None`), with `env`'s current config as `/etc/vsendmail.conf`, in the
    /// network namespace `netns` when given. Environment: only `PATH`; add
    /// more with `.env()`. Run it with [`Env::output`].
    pub fn cmd(
        &self,
        env: &Env,
        user: Option<&str>,
        netns: Option<&str>,
        args: &[&str],
    ) -> Command {
        self.cmd_program(env, user, netns, &self.bin(), args)
    }

    /// Like [`SetGid::cmd`], but runs `program` (e.g. `/bin/sh -c "... vsendmail ..."`,
    /// as PHP's mail() does) in the same setting.
    pub fn cmd_program(
        &self,
        env: &Env,
        user: Option<&str>,
        netns: Option<&str>,
        program: &Path,
        args: &[&str],
    ) -> Command {
        let etc = self.dir.path().join("etc");
        let conf = etc.join("vsendmail.conf");
        fs::write(&conf, env.conf_text()).expect("setgid: write vsendmail.conf");
        fs::set_permissions(&conf, fs::Permissions::from_mode(0o644)).expect("setgid: chmod conf");
        let mut c = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "unshare"]);
                c
            }
            None => Command::new("unshare"),
        };
        // Exit 120 if the overlay cannot be mounted (then the test says so).
        c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg("mount -t overlay vstrust-etc -o \"lowerdir=$1:/etc\" /etc || exit 120; shift; exec \"$@\"")
            .arg("sh")
            .arg(&etc);
        if let Some(u) = user {
            let (uid, gid) = users::user(u);
            c.arg("setpriv")
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--init-groups")
                .arg("--");
        }
        c.arg(program).args(args);
        c.env_clear().env("PATH", vs::PATH).current_dir(env.dir());
        c
    }

    /// Run the set-gid binary as `user` with `args` and `stdin`.
    pub fn run(&self, env: &Env, user: Option<&str>, args: &[&str], stdin: &[u8]) -> Out {
        let out = env.output(self.cmd(env, user, None, args), stdin);
        assert_ne!(
            out.code, 120,
            "setgid: cannot mount the /etc overlay:\n{out}"
        );
        out
    }
}

/// Run `program args` as `user` (no set-id), environment only `PATH`: for
/// showing what a user can do without vsendmail (read a spool file, connect).
pub fn as_user(user: &str, program: &str, args: &[&str]) -> Out {
    let (uid, gid) = users::user(user);
    let o = Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--init-groups")
        .arg("--")
        .arg(program)
        .args(args)
        .env_clear()
        .env("PATH", vs::PATH)
        .current_dir("/")
        .output()
        .expect("setgid: run setpriv");
    Out {
        code: o.status.code().unwrap_or(128),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}
