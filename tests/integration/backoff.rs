//! Backing off (issue 17): a destination host that answers `421` or a `4.7.x`
//! is left alone, by every later process and queue run, until the wait
//! recorded in the spool ends; `-bp` says so; waiting is not an attempt.
//! And root's queue runs hold at most `destination_concurrency` connections
//! to one host at once.

use crate::support::dns::{DnsServer, Zone};
use crate::support::sink::{Rule, Sink, SinkConfig, Step};
use crate::support::vs::Env;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::time::Duration;

const MSG: &[u8] = b"Subject: backoff\nTo: bob@example.test\n\nHello.\n";
const WAIT: Duration = Duration::from_secs(10);

/// Direct delivery: example.test's MX is mx.test (127.0.0.1) on the sink's port.
fn mx_env(sink: &Sink) -> (Env, DnsServer) {
    let dns = DnsServer::start(
        Zone::new()
            .mx("example.test", 10, "mx.test")
            .a("mx.test", Ipv4Addr::LOCALHOST),
    );
    let env = Env::new();
    env.conf(&format!(
        "dns = [\"{}\"]\nmx_port = {}\nretry_min = \"1s\"",
        dns.addr(),
        sink.port()
    ));
    env.virtusers("root  root@shop.example  127.0.0.2\n");
    (env, dns)
}

#[test]
fn a_421_keeps_every_later_run_away_until_the_wait_ends() {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::reply(Step::Mail, "421 4.7.0 too many messages, slow down").times(1)],
        ..Default::default()
    });
    let (env, _dns) = mx_env(&sink);
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    assert_eq!(sink.wait_connections(1, WAIT).len(), 1);
    let rec = env.spool().join("backoff").join("mx.test@127.0.0.2");
    let text = std::fs::read_to_string(&rec).expect("the wait is recorded in the spool");
    assert!(text.contains("421 4.7.0 too many messages"), "{text}");

    // A second message and an immediate queue run: no new connection.
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    env.run(&["-q"], b"").expect_code(0);
    let q = env.run(&["-bp"], b"").stdout;
    assert_eq!(
        q.matches("destination mx.test backing off until ").count(),
        2,
        "{q}"
    );
    assert!(q.contains("2 Requests"), "{q}");
    assert_eq!(sink.connections().len(), 1, "{}", sink.dump());
    assert!(sink.messages().is_empty());
    let log = env.log_lines().join("\n");
    assert!(
        log.contains("destination mx.test backing off until"),
        "{log}"
    );

    // Waiting was not an attempt: the second message was never tried.
    let envelopes: Vec<String> = std::fs::read_dir(env.spool().join("queue"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect();
    assert!(
        envelopes.iter().any(|e| e.contains("\"attempts\":0,")),
        "{envelopes:?}"
    );

    // The wait ends (its record says so): the next run delivers both.
    let old = std::fs::read_to_string(&rec).unwrap();
    let rest = old.split_once(' ').unwrap().1;
    std::fs::write(&rec, format!("1 {rest}")).unwrap();
    env.run(&["-q"], b"").expect_code(0);
    assert_eq!(sink.wait_messages(2, WAIT).len(), 2);
    assert!(
        env.run(&["-bp"], b"")
            .stdout
            .contains("Mail queue is empty")
    );
}

#[test]
fn another_mx_host_is_still_tried_and_an_unrelated_4xx_is_no_backoff() {
    // mx1 rate-limits at RCPT (450 4.7.28); mx2 takes the message.
    let first = Sink::start(SinkConfig {
        bind: "127.0.0.10".parse().unwrap(),
        rules: vec![Rule::reply(
            Step::Rcpt(String::new()),
            "450 4.7.28 rate limited",
        )],
        ..Default::default()
    });
    let port = first.port();
    let second = Sink::start(SinkConfig {
        bind: "127.0.0.11".parse().unwrap(),
        port,
        rules: vec![Rule::reply(Step::Mail, "451 4.3.0 try later").times(1)],
        ..Default::default()
    });
    let dns = DnsServer::start(
        Zone::new()
            .mx("example.test", 10, "mx1.test")
            .mx("example.test", 20, "mx2.test")
            .a("mx1.test", Ipv4Addr::new(127, 0, 0, 10))
            .a("mx2.test", Ipv4Addr::new(127, 0, 0, 11)),
    );
    let env = Env::new();
    env.conf(&format!("dns = [\"{}\"]\nmx_port = {port}", dns.addr()));
    env.virtusers("root  root@shop.example  127.0.0.2\n");
    // mx1 says slow down, mx2 says 451 4.3.0 (not a backoff): deferred.
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    assert!(env.spool().join("backoff/mx1.test@127.0.0.2").exists());
    assert!(!env.spool().join("backoff/mx2.test@127.0.0.2").exists());
    // The next run skips mx1 and delivers through mx2.
    env.run(&["-q"], b"").expect_code(0);
    assert_eq!(second.wait_messages(1, WAIT).len(), 1);
    assert_eq!(first.connections().len(), 1, "{}", first.dump());
}

#[test]
fn root_queue_runs_share_destination_concurrency_slots() {
    let sink = Sink::start_default();
    let (env, _dns) = mx_env(&sink);
    env.conf("destination_concurrency = 1\nqueue = true");
    // Queue one message without delivering it.
    env.run(&["-odq", "-i", "bob@example.test"], MSG)
        .expect_code(0);
    // Another queue run holds the only slot of mx.test (as a run would).
    let dir = env.spool().join("backoff");
    std::fs::create_dir_all(&dir).unwrap();
    let slot = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("mx.test@any.slot.0"))
        .unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(
        unsafe { libc::flock(slot.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    env.run(&["-q"], b"").expect_code(0);
    assert!(sink.connections().is_empty(), "{}", sink.dump());
    let q = env.run(&["-bp"], b"").stdout;
    assert!(q.contains("destination_concurrency 1"), "{q}");
    drop(slot);
    env.run(&["-q"], b"").expect_code(0);
    assert_eq!(sink.wait_messages(1, WAIT).len(), 1);
}

#[test]
fn bi_refuses_a_cap_of_zero_and_warns_of_a_remote_validating_resolver() {
    let env = Env::new();
    env.conf("destination_concurrency = 0");
    let bi = env.run(&["-bi"], b"");
    assert_eq!(bi.code, 78, "{bi}");
    assert!(bi.stderr.contains("destination_concurrency = 0"), "{bi}");
    env.conf("destination_concurrency = 2\ndnssec = \"trust-ad\"\ndns = [\"192.0.2.53\"]");
    let bi = env.run(&["-bi"], b"");
    assert!(
        bi.stderr
            .contains("dnssec = \"trust-ad\" trusts the AD bit"),
        "{bi}"
    );
    env.conf("dns = [\"127.0.0.1:5353\"]");
    let bi = env.run(&["-bi"], b"");
    assert!(!bi.stderr.contains("trusts the AD bit"), "{bi}");
}

#[test]
fn an_idle_pooled_session_closed_with_421_is_no_backoff() {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::reply(Step::Rset, "421 4.4.2 idle too long, closing").times(1)],
        ..Default::default()
    });
    let (env, _dns) = mx_env(&sink);
    for _ in 0..3 {
        env.run(&["-odq", "-i", "bob@example.test"], MSG)
            .expect_code(0);
    }
    env.run(&["-q"], b"").expect_code(0);
    assert_eq!(sink.wait_messages(3, WAIT).len(), 3, "{}", sink.dump());
    assert!(!env.spool().join("backoff/mx.test@127.0.0.2").exists());
}

#[test]
fn a_users_set_gid_run_records_the_wait_and_roots_queue_run_respects_it() {
    use crate::support::setgid::{self, SetGid};
    use std::os::unix::fs::MetadataExt;
    let sg = SetGid::install();
    let env = Env::new();
    sg.attach(&env);
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::reply(Step::Mail, "421 4.7.0 slow down").times(1)],
        ..Default::default()
    });
    env.relay(sink.addr());
    let user = "vsbackoff";
    crate::support::users::user(user);
    env.virtusers(&format!("{user} {user}@shop.test 127.0.0.2\n"));
    sg.run(&env, Some(user), &["-i", "bob@example.org"], MSG)
        .expect_code(0);
    let rec = sg.spool().join("backoff/127.0.0.1@127.0.0.2");
    let m = std::fs::metadata(&rec).expect("the user's run recorded the wait");
    assert_eq!((m.gid(), m.mode() & 0o777), (sg.gid(), 0o660));
    // The user cannot reach it but through the binary.
    let o = setgid::as_user(user, "cat", &[&rec.display().to_string()]);
    assert_ne!(o.code, 0, "{o}");
    // A second send of the user and root's queue run: no new connection.
    sg.run(&env, Some(user), &["-i", "bob@example.org"], MSG)
        .expect_code(0);
    sg.run(&env, None, &["-q"], b"").expect_code(0);
    assert_eq!(sink.connections().len(), 1, "{}", sink.dump());
    let q = sg.run(&env, None, &["-bp"], b"").stdout;
    assert!(q.contains("destination 127.0.0.1 backing off until"), "{q}");
}
