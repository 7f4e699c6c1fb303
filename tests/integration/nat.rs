//! Sources behind 1:1 NAT (issue 16, point 5; DESIGN.md, "Behind NAT"): a
//! source written `PRIVATE=PUBLIC` binds and checks PRIVATE (a loopback alias
//! stands in for the private address), while `--doctor`'s PTR, FCrDNS, HELO
//! and SPF checks, `-bv`, the audit record (`public=`) and `--who` use PUBLIC
//! (a documentation address, never routed).

use crate::support::dns::{DnsServer, Zone};
use crate::support::sink::{Sink, SinkConfig};
use crate::support::vs::Env;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
const PRIVATE: &str = "127.0.0.5";
const PUBLIC: &str = "192.0.2.5";

#[test]
fn private_is_bound_public_is_shown() {
    let sink = Sink::start(SinkConfig {
        bind: "127.0.18.1".parse().unwrap(),
        ..Default::default()
    });
    let public: IpAddr = PUBLIC.parse().unwrap();
    let dns = DnsServer::start(
        Zone::new()
            .ptr(public, "mail.shop.test")
            .a("mail.shop.test", Ipv4Addr::new(192, 0, 2, 5))
            .txt("shop.test", "v=spf1 ip4:192.0.2.5 -all"),
    );
    let env = Env::new();
    env.conf(&format!("dns = [\"{}\"]", dns.addr()));
    env.relay(sink.addr());
    env.virtusers(&format!(
        "root  root@shop.test  {PRIVATE}={PUBLIC}  helo=mail.shop.test\n"
    ));
    let o = env.run(&["-bi"], b"");
    assert!(!o.stderr.contains("virtusers:1"), "{o}");

    let o = env.run(&["-bv", "bob@example.test"], b"");
    o.expect_code(0);
    assert!(
        o.stdout.contains(&format!(
            "{PRIVATE} (bound here: ok, used for IPv4, public {PUBLIC})"
        )),
        "{o}"
    );

    env.run(&["-i", "bob@example.test"], b"Subject: nat\n\nx\n")
        .expect_code(0);
    let m = &sink.wait_messages(1, WAIT)[0];
    assert_eq!(m.peer.ip().to_string(), PRIVATE, "PRIVATE is bound");
    let audit = env.audit_lines();
    assert!(
        audit
            .iter()
            .any(|l| l.contains(&format!("\"src\":\"{PRIVATE}:"))
                && l.contains(&format!("\"public\":\"{PUBLIC}\""))),
        "{audit:?}"
    );
    // The abuse desk's complaint names the public address.
    let who = env.run(&["--who", PUBLIC], b"");
    who.expect_code(0);
    assert!(who.stdout.contains(&format!("src={PRIVATE}:")), "{who}");

    let doc = env.run(&["--doctor"], b"");
    let line = |check: &str| {
        doc.stdout
            .lines()
            .find(|l| l.contains(&format!(" {check} root@shop.test ")))
            .unwrap_or_else(|| panic!("no {check} line: {doc}"))
            .to_string()
    };
    assert!(
        line("source").starts_with(&format!("ok source root@shop.test {PRIVATE}: ")),
        "{doc}"
    );
    for check in ["ptr", "fcrdns", "helo", "spf"] {
        let l = line(check);
        assert!(
            l.starts_with(&format!("ok {check} root@shop.test {PUBLIC}: ")),
            "{l}\n{doc}"
        );
    }
}

#[test]
fn a_bad_public_address_is_a_virtusers_error() {
    let env = Env::new();
    for bad in [
        "127.0.0.5=nope",
        "127.0.0.5=2001:db8::5",
        "127.0.0.5=",
        "=192.0.2.5",
    ] {
        env.virtusers(&format!("root  root@shop.test  {bad}\n"));
        let o = env.run(&["-bi"], b"");
        assert_ne!(o.code, 0, "{bad}: {o}");
        assert!(o.stderr.contains("virtusers:1"), "{bad}: {o}");
    }
}
