//! Issue 13 point 14, privilege separation: run set-gid by a user, the
//! process that talks to the network (DNS, TLS, the replies of a server the
//! attacker may choose) holds no trace of the vsendmail group, while the
//! parent that keeps the group records the outcome. Played as an
//! unprivileged throwaway user against the set-gid binary (`support::setgid`),
//! looking at the delivering processes from outside (`/proc`) while the
//! receiver stalls.

use crate::support::setgid::SetGid;
use crate::support::sink::{Action, Rule, Sink, SinkConfig, Step};
use crate::support::vs::Env;
use crate::support::{users, wait_until};
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
const U: &str = "vst_priv_a";

struct World {
    env: Env,
    sg: SetGid,
    sink: Sink,
}

impl World {
    fn new(sink: Sink) -> World {
        users::user(U);
        let env = Env::new();
        let sg = SetGid::install();
        sg.attach(&env);
        env.relay(sink.addr());
        env.virtusers(&format!("{U}  a@shop.example  127.0.0.2\n"));
        env.set_timeout(Duration::from_secs(90));
        World { env, sg, sink }
    }

    /// Start `vsendmail -odi -i rcpt` as the user with `body` on stdin.
    fn spawn_send(&self, body: &[u8]) -> std::process::Child {
        let mut c = self.sg.cmd(
            &self.env,
            Some(U),
            None,
            &["-odi", "-i", "rcpt@dest.example"],
        );
        c.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn vsendmail");
        child.stdin.take().unwrap().write_all(body).unwrap();
        child
    }

    fn audit_lines(&self) -> Vec<String> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(self.sg.spool().join("audit"))
            .unwrap()
            .flatten()
        {
            v.extend(
                std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_string),
            );
        }
        v
    }

    fn envelopes(&self) -> usize {
        std::fs::read_dir(self.sg.spool().join("queue"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "env"))
            .count()
    }
}

/// The process that holds the client end of a TCP connection to `port` on
/// loopback (from /proc/net/tcp and each process's descriptors).
fn connected_to(port: u16) -> Option<i32> {
    let tcp = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let inodes: Vec<String> = tcp
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let rem_port = u16::from_str_radix(f.get(2)?.rsplit(':').next()?, 16).ok()?;
            (rem_port == port && f.get(9)? != &"0").then(|| f[9].to_string())
        })
        .collect();
    if inodes.is_empty() {
        return None;
    }
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let fds = std::fs::read_dir(e.path().join("fd")).ok()?;
        fds.flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .any(|l| {
                inodes
                    .iter()
                    .any(|i| l.to_str() == Some(&format!("socket:[{i}]")))
            })
            .then_some(pid)
    })
}

/// A `Key:` line of /proc/PID/status, split into its numbers.
fn status_ids(pid: i32, key: &str) -> Vec<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| {
            v.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn parent_of(pid: i32) -> i32 {
    status_ids(pid, "PPid").first().copied().unwrap_or(0) as i32
}

#[test]
fn hostile_network_process_holds_no_vsendmail_group() {
    // The receiver stalls before answering DATA: the session is open while we look.
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::new(Step::Data, Action::Delay(Duration::from_secs(8)))],
        ..Default::default()
    });
    let w = World::new(sink);
    let (uid, gid) = users::user(U);
    let group = w.sg.gid();
    let child = w.spawn_send(b"Message-ID: <priv.1@shop.example>\nSubject: p\n\nbody\n");
    let net = wait_until("the process connected to the receiver", WAIT, || {
        connected_to(w.sink.port())
    });
    let gids = status_ids(net, "Gid");
    let groups = status_ids(net, "Groups");
    let parent = parent_of(net);
    let parent_gids = status_ids(parent, "Gid");
    // The network side: real, effective, saved and filesystem gid all the user's.
    assert_eq!(gids, [gid; 4], "Gid of the network process {net}");
    assert!(!groups.contains(&group), "Groups of {net}: {groups:?}");
    assert_eq!(status_ids(net, "Uid"), [uid; 4]);
    // The parent it answers to is the set-gid vsendmail, still holding the group.
    assert_eq!(
        std::fs::read_link(format!("/proc/{parent}/exe")).unwrap(),
        w.sg.bin()
    );
    assert_eq!(
        parent_gids.get(1),
        Some(&group),
        "parent {parent}: {parent_gids:?}"
    );
    // And the message is delivered and recorded as usual.
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let msgs = w.sink.wait_messages(1, WAIT);
    assert!(msgs[0].text().contains("<priv.1@shop.example>"));
    let trail = w.audit_lines();
    let mine: Vec<&String> = trail
        .iter()
        .filter(|l| l.contains("<priv.1@shop.example>") && l.contains("\"phase\""))
        .collect();
    assert_eq!(mine.len(), 2, "{trail:?}");
    // The per-recipient record (--log) of the child's outcome, written by
    // the parent, which kept the group.
    assert!(
        trail.iter().any(|l| l.contains("<priv.1@shop.example>")
            && l.contains("\"status\":\"sent\"")
            && l.contains("\"to\":\"rcpt@dest.example\"")),
        "{trail:?}"
    );
    assert!(mine[0].contains("\"phase\":\"open\""), "{}", mine[0]);
    assert!(mine[1].contains("\"result\":\"sent (250"), "{}", mine[1]);
    assert_eq!(w.envelopes(), 0);
    assert!(
        w.env
            .log_lines()
            .iter()
            .any(|l| l.contains("to=<rcpt@dest.example>") && l.contains("status=sent")),
        "{:?}",
        w.env.log_lines()
    );
}

#[test]
fn hostile_killed_network_process_leaves_the_message_queued_and_recorded() {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::new(Step::Data, Action::Hang).times(1)],
        ..Default::default()
    });
    let w = World::new(sink);
    let child = w.spawn_send(b"Message-ID: <priv.2@shop.example>\nSubject: p\n\nbody\n");
    // Past MAIL FROM: the write-ahead record is in the trail.
    wait_until("MAIL FROM at the receiver", WAIT, || {
        w.sink
            .connections()
            .into_iter()
            .find(|c| c.commands.iter().any(|l| l.starts_with("MAIL")))
    });
    let net = wait_until("the process connected to the receiver", WAIT, || {
        connected_to(w.sink.port())
    });
    let parent = parent_of(net);
    assert_eq!(
        std::fs::read_link(format!("/proc/{parent}/exe")).unwrap(),
        w.sg.bin(),
        "the network process {net} is a child of vsendmail"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(net),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The parent saw its child die: deferred, queued, and the caller told so.
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("was killed by SIGKILL") && stderr.contains("stays queued"),
        "{stderr}"
    );
    assert_eq!(w.envelopes(), 1);
    let trail = w.audit_lines();
    assert!(
        trail
            .iter()
            .any(|l| l.contains("<priv.2@shop.example>") && l.contains("\"phase\":\"open\"")),
        "{trail:?}"
    );
    assert!(
        w.env
            .log_lines()
            .iter()
            .any(|l| l.contains("status=deferred") && l.contains("killed by SIGKILL")),
        "{:?}",
        w.env.log_lines()
    );
    // The next queue run delivers it.
    w.sg.run(&w.env, None, &["-q"], b"").expect_code(0);
    let msgs = w.sink.wait_messages(1, WAIT);
    assert!(msgs[0].text().contains("<priv.2@shop.example>"));
    assert_eq!(w.envelopes(), 0);
}
