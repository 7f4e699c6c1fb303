//! Issue 13: a compromised site can neither hide its mail, nor stall the
//! queue, nor starve the other sites. Each test plays the attack as an
//! unprivileged throwaway user against the set-gid binary (`support::setgid`)
//! and checks what the administrator sees: the audit trail, `--who`, syslog,
//! the spool.

use crate::support::setgid::SetGid;
use crate::support::sink::{Action, Rule, Sink, SinkConfig, Step};
use crate::support::vs::{Env, Out};
use crate::support::{users, wait_until};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);
const UA: &str = "vst_hacc_a";
const UB: &str = "vst_hacc_b";

/// A set-gid installation relaying to `sink`, with two users on 127.0.0.2/.3.
struct World {
    env: Env,
    sg: SetGid,
    sink: Sink,
}

impl World {
    fn new(sink: Sink, options: &str) -> World {
        users::user(UA);
        users::user(UB);
        let env = Env::new();
        let sg = SetGid::install();
        sg.attach(&env);
        env.relay(sink.addr());
        env.virtusers(&format!(
            "{UA}  a@shop.example  127.0.0.2  {options}\n{UB}  b@blog.example  127.0.0.3  {options}\n"
        ));
        env.set_timeout(Duration::from_secs(90));
        World { env, sg, sink }
    }

    fn run(&self, user: Option<&str>, args: &[&str], stdin: &[u8]) -> Out {
        self.sg.run(&self.env, user, args, stdin)
    }

    fn audit_dir(&self) -> PathBuf {
        self.sg.spool().join("audit")
    }

    /// Every line of every daily audit file.
    fn audit_lines(&self) -> Vec<String> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(self.audit_dir()).unwrap().flatten() {
            // The per-recipient log (issue 15) lives beside the trail.
            if e.file_name().to_string_lossy().starts_with("log-") {
                continue;
            }
            v.extend(
                std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_string),
            );
        }
        v
    }

    /// Envelope files in the queue.
    fn envelopes(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.sg.spool().join("queue"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "env"))
            .collect()
    }
}

fn msg(mid: &str) -> Vec<u8> {
    format!("Message-ID: {mid}\nSubject: hostile\n\nbody\n").into_bytes()
}

fn uid(u: &str) -> u32 {
    users::user(u).0
}

/// Today's audit file name (UTC).
fn today_file() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    day_file(t)
}

fn day_file(t: i64) -> String {
    let d = t.div_euclid(86400);
    // civil_from_days (Howard Hinnant)
    let z = d + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{day:02}.jsonl")
}

/// The queue id of each message's first syslog line (`ID: uid=… from=<…>`).
fn submitted_ids(env: &Env) -> Vec<String> {
    env.log_lines()
        .iter()
        .filter(|l| l.contains(" from=<") && l.contains(" nrcpt="))
        .filter_map(|l| l.split(':').next().map(str::to_string))
        .collect()
}

/// Split a `key=value …` line into its fields, honouring `"quoted"` values;
/// the last key (`result`, `status`) takes the rest of the line.
/// The value of `key` among the pairs `kv` split (the field must be there).
fn field(f: &[(String, String)], key: &str) -> String {
    f.iter()
        .find(|(k, _)| k == key)
        .map(|x| x.1.clone())
        .unwrap_or_else(|| panic!("no {key}= in {f:?}"))
}

fn kv(line: &str, last: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].to_string();
        rest = &rest[eq + 1..];
        if key == last {
            out.push((key, rest.to_string()));
            break;
        }
        let (val, tail) = if let Some(r) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut it = r.char_indices();
            let mut end = r.len();
            while let Some((i, c)) = it.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = it.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            (v, &r[end..])
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            (rest[..end].to_string(), &rest[end..])
        };
        out.push((key, val));
        rest = tail.trim_start();
    }
    out
}

/// Run a prepared command whose stderr is a pipe nobody reads (closed read
/// end: every write to it fails with EPIPE), with a bounded wait.
fn run_with_dead_stderr(mut c: std::process::Command, stdin: &[u8]) -> i32 {
    let (r, w) = nix::unistd::pipe().expect("pipe");
    drop(r);
    c.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::from(w));
    let mut child = c.spawn().expect("spawn");
    {
        let mut i = child.stdin.take().unwrap();
        let _ = i.write_all(stdin);
    }
    let end = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            use std::os::unix::process::ExitStatusExt;
            return st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0));
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the run with a dead stderr did not finish in 90 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `/bin/sh -c 'ulimit -f BLOCKS; exec vsendmail ARGS'` as `user`.
fn with_file_limit(w: &World, user: &str, blocks: u32, args: &[&str], stdin: &[u8]) -> Out {
    let bin = w.sg.bin();
    let script = format!("ulimit -f {blocks} && exec \"$0\" \"$@\"");
    let mut a: Vec<&str> = vec!["-c", &script, bin.to_str().unwrap()];
    a.extend_from_slice(args);
    let c =
        w.sg.cmd_program(&w.env, Some(user), None, Path::new("/bin/sh"), &a);
    w.env.output(c, stdin)
}

// ---------------------------------------------------------------------------
// 2. Queue ids

#[test]
fn hostile_queue_ids_never_repeat_when_inodes_are_reused() {
    let w = World::new(Sink::start_default(), "");
    // Delivered messages are removed at once, so their inodes are handed
    // out again: the old ids (second + inode) repeated within a second.
    for i in 0..4 {
        for u in [UA, UB] {
            w.run(
                Some(u),
                &["-i", "rcpt@dest.example"],
                &msg(&format!("<{i}.{u}@x>")),
            )
            .expect_code(0);
        }
    }
    w.sink.wait_messages(8, WAIT);
    let ids = submitted_ids(&w.env);
    assert_eq!(ids.len(), 8, "{:#?}", w.env.log_lines());
    let mut uniq = ids.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 8, "queue ids repeat: {ids:?}");
    for id in &ids {
        assert!(
            id.len() >= 14 && id.len() <= 24 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{id}"
        );
    }
    // Sortable by arrival: the order of submission.
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids);
}

// ---------------------------------------------------------------------------
// 1. The audit record is written ahead, by a process the user cannot stop
//    from writing it.

#[test]
fn hostile_file_size_limit_cannot_hide_a_delivery() {
    let w = World::new(Sink::start_default(), "");
    // Today's shared audit file is larger than the user's `ulimit -f`.
    let today = w.audit_dir().join(today_file());
    std::fs::write(&today, "{\"filler\":true}\n".repeat(64 * 1024)).unwrap();
    nix::unistd::chown(&today, Some(0.into()), Some(w.sg.gid().into())).unwrap();
    let before = std::fs::metadata(&today).unwrap().len();
    let o = with_file_limit(
        &w,
        UA,
        64,
        &["-i", "rcpt@dest.example"],
        &msg("<ulimit.hacc@shop.example>"),
    );
    // Not killed by SIGXFSZ; the message is safe in the queue, not sent.
    o.expect_code(0);
    assert!(
        w.sink.messages().is_empty(),
        "sent unrecorded:\n{}",
        w.sink.dump()
    );
    assert!(
        w.sink
            .connections()
            .iter()
            .all(|c| !c.commands.iter().any(|l| l.starts_with("MAIL"))),
        "MAIL FROM before the record:\n{}",
        w.sink.dump()
    );
    assert_eq!(w.envelopes().len(), 1, "{o}");
    assert_eq!(std::fs::metadata(&today).unwrap().len(), before);
    let logs = w.env.log_lines().join("\n");
    assert!(logs.contains("cannot write the audit record"), "{logs}");
    // The queue run (root) sends it, recorded.
    w.run(None, &["-q"], b"").expect_code(0);
    let m = w.sink.wait_messages(1, WAIT);
    let peer = m[0].peer.to_string();
    let o = w.run(None, &["--who", &peer], b"");
    o.expect_code(0);
    let f = kv(o.stdout.trim_end(), "result");
    let get = |k: &str| field(&f, k);
    assert_eq!(get("uid"), uid(UA).to_string(), "{o}");
    assert_eq!(get("message_id"), "<ulimit.hacc@shop.example>");
    assert!(get("result").starts_with("sent (250"), "{o}");
    assert_eq!(o.stdout.lines().count(), 1, "one line per transaction: {o}");
}

#[test]
fn hostile_closed_stderr_pipe_cannot_hide_a_verbose_delivery() {
    let w = World::new(Sink::start_default(), "");
    let c =
        w.sg.cmd(&w.env, Some(UA), None, &["-v", "-i", "rcpt@dest.example"]);
    let code = run_with_dead_stderr(c, &msg("<epipe.hacc@shop.example>"));
    assert_eq!(code, 0, "a write to a dead stderr ended the run");
    let m = w.sink.wait_messages(1, WAIT);
    assert!(w.envelopes().is_empty(), "delivered and still queued");
    let o = w.run(None, &["--who", "<epipe.hacc@shop.example>"], b"");
    o.expect_code(0);
    let f = kv(o.stdout.trim_end(), "result");
    let get = |k: &str| field(&f, k);
    assert_eq!(get("src"), m[0].peer.to_string());
    assert!(get("result").starts_with("sent (250"), "{o}");
    // Both records are in the trail: the one written before MAIL FROM and
    // the outcome.
    let lines = w.audit_lines();
    let mine: Vec<&String> = lines.iter().filter(|l| l.contains("epipe.hacc")).collect();
    assert_eq!(mine.len(), 2, "{mine:#?}");
    assert!(mine[0].contains("\"phase\":\"open\""), "{}", mine[0]);
    assert!(mine[1].contains("\"phase\":\"close\""), "{}", mine[1]);
    assert!(
        w.env.log_lines().iter().any(|l| l.contains("status=sent")),
        "{:#?}",
        w.env.log_lines()
    );
}

#[test]
fn hostile_killed_sender_still_leaves_its_connection_in_the_trail() {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::new(Step::Data, Action::Hang)],
        ..Default::default()
    });
    let w = World::new(sink, "");
    let mut c =
        w.sg.cmd(&w.env, Some(UA), None, &["-i", "rcpt@dest.example"]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().expect("spawn");
    {
        let mut i = child.stdin.take().unwrap();
        i.write_all(&msg("<killed.hacc@shop.example>")).unwrap();
    }
    // The transaction is under way (MAIL, RCPT, DATA sent) ...
    wait_until("MAIL FROM at the sink", WAIT, || {
        w.sink
            .connections()
            .into_iter()
            .find(|c| c.commands.iter().any(|l| l.starts_with("MAIL")))
    });
    // ... when the user kills their own process (SIGKILL: no handler runs).
    let bin = w.sg.bin();
    let pid = wait_until("the vsendmail process", WAIT, || {
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            (std::fs::read_link(e.path().join("exe")).ok()? == bin).then_some(pid)
        })
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait();
    let peer = w.sink.connections()[0].peer.to_string();
    let o = w.run(None, &["--who", &peer], b"");
    o.expect_code(0);
    let f = kv(o.stdout.trim_end(), "result");
    let get = |k: &str| field(&f, k);
    assert_eq!(get("uid"), uid(UA).to_string(), "{o}");
    assert_eq!(get("message_id"), "<killed.hacc@shop.example>");
    assert!(
        get("result").starts_with("unknown (no outcome recorded"),
        "{o}"
    );
    // The same by Message-ID, and as the user.
    let o2 = w.run(Some(UA), &["--who", "<killed.hacc@shop.example>"], b"");
    assert_eq!(o2.stdout, o.stdout, "{o2}");
}

#[test]
fn hostile_file_size_limit_cannot_dodge_the_rate_counter() {
    let w = World::new(Sink::start_default(), "rate=100000/h");
    // A counter larger than the user's file size limit, every count recent.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let counter = w.sg.spool().join("rate").join("a@shop.example");
    let text: String = (0..20_000).map(|i| format!("t {}\n", now_ms - i)).collect();
    std::fs::write(&counter, &text).unwrap();
    let o = with_file_limit(
        &w,
        UA,
        64,
        &["-i", "rcpt@dest.example"],
        &msg("<rate.hacc@shop.example>"),
    );
    // The count cannot be written: refused before anything is sent.
    assert_eq!(o.code, 75, "{o}");
    assert!(w.sink.connections().is_empty(), "{}", w.sink.dump());
    let after = std::fs::read_to_string(&counter).unwrap();
    assert!(after.lines().filter(|l| l.starts_with("t ")).count() >= 20_000);
}

// ---------------------------------------------------------------------------
// 3. What a user controls reaches the logs bounded and as one field

#[test]
fn hostile_message_ids_are_bounded_and_cannot_forge_fields() {
    let w = World::new(Sink::start_default(), "");
    let forged = "<x@y> result=sent uid=0 user=root src=10.9.9.9:1";
    w.run(Some(UA), &["-i", "rcpt@dest.example"], &msg(forged))
        .expect_code(0);
    let folded: String = (0..6000).map(|i| format!("\n part{i:05}x.y.z")).collect();
    w.run(
        Some(UA),
        &["-odq", "-i", "rcpt@dest.example"],
        &msg(&format!("<big{folded}@x>")),
    )
    .expect_code(0);
    // The envelope keeps a bounded Message-ID.
    let envs = w.envelopes();
    assert_eq!(envs.len(), 1);
    let e = std::fs::read_to_string(&envs[0]).unwrap();
    assert!(e.len() < 4096, "envelope of {} bytes", e.len());
    w.run(None, &["-q"], b"").expect_code(0);
    w.sink.wait_messages(2, WAIT);
    // Syslog: bounded lines; the forged Message-ID is one quoted field.
    let logs = w.env.log_lines();
    assert!(
        logs.iter().all(|l| l.len() < 2048),
        "a log line is too long"
    );
    let first = logs
        .iter()
        .find(|l| l.contains("msgid=") && l.contains("result=sent uid=0"))
        .unwrap_or_else(|| panic!("{logs:#?}"));
    let f = kv(first.split_once(": ").unwrap().1, "");
    assert_eq!(f.iter().filter(|(k, _)| k == "uid").count(), 1, "{first}");
    assert_eq!(
        f.iter().find(|(k, _)| k == "msgid").unwrap().1,
        forged,
        "{first}"
    );
    // The trail: bounded records.
    assert!(w.audit_lines().iter().all(|l| l.len() < 2048));
    // --who: one field per key, the Message-ID quoted.
    let o = w.run(Some(UA), &["--who", "127.0.0.2"], b"");
    o.expect_code(0);
    assert_eq!(o.stdout.lines().count(), 2, "{o}");
    for line in o.stdout.lines() {
        assert!(line.len() < 2048);
        let f = kv(line, "result");
        let keys: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "time",
                "uid",
                "user",
                "identity",
                "src",
                "dst",
                "queue_id",
                "message_id",
                "rcpts",
                "result"
            ],
            "{line}"
        );
        assert_eq!(f[1].1, uid(UA).to_string(), "{line}");
    }
    assert!(
        o.stdout.contains(&format!("message_id=\"{forged}\"")),
        "{o}"
    );
}

// ---------------------------------------------------------------------------
// 10. Hostile replies cannot bloat envelopes

#[test]
fn hostile_replies_are_stored_bounded() {
    let huge: String = (0..120)
        .map(|i| format!("451 4.3.0 line {i} {}\r\n", "z".repeat(3900)))
        .collect();
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::reply(Step::Rcpt(String::new()), &huge)],
        ..Default::default()
    });
    let w = World::new(sink, "");
    let rcpts: Vec<String> = (0..20).map(|i| format!("r{i}@dest.example")).collect();
    let mut args = vec!["-i"];
    args.extend(rcpts.iter().map(String::as_str));
    w.run(Some(UA), &args, &msg("<bloat.hacc@shop.example>"))
        .expect_code(0);
    let envs = w.envelopes();
    assert_eq!(envs.len(), 1);
    let size = std::fs::metadata(&envs[0]).unwrap().len();
    assert!(size < 32 * 1024, "envelope of {size} bytes");
    let o = w.run(Some(UA), &["-bp"], b"");
    assert!(o.stdout.lines().all(|l| l.len() <= 600), "{o}");
    assert!(o.stdout.contains("451 4.3.0 line 0"), "{o}");
    assert!(w.env.log_lines().iter().all(|l| l.len() < 2048));
    assert!(w.audit_lines().iter().all(|l| l.len() < 2048));
}

// ---------------------------------------------------------------------------
// 4. -L cannot hide a site's lines

#[test]
fn hostile_syslog_tag_is_only_for_root_and_trusted_users() {
    let w = World::new(Sink::start_default(), "");
    w.run(
        Some(UA),
        &["-L", "hidden", "-i", "rcpt@dest.example"],
        &msg("<tag.hacc@shop.example>"),
    )
    .expect_code(0);
    w.sink.wait_messages(1, WAIT);
    let recs = w.env.log_records();
    assert!(!recs.is_empty());
    assert!(
        recs.iter().all(|r| r.raw.contains(" vsendmail[")),
        "{:#?}",
        recs.iter().map(|r| &r.raw).collect::<Vec<_>>()
    );
    assert!(recs.iter().any(|r| r.msg.contains("-L hidden ignored")));
    // Root may.
    w.run(
        None,
        &["-L", "cron-x", "-i", "rcpt@dest.example"],
        &msg("<tag2.hacc@shop.example>"),
    )
    .expect_code(0);
    assert!(
        w.env
            .log_records()
            .iter()
            .any(|r| r.raw.contains(" cron-x["))
    );
}

// ---------------------------------------------------------------------------
// 5. Refusals reach syslog

#[test]
fn hostile_refusals_are_logged_with_uid_and_reason() {
    let w = World::new(Sink::start_default(), "");
    let warned = |w: &World, code: i32, user: &str| {
        let want = format!("uid={} user={user} refused (exit {code}): ", uid(user));
        w.env
            .log_records()
            .iter()
            .filter(|r| r.raw.starts_with("<20>") && r.msg.starts_with(&want))
            .map(|r| r.msg.clone())
            .collect::<Vec<_>>()
    };
    // CVE-2016-10033: a sender carrying more options.
    let o = w.run(
        Some(UA),
        &[
            "-f",
            "a@shop.example -X/var/www/x.php -OQueueDirectory=/tmp",
            "rcpt@dest.example",
        ],
        &msg("<cve.hacc@shop.example>"),
    );
    assert_eq!(o.code, 65, "{o}");
    let l = warned(&w, 65, UA);
    assert_eq!(l.len(), 1, "{:#?}", w.env.log_lines());
    assert!(l[0].len() < 1024, "{}", l[0]);
    // -X is refused with a warning: logged too.
    w.run(
        Some(UA),
        &["-X", "/tmp/hacc.log", "-i", "rcpt@dest.example"],
        &msg("<x.hacc@shop.example>"),
    );
    assert!(
        w.env.log_lines().iter().any(|l| l
            .starts_with(&format!("uid={} user={UA}: warning: ", uid(UA)))
            && l.contains("-X")),
        "{:#?}",
        w.env.log_lines()
    );
    // An unknown flag: before the configuration is read.
    let o = w.run(Some(UB), &["-Z", "rcpt@dest.example"], b"");
    assert_eq!(o.code, 64, "{o}");
    assert_eq!(warned(&w, 64, UB).len(), 1, "{:#?}", w.env.log_lines());
    // An unreadable DKIM key (78).
    w.env.virtusers(&format!(
        "{UA}  a@shop.example  127.0.0.2  dkim=sel:/nonexistent/key.pem\n"
    ));
    let o = w.run(
        Some(UA),
        &["-i", "rcpt@dest.example"],
        &msg("<dkim.hacc@shop.example>"),
    );
    assert_eq!(o.code, 78, "{o}");
    assert_eq!(warned(&w, 78, UA).len(), 1, "{:#?}", w.env.log_lines());
    // The spool's queue directory is missing (73).
    std::fs::remove_dir(w.sg.spool().join("queue")).unwrap();
    let o = w.run(
        Some(UB),
        &["-i", "rcpt@dest.example"],
        &msg("<spool.hacc@blog.example>"),
    );
    assert_eq!(o.code, 73, "{o}");
    assert_eq!(warned(&w, 73, UB).len(), 1, "{:#?}", w.env.log_lines());
    // Only the -X message went out (-X itself is ignored).
    assert_eq!(w.sink.messages().len(), 1, "{}", w.sink.dump());
}

#[test]
fn hostile_refusals_in_the_smtp_dialogue_are_logged() {
    let w = World::new(Sink::start_default(), "");
    let o = w.run(
        Some(UA),
        &["-bs"],
        b"EHLO x\r\nMAIL FROM:<-X/var/www/x.php@shop.example>\r\nQUIT\r\n",
    );
    assert!(o.stdout.contains("\r\n553 "), "{o}");
    let want = format!("uid={} user={UA} refused (-bs MAIL FROM): ", uid(UA));
    assert!(
        w.env
            .log_records()
            .iter()
            .any(|r| r.raw.starts_with("<20>") && r.msg.starts_with(&want)),
        "{:#?}",
        w.env.log_lines()
    );
    assert!(w.sink.connections().is_empty());
}

// ---------------------------------------------------------------------------
// 15. Shared files belong to root, not to the first user who sends

#[test]
fn hostile_queue_runs_create_the_shared_files_as_root() {
    let w = World::new(Sink::start_default(), "rate=100/h");
    w.run(None, &["-q"], b"").expect_code(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut files: Vec<PathBuf> = [now, now + 86400]
        .iter()
        .map(|t| w.audit_dir().join(day_file(*t)))
        .collect();
    files.push(w.sg.spool().join("rate").join("a@shop.example"));
    files.push(w.sg.spool().join("rate").join("b@blog.example"));
    let check = |files: &[PathBuf]| {
        for p in files {
            let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(m.uid(), 0, "{} owner", p.display());
            assert_eq!(m.gid(), w.sg.gid(), "{} group", p.display());
            assert_eq!(m.mode() & 0o7777, 0o660, "{} mode", p.display());
        }
    };
    check(&files);
    // The users' sends append to them; the owner stays root.
    for u in [UA, UB] {
        w.run(
            Some(u),
            &["-i", "rcpt@dest.example"],
            &msg(&format!("<own.{u}@x>")),
        )
        .expect_code(0);
    }
    w.sink.wait_messages(2, WAIT);
    check(&files);
    assert!(std::fs::metadata(&files[0]).unwrap().len() > 0);
}
