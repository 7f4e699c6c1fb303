//! What the caller hears when a delivery ends in a mix of outcomes (issue
//! 14): without an `-oe` flag, a message that reached or queued some
//! recipient exits 0 and the permanent failures are printed and bounced;
//! `-oep` keeps exit 69; a message that no recipient got exits 69. A relay
//! that cannot be resolved is a temporary failure: queued, exit 0 (75 with
//! `queue = false`).

use crate::support::dns::{DnsServer, Zone};
use crate::support::sink::{Msg, Rule, Sink, SinkConfig, Step};
use crate::support::vs::Env;
use std::net::Ipv4Addr;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
const MSG: &[u8] = b"Subject: mixed\n\nHello.\n";

/// A relay that refuses `perm…` (550) and defers `temp…` (451) recipients.
fn setup() -> (Env, Sink) {
    let sink = Sink::start(SinkConfig {
        rules: vec![
            Rule::reply(Step::Rcpt("perm".into()), "550 5.1.1 no such user"),
            Rule::reply(Step::Rcpt("temp".into()), "451 4.3.0 try later"),
        ],
        ..Default::default()
    });
    let env = Env::new();
    env.relay(sink.addr());
    env.virtusers("root  root@shop.example  127.0.0.2\n");
    (env, sink)
}

/// The bounces the sink got (null sender), and the other messages.
fn split(msgs: Vec<Msg>) -> (Vec<Msg>, Vec<Msg>) {
    msgs.into_iter().partition(|m| m.mail_from.is_empty())
}

#[test]
fn partial_failure_without_oe_exits_zero_and_bounces_the_failed() {
    let (env, sink) = setup();
    let o = env.run(
        &[
            "-i",
            "perm@example.org",
            "temp@example.org",
            "ok@example.org",
        ],
        MSG,
    );
    o.expect_code(0);
    assert!(
        o.stderr.contains("<perm@example.org>:") && o.stderr.contains("550 5.1.1 no such user"),
        "{o}"
    );
    assert!(o.stderr.contains("bounce"), "{o}");
    let (bounces, sent) = split(sink.wait_messages(2, WAIT));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].rcpts, vec!["ok@example.org"]);
    assert_eq!(bounces.len(), 1, "one bounce");
    assert_eq!(bounces[0].rcpts, vec!["root@shop.example"]);
    let text = bounces[0].text();
    assert!(text.contains("perm@example.org"), "{text}");
    assert!(!text.contains("Final-Recipient: rfc822; temp@"), "{text}");
    // The deferred one stays queued.
    let q = env.run(&["-bp"], b"").stdout;
    assert!(q.contains("temp@example.org"), "{q}");
    assert!(!q.contains("perm@example.org"), "{q}");
}

#[test]
fn a_queued_recipient_is_enough_for_exit_zero() {
    let (env, sink) = setup();
    env.run(&["-i", "perm@example.org", "temp@example.org"], MSG)
        .expect_code(0);
    let (bounces, sent) = split(sink.wait_messages(1, WAIT));
    assert!(sent.is_empty());
    assert_eq!(bounces.len(), 1);
    assert!(bounces[0].text().contains("perm@example.org"));
}

#[test]
fn partial_failure_with_oep_exits_69_without_a_bounce() {
    let (env, sink) = setup();
    let o = env.run(
        &[
            "-oep",
            "-i",
            "perm@example.org",
            "temp@example.org",
            "ok@example.org",
        ],
        MSG,
    );
    o.expect_code(69);
    assert!(o.stderr.contains("<perm@example.org>:"), "{o}");
    sink.wait_messages(1, WAIT);
    // The one message (to ok@) is all: the run has ended, so no bounce follows.
    let (bounces, _) = split(sink.messages());
    assert!(bounces.is_empty(), "no bounce with -oep");
}

#[test]
fn all_failed_without_oe_exits_69_without_a_bounce() {
    let (env, sink) = setup();
    let o = env.run(&["-i", "perm@example.org", "perm2@example.org"], MSG);
    o.expect_code(69);
    assert!(o.stderr.contains("<perm2@example.org>:"), "{o}");
    assert!(sink.messages().is_empty(), "nothing sent, no bounce");
}

#[test]
fn all_failed_and_the_deferred_not_queued_exits_69() {
    let (env, sink) = setup();
    env.conf("queue = false");
    let o = env.run(&["-i", "perm@example.org", "temp@example.org"], MSG);
    o.expect_code(69);
    assert!(sink.messages().is_empty(), "no bounce: the caller heard it");
}

#[test]
fn a_relay_name_that_does_not_resolve_is_queued_not_failed() {
    let sink = Sink::start_default();
    let dns = DnsServer::start(Zone::new().a("other.test", Ipv4Addr::new(127, 0, 0, 1)));
    let env = Env::new();
    env.conf(&format!(
        "dns = [\"{}\"]\nrelay = \"smtp://relay.typo.test:{}\"",
        dns.addr(),
        sink.port()
    ));
    env.virtusers("root  root@shop.example  127.0.0.2\n");
    env.run(&["-i", "bob@example.org"], MSG).expect_code(0);
    let q = env.run(&["-bp"], b"").stdout;
    assert!(
        q.contains("bob@example.org") && q.contains("relay.typo.test"),
        "{q}"
    );
    // Without a queue it is a temporary failure the caller hears: 75.
    env.conf("queue = false");
    let o = env.run(&["-i", "carol@example.org"], MSG);
    o.expect_code(75);
    assert!(
        o.stderr.contains("cannot resolve relay relay.typo.test"),
        "{o}"
    );
    // Once the name resolves, the queue run delivers the first message.
    env.conf("queue = true");
    dns.set_zone(Zone::new().a("relay.typo.test", Ipv4Addr::new(127, 0, 0, 1)));
    env.run(&["-q"], b"").expect_code(0);
    let m = &sink.wait_messages(1, WAIT)[0];
    assert_eq!(m.rcpts, vec!["bob@example.org"]);
}
