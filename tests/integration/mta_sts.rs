//! MTA-STS (issue 17): policies discovered by `_mta-sts` TXT, fetched over
//! HTTPS from a real server on loopback (certificates from the test CA),
//! cached in the spool; `enforce` (only named MX hosts, verified TLS, else
//! deferred), `testing` (delivered, failure logged), `none`, `mta_sts =
//! false`; the cache across runs with the policy server down, a new TXT id
//! fetching again, and bad policies (malformed, too big, redirected, bad
//! certificate) treated as no policy.

use crate::support::dns::{DnsServer, Zone};
use crate::support::https::{Answer, HttpsServer};
use crate::support::pki::{self, Pki};
use crate::support::sink::{Sink, SinkConfig, server_tls};
use crate::support::vs::Env;
use std::net::Ipv4Addr;
use std::time::Duration;

const MSG: &[u8] = b"Subject: sts\nTo: bob@example.test\n\nHello.\n";
const WAIT: Duration = Duration::from_secs(10);
const MX: &str = "mx.example.test";

fn policy(mode: &str, mx: &str) -> String {
    format!("version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 86400\r\n")
}

fn zone(id: &str) -> Zone {
    Zone::new()
        .mx("example.test", 10, MX)
        .a(MX, Ipv4Addr::LOCALHOST)
        .txt("_mta-sts.example.test", &format!("v=STSv1; id={id};"))
        .a("mta-sts.example.test", Ipv4Addr::LOCALHOST)
}

/// A TLS sink with `chain`, the DNS, the policy server answering `answer`
/// (with a good certificate for mta-sts.example.test), an Env for them.
struct World {
    sink: Sink,
    dns: DnsServer,
    https: Option<HttpsServer>,
    env: Env,
    pki: Pki,
}

fn world(sink_names: &[&str], answer: Answer) -> World {
    let pki = Pki::new();
    let (c, k) = pki.leaf(sink_names, false);
    let sink = Sink::start(SinkConfig {
        tls: Some(server_tls(c, k)),
        ..Default::default()
    });
    let https = HttpsServer::start(pki.leaf(&["mta-sts.example.test"], false), answer);
    let dns = DnsServer::start(zone("1"));
    let env = Env::new();
    let ca = env.write("ca.pem", &pki.ca_pem());
    env.conf(&format!(
        "dns = [\"{}\"]\nmx_port = {}\nmta_sts_port = {}\ntls_ca_file = \"{}\"",
        dns.addr(),
        sink.port(),
        https.port(),
        ca.display()
    ));
    env.virtusers("root  root@shop.example  127.0.0.2\n");
    World {
        sink,
        dns,
        https: Some(https),
        env,
        pki,
    }
}

fn log(env: &Env) -> String {
    env.log_lines().join("\n")
}

fn queue(env: &Env) -> String {
    env.run(&["-bp"], b"").stdout
}

#[test]
fn enforce_delivers_over_verified_tls_and_defers_a_wrong_name() {
    let w = world(&[MX], Answer::ok(&policy("enforce", MX)));
    w.env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    assert_eq!(w.sink.wait_messages(1, WAIT).len(), 1);
    let l = log(&w.env);
    assert!(
        l.contains("Verified TLS connection established to mx.example.test"),
        "{l}"
    );
    assert_eq!(
        w.https.as_ref().unwrap().requests(),
        ["GET /.well-known/mta-sts.txt HTTP/1.1"]
    );
    assert!(w.env.spool().join("mta-sts/example.test").exists());
    let bv = w.env.run(&["-bv", "bob@example.test"], b"").stdout;
    assert!(bv.contains("MTA-STS: MTA-STS policy of example.test (mode enforce, mx mx.example.test, id 1); only TLS with a certificate verified for mx.example.test"), "{bv}");

    // The same policy, a receiver whose certificate names another host: deferred.
    let w = world(&["other.example.test"], Answer::ok(&policy("enforce", MX)));
    w.env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    assert!(w.sink.messages().is_empty());
    let q = queue(&w.env);
    assert!(q.contains("not valid for name \"mx.example.test\""), "{q}");
    let l = log(&w.env);
    assert!(
        l.contains("TLS is required (MTA-STS policy of example.test (mode enforce"),
        "{l}"
    );
}

#[test]
fn enforce_uses_only_the_mx_hosts_it_names() {
    let w = world(&[MX], Answer::ok(&policy("enforce", "*.elsewhere.test")));
    w.env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    assert!(w.sink.connections().is_empty(), "{}", w.sink.dump());
    let q = queue(&w.env);
    assert!(
        q.contains("MX host mx.example.test is not named by the MTA-STS policy"),
        "{q}"
    );
}

#[test]
fn testing_delivers_and_logs_none_and_off_deliver() {
    let w = world(&["other.example.test"], Answer::ok(&policy("testing", MX)));
    w.env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    assert_eq!(w.sink.wait_messages(1, WAIT).len(), 1);
    let l = log(&w.env);
    assert!(
        l.contains("(testing): the certificate of mx.example.test"),
        "{l}"
    );
    assert!(l.contains("not valid for name \"mx.example.test\""), "{l}");

    let w = world(&["other.example.test"], Answer::ok(&policy("none", MX)));
    w.env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    assert_eq!(w.sink.wait_messages(1, WAIT).len(), 1);

    // mta_sts = false: not even the TXT record is asked for.
    let w = world(&["other.example.test"], Answer::ok(&policy("enforce", MX)));
    w.env.conf("mta_sts = false");
    w.env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    assert_eq!(w.sink.wait_messages(1, WAIT).len(), 1);
    assert!(!w.dns.queries().iter().any(|q| q.0.starts_with("_mta-sts")));
    assert!(w.https.as_ref().unwrap().requests().is_empty());
}

#[test]
fn the_cache_outlives_the_policy_server_and_a_new_id_fetches_again() {
    let mut w = world(&["other.example.test"], Answer::ok(&policy("enforce", MX)));
    w.env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    assert!(
        w.sink.messages().is_empty(),
        "enforced: wrong name deferred"
    );
    // The policy server goes away: the cached policy is still enforced.
    w.https = None;
    w.env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    w.env.run(&["-q"], b"").expect_code(0);
    assert!(
        w.sink.messages().is_empty(),
        "still enforced from the cache"
    );
    assert!(!log(&w.env).contains("could not be had"), "{}", log(&w.env));

    // A new policy id: fetched again (now "testing"), so the queue goes out.
    let https = HttpsServer::start(
        w.pki.leaf(&["mta-sts.example.test"], false),
        Answer::ok(&policy("testing", MX)),
    );
    w.env.conf(&format!("mta_sts_port = {}", https.port()));
    w.dns.set_zone(zone("2"));
    w.env.run(&["-q"], b"").expect_code(0);
    assert_eq!(https.requests().len(), 1);
    assert_eq!(w.sink.wait_messages(2, WAIT).len(), 2);
    let cached = std::fs::read_to_string(w.env.spool().join("mta-sts/example.test")).unwrap();
    assert!(
        cached.starts_with("2 ") && cached.contains("mode: testing"),
        "{cached}"
    );
}

#[test]
fn bad_policies_are_no_policy() {
    let enforce = policy("enforce", MX);
    let bad = [
        ("malformed", Answer::ok("<html>not a policy</html>")),
        (
            "too big",
            Answer::ok(&format!("{enforce}{}", "x: y\r\n".repeat(20000))),
        ),
        (
            "redirect",
            Answer {
                status: "301 Moved Permanently".into(),
                headers: "Location: https://elsewhere.test/\r\n".into(),
                body: Vec::new(),
            },
        ),
    ];
    for (what, answer) in bad {
        // The receiver's certificate would fail an enforced policy.
        let w = world(&["other.example.test"], answer);
        w.env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
        assert_eq!(w.sink.wait_messages(1, WAIT).len(), 1, "{what}");
        let l = log(&w.env);
        assert!(l.contains("treated as no policy"), "{what}: {l}");
    }
    // A policy server whose certificate no trusted CA vouches for.
    let w = world(&["other.example.test"], Answer::ok(&enforce));
    let https = HttpsServer::start(
        pki::self_signed(&["mta-sts.example.test"]),
        Answer::ok(&enforce),
    );
    w.env.conf(&format!("mta_sts_port = {}", https.port()));
    w.env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    assert_eq!(w.sink.wait_messages(1, WAIT).len(), 1);
    assert!(
        log(&w.env).contains("treated as no policy"),
        "{}",
        log(&w.env)
    );
}
