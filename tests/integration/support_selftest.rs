//! Tests of the test harness itself (`support::*`): the sink, the DNS server,
//! Postfix instances, throwaway users and the `vs::Env` plumbing, each driven
//! by hand-written clients, so that a product test failure is never a harness bug.

use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use crate::support::client::Client;
use crate::support::dns::{DnsServer, Zone, reverse_name};
use crate::support::postfix::{Postfix, PostfixOpts};
use crate::support::sink::{Action, Rule, Sink, SinkConfig, Step};
use crate::support::{users, vs};

const T: Duration = Duration::from_secs(10);

#[test]
fn support_sink_records_a_dialogue() {
    let sink = Sink::start_default();
    let mut c = Client::connect(sink.addr());
    assert!(c.reply().starts_with("220 "));
    let ehlo = c.cmd("EHLO client.test");
    assert!(ehlo.starts_with("250-"), "{ehlo}");
    for ext in ["PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE 52428800", "DSN"] {
        assert!(ehlo.contains(ext), "{ehlo}");
    }
    assert!(ehlo.contains("250 ENHANCEDSTATUSCODES\r\n"), "{ehlo}");
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 Ok\r\n");
    assert!(c.cmd("RCPT TO:<x@y.test>").starts_with("503"));
    assert!(
        c.cmd("MAIL FROM:<a@x.test> SIZE=100 BODY=8BITMIME")
            .starts_with("250")
    );
    assert!(c.cmd("DATA").starts_with("554"), "DATA without recipients");
    assert!(c.cmd("RCPT TO:<b@y.test> NOTIFY=NEVER").starts_with("250"));
    assert!(c.cmd("RCPT TO:<\"q>t\"@y.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send("Subject: hello\r\n  folded\r\nX-A: 1\r\nx-a: 2\r\n\r\nline\r\n..dot\r\n.\r\n");
    assert!(c.reply().starts_with("250 2.0.0 Ok"));
    // Second transaction on the same connection, after RSET, with an empty body.
    assert!(c.cmd("MAIL FROM:<x@x.test>").starts_with("250"));
    assert_eq!(c.cmd("RSET"), "250 2.0.0 Ok\r\n");
    assert!(c.cmd("MAIL FROM:<>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<c@z.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(".\r\n");
    assert!(c.reply().starts_with("250"));
    assert!(c.cmd("QUIT").starts_with("221"));
    assert_eq!(c.reply(), "", "closed after QUIT");

    let m = sink.wait_messages(2, T);
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].mail_from, "a@x.test");
    assert_eq!(m[0].mail_params, "SIZE=100 BODY=8BITMIME");
    assert_eq!(m[0].rcpts, vec!["b@y.test", "\"q>t\"@y.test"]);
    assert_eq!(m[0].rcpt_params, vec!["NOTIFY=NEVER", ""]);
    assert_eq!(m[0].helo, "client.test");
    assert_eq!(
        m[0].raw_data,
        b"Subject: hello\r\n  folded\r\nX-A: 1\r\nx-a: 2\r\n\r\nline\r\n..dot\r\n"
    );
    assert_eq!(
        m[0].data,
        b"Subject: hello\r\n  folded\r\nX-A: 1\r\nx-a: 2\r\n\r\nline\r\n.dot\r\n"
    );
    assert_eq!(m[0].header("subject").as_deref(), Some("hello  folded"));
    assert_eq!(m[0].headers("X-A"), vec!["1", "2"]);
    assert_eq!(m[0].header("Missing"), None);
    assert_eq!(m[0].body(), b"line\r\n.dot\r\n");
    assert!(m[0].text().contains("hello"));
    assert_eq!(m[1].mail_from, "");
    assert_eq!(m[1].rcpts, vec!["c@z.test"]);
    assert!(m[1].raw_data.is_empty());
    assert_eq!(m[0].conn, 0);
    assert_eq!(m[1].conn, 0);

    let conns = sink.wait_connections(1, T);
    assert_eq!(conns.len(), 1);
    let conn = &conns[0];
    assert_eq!(conn.helo_cmd, "EHLO");
    assert_eq!(conn.helo, "client.test");
    assert_eq!(conn.peer, m[0].peer);
    assert_eq!(conn.commands[0], "EHLO client.test");
    assert_eq!(conn.commands.last().unwrap(), "QUIT");
    assert!(
        !conn.commands.iter().any(|c| c.contains("line")),
        "bodies are not commands"
    );
    assert!(conn.raw.ends_with(b"QUIT\r\n"));
    assert_eq!(conn.reads.concat(), conn.raw);
}

#[test]
fn support_sink_shows_pipelining_and_serves_helo() {
    let sink = Sink::start(SinkConfig {
        ehlo_refused: true,
        ..Default::default()
    });
    let mut c = Client::connect(sink.addr());
    c.reply();
    assert!(c.cmd("EHLO me.test").starts_with("502"));
    assert!(c.cmd("HELO me.test").starts_with("250 "));
    // MAIL, RCPT and DATA in one write: one read() on the sink side.
    c.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n");
    assert!(c.reply().starts_with("250"));
    assert!(c.reply().starts_with("250"));
    assert!(c.reply().starts_with("354"));
    c.send("Subject: p\r\n\r\nbody\r\n.\r\nQUIT\r\n");
    assert!(c.reply().starts_with("250"));
    assert!(c.reply().starts_with("221"));
    let m = sink.wait_messages(1, T);
    assert_eq!(m[0].helo, "me.test");
    let conn = &sink.wait_connections(1, T)[0];
    assert_eq!(conn.helo_cmd, "HELO");
    assert!(
        conn.reads
            .iter()
            .any(|r| r == b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"),
        "{:?}",
        conn.reads
    );
}

#[test]
fn support_sink_rules_reply_drop_hang_delay_and_recover() {
    let sink = Sink::start(SinkConfig {
        rules: vec![
            Rule::reply(Step::Rcpt("bad".into()), "550 5.1.1 no such user"),
            Rule::reply(Step::Mail, "451 4.3.0 try later").times(1),
            Rule::reply(Step::Dot, "452 4.3.1 full\r\n452 4.3.1 really"),
        ],
        ..Default::default()
    });
    let mut c = Client::connect(sink.addr());
    c.reply();
    c.cmd("EHLO c.test");
    assert_eq!(c.cmd("MAIL FROM:<a@x.test>"), "451 4.3.0 try later\r\n");
    assert!(c.cmd("MAIL FROM:<a@x.test>").starts_with("250"), "times(1)");
    assert!(c.cmd("RCPT TO:<bad@y.test>").starts_with("550 5.1.1"));
    assert!(c.cmd("RCPT TO:<good@y.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send("Subject: x\r\n\r\n.\r\n");
    assert_eq!(c.reply(), "452-4.3.1 full\r\n452 4.3.1 really\r\n");
    assert!(
        sink.messages().is_empty(),
        "a 4xx final reply accepts nothing"
    );

    // Recover: no rules any more, the same transaction content is accepted.
    sink.set_rules(vec![]);
    assert!(c.cmd("MAIL FROM:<a@x.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<bad@y.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send("Subject: x\r\n\r\n.\r\n");
    assert!(c.reply().starts_with("250"));
    assert_eq!(sink.wait_messages(1, T)[0].rcpts, vec!["bad@y.test"]);
    c.cmd("QUIT");

    // Drop at connect: the client sees EOF and no greeting.
    sink.set_rules(vec![Rule::new(Step::Connect, Action::Drop).times(1)]);
    let mut c = Client::connect(sink.addr());
    assert_eq!(c.reply(), "");
    // A refused greeting: only QUIT is served.
    sink.set_rules(vec![
        Rule::reply(Step::Connect, "554 5.3.2 go away").times(1),
    ]);
    let mut c = Client::connect(sink.addr());
    assert!(c.reply().starts_with("554"));
    assert!(c.cmd("EHLO c.test").starts_with("503"));
    assert!(c.cmd("QUIT").starts_with("221"));

    // Hang at DATA: no reply at all until the client gives up.
    sink.set_rules(vec![Rule::new(Step::Data, Action::Hang)]);
    let mut c = Client::connect(sink.addr());
    c.reply();
    c.cmd("EHLO c.test");
    c.cmd("MAIL FROM:<a@x.test>");
    c.cmd("RCPT TO:<b@y.test>");
    c.w.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    c.send("DATA\r\n");
    let mut buf = [0u8; 16];
    let e =
        c.r.get_mut()
            .read(&mut buf)
            .expect_err("a hanging sink does not answer");
    assert!(matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    drop(c);

    // Delay before the greeting, then the normal one.
    sink.set_rules(vec![Rule::new(
        Step::Connect,
        Action::Delay(Duration::from_millis(300)),
    )]);
    let t0 = std::time::Instant::now();
    let mut c = Client::connect(sink.addr());
    assert!(c.reply().starts_with("220"));
    assert!(t0.elapsed() >= Duration::from_millis(300));
    // Drop after the final dot: nothing recorded (never accepted).
    sink.set_rules(vec![Rule::new(Step::Dot, Action::Drop)]);
    c.cmd("EHLO c.test");
    c.cmd("MAIL FROM:<a@x.test>");
    c.cmd("RCPT TO:<b@y.test>");
    c.cmd("DATA");
    c.send("Subject: y\r\n\r\n.\r\n");
    assert_eq!(c.reply(), "");
    assert_eq!(sink.messages().len(), 1);
    assert_eq!(sink.connections().len(), 5);
}

#[test]
fn support_sink_start_many_shares_one_port() {
    let sinks = Sink::start_many(vec![
        SinkConfig {
            bind: "127.0.0.11".parse().unwrap(),
            ..Default::default()
        },
        SinkConfig {
            bind: "127.0.0.12".parse().unwrap(),
            hostname: "second.test".into(),
            ..Default::default()
        },
    ]);
    assert_eq!(sinks[0].port(), sinks[1].port());
    assert_ne!(sinks[0].addr(), sinks[1].addr());
    let mut c = Client::connect(sinks[1].addr());
    assert!(c.reply().contains("second.test"));
    assert_eq!(sinks[0].connections().len(), 0);
    assert_eq!(sinks[1].connections().len(), 1);
}

fn test_zone() -> Zone {
    Zone::new()
        .mx("example.test", 20, "mx2.example.test")
        .mx("example.test", 10, "mx1.example.test")
        .a("mx1.example.test", Ipv4Addr::new(127, 0, 0, 21))
        .aaaa("mx1.example.test", Ipv6Addr::LOCALHOST)
        .a("MX2.Example.Test.", Ipv4Addr::new(127, 0, 0, 22))
        .null_mx("nomail.test")
        .txt("example.test", "v=spf1 ip4:127.0.0.2 -all")
        .txt("sel._domainkey.example.test", &"k".repeat(600))
        .ptr("127.0.0.2".parse().unwrap(), "mail.example.test")
        .ptr("192.0.2.10".parse().unwrap(), "mail.example.test")
        .ptr("2001:db8::11".parse().unwrap(), "v6.example.test")
        .cname("alias.example.test", "mx1.example.test")
}

fn resolver(addr: SocketAddr) -> hickory_resolver::TokioResolver {
    use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
    let cfg = ResolverConfig::from_name_servers(vec![ns]);
    hickory_resolver::Resolver::builder_with_config(
        cfg,
        hickory_resolver::net::runtime::TokioRuntimeProvider::default(),
    )
    .build()
    .expect("resolver")
}

#[test]
fn support_dns_answers_the_product_resolver() {
    use hickory_proto::rr::{RData, RecordType};
    let dns = DnsServer::start(test_zone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = resolver(dns.addr());
        let mx = r.lookup("example.test.", RecordType::MX).await.unwrap();
        let mut mxs: Vec<(u16, String)> = mx
            .answers()
            .iter()
            .filter_map(|rec| match &rec.data {
                RData::MX(m) => Some((m.preference, m.exchange.to_ascii())),
                _ => None,
            })
            .collect();
        mxs.sort();
        assert_eq!(
            mxs,
            vec![
                (10, "mx1.example.test.".into()),
                (20, "mx2.example.test.".into())
            ]
        );
        let ips = r.lookup_ip("mx1.example.test.").await.unwrap();
        let mut ips: Vec<IpAddr> = ips.iter().collect();
        ips.sort();
        assert_eq!(
            ips,
            vec![
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 21)),
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            ]
        );
        let a = r.lookup("mx2.example.test.", RecordType::A).await.unwrap();
        assert!(
            matches!(&a.answers()[0].data, RData::A(ip) if ip.0 == Ipv4Addr::new(127, 0, 0, 22))
        );
        let null = r.lookup("nomail.test.", RecordType::MX).await.unwrap();
        match &null.answers()[0].data {
            RData::MX(m) => {
                assert_eq!(m.preference, 0);
                assert!(m.exchange.is_root());
            }
            other => panic!("{other:?}"),
        }
        let txt = r
            .lookup("sel._domainkey.example.test.", RecordType::TXT)
            .await
            .unwrap();
        match &txt.answers()[0].data {
            RData::TXT(t) => {
                let parts: Vec<usize> = t.txt_data.iter().map(|p| p.len()).collect();
                assert_eq!(parts, vec![255, 255, 90]);
            }
            other => panic!("{other:?}"),
        }
        // Note: hickory's Resolver answers 127.x / ::1 PTR (and *.localhost)
        // itself (RFC 6761) without asking; see the raw queries below for those.
        let ptr = r
            .lookup(
                reverse_name("192.0.2.10".parse().unwrap()) + ".",
                RecordType::PTR,
            )
            .await
            .unwrap();
        match &ptr.answers()[0].data {
            RData::PTR(p) => assert_eq!(p.0.to_ascii(), "mail.example.test."),
            other => panic!("{other:?}"),
        }
        let ptr6 = r
            .reverse_lookup("2001:db8::11".parse::<IpAddr>().unwrap())
            .await
            .unwrap();
        assert!(
            matches!(&ptr6.answers()[0].data, RData::PTR(p) if p.0.to_ascii() == "v6.example.test.")
        );
        let cname = r.lookup_ip("alias.example.test.").await.unwrap();
        assert!(
            cname
                .iter()
                .any(|ip| ip == IpAddr::V4(Ipv4Addr::new(127, 0, 0, 21)))
        );
        let nx = r.lookup("nowhere.test.", RecordType::A).await.unwrap_err();
        assert!(nx.is_nx_domain(), "{nx:?}");
        let nodata = r
            .lookup("mx2.example.test.", RecordType::MX)
            .await
            .unwrap_err();
        assert!(
            nodata.is_no_records_found() && !nodata.is_nx_domain(),
            "{nodata:?}"
        );
    });
    let q = dns.queries();
    assert!(q.contains(&("example.test".into(), "MX".into())), "{q:?}");
    assert!(q.contains(&("nowhere.test".into(), "A".into())), "{q:?}");
}

/// Ask the server directly over UDP or TCP and return the decoded response.
fn raw_query(
    addr: SocketAddr,
    name: &str,
    t: hickory_proto::rr::RecordType,
    tcp: bool,
) -> hickory_proto::op::Message {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::Name;
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    let bytes = m.to_vec().unwrap();
    let resp = if tcp {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        s.write_all(&framed).unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).unwrap();
        buf
    } else {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        s.send_to(&bytes, addr).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.recv(&mut buf).unwrap();
        buf.truncate(n);
        buf
    };
    let r = Message::from_vec(&resp).unwrap();
    assert_eq!(r.metadata.id, m.metadata.id);
    r
}

#[test]
fn support_dns_flags_and_codes_over_udp_and_tcp() {
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::RecordType;
    let dns = DnsServer::start(test_zone());
    for tcp in [false, true] {
        let r = raw_query(dns.addr(), "example.test.", RecordType::MX, tcp);
        assert!(r.metadata.authoritative);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(r.answers.len(), 2);
        let r = raw_query(dns.addr(), "nowhere.test.", RecordType::MX, tcp);
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert!(r.metadata.authoritative);
        let r = raw_query(dns.addr(), "mx1.example.test.", RecordType::TXT, tcp);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        assert_eq!(r.authorities.len(), 1, "SOA for the negative answer");
        // An empty non-terminal exists.
        let r = raw_query(dns.addr(), "_domainkey.example.test.", RecordType::TXT, tcp);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    }
    let r = raw_query(
        dns.addr(),
        "2.0.0.127.in-addr.arpa.",
        RecordType::PTR,
        false,
    );
    assert_eq!(r.answers.len(), 1);
    assert_eq!(
        reverse_name("::1".parse().unwrap()),
        format!("1.{}ip6.arpa", "0.".repeat(31))
    );
    // Without EDNS, a UDP answer over 512 bytes is truncated.
    let r = raw_query(
        dns.addr(),
        "sel._domainkey.example.test.",
        RecordType::TXT,
        false,
    );
    assert!(r.metadata.truncation);
    let r = raw_query(
        dns.addr(),
        "sel._domainkey.example.test.",
        RecordType::TXT,
        true,
    );
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 1);
    dns.set_zone(Zone::new().a("new.test", Ipv4Addr::new(127, 0, 0, 9)));
    let r = raw_query(dns.addr(), "new.test.", RecordType::A, false);
    assert_eq!(r.answers.len(), 1);
}

#[test]
fn support_dns_answers_dig() {
    let dns = DnsServer::start(test_zone());
    let out = std::process::Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &dns.addr().port().to_string(),
            "+short",
            "+tries=1",
        ])
        .args(["+time=5", "example.test", "MX"])
        .output()
        .expect("dig is missing: `make test` installs dnsutils");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    assert_eq!(lines, vec!["10 mx1.example.test.", "20 mx2.example.test."]);
    let out = std::process::Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &dns.addr().port().to_string(),
            "+tcp",
            "+short",
        ])
        .args(["-x", "127.0.0.2"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "mail.example.test."
    );
}

/// Send one message by hand from `src` to `addr`; return the final reply.
fn send_from(src: IpAddr, addr: SocketAddr, starttls_expected: bool) -> String {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::new(src, 0).into()).unwrap();
    sock.connect_timeout(&addr.into(), T).unwrap();
    let s: TcpStream = sock.into();
    assert_eq!(s.local_addr().unwrap().ip(), src);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut c = Client {
        r: BufReader::new(s.try_clone().unwrap()),
        w: s,
    };
    assert!(c.reply().starts_with("220"));
    let ehlo = c.cmd("EHLO client.selftest.test");
    assert_eq!(ehlo.contains("STARTTLS"), starttls_expected, "{ehlo}");
    assert!(c.cmd("MAIL FROM:<alice@shop.test>").starts_with("250"));
    let r = c.cmd("RCPT TO:<bob@far.test>");
    assert!(r.starts_with("250"), "{r}");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send("From: alice@shop.test\r\nTo: bob@far.test\r\nSubject: via postfix\r\n\r\nhi\r\n.\r\n");
    let r = c.reply();
    c.cmd("QUIT");
    r
}

#[test]
fn support_postfix_relays_to_a_sink_with_the_bound_source() {
    let sink = Sink::start_default();
    let pf = Postfix::start(PostfixOpts::new(sink.addr()));
    assert!(pf.config_dir().join("main.cf").exists());
    let reply = send_from("127.0.0.2".parse().unwrap(), pf.addr(), false);
    assert!(reply.starts_with("250"), "{reply}\n{}", pf.maillog());
    let m = &sink.wait_messages(1, Duration::from_secs(60))[0];
    assert_eq!(m.mail_from, "alice@shop.test");
    assert_eq!(m.rcpts, vec!["bob@far.test"]);
    assert_eq!(m.header("Subject").as_deref(), Some("via postfix"));
    let received = m.header("Received").expect("Postfix adds Received:");
    assert!(received.contains("[127.0.0.2]"), "{received}");
    assert!(received.contains("client.selftest.test"), "{received}");
    assert_eq!(m.helo, "postfix.test");
}

#[test]
fn support_postfix_instances_run_side_by_side_with_tls() {
    let sink = Sink::start_default();
    let a = Postfix::start(PostfixOpts {
        tls: true,
        ..PostfixOpts::new(sink.addr())
    });
    let b = Postfix::start(PostfixOpts {
        extra_main_cf: vec!["smtpd_banner = $myhostname ESMTP second".into()],
        ..PostfixOpts::new(sink.addr())
    });
    assert_ne!(a.addr(), b.addr());
    assert!(a.ca_path().exists());
    let reply = send_from("127.0.0.3".parse().unwrap(), a.addr(), true);
    assert!(reply.starts_with("250"), "{reply}");
    let mut c = Client::connect(b.addr());
    assert!(c.reply().contains("ESMTP second"));
    c.cmd("QUIT");
    let reply = send_from("127.0.0.4".parse().unwrap(), b.addr(), false);
    assert!(reply.starts_with("250"), "{reply}");
    let msgs = sink.wait_messages(2, Duration::from_secs(60));
    let mut srcs: Vec<bool> = ["[127.0.0.3]", "[127.0.0.4]"]
        .iter()
        .map(|ip| {
            msgs.iter()
                .any(|m| m.header("Received").unwrap().contains(ip))
        })
        .collect();
    srcs.dedup();
    assert_eq!(srcs, vec![true]);
    let dir = b.config_dir().to_path_buf();
    drop(b);
    assert!(!dir.exists(), "instance removed when dropped");
}

#[test]
fn support_users_are_created_idempotently() {
    let (uid, gid) = users::user("vst-self-a");
    assert!(uid > 0);
    assert_eq!(users::user("vst-self-a"), (uid, gid));
    let (uid2, _) = users::user("vst-self-b");
    assert_ne!(uid, uid2);
    let g = users::group("vst-self-grp");
    assert_eq!(users::group("vst-self-grp"), g);
    users::add_to_group("vst-self-b", "vst-self-grp");
    let out = std::process::Command::new("id")
        .arg("-Gn")
        .arg("vst-self-b")
        .output()
        .unwrap();
    let groups = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        groups.split_whitespace().any(|g| g == "vst-self-grp"),
        "{groups}"
    );
    assert!(
        groups.split_whitespace().any(|g| g == users::VSTEST),
        "{groups}"
    );
    // Concurrent creation from several threads.
    let hs: Vec<_> = (0..4)
        .map(|i| std::thread::spawn(move || users::user(&format!("vst-self-c{i}"))))
        .collect();
    let uids: Vec<u32> = hs.into_iter().map(|h| h.join().unwrap().0).collect();
    let mut d = uids.clone();
    d.sort();
    d.dedup();
    assert_eq!(d.len(), 4);
}

#[test]
fn support_env_files_config_and_syslog() {
    let env = vs::Env::new();
    let spool = std::fs::metadata(env.spool()).unwrap();
    assert_eq!(spool.permissions().mode() & 0o7777, 0o2770);
    assert_eq!(spool.gid(), users::vstest_gid());
    let dirmode = std::fs::metadata(env.dir()).unwrap().permissions().mode();
    assert_eq!(dirmode & 0o777, 0o755);
    env.conf("tls = \"required\"\n[timeouts]\nconnect = 5");
    env.conf("tls = \"verify\"");
    env.conf("[timeouts]\nconnect = 7\ncommand = 9");
    let text = env.conf_text();
    let parsed: toml::Table = toml::from_str(&text).expect(&text);
    assert_eq!(parsed["tls"].as_str(), Some("verify"));
    assert_eq!(parsed["hostname"].as_str(), Some("host.test"));
    assert_eq!(parsed["timeouts"]["connect"].as_integer(), Some(7));
    assert_eq!(parsed["timeouts"]["command"].as_integer(), Some(9));
    assert_eq!(
        parsed["spool"].as_str().map(Path::new),
        Some(env.spool().as_path())
    );
    env.virtusers("alice alice@shop.test 127.0.0.2\n");
    assert!(
        std::fs::read_to_string(env.dir().join("virtusers"))
            .unwrap()
            .contains("alice")
    );

    // The syslog socket collects datagrams from anyone, in order.
    let s = UnixDatagram::unbound().unwrap();
    let sock = env.dir().join("log.sock");
    for i in 0..30 {
        let d = format!("<22>Nov 29 05:10:01 vsendmail[812]: Q{i}: uid=0 status=sent (250 ok: x)");
        s.send_to(d.as_bytes(), &sock).unwrap();
    }
    let lines = env.log_lines();
    assert_eq!(lines.len(), 30);
    assert_eq!(lines[29], "Q29: uid=0 status=sent (250 ok: x)");
    assert!(env.log_records()[0].raw.starts_with("<22>"));
}

#[test]
fn support_env_runs_commands_as_users() {
    let env = vs::Env::new();
    let (uid, _gid) = users::user("vst-self-run");
    let mut c = env.cmd_program(Some("vst-self-run"), Path::new("/usr/bin/id"));
    c.env("USER", "root");
    let out = env.output(c, b"");
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains(&format!("uid={uid}(vst-self-run)")),
        "{out}"
    );
    assert!(
        out.stdout.contains(users::VSTEST),
        "supplementary group: {out}"
    );
    // stdin reaches the program, stdout/stderr and the exit code come back.
    let mut c = std::process::Command::new("sh");
    c.arg("-c")
        .arg("cat; echo err >&2; echo \"PATH=$PATH USER=${USER-unset}\"; exit 3");
    c.env_clear().env("PATH", vs::PATH);
    let out = env.output(c, b"input\n");
    assert_eq!(out.code, 3);
    assert!(out.stdout.starts_with("input\nPATH="));
    assert!(out.stdout.contains("USER=unset"));
    assert_eq!(out.stderr, "err\n");
    // A run that outlives the timeout is killed and fails the test.
    env.set_timeout(Duration::from_millis(300));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut c = std::process::Command::new("sleep");
        c.arg("30");
        env.output(c, b"")
    }));
    assert!(r.is_err());
    env.set_timeout(Duration::from_secs(120));
    // The test user can run the product binary and write the spool.
    let link = env.link("mailq");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let mut c = env.cmd_program(Some("vst-self-run"), Path::new("/usr/bin/touch"));
    c.arg(env.spool().join("probe"));
    assert_eq!(
        env.output(c, b"").code,
        0,
        "spool writable by vstest members"
    );
    let mut c = env.cmd_program(Some("vst-self-run"), Path::new("/usr/bin/test"));
    c.arg("-x").arg(vs::bin());
    assert_eq!(
        env.output(c, b"").code,
        0,
        "binary executable by test users"
    );
}
