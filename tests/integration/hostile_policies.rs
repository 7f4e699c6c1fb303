//! Issue 13, point 11: the sender policies hold against a hostile site.
//!
//! Each From: trick is played by an unprivileged throwaway user against the
//! set-gid binary (`support::setgid`), and judged by what the receiver got:
//! under `from_policy = "rewrite"` every author field (From:, Sender:,
//! Resent-From:) reaches it rebuilt as `Display <identity>`, whatever
//! quoted display names, comments, spaces or folds the site used; under
//! `"reject"` the parsed mailbox is judged, not the first angle-addr or the
//! first text that looks like an address; a field that is not exactly one
//! mailbox is refused (65) whatever the policy, and logged as a refusal.

use crate::support::setgid::SetGid;
use crate::support::sink::Sink;
use crate::support::users;
use crate::support::vs::{Env, Out};
use std::time::Duration;

const UA: &str = "vst_hpol_a";
const ID: &str = "a@shop.example";
const WAIT: Duration = Duration::from_secs(15);

/// A set-gid installation relaying to a sink, `UA` as `a@shop.example`.
struct World {
    env: Env,
    sg: SetGid,
    sink: Sink,
}

impl World {
    fn new(policy: &str) -> World {
        users::user(UA);
        let sink = Sink::start_default();
        let env = Env::new();
        let sg = SetGid::install();
        sg.attach(&env);
        env.relay(sink.addr());
        env.virtusers(&format!("{UA}  {ID}  127.0.0.2\n"));
        env.conf(&format!("from_policy = \"{policy}\""));
        env.set_timeout(Duration::from_secs(60));
        World { env, sg, sink }
    }

    fn send(&self, header: &str) -> Out {
        let msg = format!("To: friend@dest.example\n{header}\nSubject: trick\n\nbody\n");
        self.sg.run(
            &self.env,
            Some(UA),
            &["-i", "friend@dest.example"],
            msg.as_bytes(),
        )
    }

    /// The syslog lines that record a refusal of `UA`.
    fn refusals(&self, code: i32) -> Vec<String> {
        let tag = format!("user={UA} refused (exit {code})");
        self.env
            .log_lines()
            .into_iter()
            .filter(|l| l.contains(&tag))
            .collect()
    }
}

#[test]
fn hostile_from_tricks_are_rebuilt_around_the_identity_under_rewrite() {
    let w = World::new("rewrite");
    let tricks = [
        ("\"ceo@bank.example\" <ceo@bank.example>", ID.to_string()),
        ("CEO <ceo@bank.example>", format!("CEO <{ID}>")),
        ("ceo@bank.example (a@shop.example)", ID.to_string()),
        (
            "(a@shop.example) <ceo (x) @ bank . example>",
            ID.to_string(),
        ),
        ("\"Bank\"\n  <ceo@bank.example>", format!("\"Bank\" <{ID}>")),
        ("ceo@bank.example", ID.to_string()),
    ];
    for (i, (from, want)) in tricks.iter().enumerate() {
        let header = format!("From: {from}\nSender: {from}\nResent-From: {from}");
        w.send(&header).expect_code(0);
        let m = &w.sink.wait_messages(i + 1, WAIT)[i];
        for f in ["From", "Sender", "Resent-From"] {
            assert_eq!(
                m.header(f).as_deref(),
                Some(want.as_str()),
                "{f}: for {from:?}"
            );
        }
        for (name, value) in m.header_fields() {
            if ["From", "Sender", "Resent-From"]
                .iter()
                .any(|f| name.eq_ignore_ascii_case(f))
            {
                assert!(!value.contains("bank.example"), "{name}: {value}");
            }
        }
    }
}

#[test]
fn hostile_from_tricks_are_judged_by_the_parsed_mailbox_under_reject() {
    let w = World::new("reject");
    for header in [
        "From: \"a@shop.example\" <ceo@bank.example>",
        "From: (a@shop.example) ceo@bank.example",
        "From: a@shop.example\nSender: ceo@bank.example",
        "Resent-From: CEO <ceo@bank.example>",
    ] {
        let o = w.send(header);
        assert_eq!(o.code, 77, "{header:?}: {o}");
        assert!(
            o.stderr.starts_with("vsendmail: ") && o.stderr.lines().count() == 1,
            "{o}"
        );
        assert!(o.stderr.contains("<ceo@bank.example>"), "{o}");
    }
    assert_eq!(w.refusals(77).len(), 4, "{:?}", w.env.log_lines());
    // The identity behind a display name that looks like another address is
    // the identity: allowed.
    w.send("From: \"ceo@bank.example\" <a@shop.example>")
        .expect_code(0);
    let m = w.sink.wait_messages(1, WAIT);
    assert_eq!(m.len(), 1);
}

#[test]
fn hostile_from_that_is_not_one_mailbox_is_refused_and_logged() {
    let w = World::new("keep");
    let bad = [
        "From: <a@shop.example> <ceo@bank.example>",
        "From: a@shop.example, ceo@bank.example",
        "From: Bank: ceo@bank.example;",
        "From: a@shop.example\nFrom: ceo@bank.example",
        "Sender: <a@shop.example> <ceo@bank.example>",
        "Resent-From: a@shop.example,\n ceo@bank.example",
    ];
    for header in bad {
        let o = w.send(header);
        assert_eq!(o.code, 65, "{header:?}: {o}");
        assert!(
            o.stderr.starts_with("vsendmail: ") && o.stderr.lines().count() == 1,
            "{o}"
        );
        assert!(o.stderr.contains("NOT accepted"), "{o}");
    }
    assert_eq!(w.refusals(65).len(), bad.len(), "{:?}", w.env.log_lines());
    assert!(w.sink.messages().is_empty());
}
