//! `[routes]` by recipient domain (issue 16, point 1; DESIGN.md, "Routes by
//! recipient domain"): the identity's `relay=` first, then the most specific
//! route (exact before `*.` wildcard), then the global `relay`, then MX; one
//! message's recipients split per route, each part settled on its own; `-bv`
//! names the route and why. Real receivers on loopback, a real DNS server.

use crate::support::dns::{DnsServer, Zone};
use crate::support::sink::{Rule, Sink, SinkConfig, Step};
use crate::support::vs::Env;
use std::net::Ipv4Addr;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
const MSG: &[u8] = b"Subject: routes\n\nHello.\n";

fn sink_on(ip: &str) -> Sink {
    Sink::start(SinkConfig {
        bind: ip.parse().unwrap(),
        ..Default::default()
    })
}

fn url(s: &Sink) -> String {
    format!("smtp://{}", s.addr())
}

#[test]
fn recipients_split_per_route_with_precedence() {
    let outlook = sink_on("127.0.16.1");
    let wild = sink_on("127.0.16.2");
    let global = sink_on("127.0.16.3");
    let mx = sink_on("127.0.16.4");
    let dns = DnsServer::start(
        Zone::new()
            .mx("direct.sub.example.test", 10, "mx.direct.test")
            .a("mx.direct.test", Ipv4Addr::new(127, 0, 16, 4)),
    );
    let env = Env::new();
    env.virtusers("root  root@shop.example  127.0.0.2\n");
    env.conf(&format!(
        "dns = [\"{}\"]\nmx_port = {}\nrelay = \"{}\"",
        dns.addr(),
        mx.port(),
        url(&global)
    ));
    env.conf(&format!(
        "[routes]\n\"outlook.test, hotmail.test\" = \"{}\"\n\"*.example.test\" = \"{}\"\n\"direct.sub.example.test\" = \"mx\"",
        url(&outlook),
        url(&wild)
    ));
    let rcpts = [
        "a@outlook.test",
        "b@HOTMAIL.test",
        "c@x.example.test",
        "d@direct.sub.example.test",
        "e@elsewhere.test",
    ];
    // -bv names each route and why it was chosen.
    let mut args = vec!["-bv"];
    args.extend(rcpts);
    let o = env.run(&args, b"");
    o.expect_code(0);
    let line = |who: &str| {
        o.stdout
            .lines()
            .find(|l| l.starts_with(&format!("<{who}>")))
            .unwrap_or_else(|| panic!("no -bv line for {who}: {o}"))
            .to_string()
    };
    let l = line("a@outlook.test");
    assert!(
        l.contains(&format!("relay {}", url(&outlook)))
            && l.contains("[routes] \"outlook.test, hotmail.test\"")
            && l.contains("exact domain"),
        "{l}"
    );
    let l = line("c@x.example.test");
    assert!(
        l.contains(&url(&wild)) && l.contains("\"*.example.test\"") && l.contains("wildcard"),
        "{l}"
    );
    let l = line("d@direct.sub.example.test");
    assert!(
        l.contains("route mx mx.direct.test[127.0.16.4") && l.contains("exact domain"),
        "{l}"
    );
    let l = line("e@elsewhere.test");
    assert!(
        l.contains(&url(&global)) && l.contains("the global relay"),
        "{l}"
    );

    // One message, five recipients: four parts, each to its own receiver.
    let mut args = vec!["-i"];
    args.extend(rcpts);
    env.run(&args, MSG).expect_code(0);
    let rc = |s: &Sink, n: usize| -> Vec<String> {
        let mut v: Vec<String> = s
            .wait_messages(n, WAIT)
            .iter()
            .flat_map(|m| m.rcpts.clone())
            .collect();
        v.sort();
        v
    };
    assert_eq!(rc(&outlook, 1), vec!["a@outlook.test", "b@HOTMAIL.test"]);
    assert_eq!(rc(&wild, 1), vec!["c@x.example.test"]);
    assert_eq!(rc(&mx, 1), vec!["d@direct.sub.example.test"]);
    assert_eq!(rc(&global, 1), vec!["e@elsewhere.test"]);
    assert_eq!(outlook.messages().len(), 1, "one transaction for one route");

    // The identity's relay= wins over every route.
    let own = sink_on("127.0.16.5");
    env.virtusers(&format!(
        "root  root@shop.example  127.0.0.2  relay={}\n",
        url(&own)
    ));
    let o = env.run(&["-bv", "a@outlook.test"], b"");
    assert!(o.stdout.contains("the identity's relay="), "{o}");
    env.run(&["-i", "a@outlook.test", "c@x.example.test"], MSG)
        .expect_code(0);
    assert_eq!(own.wait_messages(1, WAIT)[0].rcpts.len(), 2);
}

#[test]
fn each_part_is_settled_on_its_own() {
    // The outlook part is refused for now, the other part is delivered:
    // exit 0, the deferred part stays queued and the sent one does not.
    let outlook = Sink::start(SinkConfig {
        bind: "127.0.16.6".parse().unwrap(),
        rules: vec![Rule::reply(Step::Mail, "451 4.7.0 try later")],
        ..Default::default()
    });
    let global = sink_on("127.0.16.7");
    let env = Env::new();
    env.virtusers("root  root@shop.example  127.0.0.2\n");
    env.conf(&format!("relay = \"{}\"", url(&global)));
    env.conf(&format!(
        "[routes]\n\"outlook.test\" = \"{}\"",
        url(&outlook)
    ));
    env.run(&["-i", "a@outlook.test", "e@elsewhere.test"], MSG)
        .expect_code(0);
    assert_eq!(
        global.wait_messages(1, WAIT)[0].rcpts,
        vec!["e@elsewhere.test"]
    );
    let q = env.run(&["-bp"], b"");
    assert!(
        q.stdout.contains("a@outlook.test") && !q.stdout.contains("e@elsewhere.test"),
        "{q}"
    );
    assert!(q.stdout.contains("try later"), "{q}");
}

#[test]
fn bad_routes_are_configuration_errors_with_their_line() {
    let env = Env::new();
    env.conf("[routes]\n\"not a domain\" = \"mx\"");
    let o = env.run(&["-bi"], b"");
    o.expect_code(78);
    assert!(
        o.stderr
            .contains(&format!("{}:", env.conf_path().display()))
            && o.stderr.contains("is not a domain"),
        "{o}"
    );
    let env = Env::new();
    env.conf("[routes]\n\"a.example\" = []");
    let o = env.run(&["-i", "x@a.example"], MSG);
    o.expect_code(78);
    assert!(o.stderr.contains("empty list"), "{o}");
    let env = Env::new();
    env.conf("relay = []");
    let o = env.run(&["-bi"], b"");
    o.expect_code(78);
    assert!(o.stderr.contains("relay: an empty list"), "{o}");
}
