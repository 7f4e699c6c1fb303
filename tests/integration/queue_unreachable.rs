//! A queue run remembers a dead destination (issue 14, point 6): once a
//! host address (from a source) failed to connect or gave no greeting in
//! time, the run's other messages to it are deferred at once with that
//! reason ("not tried again in this queue run: …") instead of each waiting
//! out the timeout. The next run tries again.

use crate::support::sink::{Action, Rule, Sink, SinkConfig, Step};
use crate::support::vs::Env;

const MSG: &[u8] = b"Subject: queued\n\nHello.\n";

/// Three queued messages for a relay that accepts and never greets.
fn three_queued() -> (Env, Sink) {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::new(Step::Connect, Action::Hang)],
        ..Default::default()
    });
    let env = Env::new();
    env.relay(sink.addr());
    env.virtusers("root  root@shop.example  127.0.0.2\n");
    env.conf("[timeouts]\ngreeting = 1");
    for r in ["a@example.org", "b@example.org", "c@example.org"] {
        env.run(&["-odq", "-i", r], MSG).expect_code(0);
    }
    (env, sink)
}

#[test]
fn a_relay_that_never_greets_is_tried_once_per_queue_run() {
    let (env, sink) = three_queued();
    env.run(&["-q"], b"").expect_code(0);
    assert_eq!(sink.connections().len(), 1, "{}", sink.dump());
    let q = env.run(&["-bp"], b"").stdout;
    assert_eq!(
        q.matches("not tried again in this queue run: greeting")
            .count(),
        2,
        "{q}"
    );
    for r in ["a@example.org", "b@example.org", "c@example.org"] {
        assert!(q.contains(r), "{q}");
    }
    // The memory is the run's: the next run tries again, once.
    env.run(&["-q"], b"").expect_code(0);
    assert_eq!(sink.connections().len(), 2, "{}", sink.dump());
}

#[test]
fn a_refused_connection_is_not_tried_again_in_the_run() {
    let (env, sink) = three_queued();
    // Nothing listens on the port any more: each connect would be refused.
    let addr = sink.addr();
    drop(sink);
    env.run(&["-q"], b"").expect_code(0);
    let q = env.run(&["-bp"], b"").stdout;
    assert_eq!(
        q.matches("not tried again in this queue run: connect to")
            .count(),
        2,
        "{q}"
    );
    assert!(q.contains(&addr.to_string()), "{q}");
}
