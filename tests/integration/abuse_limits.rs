//! Abuse desk (issue 15), limits in layers: several windows in `rate=`,
//! `rcpt_rate=`, the global `rcpt_rate` default, and `group_rate=` /
//! `group_rcpt_rate=` on a `%group` line counted over every member
//! together; each refusal names the limit that was hit.

use crate::support::sink::Sink;
use crate::support::users;
use crate::support::vs::{Env, Out};

const UA: &str = "vst_ablim_a";
const UB: &str = "vst_ablim_b";
const GROUP: &str = "vst_ablim_g";

fn env_with(sink: &Sink, virtusers: &str, conf: &str) -> Env {
    users::user(UA);
    users::user(UB);
    let env = Env::new();
    env.relay(sink.addr());
    env.conf(&format!("over_rate = \"refuse\"\n{conf}"));
    env.virtusers(virtusers);
    env
}

fn send(env: &Env, user: &str, rcpts: &[&str]) -> Out {
    let mut args = vec!["-i"];
    args.extend(rcpts);
    env.run_as(user, &args, b"Subject: l\n\nhi\n")
}

#[test]
fn abuse_limits_several_windows_each_named() {
    let sink = Sink::start_default();
    let env = env_with(
        &sink,
        &format!("{UA} a@shop.example 127.0.0.2 rate=5/h,1/d\n"),
        "",
    );
    send(&env, UA, &["r@dest.example"]).expect_code(0);
    let out = send(&env, UA, &["r@dest.example"]);
    out.expect_code(75);
    assert_eq!(
        out.stderr,
        "vsendmail: a@shop.example sent 1 messages in the last 1d (limit 1); try again later\n"
    );
    let refused = env.run(&["--log", "--status", "refused"], b"");
    assert!(refused.stdout.contains("(limit 1)"), "{refused}");
}

#[test]
fn abuse_limits_rcpt_rate_per_identity_and_global_default() {
    let sink = Sink::start_default();
    let env = env_with(
        &sink,
        &format!("{UA} a@shop.example 127.0.0.2 rcpt_rate=3/h\n{UB} b@blog.example 127.0.0.3\n"),
        "rcpt_rate = \"2/h\"",
    );
    send(&env, UA, &["r1@dest.example", "r2@dest.example"]).expect_code(0);
    let out = send(&env, UA, &["r3@dest.example", "r4@dest.example"]);
    out.expect_code(75);
    assert!(
        out.stderr
            .contains("a@shop.example sent 2 recipients in the last 1h (limit 3, rcpt_rate)"),
        "{out}"
    );
    // UB has the global default, 2 per hour.
    send(&env, UB, &["r1@dest.example", "r2@dest.example"]).expect_code(0);
    let out = send(&env, UB, &["r3@dest.example"]);
    out.expect_code(75);
    assert!(out.stderr.contains("(limit 2, rcpt_rate)"), "{out}");
}

#[test]
fn abuse_limits_group_rate_counts_every_member_together() {
    users::group(GROUP);
    users::user(UA);
    users::user(UB);
    users::add_to_group(UA, GROUP);
    users::add_to_group(UB, GROUP);
    let sink = Sink::start_default();
    let env = env_with(
        &sink,
        &format!("%{GROUP} @members.example - group_rate=2/h group_rcpt_rate=5/h\n"),
        "",
    );
    send(&env, UA, &["r1@dest.example"]).expect_code(0);
    send(&env, UB, &["r2@dest.example"]).expect_code(0);
    let out = send(&env, UA, &["r3@dest.example"]);
    out.expect_code(75);
    assert!(
        out.stderr.contains(&format!(
            "group %{GROUP} sent 2 messages in the last 1h (limit 2, group_rate)"
        )),
        "{out}"
    );
    // A group_rate= on a user's own line is a -bi error with its line.
    env.virtusers(&format!("# x\n{UA} a@shop.example - group_rate=1/h\n"));
    let bi = env.run(&["-bi"], b"");
    bi.expect_code(78);
    assert!(
        bi.stderr
            .contains(":2: group_rate= belongs on a %group line"),
        "{bi}"
    );
}

#[test]
fn abuse_limits_group_rcpt_rate_and_defer_names_the_limit() {
    users::user(UA);
    users::user(UB);
    users::group(GROUP);
    users::add_to_group(UA, GROUP);
    users::add_to_group(UB, GROUP);
    let sink = Sink::start_default();
    let env = env_with(
        &sink,
        &format!("%{GROUP} @members.example - group_rcpt_rate=3/h\n"),
        "over_rate = \"defer\"",
    );
    send(&env, UA, &["r1@dest.example", "r2@dest.example"]).expect_code(0);
    let out = send(&env, UB, &["r3@dest.example", "r4@dest.example"]);
    out.expect_code(0);
    assert!(
        out.stderr.contains(&format!(
            "group %{GROUP} sent 2 recipients in the last 1h (limit 3, group_rcpt_rate)"
        )),
        "{out}"
    );
    assert!(env.run(&["-bp"], b"").stdout.contains("(rate limited)"));
    let held = env.run(&["--log", "--status", "held"], b"");
    held.expect_code(0);
    assert_eq!(held.stdout.lines().count(), 2, "{held}");
}
