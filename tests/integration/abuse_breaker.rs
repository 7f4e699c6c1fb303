//! Abuse desk (issue 15), the circuit breaker: each signal trips it
//! (distinct recipients, failure share, unknown users), the notification
//! (from the host identity, never `<>`, never from the suspended identity's
//! address; parsed with Python's email package), exactly one trip and one
//! notification under 8 concurrent senders, and bad `[breaker]` values.

use crate::support::sink::{Msg, Rule, Sink, SinkConfig, Step};
use crate::support::users;
use crate::support::vs::Env;
use std::process::{Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
const UA: &str = "vst_abbrk_a";

fn setup(sink: &Sink, breaker: &str) -> Env {
    users::user(UA);
    let env = Env::new();
    env.relay(sink.addr());
    env.virtusers(&format!("{UA} a@shop.example 127.0.0.2\n"));
    env.aliases("postmaster: admin@ops.example\n");
    env.conf(&format!("[breaker]\n{breaker}"));
    env
}

fn send(env: &Env, rcpts: &[&str]) -> crate::support::vs::Out {
    let mut args = vec!["-i"];
    args.extend(rcpts);
    env.run_as(UA, &args, b"Subject: offer\n\nbuy\n")
}

fn notifications(sink: &Sink) -> Vec<Msg> {
    sink.messages()
        .into_iter()
        .filter(|m| m.rcpts.iter().any(|r| r == "admin@ops.example"))
        .collect()
}

/// Subject, From, To and the body of a message, as Python's email package reads it.
fn parsed(m: &Msg) -> serde_json::Value {
    let mut c = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, json, email\nm = email.message_from_bytes(sys.stdin.buffer.read())\n\
             print(json.dumps({'subject': m['Subject'], 'from': m['From'], 'to': m['To'], \
             'auto': m['Auto-Submitted'], 'body': m.get_payload(decode=True).decode()}))",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    c.stdin.take().unwrap().write_all(&m.data).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn abuse_breaker_distinct_recipients_refuses_and_notifies_once() {
    let sink = Sink::start_default();
    let env = setup(&sink, "distinct_rcpts = \"3/h\"\naction = \"refuse\"");
    send(&env, &["r1@dest.example", "r2@dest.example"]).expect_code(0);
    let out = send(&env, &["r3@dest.example", "r4@dest.example"]);
    out.expect_code(77);
    assert!(
        out.stderr
            .contains(&format!("sending is suspended for {UA}"))
            && out
                .stderr
                .contains("breaker: 4 distinct recipients in 1h (limit 3)"),
        "{out}"
    );
    let n = crate::support::wait_until("the notification", WAIT, || {
        let n = notifications(&sink);
        (!n.is_empty()).then_some(n)
    });
    assert_eq!(n.len(), 1);
    let m = &n[0];
    assert_eq!(m.mail_from, "postmaster@host.test", "never <>");
    assert_ne!(
        m.peer.ip().to_string(),
        "127.0.0.2",
        "not from the suspended identity"
    );
    let p = parsed(m);
    assert!(p["subject"].as_str().unwrap().contains(UA), "{p}");
    assert_eq!(p["auto"], "auto-generated");
    let body = p["body"].as_str().unwrap();
    for want in [
        "breaker: 4 distinct recipients in 1h (limit 3)",
        "distinct recipients: 4",
        "<r1@dest.example>",
        &format!("vsendmail --log --user {UA}"),
        &format!("vsendmail --unsuspend {UA}"),
        "cwd=",
    ] {
        assert!(body.contains(want), "{want:?} not in:\n{body}");
    }
    let warn = env
        .log_lines()
        .into_iter()
        .find(|l| l.contains("suspended (breaker:"));
    assert!(warn.is_some(), "{:#?}", env.log_lines());
    // Still suspended: refused again, no second notification.
    send(&env, &["r1@dest.example"]).expect_code(77);
    assert_eq!(notifications(&sink).len(), 1);
    env.run(&["--unsuspend", UA], b"").expect_code(0);
    send(&env, &["r5@dest.example"]).expect_code(0);
}

#[test]
fn abuse_breaker_failure_share_holds() {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::reply(
            Step::Rcpt("bad".into()),
            "554 5.7.1 rejected as spam",
        )],
        ..Default::default()
    });
    let env = setup(&sink, "failures = \"50%/4\"\naction = \"hold\"");
    send(
        &env,
        &[
            "ok1@dest.example",
            "ok2@dest.example",
            "bad1@dest.example",
            "bad2@dest.example",
        ],
    )
    .expect_code(0);
    let n = crate::support::wait_until("the notification", WAIT, || {
        let n = notifications(&sink);
        (!n.is_empty()).then_some(n)
    });
    let body = parsed(&n[0])["body"].as_str().unwrap().to_string();
    assert!(
        body.contains("2 of 4 recipients failed or deferred"),
        "{body}"
    );
    assert!(body.contains("554 5.7.1 rejected as spam"), "{body}");
    send(&env, &["ok3@dest.example"]).expect_code(0);
    assert!(env.run(&["-bp"], b"").stdout.contains("(held (suspended))"));
}

#[test]
fn abuse_breaker_unknown_users_trip() {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::reply(
            Step::Rcpt("gone".into()),
            "550 5.1.1 no such user",
        )],
        ..Default::default()
    });
    let env = setup(
        &sink,
        "unknown_users = \"1/h\"\naction = \"refuse\"\nnotify_user = true",
    );
    send(
        &env,
        &[
            "ok@dest.example",
            "gone1@dest.example",
            "gone2@dest.example",
        ],
    )
    .expect_code(0);
    let list = env.run(&["--suspended"], b"");
    assert!(
        list.stdout
            .contains("2 unknown-user replies in 1h (limit 1)")
            && list.stdout.contains("by=breaker"),
        "{list}"
    );
    let n = notifications(&sink);
    assert_eq!(n.len(), 1);
    assert!(
        n[0].rcpts.iter().any(|r| r == "a@shop.example"),
        "notify_user: {:?}",
        n[0].rcpts
    );
    send(&env, &["ok@dest.example"]).expect_code(77);
}

#[test]
fn abuse_breaker_eight_concurrent_senders_trip_it_once() {
    let sink = Sink::start_default();
    let env = setup(&sink, "distinct_rcpts = \"5/h\"\naction = \"hold\"");
    // Eight processes started together, their input written after all started.
    let mut kids: Vec<std::process::Child> = (0..8)
        .map(|i| {
            let mut c = env.cmd(Some(UA));
            c.arg("-C")
                .arg(env.conf_path())
                .args([
                    "-i",
                    &format!("p{i}a@dest.example"),
                    &format!("p{i}b@dest.example"),
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            c.spawn().expect("spawn vsendmail")
        })
        .collect();
    for k in &mut kids {
        use std::io::Write;
        let mut i = k.stdin.take().unwrap();
        let _ = i.write_all(b"Subject: race\n\nhi\n");
    }
    let codes: Vec<i32> = kids
        .into_iter()
        .map(|k| k.wait_with_output().unwrap().status.code().unwrap_or(-1))
        .collect();
    assert!(codes.iter().all(|c| *c == 0), "{codes:?}");
    crate::support::wait_until("the notification", WAIT, || {
        (!notifications(&sink).is_empty()).then_some(())
    });
    env.run(&["-q"], b"").expect_code(0);
    assert_eq!(notifications(&sink).len(), 1, "{}", sink.dump());
    let trips = env
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("suspended (breaker:"))
        .count();
    assert_eq!(trips, 1);
    assert_eq!(env.run(&["--suspended"], b"").stdout.lines().count(), 1);
}

#[test]
fn abuse_breaker_bad_values_are_78_with_file_and_line() {
    for (line, text) in [
        ("failures = \"50/20\"", "failures"),
        ("action = \"drop\"", "action"),
        ("distinct_rcpts = \"lots\"", "distinct_rcpts"),
        ("cooldown = \"soon\"", "cooldown"),
        ("unknown_users = \"0/h\"", "unknown_users"),
        ("colour = \"red\"", "colour"),
    ] {
        let env = Env::new();
        env.conf(&format!("[breaker]\n{line}"));
        let out = env.run(&["-bi"], b"");
        out.expect_code(78);
        let n = std::fs::read_to_string(env.conf_path())
            .unwrap()
            .lines()
            .position(|l| l.trim() == line)
            .unwrap()
            + 1;
        let conf = env.conf_path().display().to_string();
        assert!(
            out.stderr.contains(&format!("{conf}:{n}:")) && out.stderr.contains(text),
            "{line}: {out}"
        );
    }
}
