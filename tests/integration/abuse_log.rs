//! Abuse desk (issue 15), `--log` and `--stats`: per-recipient records
//! against a sink on loopback, what two throwaway users each see, the
//! filters, `--json`, and bad input.

use crate::support::sink::{Rule, Sink, SinkConfig, Step};
use crate::support::users;
use crate::support::vs::Env;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);
const UA: &str = "vst_ablog_a";
const UB: &str = "vst_ablog_b";

fn setup() -> (Env, Sink) {
    users::user(UA);
    users::user(UB);
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::reply(
            Step::Rcpt("nobody".into()),
            "550 5.1.1 no such user",
        )],
        ..Default::default()
    });
    let env = Env::new();
    env.relay(sink.addr());
    env.virtusers(&format!(
        "{UA} a@shop.example 127.0.0.2\n{UB} b@blog.example 127.0.0.3\n"
    ));
    env.run_as(
        UA,
        &["-i", "x1@dest.example", "x2@dest.example"],
        b"Subject: a\n\nhi\n",
    )
    .expect_code(0);
    env.run_as(
        UB,
        &["-i", "y1@dest.example", "nobody@dest.example"],
        b"Subject: b\n\nhi\n",
    )
    .expect_code(0);
    sink.wait_messages(2, WAIT);
    (env, sink)
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split(' ')
        .find_map(|f| f.strip_prefix(&format!("{key}=")))
        .unwrap_or("")
}

#[test]
fn abuse_log_users_see_their_own_and_root_sees_all() {
    let (env, _sink) = setup();
    let a = env.run_as(UA, &["--log"], b"");
    a.expect_code(0);
    let lines: Vec<&str> = a.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{a}");
    for l in &lines {
        assert_eq!(field(l, "user"), UA, "{l}");
        assert_eq!(field(l, "status"), "sent", "{l}");
        assert!(field(l, "src").starts_with("127.0.0.2:"), "{l}");
        assert_eq!(field(l, "identity"), "a@shop.example", "{l}");
    }
    // Another user's records: refused, nothing shown.
    let x = env.run_as(UA, &["--log", "--user", UB], b"");
    x.expect_code(77);
    assert!(x.stdout.is_empty(), "{x}");
    let f = env.run_as(UB, &["--log", "--status", "failed"], b"");
    f.expect_code(0);
    assert_eq!(f.stdout.lines().count(), 1, "{f}");
    assert!(
        f.stdout.contains("to=nobody@dest.example") && f.stdout.contains("5.1.1"),
        "{f}"
    );
    let r = env.run(&["--log", "--user", UB, "--json"], b"");
    r.expect_code(0);
    let recs: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 2, "{r}");
    assert!(recs.iter().all(|v| v["user"] == UB));
    assert_eq!(
        env.run(&["--log", "--rcpt", "X1@dest.example"], b"")
            .stdout
            .lines()
            .count(),
        1
    );
    env.run(&["--log", "--since", "1h", "--status", "refused"], b"")
        .expect_code(1);
    // Bad input: 64 with a message that says what to use.
    let b = env.run(&["--log", "--since", "yesterday-ish"], b"");
    b.expect_code(64);
    assert!(b.stderr.starts_with("vsendmail: --since"), "{b}");
    let b = env.run(&["--log", "--status", "lost"], b"");
    b.expect_code(64);
    assert!(b.stderr.contains("sent, deferred, failed"), "{b}");
}

#[test]
fn abuse_stats_counts_per_identity_busiest_first_with_visibility() {
    let (env, _sink) = setup();
    env.run_as(
        UB,
        &[
            "-i",
            "y3@dest.example",
            "y4@dest.example",
            "y1@dest.example",
        ],
        b"Subject: c\n\nhi\n",
    )
    .expect_code(0);
    let all = env.run(&["--stats"], b"");
    all.expect_code(0);
    let lines: Vec<&str> = all.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{all}");
    assert_eq!(
        field(lines[0], "identity"),
        "b@blog.example",
        "busiest first: {all}"
    );
    assert_eq!(field(lines[0], "messages"), "2");
    assert_eq!(field(lines[0], "recipients"), "5");
    assert_eq!(field(lines[0], "distinct_recipients"), "4");
    assert_eq!(field(lines[0], "sent"), "4");
    assert_eq!(field(lines[0], "failed"), "1");
    assert_eq!(field(lines[0], "suspended"), "no");
    let own = env.run_as(UA, &["--stats", "--json"], b"");
    own.expect_code(0);
    let rows: Vec<serde_json::Value> = own
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{own}");
    assert_eq!(rows[0]["identity"], "a@shop.example");
    assert_eq!(rows[0]["recipients"], 2);
    env.run(&["--stats", "--since", "nonsense"], b"")
        .expect_code(64);
}
