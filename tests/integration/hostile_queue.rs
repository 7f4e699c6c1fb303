//! Issue 13: no user can stall or slow the queue for others.
//!
//! How: every attack runs as an unprivileged throwaway user against the
//! set-gid binary as installed (`support::setgid`); what must still work is
//! run by root or by a second user. Every wait is bounded: a run that would
//! hang on the old code is killed by the harness's timeout and the test
//! fails saying so.
//!
//! Covered: a user's stopped `-q` pins no other user's message (ownership is
//! read without the lock); `--delete` of a message that a stopped process
//! holds says `busy` within seconds instead of waiting forever; a rate
//! warning written into a full stderr pipe holds no lock a queue run needs,
//! and a counter locked by a stopped process is skipped; a server dripping a
//! never-ending greeting times out as a whole; 20 silent MX addresses cost 5
//! tries (`mx_address_limit`), deferring hosts 2 sessions
//! (`mx_session_limit`), and `message_time_budget` bounds the rest.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::setgid::SetGid;
use crate::support::sink::{Action, Rule, Sink, SinkConfig, Step};
use crate::support::vs::{Env, Out};
use crate::support::wait_until;

const ALICE: &str = "vshq-alice";
const BOB: &str = "vshq-bob";
const ALICE_ID: &str = "alice@alice-shop.test";
const BOB_ID: &str = "bob@bob-shop.test";
const T: Duration = Duration::from_secs(15);

/// A set-gid installation with a sink as relay, Alice and Bob as identities.
struct World {
    env: Env,
    sg: SetGid,
    sink: Sink,
}

impl World {
    fn new(sink: Sink) -> World {
        let env = Env::new();
        let sg = SetGid::install();
        sg.attach(&env);
        env.relay(sink.addr());
        env.virtusers(&format!("{ALICE} {ALICE_ID} -\n{BOB} {BOB_ID} -\n"));
        env.set_timeout(Duration::from_secs(60));
        // The shared directories, made by root as `make install` does.
        for sub in ["rate", "audit"] {
            let d = sg.spool().join(sub);
            fs::create_dir_all(&d).unwrap();
            nix::unistd::chown(&d, Some(0.into()), Some(sg.gid().into())).unwrap();
            fs::set_permissions(&d, fs::Permissions::from_mode(0o2770)).unwrap();
        }
        World { env, sg, sink }
    }

    fn run(&self, user: Option<&str>, args: &[&str], stdin: &[u8]) -> Out {
        self.sg.run(&self.env, user, args, stdin)
    }

    /// Start the set-gid binary as `user` in the background (stdio closed).
    fn spawn(&self, user: Option<&str>, args: &[&str]) -> Child {
        let mut c = self.sg.cmd(&self.env, user, None, args);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c.spawn().expect("spawn the set-gid binary")
    }

    /// Ids of complete queued messages.
    fn queued(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.sg.spool().join("queue"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()?
                            .strip_suffix(".env")
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Whether some process holds the lock of message `id`.
    fn locked(&self, id: &str) -> bool {
        is_locked(&self.sg.spool().join(format!("queue/{id}.msg")))
    }
}

fn is_locked(p: &Path) -> bool {
    let Ok(f) = fs::File::open(p) else {
        return false;
    };
    // SAFETY: flock on a descriptor we own; released when `f` closes.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) != 0 }
}

fn msg(subject: &str) -> Vec<u8> {
    format!("To: friend@dest.test\nSubject: {subject}\n\nHello.\n").into_bytes()
}

/// Kills (SIGKILL) and reaps a background child when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(c: &Child, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig);
}

// ---------------------------------------------------------------------------
// Point 7: locks are taken only on one's own messages, and never waited for
// without bound.

#[test]
fn hostile_stopped_queue_run_of_one_user_pins_no_message_of_another() {
    let w = World::new(Sink::start_default());
    w.run(Some(BOB), &["-odq", "friend@dest.test"], &msg("bob's"))
        .expect_code(0);
    let ids = w.queued();
    assert_eq!(ids.len(), 1);
    let id = ids[0].clone();
    // Alice's -q, frozen right after every flock() it makes (as a SIGSTOP at
    // that moment would): strace, as root, delays each flock's return by a
    // minute. Taking Bob's lock before reading whose message it is pinned it.
    let c = w.sg.cmd(&w.env, Some(ALICE), None, &["-q"]);
    let mut st = Command::new("strace");
    st.args([
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "-e",
        "trace=flock",
        "-e",
        "inject=flock:delay_exit=60000000",
    ])
    .arg(c.get_program())
    .args(c.get_args())
    .env_clear()
    .env("PATH", crate::support::vs::PATH)
    .current_dir(w.env.dir())
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut alice = Reaped(st.spawn().expect("run strace (apt-get install strace)"));
    // Either Alice's run ends (it never touched Bob's lock) or it sits on it.
    wait_until("Alice's -q to end or to hold Bob's lock", T, || {
        (matches!(alice.0.try_wait(), Ok(Some(_))) || w.locked(&id)).then_some(())
    });
    // Root's queue run delivers Bob's message meanwhile.
    w.run(None, &["-q"], b"").expect_code(0);
    assert!(
        !w.sink.messages().is_empty(),
        "root's -q could not deliver Bob's message while Alice's stopped -q ran; queue: {:?}",
        w.queued()
    );
    assert!(w.queued().is_empty(), "{:?}", w.queued());
    drop(alice);
}

#[test]
fn hostile_delete_of_a_message_held_by_a_stopped_process_is_busy_not_a_hang() {
    // The relay accepts and never greets: Bob's own -q sits on his message's
    // lock, and Bob stops it there.
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::new(Step::Connect, Action::Hang)],
        ..Default::default()
    });
    let w = World::new(sink);
    w.run(Some(BOB), &["-odq", "friend@dest.test"], &msg("pinned"))
        .expect_code(0);
    let id = w.queued()[0].clone();
    let bob = Reaped(w.spawn(Some(BOB), &["-q"]));
    wait_until("Bob's -q to hold his message's lock", T, || {
        w.locked(&id).then_some(())
    });
    signal(&bob.0, nix::sys::signal::Signal::SIGSTOP);

    let t0 = Instant::now();
    let o = w.run(None, &["--delete", &id], b"");
    assert_eq!(o.code, 75, "--delete of a locked message:\n{o}");
    assert!(
        o.stderr.contains(&format!(
            "{id}: busy (being delivered by another process); try again"
        )),
        "{o}"
    );
    assert!(t0.elapsed() < Duration::from_secs(50), "bounded wait");
    assert_eq!(w.queued(), vec![id.clone()], "nothing changed");
    // --hold and --release say the same; root's -qI skips it without waiting.
    let o = w.run(None, &["--hold", &id], b"");
    assert_eq!(o.code, 75, "{o}");
    w.run(None, &[&format!("-qI{id}")], b"").expect_code(0);
    drop(bob);
    // Once the stopped process is gone the same command works.
    let o = w.run(None, &["--delete", &id], b"");
    o.expect_code(0);
    assert!(o.stdout.contains(&format!("{id}: deleted")), "{o}");
    assert!(w.queued().is_empty());
}

// ---------------------------------------------------------------------------
// Point 6: the rate counter's lock is never held while writing to a caller's
// descriptor, and queue runs never wait for it without bound.

/// A pipe whose buffer is full: a write to `.1` blocks (`.0`, the read end,
/// stays open and is never read).
fn full_pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    let (r, w) = nix::unistd::pipe().expect("pipe");
    let fd = w.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        let chunk = [b'x'; 4096];
        while libc::write(fd, chunk.as_ptr().cast(), chunk.len()) > 0 {}
        libc::fcntl(fd, libc::F_SETFL, fl);
    }
    (r, w)
}

#[test]
fn hostile_rate_warning_into_a_full_stderr_pipe_stalls_no_queue_run() {
    let w = World::new(Sink::start_default());
    w.env.virtusers(&format!(
        "{ALICE} {ALICE_ID} - rate=1/h\n{BOB} {BOB_ID} -\n"
    ));
    // The first message counts, the second is held for the rate.
    w.run(Some(ALICE), &["friend@dest.test"], &msg("one"))
        .expect_code(0);
    let o = w.run(Some(ALICE), &["friend@dest.test"], &msg("two"));
    o.expect_code(0);
    assert!(o.stderr.contains("when the rate allows"), "{o}");
    let counter = w.sg.spool().join(format!("rate/{ALICE_ID}"));
    let held = || {
        fs::read_to_string(&counter)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("h "))
            .count()
    };
    assert_eq!(held(), 1);
    // The third one's warning goes into a full pipe: Alice's process blocks
    // writing it.
    let (_r, wfd) = full_pipe();
    let mut c = w.sg.cmd(&w.env, Some(ALICE), None, &["friend@dest.test"]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::from(wfd));
    let mut child = c.spawn().expect("spawn");
    {
        use std::io::Write;
        let mut i = child.stdin.take().unwrap();
        i.write_all(&msg("three")).unwrap();
    }
    let alice = Reaped(child);
    wait_until("the third message to be counted as held", T, || {
        (held() == 2).then_some(())
    });
    // Root's queue run still runs to its end (the harness kills it after 60 s).
    w.run(None, &["-q"], b"").expect_code(0);
    assert!(
        !is_locked(&counter),
        "the blocked process holds the counter lock"
    );
    drop(alice);

    // A process that keeps the counter locked (as a stopped one would) makes
    // a queue run skip the held message for this run, logged, not wait.
    let f = fs::File::open(&counter).unwrap();
    // SAFETY: flock on a descriptor we own.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    w.run(None, &["-q"], b"").expect_code(0);
    assert!(
        w.env
            .log_lines()
            .iter()
            .any(|l| l.contains("cannot use the rate counter") && l.contains("stays held")),
        "{:#?}",
        w.env.log_lines()
    );
    drop(f);
}

// ---------------------------------------------------------------------------
// Point 8: a hostile destination costs a bounded time: whole replies have
// deadlines, addresses and sessions per destination are capped, and each
// message has a time budget per attempt.

/// A server that drips a never-ending multi-line greeting, one byte per
/// 200 ms, on every connection, until dropped.
struct Drip {
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drip {
    fn start() -> Drip {
        use std::io::Write;
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let st = stop.clone();
        l.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        let st = st.clone();
                        std::thread::spawn(move || {
                            let text = b"220-drip drip drip\r\n";
                            for b in text.iter().cycle() {
                                if st.load(Ordering::SeqCst) || s.write_all(&[*b]).is_err() {
                                    return;
                                }
                                std::thread::sleep(Duration::from_millis(200));
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Drip { addr, stop }
    }
}

impl Drop for Drip {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn hostile_dripping_greeting_times_out_as_a_whole() {
    let drip = Drip::start();
    let w = World::new(Sink::start_default());
    w.env.relay(drip.addr);
    w.env.conf("[timeouts]\ngreeting = 2");
    w.env.set_timeout(Duration::from_secs(30));
    // Bob's own delivery and root's queue run both end, the message queued.
    let o = w.run(Some(BOB), &["friend@dest.test"], &msg("drip"));
    o.expect_code(0);
    assert_eq!(w.queued().len(), 1);
    w.run(None, &["-q"], b"").expect_code(0);
    let q = w.run(None, &["-bp"], b"").stdout;
    assert!(q.contains("no reply within 2s (timeout)"), "{q}");
}

/// Direct delivery to `silent.test`, whose MX hosts have `n` addresses
/// 127.0.0.10, .11, …, each a sink with `rules`, all on one port.
fn mx_world(
    n: u8,
    hosts: u8,
    rules: Vec<Rule>,
) -> (World, Vec<Sink>, crate::support::dns::DnsServer) {
    use crate::support::dns::{DnsServer, Zone};
    let sinks = Sink::start_many(
        (0..n)
            .map(|i| SinkConfig {
                bind: std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 10 + i)),
                rules: rules.clone(),
                ..Default::default()
            })
            .collect(),
    );
    let mut zone = Zone::new();
    for h in 0..hosts {
        zone = zone.mx("silent.test", 10, &format!("mx{h}.silent.test"));
    }
    for i in 0..n {
        zone = zone.a(
            &format!("mx{}.silent.test", i % hosts),
            std::net::Ipv4Addr::new(127, 0, 0, 10 + i),
        );
    }
    let dns = DnsServer::start(zone);
    let env = Env::new();
    let sg = SetGid::install();
    sg.attach(&env);
    env.conf(&format!(
        "dns = [\"{}\"]\nmx_port = {}\nprefer = \"ipv4\"",
        dns.addr(),
        sinks[0].port()
    ));
    env.virtusers(&format!("{ALICE} {ALICE_ID} -\n{BOB} {BOB_ID} -\n"));
    env.set_timeout(Duration::from_secs(40));
    let w = World {
        env,
        sg,
        sink: Sink::start_default(),
    };
    (w, sinks, dns)
}

fn tried(sinks: &[Sink]) -> usize {
    sinks.iter().map(|s| s.connections().len()).sum()
}

#[test]
fn hostile_twenty_silent_mx_addresses_cost_five_tries() {
    // 10 MX hosts with 2 addresses each; every one accepts and never greets.
    let (w, sinks, _dns) = mx_world(20, 10, vec![Rule::new(Step::Connect, Action::Hang)]);
    w.env.conf("[timeouts]\ngreeting = 1");
    w.run(Some(BOB), &["-odq", "someone@silent.test"], &msg("silent"))
        .expect_code(0);
    w.run(None, &["-q"], b"").expect_code(0);
    assert_eq!(tried(&sinks), 5, "addresses tried (mx_address_limit 5)");
    let q = w.run(None, &["-bp"], b"").stdout;
    assert!(q.contains("mx_address_limit 5"), "{q}");
}

#[test]
fn hostile_deferring_mx_hosts_cost_two_sessions() {
    let (w, sinks, _dns) = mx_world(5, 5, vec![Rule::reply(Step::Mail, "451 4.3.0 not now")]);
    w.run(Some(BOB), &["-odq", "someone@silent.test"], &msg("busy"))
        .expect_code(0);
    w.run(None, &["-q"], b"").expect_code(0);
    assert_eq!(tried(&sinks), 2, "sessions tried (mx_session_limit 2)");
    let q = w.run(None, &["-bp"], b"").stdout;
    // The recipient keeps the last real reply.
    assert!(q.contains("451 4.3.0 not now"), "{q}");
}

#[test]
fn hostile_destination_is_bounded_by_the_message_time_budget() {
    let (w, sinks, _dns) = mx_world(20, 10, vec![Rule::new(Step::Connect, Action::Hang)]);
    w.env
        .conf("mx_address_limit = 0\nmessage_time_budget = \"3s\"\n[timeouts]\ngreeting = 2");
    w.run(Some(BOB), &["-odq", "someone@silent.test"], &msg("budget"))
        .expect_code(0);
    w.run(None, &["-q"], b"").expect_code(0);
    let n = tried(&sinks);
    assert!(
        (1..=3).contains(&n),
        "{n} addresses tried within a 3s budget"
    );
    let q = w.run(None, &["-bp"], b"").stdout;
    assert!(q.contains("message_time_budget (3s) spent"), "{q}");
}

// ---------------------------------------------------------------------------
// Point 9 (part): a full spool makes a queue run log and go on, message by
// message, instead of ending at the first one it cannot save.

/// A tmpfs of `size` mounted over the installation's spool (root:GROUP
/// 2770, its directories made as `make install` does); unmounted when dropped.
struct SmallSpool(std::path::PathBuf);

impl SmallSpool {
    fn mount(w: &World, size: &str) -> SmallSpool {
        let d = w.sg.spool();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=2770,gid={}", w.sg.gid()))
            .arg("vshq-spool")
            .arg(&d)
            .status()
            .expect("mount");
        assert!(st.success(), "mount a tmpfs on {}", d.display());
        for sub in ["tmp", "queue", "rate", "audit"] {
            let p = d.join(sub);
            fs::create_dir(&p).unwrap();
            nix::unistd::chown(&p, Some(0.into()), Some(w.sg.gid().into())).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o2770)).unwrap();
        }
        SmallSpool(d)
    }

    /// Fill the filesystem to the last byte (as root, who has no reserve on tmpfs).
    fn fill(&self) {
        use std::io::Write;
        let mut f = fs::File::create(self.0.join("fill")).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
        while f.write_all(&small[..1]).is_ok() {}
    }
}

impl Drop for SmallSpool {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn hostile_full_spool_does_not_end_the_queue_run_at_the_first_message() {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::reply(Step::Mail, "451 4.3.0 not now")],
        ..Default::default()
    });
    let w = World::new(sink);
    let spool = SmallSpool::mount(&w, "2m");
    for s in ["one", "two", "three"] {
        w.run(Some(BOB), &["-odq", "friend@dest.test"], &msg(s))
            .expect_code(0);
    }
    assert_eq!(w.queued().len(), 3);
    spool.fill();
    // Each message is tried although none can be saved. With the spool
    // full, the write-ahead audit record cannot be written either, so each
    // attempt connects and stops before MAIL FROM (nothing unrecorded is
    // sent): one connection per message shows the run went past the first.
    let o = w.run(None, &["-q"], b"");
    o.expect_code(0);
    let tried = w.sink.connections().len();
    assert_eq!(tried, 3, "every message tried:\n{}", w.sink.dump());
    assert!(
        w.env
            .log_lines()
            .iter()
            .any(|l| l.contains("the queue run goes on")),
        "{:#?}",
        w.env.log_lines()
    );
    assert_eq!(w.queued().len(), 3, "nothing lost");
    drop(spool);
}

/// Free bytes (for unprivileged users) of the filesystem holding `p`.
fn free_bytes(p: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: statvfs with a valid path and a zeroed struct to fill.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st.f_bavail * st.f_frsize
}

#[test]
fn hostile_nearly_full_spool_refuses_users_and_keeps_room_for_root() {
    let w = World::new(Sink::start_default());
    let spool = SmallSpool::mount(&w, "2m");
    // One user's queued mail leaves 40 KB (2%) of the 2 MB free.
    let left = free_bytes(&spool.0).saturating_sub(40 * 1024);
    fs::write(spool.0.join("fill"), vec![0u8; left as usize]).unwrap();
    let o = w.run(Some(ALICE), &["-odq", "friend@dest.test"], &msg("late"));
    assert_eq!(o.code, 75, "{o}");
    assert!(o.stderr.contains("spool_min_free 5%"), "{o}");
    assert!(o.stderr.contains("NOT accepted"), "{o}");
    // Root's mail (bounces, cron) still goes in, and the queue run works.
    w.run(None, &["-odq", "friend@dest.test"], &msg("root's"))
        .expect_code(0);
    w.run(None, &["-q"], b"").expect_code(0);
    assert_eq!(w.sink.wait_messages(1, T).len(), 1);
    drop(spool);
}

#[test]
fn hostile_one_user_filling_the_queue_leaves_others_sending() {
    let w = World::new(Sink::start_default());
    w.env
        .conf("max_user_queued_messages = 2\nmax_user_drafts = 1");
    for s in ["one", "two"] {
        w.run(Some(BOB), &["-odq", "friend@dest.test"], &msg(s))
            .expect_code(0);
    }
    let o = w.run(Some(BOB), &["-odq", "friend@dest.test"], &msg("three"));
    assert_eq!(o.code, 75, "{o}");
    assert!(o.stderr.contains("max_user_queued_messages 2"), "{o}");
    // Alice is not affected; a submission of hers that never ends (stdin
    // left open) uses her one draft, and only her next one is refused.
    w.run(Some(ALICE), &["-odq", "friend@dest.test"], &msg("alice"))
        .expect_code(0);
    let mut c =
        w.sg.cmd(&w.env, Some(ALICE), None, &["-odq", "friend@dest.test"]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().expect("spawn");
    let stdin = child.stdin.take();
    let never = Reaped(child);
    let tmp = w.sg.spool().join("tmp");
    wait_until("Alice's draft", T, || {
        fs::read_dir(&tmp)
            .ok()?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("new."))
            .then_some(())
    });
    let o = w.run(Some(ALICE), &["-odq", "friend@dest.test"], &msg("more"));
    assert_eq!(o.code, 75, "{o}");
    assert!(o.stderr.contains("max_user_drafts 1"), "{o}");
    // Root's mail is never limited.
    w.run(None, &["-odq", "friend@dest.test"], &msg("root"))
        .expect_code(0);
    drop(stdin);
    drop(never);
}
