//! Relay failover lists (issue 16, point 2; DESIGN.md, "Failover"): a TOML
//! array for `relay` and routes, `relay=URL|URL` in virtusers, tried in order
//! on connection failure, TLS failure or 4xx; a 5xx is final; the syslog line
//! and the audit record name the relay that took the message; `-bv` lists
//! them. Real receivers on loopback.

use crate::support::pki::self_signed;
use crate::support::sink::{Rule, Sink, SinkConfig, Step, server_tls};
use crate::support::vs::Env;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
const MSG: &[u8] = b"Subject: failover\n\nHello.\n";

fn sink(ip: &str, rules: Vec<Rule>) -> Sink {
    Sink::start(SinkConfig {
        bind: ip.parse().unwrap(),
        rules,
        ..Default::default()
    })
}

fn url(s: &Sink) -> String {
    format!("smtp://{}", s.addr())
}

/// A loopback port nothing listens on: connections to it are refused.
fn refused(ip: &str) -> String {
    let l = std::net::TcpListener::bind((ip, 0)).unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    format!("smtp://{a}")
}

fn env() -> Env {
    let env = Env::new();
    env.virtusers("root  root@shop.example  127.0.0.2\n");
    env
}

#[test]
fn refused_then_421_then_delivered_and_named() {
    let dead = refused("127.0.17.1");
    let busy = sink(
        "127.0.17.2",
        vec![Rule::reply(Step::Connect, "421 4.3.2 busy")],
    );
    let good = sink("127.0.17.3", vec![]);
    let env = env();
    env.conf(&format!(
        "relay = [\"{dead}\", \"{}\", \"{}\"]",
        url(&busy),
        url(&good)
    ));
    let o = env.run(&["-bv", "bob@example.test"], b"");
    o.expect_code(0);
    let l = &o.stdout;
    let (a, b, c) = (
        l.find(&dead).unwrap_or(usize::MAX),
        l.find(&url(&busy)).unwrap_or(usize::MAX),
        l.find(&url(&good)).unwrap_or(usize::MAX),
    );
    assert!(
        a < b && b < c && c < usize::MAX,
        "-bv lists the relays in order: {o}"
    );

    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    assert_eq!(
        good.wait_messages(1, WAIT)[0].rcpts,
        vec!["bob@example.test"]
    );
    assert_eq!(busy.connections().len(), 1);
    assert!(busy.messages().is_empty());
    // The syslog line names the relay that took it...
    let sent: Vec<String> = env
        .log_records()
        .into_iter()
        .map(|l| l.msg)
        .filter(|m| m.contains("status=sent"))
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let named = format!("[{}]:{}", good.addr().ip(), good.port());
    assert!(sent[0].contains(&named), "{}", sent[0]);
    // ...and so does the audit record.
    let audit = env.audit_lines();
    let rec = audit
        .iter()
        .find(|l| l.contains("\"result\":\"sent"))
        .unwrap_or_else(|| panic!("{audit:?}"));
    assert!(
        rec.contains(&format!("\"relay\":\"{}\"", url(&good))),
        "{rec}"
    );
}

#[test]
fn a_failed_tls_handshake_moves_on_and_5xx_is_final() {
    let (certs, key) = self_signed(&["127.0.17.5"]);
    let broken = Sink::start(SinkConfig {
        bind: "127.0.17.4".parse().unwrap(),
        tls: Some(server_tls(certs.clone(), key.clone_key())),
        starttls_broken: true,
        ..Default::default()
    });
    let good = Sink::start(SinkConfig {
        bind: "127.0.17.5".parse().unwrap(),
        tls: Some(server_tls(certs, key)),
        ..Default::default()
    });
    let env = env();
    env.conf(&format!(
        "tls = \"required\"\nrelay = [\"{}\", \"{}\"]",
        url(&broken),
        url(&good)
    ));
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    good.wait_messages(1, WAIT);
    assert!(good.connections()[0].tls);
    assert!(broken.messages().is_empty());

    // A permanent refusal is not tried at the next relay.
    let refusing = sink(
        "127.0.17.6",
        vec![Rule::reply(
            Step::Rcpt(String::new()),
            "550 5.1.1 no such user",
        )],
    );
    let spare = sink("127.0.17.7", vec![]);
    let env = crate::support::vs::Env::new();
    env.virtusers(&format!(
        "root  root@shop.example  127.0.0.2  relay={}|{}\n",
        url(&refusing),
        url(&spare)
    ));
    let o = env.run(&["-oep", "-i", "bob@example.test"], MSG);
    o.expect_code(69);
    assert!(o.stderr.contains("no such user"), "{o}");
    assert!(spare.connections().is_empty(), "{}", spare.dump());
}

#[test]
fn every_relay_deferring_keeps_each_reason_queued() {
    let a = sink(
        "127.0.17.8",
        vec![Rule::reply(Step::Mail, "451 4.3.0 first is full")],
    );
    let b = sink(
        "127.0.17.9",
        vec![Rule::reply(Step::Mail, "452 4.3.1 second is full")],
    );
    let env = env();
    env.conf(&format!(
        "[routes]\n\"example.test\" = [\"{}\", \"{}\"]",
        url(&a),
        url(&b)
    ));
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    let deferred: Vec<String> = env
        .log_records()
        .into_iter()
        .map(|l| l.msg)
        .filter(|m| m.contains("status=deferred"))
        .collect();
    assert_eq!(deferred.len(), 1, "{deferred:?}");
    assert!(
        deferred[0].contains("first is full") && deferred[0].contains("second is full"),
        "{deferred:?}"
    );
    let q = env.run(&["-bp"], b"");
    assert!(q.stdout.contains("bob@example.test"), "{q}");
    // A later run that finds the first one working sends it there.
    a.set_rules(vec![]);
    env.run(&["-q"], b"").expect_code(0);
    a.wait_messages(1, WAIT);
    assert!(b.messages().is_empty());
}
