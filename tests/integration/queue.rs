//! The spool queue (issue 3): no message is lost, deferred mail is retried by
//! `-q` runs without a daemon, exactly as the identity that sent it, never
//! twice (except after a lost reply to the final dot, shown below).

use crate::support::sink::{Action, Rule, Sink, SinkConfig, Step};
use crate::support::vs::Env;
use crate::support::{TempDir, wait_until};
use std::collections::HashSet;
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MSG: &[u8] = b"Subject: q\n\nqueued body\n";
const WAIT: Duration = Duration::from_secs(15);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn env_for(sink: &Sink) -> Env {
    let env = Env::new();
    env.relay(sink.addr());
    env.virtusers("root root@shop.example 127.0.0.2 helo=mail.shop.example\n");
    env
}

fn queued_ids(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(env.spool().join("queue"))
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

#[test]
fn receiver_down_then_up_delivers_once_with_q() {
    // A port with nothing listening: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = Env::new();
    env.conf(&format!("relay = \"smtp://127.0.0.1:{port}\""));
    env.virtusers("root root@shop.example 127.0.0.2\n");
    env.run(&["-i", "bob@example.org"], MSG).expect_code(0);
    let q = env.run(&["-bp"], b"").stdout;
    assert!(
        q.contains("bob@example.org") && q.contains("Connection refused"),
        "{q}"
    );
    assert!(q.contains("-- 1 Kbytes in 1 Request."), "{q}");
    assert_eq!(queued_ids(&env).len(), 1);
    // The receiver comes up on that port.
    let sink = Sink::start(SinkConfig {
        port,
        ..Default::default()
    });
    env.run(&["-q"], b"").expect_code(0);
    let m = sink.wait_messages(1, WAIT);
    assert_eq!(
        m[0].peer.ip(),
        ip("127.0.0.2"),
        "the retry uses the identity's source"
    );
    assert!(queued_ids(&env).is_empty());
    env.run(&["-q"], b"").expect_code(0);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(sink.messages().len(), 1, "delivered exactly once");
}

#[test]
fn four_fifty_one_then_recovery() {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::reply(Step::Mail, "451 4.3.0 busy")],
        ..Default::default()
    });
    let env = env_for(&sink);
    env.run(&["-i", "bob@example.org"], MSG).expect_code(0);
    assert!(sink.messages().is_empty());
    sink.set_rules(vec![]);
    env.run(&["-q"], b"").expect_code(0);
    assert_eq!(sink.wait_messages(1, WAIT).len(), 1);
    assert!(queued_ids(&env).is_empty());
}

#[test]
fn one_recipient_of_three_deferred_is_retried_alone() {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::reply(
            Step::Rcpt("carol".into()),
            "450 4.2.0 mailbox busy",
        )],
        ..Default::default()
    });
    let env = env_for(&sink);
    env.run(
        &[
            "-i",
            "alice@example.org",
            "bob@example.org",
            "carol@example.org",
        ],
        MSG,
    )
    .expect_code(0);
    let first = sink.wait_messages(1, WAIT);
    assert_eq!(first[0].rcpts, vec!["alice@example.org", "bob@example.org"]);
    let q = env.run(&["-bp"], b"").stdout;
    assert!(
        q.contains("carol@example.org") && !q.contains("alice@example.org"),
        "{q}"
    );
    sink.set_rules(vec![]);
    env.run(&["-q"], b"").expect_code(0);
    let all = sink.wait_messages(2, WAIT);
    assert_eq!(
        all[1].rcpts,
        vec!["carol@example.org"],
        "a delivered recipient is never sent again"
    );
    assert!(queued_ids(&env).is_empty());
}

#[test]
fn drop_after_data_payload_is_delivered_later() {
    // The receiver closes the connection instead of answering the final dot:
    // the message was maybe delivered. It stays queued and is sent again, so
    // the recipient may see it twice — the one documented duplicate case.
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::new(Step::Dot, Action::Drop).times(1)],
        ..Default::default()
    });
    let env = env_for(&sink);
    env.run(&["-i", "bob@example.org"], MSG).expect_code(0);
    assert_eq!(queued_ids(&env).len(), 1);
    let conns = sink.connections();
    assert!(
        crate::support::sink::find(&conns[0].raw, b"queued body").is_some(),
        "the payload was sent"
    );
    env.run(&["-q"], b"").expect_code(0);
    assert_eq!(sink.wait_messages(1, WAIT).len(), 1);
    assert!(queued_ids(&env).is_empty());
}

#[test]
fn slow_final_reply_hits_the_timeout_and_the_message_stays() {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::new(Step::Dot, Action::Delay(Duration::from_secs(4))).times(1)],
        ..Default::default()
    });
    let env = env_for(&sink);
    env.conf("[timeouts]\nfinal_dot = 1");
    let t = Instant::now();
    env.run(&["-i", "bob@example.org"], MSG).expect_code(0);
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "the caller waits no longer than the timeout"
    );
    let q = env.run(&["-bp"], b"").stdout;
    assert!(q.contains("timeout"), "{q}");
    // The receiver accepted after its delay: retrying duplicates (documented).
    env.run(&["-q"], b"").expect_code(0);
    assert!(queued_ids(&env).is_empty());
}

#[test]
fn odq_only_spools_and_q_interval_sends_due_messages() {
    let sink = Sink::start_default();
    let env = env_for(&sink);
    env.run(&["-odq", "-i", "bob@example.org"], MSG)
        .expect_code(0);
    std::thread::sleep(Duration::from_millis(200));
    assert!(sink.connections().is_empty(), "-odq sends nothing");
    // Never tried: due for -q5m.
    env.run(&["-q5m"], b"").expect_code(0);
    assert_eq!(sink.wait_messages(1, WAIT).len(), 1);
}

#[test]
fn q_interval_skips_messages_not_yet_due_and_q_forces() {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::reply(Step::Mail, "451 4.3.0 later")],
        ..Default::default()
    });
    let env = env_for(&sink);
    env.run(&["-i", "bob@example.org"], MSG).expect_code(0);
    assert_eq!(sink.connections().len(), 1);
    sink.set_rules(vec![]);
    env.run(&["-q5m"], b"").expect_code(0);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(sink.connections().len(), 1, "retry time (5m) has not come");
    env.run(&["-q"], b"").expect_code(0);
    assert_eq!(sink.wait_messages(1, WAIT).len(), 1);
}

#[test]
fn q_selectors_flush_only_matching_messages() {
    let sink = Sink::start_default();
    let env = env_for(&sink);
    env.run(&["-odq", "-i", "a@alpha.example"], MSG)
        .expect_code(0);
    env.run(&["-odq", "-i", "b@beta.example"], MSG)
        .expect_code(0);
    env.run(&["-qRbeta"], b"").expect_code(0);
    let m = sink.wait_messages(1, WAIT);
    assert_eq!(m[0].rcpts, vec!["b@beta.example"]);
    let left = queued_ids(&env);
    assert_eq!(left.len(), 1);
    env.run(&["-qSnobody"], b"").expect_code(0);
    assert_eq!(queued_ids(&env).len(), 1);
    env.run(&[&format!("-qI{}", &left[0][4..])], b"")
        .expect_code(0);
    sink.wait_messages(2, WAIT);
    assert!(queued_ids(&env).is_empty());
}

#[test]
fn queue_run_reuses_one_connection_per_host_and_source() {
    let sink = Sink::start_default();
    let env = env_for(&sink);
    for i in 0..20 {
        env.run(&["-odq", "-i", &format!("r{i}@example.org")], MSG)
            .expect_code(0);
    }
    env.run(&["-q"], b"").expect_code(0);
    sink.wait_messages(20, WAIT);
    assert_eq!(
        sink.connections().len(),
        1,
        "20 messages, one connection (RSET between)"
    );
    assert!(sink.connections()[0].commands.iter().any(|c| c == "RSET"));
}

#[test]
fn eight_parallel_queue_runs_deliver_each_message_once() {
    let sink = Sink::start_default();
    let env = env_for(&sink);
    // All eight runs may talk to the one host at once (the default cap is 2:
    // see backoff.rs for the cap itself).
    env.conf("destination_concurrency = 8");
    let n = 500;
    // Queue n messages fast: -odq in parallel batches.
    let bin = crate::support::vs::bin();
    let conf = env.conf_path();
    let mut children = Vec::new();
    for i in 0..n {
        let mut c = Command::new(bin);
        c.arg("-C")
            .arg(&conf)
            .args(["-odq", "-i", &format!("r{i}@example.org")]);
        c.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut ch = c.spawn().unwrap();
        ch.stdin.take().unwrap().write_all(MSG).unwrap();
        children.push(ch);
        if children.len() >= 16 {
            for mut ch in children.drain(..) {
                assert!(ch.wait().unwrap().success());
            }
        }
    }
    for mut ch in children {
        assert!(ch.wait().unwrap().success());
    }
    assert_eq!(queued_ids(&env).len(), n);
    let runners: Vec<_> = (0..8)
        .map(|_| {
            Command::new(bin)
                .arg("-C")
                .arg(&conf)
                .arg("-q")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut r in runners {
        assert!(r.wait().unwrap().success());
    }
    let msgs = sink.wait_messages(n, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    let msgs_after = sink.messages();
    assert_eq!(msgs_after.len(), n, "each message exactly once");
    let ids: HashSet<String> = msgs
        .iter()
        .map(|m| m.header("Message-ID").unwrap())
        .collect();
    assert_eq!(ids.len(), n);
    assert!(queued_ids(&env).is_empty());
}

#[test]
fn kill_9_during_delivery_leaves_a_complete_message_that_q_sends() {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::new(Step::Data, Action::Hang).times(1)],
        ..Default::default()
    });
    let env = env_for(&sink);
    let mut c = env.cmd(None);
    c.arg("-C")
        .arg(env.conf_path())
        .args(["-i", "bob@example.org"]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(MSG).unwrap();
    wait_until("DATA reached the receiver", WAIT, || {
        sink.connections()
            .iter()
            .any(|c| c.commands.iter().any(|x| x == "DATA"))
            .then_some(())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        queued_ids(&env).len(),
        1,
        "the accepted message is in the queue"
    );
    env.run(&["-q"], b"").expect_code(0);
    assert_eq!(sink.wait_messages(1, WAIT).len(), 1);
    assert!(queued_ids(&env).is_empty());
}

#[test]
fn kill_9_during_intake_leaves_nothing_to_send() {
    let sink = Sink::start_default();
    let env = env_for(&sink);
    let mut c = env.cmd(None);
    c.arg("-C")
        .arg(env.conf_path())
        .args(["-i", "bob@example.org"]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"Subject: half\n\nfirst half of the body\n")
        .unwrap();
    stdin.flush().unwrap();
    wait_until("the draft appeared in tmp/", WAIT, || {
        std::fs::read_dir(env.spool().join("tmp"))
            .ok()
            .and_then(|mut rd| rd.next())
            .map(|_| ())
    });
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the caller sees a failure");
    assert!(queued_ids(&env).is_empty(), "no half message in the queue");
    env.run(&["-q"], b"").expect_code(0);
    std::thread::sleep(Duration::from_millis(200));
    assert!(sink.connections().is_empty(), "nothing is ever sent of it");
}

#[test]
fn disk_full_spool_refuses_with_74_and_leaves_no_partial_file() {
    let dir = TempDir::new("vs-tmpfs");
    let mnt = dir.path().join("spool");
    std::fs::create_dir(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(ok.success(), "mounting a tmpfs needs root");
    struct Umount(std::path::PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Umount(mnt.clone());
    let sink = Sink::start_default();
    let env = env_for(&sink);
    env.conf(&format!("spool = \"{}\"", mnt.display()));
    let mut big = b"Subject: big\n\n".to_vec();
    for _ in 0..20000 {
        big.extend_from_slice(
            b"0123456789012345678901234567890123456789012345678901234567890123456789\n",
        );
    }
    let o = env.run(&["-i", "bob@example.org"], &big);
    assert!(o.code == 74 || o.code == 73, "{o}");
    assert!(
        o.stderr.contains("NOT accepted") || o.stderr.contains("No space"),
        "{o}"
    );
    let tmp_left = std::fs::read_dir(mnt.join("tmp")).unwrap().count();
    let q_left = std::fs::read_dir(mnt.join("queue")).unwrap().count();
    assert_eq!((tmp_left, q_left), (0, 0), "no partial file left");
    assert!(sink.connections().is_empty());
}

#[test]
fn permanent_failure_in_a_queue_run_bounces_rfc3464_from_the_identity() {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::reply(Step::Mail, "451 4.3.0 later")],
        ..Default::default()
    });
    let env = env_for(&sink);
    env.run(
        &["-i", "nobody@example.org"],
        b"Subject: lost\nMessage-ID: <orig@shop.example>\n\nbody\n",
    )
    .expect_code(0);
    sink.set_rules(vec![Rule::reply(
        Step::Rcpt("nobody".into()),
        "550 5.1.1 no such user",
    )]);
    env.run(&["-q"], b"").expect_code(0);
    let b = &sink.wait_messages(1, WAIT)[0];
    assert_eq!(b.mail_from, "");
    assert_eq!(b.rcpts, vec!["root@shop.example"]);
    assert_eq!(b.peer.ip(), ip("127.0.0.2"));
    check_dsn(
        &b.data,
        "failed",
        "5.1.1",
        "nobody@example.org",
        "<orig@shop.example>",
    );
    assert!(queued_ids(&env).is_empty());
}

#[test]
fn max_age_expires_with_a_bounce() {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::reply(Step::Mail, "451 4.3.0 later")],
        ..Default::default()
    });
    let env = env_for(&sink);
    env.conf("max_age = \"1s\"");
    env.run(&["-i", "bob@example.org"], b"Subject: old\n\nbody\n")
        .expect_code(0);
    std::thread::sleep(Duration::from_millis(2100));
    sink.set_rules(vec![]);
    env.run(&["-q"], b"").expect_code(0);
    let b = &sink.wait_messages(1, WAIT)[0];
    assert_eq!(b.mail_from, "");
    assert!(b.text().contains("message expired"), "{}", b.text());
    assert!(queued_ids(&env).is_empty());
}

#[test]
fn retry_after_virtusers_changed_is_held_until_root_releases_it_as_the_new_identity() {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::reply(Step::Mail, "451 4.3.0 later")],
        ..Default::default()
    });
    let env = env_for(&sink);
    env.run(&["-i", "bob@example.org"], MSG).expect_code(0);
    let tried = sink.messages().len();
    env.virtusers("root other@else.example 127.0.0.3\n");
    sink.set_rules(vec![]);
    env.run(&["-q"], b"").expect_code(0);
    assert_eq!(sink.messages().len(), tried, "sent from the old identity");
    let q = env.run(&["-bp"], b"").stdout;
    assert!(q.contains("(held (identity changed)"), "{q}");
    let ids = queued_ids(&env);
    assert_eq!(ids.len(), 1);
    env.run(&["--release", &ids[0]], b"").expect_code(0);
    env.run(&["-q"], b"").expect_code(0);
    let m = &sink.wait_messages(1, WAIT)[0];
    assert_eq!(m.peer.ip(), ip("127.0.0.3"));
    assert_eq!(m.mail_from, "other@else.example");
    assert!(queued_ids(&env).is_empty());
}

#[test]
fn odb_returns_at_once_and_a_child_delivers() {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::new(
            Step::Connect,
            Action::Delay(Duration::from_millis(500)),
        )],
        ..Default::default()
    });
    let env = env_for(&sink);
    let t = Instant::now();
    env.run(&["-odb", "-i", "bob@example.org"], MSG)
        .expect_code(0);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "returned before the receiver answered"
    );
    assert_eq!(sink.wait_messages(1, WAIT).len(), 1);
    wait_until("queue empty", WAIT, || {
        queued_ids(&env).is_empty().then_some(())
    });
}

/// Parse a DSN with Python's email package and check its RFC 3464 structure.
fn check_dsn(data: &[u8], action: &str, status: &str, rcpt: &str, orig_msgid: &str) {
    let script = r#"
import sys, email
from email import policy
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=policy.compat32)
assert m.get_content_type() == "multipart/report", m.get_content_type()
assert m.get_param("report-type") == "delivery-status"
parts = m.get_payload()
assert parts[0].get_content_type() == "text/plain"
ds = parts[1]
assert ds.get_content_type() == "message/delivery-status", ds.get_content_type()
blocks = ds.get_payload()
assert blocks[0]["Reporting-MTA"].startswith("dns;")
r = blocks[1]
print(r["Action"], r["Status"], r["Final-Recipient"])
hdrs = parts[2]
assert hdrs.get_content_type() == "text/rfc822-headers"
print(hdrs.get_payload())
"#;
    let mut p = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    p.stdin.take().unwrap().write_all(data).unwrap();
    let o = p.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "DSN does not parse as RFC 3464: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(data)
    );
    let first = out.lines().next().unwrap_or("");
    assert_eq!(first, format!("{action} {status} rfc822; {rcpt}"));
    assert!(out.contains(orig_msgid), "original headers attached: {out}");
}

#[test]
fn delay_warning_once_after_warn_after() {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::reply(
            Step::Rcpt("bob".into()),
            "451 4.2.1 mailbox busy",
        )],
        ..Default::default()
    });
    let env = env_for(&sink);
    env.conf("warn_after = \"1s\"");
    env.run(
        &["-i", "bob@example.org"],
        b"Subject: slow\nMessage-ID: <slow@shop.example>\n\nbody\n",
    )
    .expect_code(0);
    std::thread::sleep(Duration::from_millis(1100));
    env.run(&["-q"], b"").expect_code(0);
    let w = &sink.wait_messages(1, WAIT)[0];
    assert_eq!(w.mail_from, "");
    assert_eq!(w.rcpts, vec!["root@shop.example"]);
    check_dsn(
        &w.data,
        "delayed",
        "4.2.1",
        "bob@example.org",
        "<slow@shop.example>",
    );
    assert_eq!(queued_ids(&env).len(), 1, "the message itself stays queued");
    env.run(&["-q"], b"").expect_code(0);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(sink.messages().len(), 1, "one warning only");
}
