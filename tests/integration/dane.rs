//! DANE (issue 17) with `dnssec = "trust-ad"`: TLSA records served by the
//! test DNS server with or without the AD bit; a receiver whose certificate
//! matches (DANE-EE 3 1 1, DANE-TA 2 0 1), does not match, or whose records
//! are unusable; an unauthenticated answer is no TLSA; DANE wins over an
//! MTA-STS policy the certificate would fail.

use crate::support::dns::{DnsServer, Zone};
use crate::support::https::{Answer, HttpsServer};
use crate::support::pki::{self, Chain, Pki};
use crate::support::sink::{Sink, SinkConfig, server_tls};
use crate::support::vs::Env;
use std::net::Ipv4Addr;
use std::time::Duration;

const MSG: &[u8] = b"Subject: dane\nTo: bob@example.test\n\nHello.\n";
const WAIT: Duration = Duration::from_secs(10);
const MX: &str = "mx.example.test";
const TLSA_NAME: &str = "_25._tcp.mx.example.test";

fn sha256(b: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .to_vec()
}

/// SHA-256 of the leaf's SubjectPublicKeyInfo (a `3 1 1` record's data).
fn spki_sha256(chain: &Chain) -> Vec<u8> {
    let c = webpki::EndEntityCert::try_from(&chain.0[0]).unwrap();
    sha256(c.subject_public_key_info().as_ref())
}

fn base_zone() -> Zone {
    Zone::new()
        .mx("example.test", 10, MX)
        .a(MX, Ipv4Addr::LOCALHOST)
}

fn setup(chain: Chain, zone: Zone) -> (Sink, DnsServer, Env) {
    let sink = Sink::start(SinkConfig {
        tls: Some(server_tls(chain.0, chain.1)),
        ..Default::default()
    });
    let dns = DnsServer::start(zone);
    let env = Env::new();
    env.conf(&format!(
        "dns = [\"{}\"]\nmx_port = {}\ndnssec = \"trust-ad\"",
        dns.addr(),
        sink.port()
    ));
    env.virtusers("root  root@shop.example  127.0.0.2\n");
    (sink, dns, env)
}

fn log(env: &Env) -> String {
    env.log_lines().join("\n")
}

#[test]
fn dane_ee_match_and_mismatch() {
    // A self-signed certificate no CA vouches for: DANE-EE needs none.
    let chain = pki::self_signed(&["whatever.test"]);
    let hash = spki_sha256(&chain);
    let (sink, dns, env) = setup(
        chain,
        base_zone()
            .tlsa(TLSA_NAME, 3, 1, 1, &hash)
            .authenticated(TLSA_NAME),
    );
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    assert_eq!(sink.wait_messages(1, WAIT).len(), 1);
    assert!(
        dns.queries()
            .iter()
            .any(|q| q.0 == TLSA_NAME && q.1 == "TLSA")
    );
    let l = log(&env);
    assert!(
        l.contains("Verified TLS connection established to mx.example.test"),
        "{l}"
    );

    // Records that match another key: deferred, never sent in the clear.
    dns.set_zone(
        base_zone()
            .tlsa(TLSA_NAME, 3, 1, 1, &sha256(b"another key"))
            .authenticated(TLSA_NAME),
    );
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    assert_eq!(sink.messages().len(), 1);
    let q = env.run(&["-bp"], b"").stdout;
    assert!(
        q.contains("no TLSA record of mx.example.test matches"),
        "{q}"
    );

    // No STARTTLS at all: deferred too.
    let plain = Sink::start_default();
    env.conf(&format!("mx_port = {}", plain.port()));
    env.run(&["-q"], b"").expect_code(0);
    assert!(plain.messages().is_empty());
    let q = env.run(&["-bp"], b"").stdout;
    assert!(q.contains("does not offer STARTTLS"), "{q}");
}

#[test]
fn dane_ta_chain_to_the_matching_ca_for_the_mx_name() {
    let pki = Pki::new();
    let (mut certs, key) = pki.leaf(&[MX], false);
    certs.push(pki.ca_der());
    let ca_hash = sha256(pki.ca_der().as_ref());
    let (sink, _dns, env) = setup(
        (certs, key),
        base_zone()
            .tlsa(TLSA_NAME, 2, 0, 1, &ca_hash)
            .authenticated(TLSA_NAME),
    );
    // No tls_ca_file: the TLSA record is the only trust.
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    assert_eq!(sink.wait_messages(1, WAIT).len(), 1);
}

#[test]
fn unauthenticated_is_no_tlsa_and_unusable_defers() {
    let chain = pki::self_signed(&["whatever.test"]);
    // Mismatching records without the AD bit: ignored, opportunistic TLS.
    let (sink, dns, env) = setup(
        chain,
        base_zone().tlsa(TLSA_NAME, 3, 1, 1, &sha256(b"another key")),
    );
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    assert_eq!(sink.wait_messages(1, WAIT).len(), 1);
    assert!(
        log(&env).contains("Untrusted TLS connection"),
        "{}",
        log(&env)
    );

    let bv = env.run(&["-bv", "bob@example.test"], b"").stdout;
    assert!(bv.contains("are not authenticated (no AD bit"), "{bv}");
    assert!(
        bv.contains("no MTA-STS policy; tls = \"opportunistic\""),
        "{bv}"
    );

    // Authenticated but only PKIX usages (0, 1), unusable for SMTP: deferred.
    dns.set_zone(
        base_zone()
            .tlsa(TLSA_NAME, 1, 1, 1, &sha256(b"x"))
            .authenticated(TLSA_NAME),
    );
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    assert_eq!(sink.messages().len(), 1);
    let q = env.run(&["-bp"], b"").stdout;
    assert!(q.contains("none usable for SMTP"), "{q}");

    // dnssec = "off": no TLSA asked for.
    let before = dns.queries().len();
    env.conf("dnssec = \"off\"");
    env.run(&["-q"], b"").expect_code(0);
    assert_eq!(sink.wait_messages(2, WAIT).len(), 2);
    assert!(!dns.queries()[before..].iter().any(|q| q.1 == "TLSA"));
}

#[test]
fn dane_wins_over_mta_sts() {
    // An enforced MTA-STS policy the self-signed certificate would fail,
    // and a TLSA record it matches: delivered (DANE decides).
    let pki = Pki::new();
    let chain = pki::self_signed(&["whatever.test"]);
    let hash = spki_sha256(&chain);
    let https = HttpsServer::start(
        pki.leaf(&["mta-sts.example.test"], false),
        Answer::ok(&format!(
            "version: STSv1\nmode: enforce\nmx: {MX}\nmax_age: 86400\n"
        )),
    );
    let (sink, _dns, env) = setup(
        chain,
        base_zone()
            .tlsa(TLSA_NAME, 3, 1, 1, &hash)
            .authenticated(TLSA_NAME)
            .txt("_mta-sts.example.test", "v=STSv1; id=7")
            .a("mta-sts.example.test", Ipv4Addr::LOCALHOST),
    );
    let ca = env.write("ca.pem", &pki.ca_pem());
    env.conf(&format!(
        "mta_sts_port = {}\ntls_ca_file = \"{}\"",
        https.port(),
        ca.display()
    ));
    // -bv says which applies, and why.
    let bv = env.run(&["-bv", "bob@example.test"], b"");
    bv.expect_code(0);
    assert!(
        bv.stdout
            .contains("tls mx.example.test: DANE: authenticated TLSA records at _25._tcp.mx.example.test (3 1 1)"),
        "{bv}"
    );
    let o = env.run(&["-v", "-i", "bob@example.test"], MSG);
    o.expect_code(0);
    assert_eq!(sink.wait_messages(1, WAIT).len(), 1, "{o}");
    assert!(o.stderr.contains("DANE: authenticated TLSA records"), "{o}");
}
