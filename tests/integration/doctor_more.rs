//! `--doctor`'s checks of issue 17, each ok and broken alone: `dnsbl` (a
//! listing, a refused query, not listed), `dmarc-align` (SPF and DKIM, SPF
//! only, neither), `mta-sts` (a policy served over HTTPS, one that cannot
//! be had, none) and `tlsrpt` (valid, broken, none).

use crate::support::dns::{DnsServer, Zone};
use crate::support::https::{Answer, HttpsServer};
use crate::support::pki::Pki;
use crate::support::vs::Env;
use std::net::Ipv4Addr;
use std::process::Command;

const ID: &str = "root@shop.test 127.0.0.2";

fn base() -> Zone {
    Zone::new()
        .txt("shop.test", "v=spf1 ip4:127.0.0.2 -all")
        .a("mail.shop.test", Ipv4Addr::new(127, 0, 0, 2))
}

fn env_with(zone: Zone, extra_virtusers: &str) -> (Env, DnsServer) {
    let dns = DnsServer::start(zone);
    let env = Env::new();
    env.conf(&format!("dns = [\"{}\"]", dns.addr()));
    env.virtusers(&format!(
        "root root@shop.test 127.0.0.2 helo=mail.shop.test {extra_virtusers}\n"
    ));
    (env, dns)
}

/// The report line of `check`, whatever its status.
fn line(env: &Env, check: &str) -> Vec<String> {
    let out = env.run(&["--doctor"], b"");
    assert!(out.code == 0 || out.code == 1, "{out}");
    out.stdout
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(check))
        .map(str::to_string)
        .collect()
}

#[test]
fn dnsbl_listed_refused_and_clean() {
    let zone = base()
        .a("2.0.0.127.bl.test", Ipv4Addr::new(127, 0, 0, 2))
        .txt("2.0.0.127.bl.test", "listed for spam")
        .a("2.0.0.127.refuse.test", Ipv4Addr::new(127, 255, 255, 254))
        .txt("clean.test", "zone exists");
    let (env, _dns) = env_with(zone, "");
    // No zones: no dnsbl line.
    assert!(line(&env, "dnsbl").is_empty());
    env.conf("dnsbl = [\"bl.test\", \"refuse.test\", \"clean.test\"]");
    let l = line(&env, "dnsbl");
    assert_eq!(l.len(), 3, "{l:?}");
    assert!(l[0].starts_with(&format!("FAIL dnsbl {ID}: 127.0.0.2 is listed by bl.test (answer 127.0.0.2): \"listed for spam\"")), "{l:?}");
    assert!(
        l[1].starts_with(&format!("warn dnsbl {ID}: refuse.test refused the query")),
        "{l:?}"
    );
    assert_eq!(
        l[2],
        format!("ok dnsbl {ID}: 127.0.0.2 is not listed by clean.test")
    );
}

#[test]
fn dmarc_alignment_spf_dkim_or_neither() {
    // SPF passes, no DKIM key: only SPF aligned.
    let (env, dns) = env_with(base(), "");
    let l = line(&env, "dmarc-align");
    assert!(
        l[0].starts_with(&format!("warn dmarc-align {ID}: only SPF is aligned")),
        "{l:?}"
    );
    // SPF for another address: neither.
    dns.set_zone(Zone::new().txt("shop.test", "v=spf1 ip4:127.0.0.9 -all"));
    let l = line(&env, "dmarc-align");
    assert!(
        l[0].starts_with(&format!("FAIL dmarc-align {ID}: neither SPF")),
        "{l:?}"
    );
    // A DKIM key for d=shop.test: aligned whatever SPF says.
    let key = env.dir().join("dkim.pem");
    let st = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    env.virtusers(&format!(
        "root root@shop.test 127.0.0.2 helo=mail.shop.test dkim=sel:{}\n",
        key.display()
    ));
    let l = line(&env, "dmarc-align");
    assert!(
        l[0].starts_with(&format!("ok dmarc-align {ID}: DKIM d=shop.test is aligned")),
        "{l:?}"
    );
    dns.set_zone(base());
    let l = line(&env, "dmarc-align");
    assert!(
        l[0].starts_with(&format!(
            "ok dmarc-align {ID}: SPF passes for shop.test from 127.0.0.2 and DKIM d=shop.test"
        )),
        "{l:?}"
    );
}

#[test]
fn mta_sts_and_tlsrpt_published_broken_or_absent() {
    let (env, dns) = env_with(base(), "");
    let warn_sts = line(&env, "mta-sts");
    assert!(
        warn_sts[0].starts_with(&format!(
            "warn mta-sts {ID}: shop.test publishes no MTA-STS policy"
        )),
        "{warn_sts:?}"
    );
    let warn_rpt = line(&env, "tlsrpt");
    assert!(
        warn_rpt[0].starts_with(&format!(
            "warn tlsrpt {ID}: shop.test publishes no TLS-RPT record"
        )),
        "{warn_rpt:?}"
    );

    let pki = Pki::new();
    let https = HttpsServer::start(
        pki.leaf(&["mta-sts.shop.test"], false),
        Answer::ok("version: STSv1\nmode: enforce\nmx: mail.shop.test\nmax_age: 604800\n"),
    );
    let ca = env.write("ca.pem", &pki.ca_pem());
    env.conf(&format!(
        "mta_sts_port = {}\ntls_ca_file = \"{}\"",
        https.port(),
        ca.display()
    ));
    let published = base()
        .txt("_mta-sts.shop.test", "v=STSv1; id=20261202")
        .a("mta-sts.shop.test", Ipv4Addr::LOCALHOST)
        .txt(
            "_smtp._tls.shop.test",
            "v=TLSRPTv1; rua=mailto:tls@shop.test",
        );
    dns.set_zone(published.clone());
    let l = line(&env, "mta-sts");
    assert!(l[0].starts_with(&format!("ok mta-sts {ID}: _mta-sts.shop.test: \"v=STSv1; id=20261202\"; policy mode enforce, mx mail.shop.test")), "{l:?}");
    let l = line(&env, "tlsrpt");
    assert!(
        l[0].starts_with(&format!("ok tlsrpt {ID}: _smtp._tls.shop.test")),
        "{l:?}"
    );

    // The policy cannot be had (malformed); the TLS-RPT record is broken.
    https.set_answer(Answer::ok("<html>oops</html>"));
    dns.set_zone(
        base()
            .txt("_mta-sts.shop.test", "v=STSv1; id=20261202")
            .a("mta-sts.shop.test", Ipv4Addr::LOCALHOST)
            .txt("_smtp._tls.shop.test", "v=TLSRPTv1; rua=nowhere"),
    );
    let l = line(&env, "mta-sts");
    assert!(l[0].starts_with(&format!("FAIL mta-sts {ID}: _mta-sts.shop.test announces a policy, but it cannot be had (malformed policy")), "{l:?}");
    let l = line(&env, "tlsrpt");
    assert!(l[0].starts_with(&format!("FAIL tlsrpt {ID}: _smtp._tls.shop.test: \"v=TLSRPTv1; rua=nowhere\" is not a valid TLS-RPT record")), "{l:?}");
}

#[test]
fn dnsbl_asks_about_the_public_address_of_a_nat_pair() {
    // Receivers see 192.0.2.7 (PUBLIC); the bound 127.0.0.2 is private.
    let zone = base()
        .txt("shop.test", "v=spf1 ip4:192.0.2.7 -all")
        .a("7.2.0.192.bl.test", Ipv4Addr::new(127, 0, 0, 2))
        .a("2.0.0.127.bl.test", Ipv4Addr::new(127, 0, 0, 2))
        .txt("clean.test", "zone exists");
    let dns = DnsServer::start(zone);
    let env = Env::new();
    env.conf(&format!("dns = [\"{}\"]", dns.addr()));
    env.conf("dnsbl = [\"bl.test\"]");
    env.virtusers("root root@shop.test 127.0.0.2=192.0.2.7 helo=mail.shop.test\n");
    let l = line(&env, "dnsbl");
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(
        l[0].starts_with("FAIL dnsbl") && l[0].contains("192.0.2.7 is listed by bl.test"),
        "{l:?}"
    );
    assert!(!l[0].contains("127.0.0.2 is listed"), "{l:?}");
}
