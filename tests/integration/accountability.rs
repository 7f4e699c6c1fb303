//! Accountability (issue 8): the audit trail and `--who`, per-identity rate
//! limits, and queue control (`--hold`, `--release`, `--delete`), driven
//! through the built binary against sinks on loopback, as root and as
//! throwaway users.

use crate::support::sink::{Rule, Sink, SinkConfig, Step};
use crate::support::vs::{Env, Out};
use crate::support::{TempDir, users};
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);
const UA: &str = "vst_acc_a";
const UB: &str = "vst_acc_b";
const UC: &str = "vst_acc_c";
/// A group none of the test users belongs to (the "vsendmail" group of a real install).
const NOT_MEMBER: &str = "vst_acc_grp";

fn msg(id: &str) -> Vec<u8> {
    format!("Message-ID: <{id}>\nSubject: acc\n\nbody of {id}\n").into_bytes()
}

/// Send one message with Message-ID `<id>`, as `user` (None: root).
fn send(env: &Env, user: Option<&str>, id: &str, extra: &[&str]) -> Out {
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["-i", "rcpt@dest.example"]);
    match user {
        Some(u) => env.run_as(u, &args, &msg(id)),
        None => env.run(&args, &msg(id)),
    }
}

/// Three users with identities on three source addresses, relaying to `sink`.
fn three_users(sink: &Sink, extra_options: &str) -> Env {
    for u in [UA, UB, UC] {
        users::user(u);
    }
    let env = Env::new();
    env.relay(sink.addr());
    env.virtusers(&format!(
        "{UA}  a@shop.example   127.0.0.2  {extra_options}\n\
         {UB}  b@blog.example   127.0.0.3  {extra_options}\n\
         {UC}  c@other.example  127.0.0.4  {extra_options}\n"
    ));
    env
}

fn uid(u: &str) -> u32 {
    users::user(u).0
}

/// Queue id of the message whose Message-ID is `<id>` (from the envelopes).
fn queue_id_of(env: &Env, id: &str) -> Option<String> {
    let needle = format!("\"message_id\":\"<{id}>\"");
    for e in std::fs::read_dir(env.spool().join("queue")).ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(q) = name.strip_suffix(".env")
            && std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(&needle))
        {
            return Some(q.to_string());
        }
    }
    None
}

/// Every file name under the spool's queue/ and tmp/.
fn spool_files(env: &Env) -> Vec<String> {
    let mut v = Vec::new();
    for d in ["queue", "tmp"] {
        if let Ok(rd) = std::fs::read_dir(env.spool().join(d)) {
            v.extend(
                rd.flatten()
                    .map(|e| format!("{d}/{}", e.file_name().to_string_lossy())),
            );
        }
    }
    v.sort();
    v
}

/// The queue id the syslog names for the delivery from `src`.
fn logged_queue_id(env: &Env, src: SocketAddr) -> String {
    let want = format!("src={src} ");
    env.log_lines()
        .iter()
        .find(|l| l.contains(&want) && l.contains("status=sent"))
        .and_then(|l| l.split(':').next().map(str::to_string))
        .unwrap_or_else(|| panic!("no attempt line with {want} in {:#?}", env.log_lines()))
}

/// The received message whose Message-ID is `<id>`.
fn received<'a>(msgs: &'a [crate::support::sink::Msg], id: &str) -> &'a crate::support::sink::Msg {
    msgs.iter()
        .find(|m| m.header("Message-ID").as_deref() == Some(&format!("<{id}>")))
        .unwrap_or_else(|| panic!("message <{id}> not received"))
}

fn utc_minute_now() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (d, s) = (t.div_euclid(86400), t.rem_euclid(86400));
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
    format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}", s / 3600, s / 60 % 60)
}

/// The fields of one `--who` line, in order.
fn fields(line: &str) -> Vec<(String, String)> {
    let keys = [
        "time",
        "uid",
        "user",
        "identity",
        "src",
        "dst",
        "queue_id",
        "message_id",
        "rcpts",
        "result",
    ];
    let mut out = Vec::new();
    let mut rest = line;
    for (i, k) in keys.iter().enumerate() {
        let p = format!("{k}=");
        assert!(rest.starts_with(&p), "expected {p} in {line:?} at {rest:?}");
        rest = &rest[p.len()..];
        let end = if i + 1 < keys.len() {
            rest.find(&format!(" {}=", keys[i + 1]))
                .unwrap_or_else(|| panic!("no {} after {k} in {line:?}", keys[i + 1]))
        } else {
            rest.len()
        };
        out.push((k.to_string(), rest[..end].to_string()));
        rest = rest[end..].strip_prefix(' ').unwrap_or("");
    }
    out
}

fn field<'a>(f: &'a [(String, String)], k: &str) -> &'a str {
    &f.iter().find(|(key, _)| key == k).unwrap().1
}

#[test]
fn accountability_who_names_user_of_each_connection() {
    let sink = Sink::start_default();
    let env = three_users(&sink, "");
    send(&env, Some(UA), "m1.acc@shop.example", &[]).expect_code(0);
    send(&env, Some(UB), "m2.acc@blog.example", &[]).expect_code(0);
    let msgs = sink.wait_messages(2, WAIT);
    // What the receiver logged: the peer address:port of each connection.
    let pa = received(&msgs, "m1.acc@shop.example").peer;
    let pb = received(&msgs, "m2.acc@blog.example").peer;
    assert_eq!(pa.ip().to_string(), "127.0.0.2");
    assert_eq!(pb.ip().to_string(), "127.0.0.3");
    let qa = logged_queue_id(&env, pa);
    let qb = logged_queue_id(&env, pb);

    let check = |out: &Out, user: &str, identity: &str, peer: SocketAddr, qid: &str, mid: &str| {
        out.expect_code(0);
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let f = fields(lines[0]);
        assert_eq!(field(&f, "uid"), uid(user).to_string());
        assert_eq!(field(&f, "user"), user);
        assert_eq!(field(&f, "identity"), identity);
        assert_eq!(field(&f, "src"), peer.to_string());
        assert_eq!(field(&f, "dst"), sink.addr().to_string());
        assert_eq!(field(&f, "queue_id"), qid);
        assert_eq!(field(&f, "message_id"), mid);
        assert_eq!(field(&f, "rcpts"), "1");
        assert!(field(&f, "result").starts_with("sent (250 "), "{out}");
        assert!(
            field(&f, "time").ends_with('Z') && field(&f, "time").len() == 20,
            "{out}"
        );
    };
    // By address:port, as root.
    let pa_s = pa.to_string();
    let pb_s = pb.to_string();
    let a_out = env.run(&["--who", &pa_s], b"");
    check(
        &a_out,
        UA,
        "a@shop.example",
        pa,
        &qa,
        "<m1.acc@shop.example>",
    );
    check(
        &env.run(&["--who", &pb_s], b""),
        UB,
        "b@blog.example",
        pb,
        &qb,
        "<m2.acc@blog.example>",
    );
    // By Message-ID.
    let by_mid = env.run(&["--who", "<m2.acc@blog.example>"], b"");
    check(
        &by_mid,
        UB,
        "b@blog.example",
        pb,
        &qb,
        "<m2.acc@blog.example>",
    );
    // By address and time (now, and with a window), and a time long ago.
    let now = utc_minute_now();
    let by_time = env.run(&["--who", "127.0.0.2", &now], b"");
    check(
        &by_time,
        UA,
        "a@shop.example",
        pa,
        &qa,
        "<m1.acc@shop.example>",
    );
    assert_eq!(by_time.stdout, a_out.stdout);
    let spaced = now.replace('T', " ");
    check(
        &env.run(&["--who", "127.0.0.3", &spaced, "--window", "2m"], b""),
        UB,
        "b@blog.example",
        pb,
        &qb,
        "<m2.acc@blog.example>",
    );
    let old = env.run(&["--who", &pa_s, "2001-01-01T00:00"], b"");
    assert_eq!(old.code, 1, "{old}");
    assert!(old.stdout.is_empty(), "{old}");
    // Each user sees their own records, and nothing of the others'.
    check(
        &env.run_as(UA, &["--who", &pa_s], b""),
        UA,
        "a@shop.example",
        pa,
        &qa,
        "<m1.acc@shop.example>",
    );
    for q in [pb_s.as_str(), "127.0.0.3", "<m2.acc@blog.example>"] {
        let o = env.run_as(UA, &["--who", q], b"");
        assert_eq!(o.code, 1, "{q}: {o}");
        assert!(o.stdout.is_empty(), "{o}");
    }
    for q in [
        pa_s.as_str(),
        pb_s.as_str(),
        "127.0.0.2",
        "<m1.acc@shop.example>",
        "<m2.acc@blog.example>",
    ] {
        let o = env.run_as(UC, &["--who", q], b"");
        assert_eq!(o.code, 1, "{UC} must see nothing of {q}: {o}");
        assert!(o.stdout.is_empty(), "{o}");
    }
    // A port nobody used matches nothing.
    let other = format!(
        "127.0.0.2:{}",
        if pa.port() == 1 { 2 } else { pa.port() - 1 }
    );
    assert_eq!(env.run(&["--who", &other], b"").code, 1);
}

#[test]
fn accountability_who_ipv6_and_malformed_queries() {
    let sink = Sink::start(SinkConfig {
        bind: "::1".parse().unwrap(),
        ..Default::default()
    });
    let env = Env::new();
    env.relay(sink.addr());
    env.virtusers("root  root@six.example  ::1\n");
    env.run(&["-i", "rcpt@dest.example"], &msg("v6.acc@six.example"))
        .expect_code(0);
    let m = sink.wait_messages(1, WAIT);
    let peer = m[0].peer;
    assert!(peer.is_ipv6(), "{peer}");
    let q = format!("[::1]:{}", peer.port());
    let o = env.run(&["--who", &q], b"");
    o.expect_code(0);
    let f = fields(o.stdout.trim_end());
    assert_eq!(field(&f, "src"), q);
    assert_eq!(field(&f, "dst"), format!("[::1]:{}", sink.port()));
    assert_eq!(field(&f, "user"), "root");
    assert_eq!(field(&f, "message_id"), "<v6.acc@six.example>");
    assert_eq!(env.run(&["--who", "::1"], b"").stdout, o.stdout);
    assert_eq!(env.run(&["--who", "[::1]"], b"").stdout, o.stdout);
    assert_eq!(env.run(&["--who", "127.0.0.1"], b"").code, 1);

    for bad in [
        &["--who", "foo"][..],
        &["--who", "127.0.0.1:99999"],
        &["--who", "[::1]:x"],
        &["--who", "<>"],
        &["--who", "<a b@x>"],
        &["--who", "::1", "yesterday"],
        &["--who", "::1", "2026-13-01T00:00"],
        &["--who", "::1", "2026-11-23T12:03", "--window", "soon"],
    ] {
        let o = env.run(bad, b"");
        assert_eq!(o.code, 64, "{bad:?}: {o}");
        assert!(o.stderr.starts_with("vsendmail: "), "{o}");
    }
}

#[test]
fn accountability_trail_files_failed_sessions_and_reused_connections() {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::reply(Step::Connect, "554 5.7.1 go away").times(1)],
        ..Default::default()
    });
    let env = Env::new();
    env.relay(sink.addr());
    env.virtusers("root  root@shop.example  127.0.0.2\n");
    // 1. The greeting refuses: the connection still has its record.
    // (A permanent refusal: with the default -oep it is reported, exit 69.)
    env.run(
        &["-i", "rcpt@dest.example"],
        &msg("refused.acc@shop.example"),
    )
    .expect_code(69);
    let conns = sink.wait_connections(1, WAIT);
    let first = conns[0].peer;
    let o = env.run(&["--who", &first.to_string()], b"");
    o.expect_code(0);
    let f = fields(o.stdout.trim_end());
    assert!(
        field(&f, "result").starts_with("failed (") && field(&f, "result").contains("554"),
        "{o}"
    );
    assert_eq!(field(&f, "message_id"), "<refused.acc@shop.example>");

    // 2. Two queued messages, one queue run: one connection, a record for each.
    env.run(
        &["-odq", "-i", "rcpt@dest.example"],
        &msg("q1.acc@shop.example"),
    )
    .expect_code(0);
    env.run(
        &["-odq", "-i", "rcpt@dest.example"],
        &msg("q2.acc@shop.example"),
    )
    .expect_code(0);
    let (q1, q2) = (
        queue_id_of(&env, "q1.acc@shop.example").unwrap(),
        queue_id_of(&env, "q2.acc@shop.example").unwrap(),
    );
    env.run(&["-q"], b"").expect_code(0);
    let msgs = sink.wait_messages(2, WAIT);
    let peer = received(&msgs, "q1.acc@shop.example").peer;
    assert_eq!(
        received(&msgs, "q2.acc@shop.example").peer,
        peer,
        "one connection reused"
    );
    let o = env.run(&["--who", &peer.to_string()], b"");
    o.expect_code(0);
    let lines: Vec<Vec<(String, String)>> = o.stdout.lines().map(fields).collect();
    assert_eq!(lines.len(), 2, "{o}");
    let mut ids: Vec<&str> = lines.iter().map(|f| field(f, "queue_id")).collect();
    ids.sort();
    let mut want = vec![q1.as_str(), q2.as_str()];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(
        field(&lines[0], "time"),
        field(&lines[1], "time"),
        "same connection, same connect"
    );

    // 3. The files: one JSON line per record, keys in order, modes and group.
    let dir = env.spool().join("audit");
    let spool_gid = std::fs::metadata(env.spool()).unwrap().gid();
    let dm = std::fs::metadata(&dir).unwrap();
    assert_eq!(dm.mode() & 0o7777, 0o2770);
    assert_eq!(dm.gid(), spool_gid);
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        // The per-recipient log (issue 15) lives beside the trail.
        .filter(|e| !e.file_name().to_string_lossy().starts_with("log-"))
        .map(|e| e.path())
        .collect();
    assert!(!files.is_empty());
    let mut records = 0;
    for p in &files {
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(name.len() == 16 && name.ends_with(".jsonl"), "{name}");
        let m = std::fs::metadata(p).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o660, "{name}");
        assert_eq!(m.gid(), spool_gid, "{name}");
        for line in std::fs::read_to_string(p).unwrap().lines() {
            records += 1;
            let keys: Vec<String> = line
                .trim_start_matches('{')
                .split(",\"")
                .map(|kv| {
                    kv.trim_start_matches('"')
                        .split('"')
                        .next()
                        .unwrap()
                        .to_string()
                })
                // Optional: `public` behind NAT, `relay` for a relay connection.
                .filter(|k| k != "public" && k != "relay")
                .collect();
            assert_eq!(
                keys,
                [
                    "connect",
                    "close",
                    "uid",
                    "user",
                    "identity",
                    "src",
                    "dst",
                    "queue_id",
                    "message_id",
                    "rcpts",
                    "result",
                    "phase",
                    "cwd"
                ],
                "{line}"
            );
            assert!(
                line.contains(&format!("\"connect\":\"{}T", &name[..10])),
                "filed by connect date: {line}"
            );
        }
    }
    // The refused greeting: its outcome; each queued message: the record
    // written before MAIL FROM and its outcome.
    assert_eq!(records, 5);
}

#[test]
fn accountability_queue_runs_expire_old_trail_files() {
    let sink = Sink::start_default();
    let env = Env::new();
    env.relay(sink.addr());
    env.conf("audit_days = 3");
    env.run(&["-i", "rcpt@dest.example"], &msg("exp.acc@shop.example"))
        .expect_code(0);
    let dir = env.spool().join("audit");
    let today: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        // The per-recipient log (issue 15) lives beside the trail.
        .filter(|e| !e.file_name().to_string_lossy().starts_with("log-"))
        .map(|e| e.path())
        .collect();
    assert_eq!(today.len(), 1);
    for name in ["2001-01-01.jsonl", "2020-02-29.jsonl"] {
        std::fs::write(dir.join(name), "{}\n").unwrap();
    }
    std::fs::write(dir.join("notes.txt"), "not a trail file\n").unwrap();
    std::fs::write(dir.join("log-2001-01-01.jsonl"), "{}\n").unwrap();
    env.run(&["-q"], b"").expect_code(0);
    assert!(
        !dir.join("log-2001-01-01.jsonl").exists(),
        "old per-recipient log files go with the trail's"
    );
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        // The per-recipient log (issue 15) lives beside the trail.
        .filter(|e| !e.file_name().to_string_lossy().starts_with("log-"))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let today_name = today[0].file_name().unwrap().to_string_lossy().into_owned();
    // The queue run also made tomorrow's file ahead of time (as root).
    let ahead: Vec<String> = left
        .iter()
        .filter(|n| n.ends_with(".jsonl") && **n > today_name)
        .cloned()
        .collect();
    assert_eq!(ahead.len(), 1, "{left:?}");
    left.retain(|n| !ahead.contains(n));
    let mut want = vec![today_name, "notes.txt".to_string()];
    want.sort();
    assert_eq!(left, want);
}

/// A set-gid copy of the binary (group [`NOT_MEMBER`]), as installed.
fn setgid_copy(dir: &TempDir) -> PathBuf {
    let gid = users::group(NOT_MEMBER);
    let p = dir.path().join("vsendmail");
    std::fs::copy(crate::support::vs::bin(), &p).unwrap();
    nix::unistd::chown(&p, Some(0.into()), Some(gid.into())).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o2755)).unwrap();
    p
}

#[test]
fn accountability_setgid_run_cannot_choose_another_trail() {
    let sink = Sink::start_default();
    let env = three_users(&sink, "");
    send(&env, Some(UA), "sg.acc@shop.example", &[]).expect_code(0);
    sink.wait_messages(1, WAIT);
    let dir = TempDir::new("vs-acc-sgid");
    let bin = setgid_copy(&dir);
    let mut c = env.cmd_program(Some(UC), &bin);
    c.arg("-C")
        .arg(env.conf_path())
        .args(["--who", "127.0.0.2"]);
    let o = env.output(c, b"");
    assert_eq!(o.code, 77, "{o}");
    assert!(o.stderr.contains("-C"), "{o}");
    assert!(o.stdout.is_empty());
}

// ---------------------------------------------------------------- rate limits

#[test]
fn accountability_rate_defer_then_queue_run_sends_exactly_the_held() {
    let sink = Sink::start_default();
    let env = three_users(&sink, "rate=3/10s");
    let mut returned = Vec::new();
    let start = Instant::now();
    for i in 1..=5 {
        let o = send(&env, Some(UA), &format!("r{i}.acc@shop.example"), &[]);
        o.expect_code(0);
        returned.push(Instant::now());
        if i <= 3 {
            assert!(o.stderr.is_empty(), "message {i}: {o}");
        } else {
            assert_eq!(o.stderr.lines().count(), 1, "one warning: {o}");
            assert!(
                o.stderr.starts_with(
                    "vsendmail: warning: a@shop.example sent 3 messages in the last 10s (limit 3)"
                ),
                "{o}"
            );
        }
    }
    assert_eq!(sink.messages().len(), 3);
    let held: Vec<String> = (4..=5)
        .map(|i| queue_id_of(&env, &format!("r{i}.acc@shop.example")).expect("held in the queue"))
        .collect();
    assert_eq!(
        spool_files(&env)
            .iter()
            .filter(|f| f.ends_with(".env"))
            .count(),
        2
    );
    let q = env.run_as(UA, &["-bp"], b"").stdout;
    assert_eq!(q.matches("(rate limited)").count(), 2, "{q}");
    let logs = env.log_lines();
    let rate_logs: Vec<&String> = logs.iter().filter(|l| l.contains("rate: sent")).collect();
    assert_eq!(rate_logs.len(), 2, "{logs:#?}");
    assert!(
        rate_logs[0].contains("identity=a@shop.example")
            && rate_logs[0].contains("sent 3 messages in the last 10s (limit 3)")
    );
    // A queue run inside the window sends nothing.
    env.run(&["-q"], b"").expect_code(0);
    if start.elapsed() < Duration::from_secs(8) {
        assert_eq!(
            sink.messages().len(),
            3,
            "released before the window allowed it"
        );
        assert_eq!(
            env.run(&["-bp"], b"")
                .stdout
                .matches("(rate limited)")
                .count(),
            2
        );
    }
    // Once the first two counts have left the window, a run sends the two held ones.
    let free_at = returned[1] + Duration::from_millis(10_100);
    if let Some(d) = free_at.checked_duration_since(Instant::now()) {
        std::thread::sleep(d); // a time window has to pass: nothing to wait on
    }
    env.run(&["-q"], b"").expect_code(0);
    let all = sink.messages();
    assert_eq!(all.len(), 5);
    let late: Vec<String> = all[3..]
        .iter()
        .map(|m| m.header("Message-ID").unwrap())
        .collect();
    // Oldest first, in queue order (queue ids sort by arrival second).
    let mut by_age: Vec<(String, String)> = held
        .iter()
        .zip(["<r4.acc@shop.example>", "<r5.acc@shop.example>"])
        .map(|(q, m)| (q.clone(), m.to_string()))
        .collect();
    by_age.sort();
    assert_eq!(
        late,
        by_age.into_iter().map(|(_, m)| m).collect::<Vec<_>>(),
        "oldest first"
    );
    for m in &all[3..] {
        assert_eq!(
            m.peer.ip().to_string(),
            "127.0.0.2",
            "still sent as its identity"
        );
        assert_eq!(m.mail_from, "a@shop.example");
    }
    assert!(spool_files(&env).is_empty(), "{:?}", spool_files(&env));
    assert!(
        env.log_lines()
            .iter()
            .any(|l| l.starts_with(&format!("{}: ", held[0]))
                && l.contains("released from the rate hold"))
    );
}

#[test]
fn accountability_rate_refuse_exits_75_and_max_queued_caps_defer() {
    let sink = Sink::start_default();
    let env = three_users(&sink, "");
    env.conf("rate = \"2/h\"\nover_rate = \"refuse\"");
    send(&env, Some(UB), "f1.acc@blog.example", &[]).expect_code(0);
    send(&env, Some(UB), "f2.acc@blog.example", &[]).expect_code(0);
    let o = send(&env, Some(UB), "f3.acc@blog.example", &[]);
    assert_eq!(o.code, 75, "{o}");
    assert_eq!(
        o.stderr,
        "vsendmail: b@blog.example sent 2 messages in the last 1h (limit 2); try again later\n"
    );
    assert!(
        spool_files(&env).is_empty(),
        "a refused message leaves nothing: {:?}",
        spool_files(&env)
    );
    assert_eq!(sink.messages().len(), 2);
    let refusals: Vec<String> = env
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("refused (over_rate=refuse)"))
        .collect();
    assert_eq!(refusals.len(), 1);
    assert!(
        refusals[0].contains("identity=b@blog.example")
            && refusals[0].contains("sent 2 messages in the last 1h (limit 2)")
    );
    // A refused message never counts: another user is untouched, and the
    // count is still 2 (the next one is refused with the same numbers).
    send(&env, Some(UA), "f4.acc@shop.example", &[]).expect_code(0);
    let again = send(&env, Some(UB), "f5.acc@blog.example", &[]);
    assert_eq!(again.code, 75);
    assert!(again.stderr.contains("sent 2 messages"), "{again}");

    // defer with max_queued = 2: one sent, two held, the fourth refused.
    env.conf("rate = \"1/h\"\nover_rate = \"defer\"\nmax_queued = 2");
    send(&env, Some(UC), "d1.acc@other.example", &[]).expect_code(0);
    send(&env, Some(UC), "d2.acc@other.example", &[]).expect_code(0);
    send(&env, Some(UC), "d3.acc@other.example", &[]).expect_code(0);
    let o = send(&env, Some(UC), "d4.acc@other.example", &[]);
    assert_eq!(o.code, 75, "{o}");
    assert!(o.stderr.contains("max_queued 2"), "{o}");
    assert!(queue_id_of(&env, "d4.acc@other.example").is_none());
    assert!(queue_id_of(&env, "d2.acc@other.example").is_some());
    assert_eq!(sink.messages().len(), 4);
}

#[test]
fn accountability_rate_is_exact_under_concurrency() {
    const LIMIT: usize = 10;
    const PROCS: usize = 8;
    const EACH: usize = 4;
    let sink = Sink::start_default();
    let env = three_users(&sink, &format!("rate={LIMIT}/h"));
    env.conf("over_rate = \"refuse\"");
    // Env is not shared between threads: prepare the commands, run them in 8 threads at once.
    let jobs: Vec<Vec<(std::process::Command, Vec<u8>)>> = (0..PROCS)
        .map(|p| {
            (0..EACH)
                .map(|i| {
                    let mut c = env.cmd(Some(UA));
                    c.arg("-C")
                        .arg(env.conf_path())
                        .args(["-i", "rcpt@dest.example"]);
                    (c, msg(&format!("c{p}-{i}.acc@shop.example")))
                })
                .collect()
        })
        .collect();
    let barrier = std::sync::Barrier::new(PROCS);
    let codes: Vec<i32> = std::thread::scope(|s| {
        let hs: Vec<_> = jobs
            .into_iter()
            .map(|job| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    job.into_iter()
                        .map(|(c, input)| run_with_input(c, &input))
                        .collect::<Vec<i32>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        codes.iter().filter(|c| **c == 0).count(),
        LIMIT,
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| **c == 75).count(),
        PROCS * EACH - LIMIT,
        "{codes:?}"
    );
    assert_eq!(sink.messages().len(), LIMIT);
}

/// Run a prepared command with `input` on stdin; its exit code.
fn run_with_input(mut c: std::process::Command, input: &[u8]) -> i32 {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn vsendmail");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait().unwrap().code().unwrap_or(-1)
}

#[test]
fn accountability_root_trusted_and_rate_none_are_not_limited() {
    let sink = Sink::start_default();
    users::user(UA);
    users::user(UB);
    users::user(UC);
    let env = Env::new();
    env.relay(sink.addr());
    env.conf(&format!(
        "rate = \"1/h\"\nover_rate = \"refuse\"\ntrusted_users = [\"root\", \"{UC}\"]"
    ));
    env.virtusers(&format!(
        "root  root@host.example  127.0.0.5\n\
         {UA}  a@shop.example   127.0.0.2\n\
         {UB}  b@blog.example   127.0.0.3  rate=none\n\
         {UC}  c@other.example  127.0.0.4\n"
    ));
    for i in 0..3 {
        send(&env, None, &format!("root{i}.acc@host.example"), &[]).expect_code(0);
        send(&env, Some(UB), &format!("none{i}.acc@blog.example"), &[]).expect_code(0);
        send(&env, Some(UC), &format!("tr{i}.acc@other.example"), &[]).expect_code(0);
    }
    send(&env, Some(UA), "a1.acc@shop.example", &[]).expect_code(0);
    assert_eq!(send(&env, Some(UA), "a2.acc@shop.example", &[]).code, 75);
    assert_eq!(sink.messages().len(), 10);
    // Only the limited identity has a counter.
    let rate_dir = env.spool().join("rate");
    let names: Vec<String> = std::fs::read_dir(&rate_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["a@shop.example"]);
}

#[test]
fn accountability_rate_counters_are_out_of_the_users_reach() {
    let sink = Sink::start_default();
    let env = three_users(&sink, "rate=1/h");
    env.conf("over_rate = \"refuse\"");
    send(&env, Some(UA), "p1.acc@shop.example", &[]).expect_code(0);
    assert_eq!(send(&env, Some(UA), "p2.acc@shop.example", &[]).code, 75);
    let spool = env.spool();
    let dir = spool.join("rate");
    let file = dir.join("a@shop.example");
    let gid = std::fs::metadata(&spool).unwrap().gid();
    let (dm, fm) = (
        std::fs::metadata(&dir).unwrap(),
        std::fs::metadata(&file).unwrap(),
    );
    assert_eq!((dm.mode() & 0o7777, dm.gid()), (0o2770, gid));
    assert_eq!((fm.mode() & 0o7777, fm.gid()), (0o660, gid));
    let before = std::fs::read(&file).unwrap();
    // As installed, the spool's group is one the users are not in (only the
    // set-gid binary has it): hand the spool to such a group and try, as the
    // user, to reset, edit or remove the counter, and to plant a new one.
    let other = users::group(NOT_MEMBER);
    chgrp_r(&spool, other);
    let f = file.display().to_string();
    let d = dir.display().to_string();
    for script in [
        format!(": > '{f}'"),
        format!("echo 't 0' > '{f}'"),
        format!("rm -f '{f}' && test ! -e '{f}'"),
        format!("mv '{f}' '{f}.x'"),
        format!("echo > '{d}/b@blog.example'"),
        format!("cat '{f}'"),
    ] {
        let (u, g) = users::user(UA);
        let out = std::process::Command::new("setpriv")
            .arg(format!("--reuid={u}"))
            .arg(format!("--regid={g}"))
            .arg("--init-groups")
            .args(["--", "/bin/sh", "-c", &script])
            .current_dir("/")
            .env_clear()
            .env("PATH", crate::support::vs::PATH)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{UA} could run `{script}`");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("ermission denied"),
            "{script}: {out:?}"
        );
    }
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "the counter is unchanged"
    );
    assert!(!dir.join("b@blog.example").exists());
    chgrp_r(&spool, gid);
    // And the counter still counts.
    assert_eq!(send(&env, Some(UA), "p3.acc@shop.example", &[]).code, 75);
}

fn chgrp_r(p: &Path, gid: u32) {
    nix::unistd::chown(p, None, Some(gid.into())).unwrap();
    if p.is_dir() && !p.is_symlink() {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            chgrp_r(&e.path(), gid);
        }
    }
}

// ---------------------------------------------------------------- queue control

#[test]
fn accountability_hold_release_by_owner_and_q_skips_held() {
    let sink = Sink::start_default();
    let env = three_users(&sink, "");
    send(&env, Some(UA), "h1.acc@shop.example", &["-odq"]).expect_code(0);
    send(&env, Some(UA), "h2.acc@shop.example", &["-odq"]).expect_code(0);
    let id1 = queue_id_of(&env, "h1.acc@shop.example").unwrap();
    let id2 = queue_id_of(&env, "h2.acc@shop.example").unwrap();
    let o = env.run_as(UA, &["--hold", &id1], b"");
    o.expect_code(0);
    assert_eq!(o.stdout, format!("{id1}: held\n"));
    let q = env.run_as(UA, &["-bp"], b"").stdout;
    assert!(
        q.contains(&format!("{id1}!")) && q.contains("(held)"),
        "{q}"
    );
    assert!(!q.contains(&format!("{id2}!")), "{q}");
    env.run(&["-q"], b"").expect_code(0);
    let m = sink.messages();
    assert_eq!(m.len(), 1);
    assert_eq!(
        m[0].header("Message-ID").as_deref(),
        Some("<h2.acc@shop.example>")
    );
    assert_eq!(
        queue_id_of(&env, "h1.acc@shop.example").as_deref(),
        Some(id1.as_str())
    );
    // -q as the owner skips it too.
    env.run_as(UA, &["-q"], b"").expect_code(0);
    assert_eq!(sink.messages().len(), 1);
    let o = env.run_as(UA, &["--release", &id1.to_ascii_lowercase()], b"");
    o.expect_code(0);
    assert_eq!(o.stdout, format!("{id1}: released\n"));
    assert!(
        env.log_lines()
            .iter()
            .any(|l| l == &format!("{id1}: held by uid={} user={UA}", uid(UA)))
    );
    env.run(&["-q"], b"").expect_code(0);
    assert_eq!(sink.messages().len(), 2);
    assert!(spool_files(&env).is_empty());
    // Nothing left to select.
    let o = env.run_as(UA, &["--hold", "ALL"], b"");
    assert_eq!(o.code, 1, "{o}");
    assert_eq!(env.run(&["--release", &id1], b"").code, 1);
    assert_eq!(env.run(&["--hold", "no/such"], b"").code, 64);
}

#[test]
fn accountability_other_users_message_is_refused_and_unchanged() {
    let sink = Sink::start_default();
    let env = three_users(&sink, "");
    send(&env, Some(UA), "o1.acc@shop.example", &["-odq"]).expect_code(0);
    send(&env, Some(UB), "o2.acc@blog.example", &["-odq"]).expect_code(0);
    let id = queue_id_of(&env, "o1.acc@shop.example").unwrap();
    let idb = queue_id_of(&env, "o2.acc@blog.example").unwrap();
    let env_file = env.spool().join("queue").join(format!("{id}.env"));
    let before = std::fs::read(&env_file).unwrap();
    let files_before = spool_files(&env);
    // Another user's queue id is, to a plain user, no message (exit 1, as
    // for an id that does not exist); naming another user is refused (77).
    for (args, code) in [
        (&["--hold", id.as_str()][..], 1),
        (&["--release", id.as_str()], 1),
        (&["--delete", id.as_str()], 1),
        (&["--hold", &format!("user={UA}")], 77),
        (&["--delete", &format!("user={UA}")], 77),
    ] {
        let o = env.run_as(UB, args, b"");
        assert_eq!(o.code, code, "{args:?}: {o}");
        assert!(o.stdout.is_empty(), "{o}");
        assert!(o.stderr.starts_with("vsendmail: "), "{o}");
    }
    // ALL, for a plain user, is all of their own.
    let o = env.run_as(UB, &["--hold", "ALL"], b"");
    o.expect_code(0);
    assert_eq!(o.stdout, format!("{idb}: held\n"));
    assert_eq!(
        std::fs::read(&env_file).unwrap(),
        before,
        "{UA}'s message unchanged"
    );
    assert_eq!(spool_files(&env), files_before);
    // A third user with no messages: ALL matches nothing.
    assert_eq!(env.run_as(UC, &["--delete", "ALL"], b"").code, 1);
    assert_eq!(spool_files(&env), files_before);
    // Root may act on anyone's.
    let o = env.run(&["--hold", &format!("user={UA}")], b"");
    o.expect_code(0);
    assert_eq!(o.stdout, format!("{id}: held\n"));
    let o = env.run(&["--release", "ALL"], b"");
    o.expect_code(0);
    assert_eq!(o.stdout.lines().count(), 2, "{o}");
}

#[test]
fn accountability_delete_leaves_no_trace_and_sends_nothing() {
    let sink = Sink::start_default();
    let env = three_users(&sink, "rate=1/h");
    // One sent, one held for the rate, one held by hand: delete the last two.
    send(&env, Some(UA), "x1.acc@shop.example", &[]).expect_code(0);
    send(&env, Some(UA), "x2.acc@shop.example", &[]).expect_code(0);
    send(&env, Some(UB), "x3.acc@blog.example", &["-odq"]).expect_code(0);
    let rate_held = queue_id_of(&env, "x2.acc@shop.example").unwrap();
    let held = queue_id_of(&env, "x3.acc@blog.example").unwrap();
    env.run(&["--hold", &held], b"").expect_code(0);
    let counter = env.spool().join("rate").join("a@shop.example");
    assert!(
        std::fs::read_to_string(&counter)
            .unwrap()
            .contains(&rate_held)
    );
    let o = env.run_as(UA, &["--delete", &rate_held], b"");
    o.expect_code(0);
    assert_eq!(o.stdout, format!("{rate_held}: deleted\n"));
    let o = env.run(&["--delete", &format!("user={UB}")], b"");
    o.expect_code(0);
    assert_eq!(o.stdout, format!("{held}: deleted\n"));
    assert!(spool_files(&env).is_empty(), "{:?}", spool_files(&env));
    assert!(
        !std::fs::read_to_string(&counter)
            .unwrap()
            .contains(&rate_held)
    );
    env.run(&["-q"], b"").expect_code(0);
    assert_eq!(
        sink.messages().len(),
        1,
        "nothing sent after the deletes, and no bounce"
    );
    assert_eq!(sink.connections().len(), 1);
    assert_eq!(env.run(&["-bp"], b"").stdout, "Mail queue is empty\n");
    assert_eq!(env.run(&["--delete", &held], b"").code, 1);
}
