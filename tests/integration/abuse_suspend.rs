//! Abuse desk (issue 15), suspensions: `--suspend` with both actions, the
//! refusal's exact text and exit codes, `--suspended`, queue runs never
//! sending a suspended user's mail, `--unsuspend`, and who may do it.

use crate::support::sink::Sink;
use crate::support::users;
use crate::support::vs::Env;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);
const UA: &str = "vst_absus_a";
const UB: &str = "vst_absus_b";

fn setup() -> (Env, Sink) {
    users::user(UA);
    users::user(UB);
    let sink = Sink::start_default();
    let env = Env::new();
    env.relay(sink.addr());
    env.virtusers(&format!(
        "{UA} a@shop.example 127.0.0.2\n{UB} b@blog.example 127.0.0.3\n"
    ));
    (env, sink)
}

fn send(env: &Env, user: &str) -> crate::support::vs::Out {
    env.run_as(user, &["-i", "rcpt@dest.example"], b"Subject: s\n\nhi\n")
}

#[test]
fn abuse_suspend_refuse_exact_text_and_who_may() {
    let (env, sink) = setup();
    let no = env.run_as(UB, &["--suspend", UA], b"");
    no.expect_code(77);
    assert!(no.stderr.starts_with("vsendmail: --suspend"), "{no}");
    env.run_as(UB, &["--unsuspend", UA], b"").expect_code(77);
    let unknown = env.run(&["--suspend", "vst_no_such_login_x"], b"");
    unknown.expect_code(67);
    assert!(
        unknown.stderr.contains("vst_no_such_login_x: no such user"),
        "{unknown}"
    );
    env.run(&["--suspend", UA, "--action", "drop"], b"")
        .expect_code(64);

    let s = env.run(&["--suspend", UA, "--reason", "spam run"], b"");
    s.expect_code(0);
    let list = env.run(&["--suspended"], b"");
    let line = list
        .stdout
        .lines()
        .find(|l| l.contains(UA))
        .expect("listed");
    assert!(
        line.contains("action=refuse") && line.contains("by=root"),
        "{line}"
    );
    assert!(line.contains("reason=\"spam run\""), "{line}");
    let since = line
        .split(' ')
        .find_map(|f| f.strip_prefix("since="))
        .unwrap()
        .to_string();

    let out = send(&env, UA);
    out.expect_code(77);
    assert_eq!(
        out.stderr,
        format!(
            "vsendmail: sending is suspended for {UA} since {since} (spam run); contact the administrator\n"
        )
    );
    // The other site is not touched.
    send(&env, UB).expect_code(0);
    sink.wait_messages(1, WAIT);
    let refused = env.run(&["--log", "--status", "refused"], b"");
    refused.expect_code(0);
    assert!(refused.stdout.contains(&format!("user={UA}")), "{refused}");
    assert!(refused.stdout.contains("sending is suspended"), "{refused}");
    let u = env.run(&["--unsuspend", UA], b"");
    u.expect_code(0);
    send(&env, UA).expect_code(0);
    sink.wait_messages(2, WAIT);
    env.run(&["--unsuspend", UA], b"").expect_code(1);
}

#[test]
fn abuse_suspend_hold_queues_and_queue_runs_never_send_it() {
    let (env, sink) = setup();
    env.run(&["--suspend", UA, "--action", "hold"], b"")
        .expect_code(0);
    send(&env, UA).expect_code(0);
    let q = env.run(&["-bp"], b"");
    assert!(q.stdout.contains("(held (suspended))"), "{q}");
    let log = env.run(&["--log", "--status", "suspended"], b"");
    log.expect_code(0);
    let id = log
        .stdout
        .split(' ')
        .find_map(|f| f.strip_prefix("queue_id="))
        .unwrap()
        .to_string();
    // Released while still suspended: queue runs still do not send it.
    env.run(&["--release", &id], b"").expect_code(0);
    env.run(&["-q"], b"").expect_code(0);
    assert!(sink.messages().is_empty(), "{}", sink.dump());
    // Unsuspended: new mail goes; what was held waits for --release.
    env.run(&["--unsuspend", UA], b"").expect_code(0);
    env.run(&["--hold", &id], b"").expect_code(0);
    env.run(&["-q"], b"").expect_code(0);
    assert!(
        sink.messages().is_empty(),
        "held stays held: {}",
        sink.dump()
    );
    env.run(&["--release", &format!("user={UA}")], b"")
        .expect_code(0);
    env.run(&["-q"], b"").expect_code(0);
    assert_eq!(sink.wait_messages(1, WAIT).len(), 1);
}

/// As installed: the set-gid binary, run by users who are not in its group.
/// The breaker's state and the suspensions live in directories only root
/// made; a user can send, be tripped, be refused, and cannot lift it.
#[test]
fn abuse_setgid_breaker_trips_and_the_user_cannot_lift_it() {
    use crate::support::setgid::SetGid;
    users::user(UA);
    let sink = Sink::start_default();
    let env = Env::new();
    let sg = SetGid::install();
    sg.attach(&env);
    env.relay(sink.addr());
    env.virtusers(&format!("{UA} a@shop.example 127.0.0.2\n"));
    env.conf("[breaker]\ndistinct_rcpts = \"1/h\"\naction = \"refuse\"");
    env.set_timeout(Duration::from_secs(90));
    let one = sg.run(
        &env,
        Some(UA),
        &["-i", "r1@dest.example"],
        b"Subject: s\n\nhi\n",
    );
    one.expect_code(0);
    let two = sg.run(
        &env,
        Some(UA),
        &["-i", "r2@dest.example"],
        b"Subject: s\n\nhi\n",
    );
    two.expect_code(77);
    assert!(
        two.stderr.contains("breaker: 2 distinct recipients"),
        "{two}"
    );
    sg.run(&env, Some(UA), &["--unsuspend", UA], b"")
        .expect_code(77);
    let own = sg.run(&env, Some(UA), &["--log"], b"");
    own.expect_code(0);
    assert!(own.stdout.contains("status=refused"), "{own}");
    // Not even through the file system.
    let f = sg.spool().join("suspended").join(UA);
    let rm = crate::support::setgid::as_user(UA, "rm", &["-f", &f.display().to_string()]);
    assert!(f.exists(), "the user removed its suspension: {rm}");
    sink.wait_messages(1, WAIT);
}
