//! The core (issue 2): argv to a message accepted by a real SMTP server, the
//! connection bound to the identity's source address. Every test runs the
//! built binary against receivers on loopback and asserts on what the
//! receiver saw.

use crate::support::dns::{DnsServer, Zone};
use crate::support::postfix::{Postfix, PostfixOpts};
use crate::support::sink::{Action, Rule, Sink, SinkConfig, Step};
use crate::support::users;
use crate::support::vs::Env;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

const MSG: &[u8] = b"Subject: hello\nTo: bob@example.org\n\nHello Bob.\n";
const WAIT: Duration = Duration::from_secs(10);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// An Env relaying to a fresh default sink, root's identity on 127.0.0.2.
fn setup() -> (Env, Sink) {
    let sink = Sink::start_default();
    let env = Env::new();
    env.relay(sink.addr());
    env.virtusers("root  root@shop.example  127.0.0.2  helo=mail.shop.example\n");
    (env, sink)
}

#[test]
fn delivers_from_bound_source_with_helo_and_envelope() {
    let (env, sink) = setup();
    env.run(&["-i", "bob@example.org"], MSG).expect_code(0);
    let m = &sink.wait_messages(1, WAIT)[0];
    assert_eq!(m.peer.ip(), ip("127.0.0.2"));
    assert_eq!(m.helo, "mail.shop.example");
    assert_eq!(m.mail_from, "root@shop.example");
    assert_eq!(m.rcpts, vec!["bob@example.org"]);
    let received = m.header("Received").expect("our Received line");
    assert!(
        received.contains("uid 0 user root identity root@shop.example"),
        "{received}"
    );
    assert!(m.header("Date").is_some());
    assert!(m.header("Message-ID").unwrap().ends_with("@shop.example>"));
    assert_eq!(m.header("From").unwrap(), "root@shop.example");
    assert!(m.text().contains("Hello Bob."));
    // Delivered: nothing left in the queue.
    assert!(
        env.run(&["-bp"], b"")
            .stdout
            .contains("Mail queue is empty")
    );
    // One syslog line per recipient with the bound source address and port.
    let src = format!("src=127.0.0.2:{}", m.peer.port());
    let lines = env.log_lines();
    assert!(
        lines.iter().any(|l| l.contains(&src)
            && l.contains("to=<bob@example.org>")
            && l.contains("status=sent (250")),
        "{lines:?}"
    );
}

#[test]
fn two_users_get_two_source_addresses_and_user_env_changes_nothing() {
    let (env, sink) = setup();
    users::user("vst_core_a");
    users::user("vst_core_b");
    env.virtusers(
        "vst_core_a  a@site-a.example  127.0.0.2\n\
         vst_core_b  b@site-b.example  127.0.0.3\n",
    );
    for (u, pretend) in [("vst_core_a", "vst_core_b"), ("vst_core_b", "vst_core_a")] {
        let mut c = env.cmd(Some(u));
        c.env("USER", pretend).env("LOGNAME", pretend);
        c.arg("-C")
            .arg(env.conf_path())
            .arg("-i")
            .arg("bob@example.org");
        env.output(c, MSG).expect_code(0);
    }
    let msgs = sink.wait_messages(2, WAIT);
    let a = msgs
        .iter()
        .find(|m| m.mail_from == "a@site-a.example")
        .expect("a's message");
    let b = msgs
        .iter()
        .find(|m| m.mail_from == "b@site-b.example")
        .expect("b's message");
    assert_eq!(a.peer.ip(), ip("127.0.0.2"));
    assert_eq!(b.peer.ip(), ip("127.0.0.3"));
    assert_eq!(a.helo, "site-a.example");
}

#[test]
fn group_line_then_star_then_host_identity() {
    let (env, sink) = setup();
    users::user("vst_core_g");
    users::group("vst_core_hosting");
    users::add_to_group("vst_core_g", "vst_core_hosting");
    users::user("vst_core_s");
    env.virtusers(
        "%vst_core_hosting  @customers.example  127.0.0.4\n\
         *                  @host.example       127.0.0.5\n",
    );
    env.run_as("vst_core_g", &["-i", "x@example.org"], MSG)
        .expect_code(0);
    env.run_as("vst_core_s", &["-i", "x@example.org"], MSG)
        .expect_code(0);
    let msgs = sink.wait_messages(2, WAIT);
    let g = msgs
        .iter()
        .find(|m| m.peer.ip() == ip("127.0.0.4"))
        .expect("group identity");
    assert_eq!(g.mail_from, "vst_core_g@customers.example");
    let s = msgs
        .iter()
        .find(|m| m.peer.ip() == ip("127.0.0.5"))
        .expect("star identity");
    assert_eq!(s.mail_from, "vst_core_s@host.example");
    // No line at all: the host identity, no binding, HELO = hostname.
    env.virtusers("");
    env.run_as("vst_core_s", &["-i", "x@example.org"], MSG)
        .expect_code(0);
    let h = sink.wait_messages(3, WAIT).pop().unwrap();
    assert_eq!(h.mail_from, "vst_core_s@host.test");
    assert_eq!(h.helo, "host.test");
}

#[test]
fn t_flag_reads_to_cc_bcc_and_removes_bcc() {
    let (env, sink) = setup();
    let msg = b"To: Bob <bob@example.org>,\n  \"Doe, J\" <j@example.net>\nCc: team: c@example.com, d@example.com;\nBcc: hidden@example.org (secret)\nSubject: t\n\nbody\n";
    env.run(&["-t", "-i", "extra@example.org"], msg)
        .expect_code(0);
    let m = &sink.wait_messages(1, WAIT)[0];
    let mut r = m.rcpts.clone();
    r.sort();
    assert_eq!(
        r,
        vec![
            "bob@example.org",
            "c@example.com",
            "d@example.com",
            "extra@example.org",
            "hidden@example.org",
            "j@example.net"
        ]
    );
    assert!(m.header("Bcc").is_none(), "Bcc must be removed");
    assert!(!m.text().contains("hidden@example.org"));
}

#[test]
fn t_without_any_recipient_is_refused() {
    let (env, sink) = setup();
    let o = env.run(&["-t"], b"Subject: none\n\nx\n");
    o.expect_code(65);
    assert!(o.stderr.starts_with("vsendmail: no recipients"), "{o}");
    assert!(sink.connections().is_empty());
}

#[test]
fn dot_line_ends_message_without_i_and_leading_dots_unstuffed() {
    let (env, sink) = setup();
    env.run(
        &["bob@example.org"],
        b"Subject: d\n\n..leading\nline\n.\nnot part of it\n",
    )
    .expect_code(0);
    let m = &sink.wait_messages(1, WAIT)[0];
    assert!(
        m.body().starts_with(b".leading\r\nline\r\n"),
        "{:?}",
        m.text()
    );
    assert!(!m.text().contains("not part of it"));
    // On the wire the leading dot is stuffed again.
    assert!(crate::support::sink::find(&m.raw_data, b"\r\n..leading\r\n").is_some());
}

#[test]
fn dot_line_is_content_with_i_and_stuffed_on_the_wire() {
    let (env, sink) = setup();
    env.run(
        &["-oi", "bob@example.org"],
        b"Subject: d\n\n.\n..two\nend\n",
    )
    .expect_code(0);
    let m = &sink.wait_messages(1, WAIT)[0];
    assert!(
        m.body().starts_with(b".\r\n..two\r\nend\r\n"),
        "{:?}",
        m.text()
    );
    assert!(crate::support::sink::find(&m.raw_data, b"\r\n..\r\n...two\r\n").is_some());
}

#[test]
fn bare_lf_and_cr_become_crlf_on_the_wire() {
    let (env, sink) = setup();
    env.run(
        &["-i", "bob@example.org"],
        b"Subject: x\r\nX-A: 1\n\nline1\nline2\rline3\r\n.\n",
    )
    .expect_code(0);
    let m = &sink.wait_messages(1, WAIT)[0];
    let raw = &m.raw_data;
    for (i, b) in raw.iter().enumerate() {
        if *b == b'\n' {
            assert_eq!(raw[i - 1], b'\r', "bare LF at {i}");
        }
        if *b == b'\r' {
            assert_eq!(raw.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
    }
    assert!(
        m.body().starts_with(b"line1\r\nline2\r\nline3\r\n..\r\n")
            || m.body().starts_with(b"line1\r\nline2\r\nline3\r\n.\r\n")
    );
}

#[test]
fn eight_bit_uses_8bitmime_and_utf8_address_uses_smtputf8() {
    let (env, sink) = setup();
    env.run(
        &["-i", "bob@example.org"],
        "Subject: x\n\nGrüße\n".as_bytes(),
    )
    .expect_code(0);
    env.run(&["-i", "jörg@example.org"], MSG).expect_code(0);
    let msgs = sink.wait_messages(2, WAIT);
    assert!(
        msgs[0].mail_params.contains("BODY=8BITMIME"),
        "{}",
        msgs[0].mail_params
    );
    assert!(
        msgs[1].mail_params.contains("SMTPUTF8"),
        "{}",
        msgs[1].mail_params
    );
}

#[test]
fn eight_bit_to_a_server_without_8bitmime_fails_clearly() {
    let sink = Sink::start(SinkConfig {
        extensions: vec!["PIPELINING".into()],
        ..Default::default()
    });
    let env = Env::new();
    env.relay(sink.addr());
    let o = env.run(
        &["-i", "bob@example.org"],
        "Subject: x\n\nGrüße\n".as_bytes(),
    );
    o.expect_code(69);
    assert!(o.stderr.contains("8BITMIME"), "{o}");
    assert!(sink.messages().is_empty());
}

#[test]
fn local_names_go_through_aliases_then_get_the_identity_domain() {
    let (env, sink) = setup();
    env.aliases("root: admin, ops@example.net\nadmin: boss\n");
    env.run(
        &["-i", "root", "carol"],
        b"From: root (Cron Daemon)\nSubject: cron\n\nout\n",
    )
    .expect_code(0);
    let m = &sink.wait_messages(1, WAIT)[0];
    let mut r = m.rcpts.clone();
    r.sort();
    assert_eq!(
        r,
        vec!["boss@shop.example", "carol@shop.example", "ops@example.net"]
    );
    assert_eq!(m.header("From").unwrap(), "root@shop.example (Cron Daemon)");
}

#[test]
fn full_name_goes_into_an_added_from() {
    let (env, sink) = setup();
    env.run(
        &["-i", "-F", "Cron Daemon", "bob@example.org"],
        b"Subject: x\n\nb\n",
    )
    .expect_code(0);
    let m = &sink.wait_messages(1, WAIT)[0];
    assert_eq!(m.header("From").unwrap(), "Cron Daemon <root@shop.example>");
}

#[test]
fn rcpt_550_fails_alone_and_is_reported() {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::reply(
            Step::Rcpt("nobody".into()),
            "550 5.1.1 no such user",
        )],
        ..Default::default()
    });
    let env = Env::new();
    env.relay(sink.addr());
    let o = env.run(
        &["-i", "a@example.org", "nobody@example.org", "c@example.org"],
        MSG,
    );
    // Without -oe, others were delivered: exit 0, the failure bounced (issue 14.4).
    o.expect_code(0);
    assert!(
        o.stderr.contains(
            "<nobody@example.org>: RCPT TO:<nobody@example.org> rejected by 127.0.0.1[127.0.0.1]:"
        ),
        "{o}"
    );
    assert!(o.stderr.contains("550 5.1.1 no such user"), "{o}");
    let m = &sink.wait_messages(1, WAIT)[0];
    assert_eq!(m.rcpts, vec!["a@example.org", "c@example.org"]);
    assert!(
        env.run(&["-bp"], b"")
            .stdout
            .contains("Mail queue is empty")
    );
}

#[test]
fn oem_mails_a_bounce_and_exits_zero() {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::reply(
            Step::Rcpt("nobody".into()),
            "550 5.1.1 no such user",
        )],
        ..Default::default()
    });
    let env = Env::new();
    env.relay(sink.addr());
    env.virtusers("root root@shop.example 127.0.0.2\n");
    env.run(&["-oem", "-i", "nobody@example.org"], MSG)
        .expect_code(0);
    let b = &sink.wait_messages(1, WAIT)[0];
    assert_eq!(b.mail_from, "", "bounces use the null sender");
    assert_eq!(b.rcpts, vec!["root@shop.example"]);
    assert_eq!(
        b.peer.ip(),
        ip("127.0.0.2"),
        "the bounce leaves from the identity's address"
    );
    assert!(b.text().contains("Status: 5.1.1"), "{}", b.text());
}

#[test]
fn oeq_is_quiet_but_exit_code_tells() {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::reply(Step::Rcpt(String::new()), "550 5.1.1 no")],
        ..Default::default()
    });
    let env = Env::new();
    env.relay(sink.addr());
    let o = env.run(&["-oeq", "-i", "x@example.org"], MSG);
    o.expect_code(69);
    assert_eq!(o.stderr, "");
}

#[test]
fn temporary_failure_queues_and_exits_zero_or_75_without_queue() {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::reply(Step::Mail, "451 4.3.0 try later")],
        ..Default::default()
    });
    let env = Env::new();
    env.relay(sink.addr());
    env.run(&["-i", "bob@example.org"], MSG).expect_code(0);
    let q = env.run(&["-bp"], b"").stdout;
    assert!(
        q.contains("bob@example.org") && q.contains("451 4.3.0 try later"),
        "{q}"
    );
    env.conf("queue = false");
    let o = env.run(&["-i", "carol@example.org"], MSG);
    o.expect_code(75);
    assert!(o.stderr.contains("451 4.3.0 try later"), "{o}");
    let q = env.run(&["-bp"], b"").stdout;
    assert!(
        !q.contains("carol@example.org"),
        "not queued when queue = false: {q}"
    );
}

#[test]
fn unconfigured_source_is_named_and_the_message_kept() {
    let (env, sink) = setup();
    env.virtusers("root root@shop.example 192.0.2.10\n");
    let o = env.run(&["-i", "bob@example.org"], MSG);
    o.expect_code(0);
    assert!(
        o.stderr.contains(
            "source address 192.0.2.10 (identity root@shop.example) is not configured on this host"
        ),
        "{o}"
    );
    assert!(
        sink.connections().is_empty(),
        "never falls back to the host's address"
    );
    assert!(env.run(&["-bp"], b"").stdout.contains("bob@example.org"));
}

#[test]
fn bad_input_gets_one_line_and_the_right_code() {
    let (env, sink) = setup();
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec![], 64, "no recipients"),
        (vec!["-Q"], 64, "unknown option -Q"),
        (
            vec!["-f", "a b@x.example", "bob@example.org"],
            65,
            "contains a space",
        ),
        (vec!["bad address@x"], 65, "contains a space"),
        (vec!["--", "-oQ/tmp/x"], 65, "starts with '-'"),
        (vec!["-bd"], 64, "no daemon mode"),
        (vec!["-bD"], 64, "no daemon mode"),
        (vec!["-f"], 64, "-f needs a value"),
    ];
    for (args, code, text) in cases {
        let o = env.run(&args, MSG);
        assert_eq!(o.code, code, "{args:?}: {o}");
        assert!(o.stderr.starts_with("vsendmail: "), "{args:?}: {o}");
        assert!(o.stderr.contains(text), "{args:?}: {o}");
    }
    assert!(sink.connections().is_empty());
}

#[test]
fn bad_virtusers_line_is_a_config_error_with_file_and_line() {
    let (env, _sink) = setup();
    env.virtusers("# comment\nroot root@shop.example 127.0.0.2 colour=blue\n");
    let o = env.run(&["-i", "bob@example.org"], MSG);
    o.expect_code(78);
    let want = format!(
        "{}:2: unknown option `colour`",
        env.dir().join("virtusers").display()
    );
    assert!(o.stderr.contains(&want), "{o}");
    let o = env.run(&["-bi"], b"");
    o.expect_code(78);
    assert!(o.stderr.contains(&want), "{o}");
}

#[test]
fn bad_config_key_is_error_78_with_line() {
    let (env, _sink) = setup();
    env.conf("colour = \"blue\"");
    let o = env.run(&["-i", "bob@example.org"], MSG);
    o.expect_code(78);
    assert!(o.stderr.contains("vsendmail.conf:"), "{o}");
    assert!(o.stderr.contains("colour"), "{o}");
}

#[test]
fn x_flag_is_refused_with_a_warning_and_writes_nothing() {
    let (env, sink) = setup();
    let target = env.dir().join("evil.php");
    let t = target.display().to_string();
    let o = env.run(&["-X", &t, "-oQ/tmp/", "-i", "bob@example.org"], MSG);
    o.expect_code(0);
    assert!(
        o.stderr.contains("-X") && o.stderr.contains("refused"),
        "{o}"
    );
    assert!(!target.exists());
    sink.wait_messages(1, WAIT);
}

#[test]
fn comma_separated_and_joined_flags() {
    let (env, sink) = setup();
    env.run(
        &["-ti", "-fsales@shop.example", "a@example.org,b@example.org"],
        b"Subject: x\n\nb\n",
    )
    .expect_code(0);
    let m = &sink.wait_messages(1, WAIT)[0];
    assert_eq!(m.rcpts, vec!["a@example.org", "b@example.org"]);
    // sales@shop.example is not in root's patterns, but root is trusted.
    assert_eq!(m.mail_from, "sales@shop.example");
}

#[test]
fn verbose_prints_the_dialogue() {
    let (env, sink) = setup();
    let o = env.run(&["-v", "-i", "bob@example.org"], MSG);
    o.expect_code(0);
    assert!(o.stderr.contains(">>> EHLO mail.shop.example"), "{o}");
    assert!(o.stderr.contains("<<< 250"), "{o}");
    sink.wait_messages(1, WAIT);
}

#[test]
fn bv_shows_identity_source_and_route_and_sends_nothing() {
    let (env, sink) = setup();
    let o = env.run(&["-bv", "bob@example.org"], b"");
    o.expect_code(0);
    assert!(o.stdout.contains("identity root@shop.example"), "{o}");
    assert!(
        o.stdout
            .contains("127.0.0.2 (bound here: ok, used for IPv4)"),
        "{o}"
    );
    assert!(
        o.stdout.contains(&format!("relay smtp://{}", sink.addr())),
        "{o}"
    );
    assert!(sink.connections().is_empty());
}

#[test]
fn bi_accepts_a_good_table() {
    let (env, _sink) = setup();
    let o = env.run(&["-bi"], b"");
    o.expect_code(0);
    assert!(o.stdout.contains("1 identities, no problems"), "{o}");
}

#[test]
fn argv0_mailq_and_newaliases() {
    let (env, _sink) = setup();
    let mut c = env.cmd_program(None, &env.link("mailq"));
    c.arg("-C").arg(env.conf_path());
    let o = env.output(c, b"");
    o.expect_code(0);
    assert_eq!(o.stdout, "Mail queue is empty\n");
    let mut c = env.cmd_program(None, &env.link("newaliases"));
    c.arg("-C").arg(env.conf_path());
    let o = env.output(c, b"");
    o.expect_code(0);
    assert!(o.stdout.contains("no problems"), "{o}");
}

#[test]
fn bs_speaks_smtp_and_delivers_as_the_identity() {
    let (env, sink) = setup();
    let dialogue = b"HELO client\r\nMAIL FROM:<root@shop.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: bs\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n";
    let o = env.run(&["-bs"], dialogue);
    o.expect_code(0);
    let replies: Vec<&str> = o.stdout.lines().collect();
    assert!(replies[0].starts_with("220 "), "{o}");
    assert!(replies.iter().any(|l| l.starts_with("354 ")), "{o}");
    assert!(
        replies
            .iter()
            .any(|l| l.starts_with("250 2.0.0 Ok: queued as")),
        "{o}"
    );
    assert!(replies.last().unwrap().starts_with("221 "), "{o}");
    let m = &sink.wait_messages(1, WAIT)[0];
    assert_eq!(m.peer.ip(), ip("127.0.0.2"));
    assert_eq!(m.rcpts, vec!["bob@example.org"]);
    assert!(m.body().starts_with(b".dot\r\nbody\r\n"), "{:?}", m.text());
}

#[test]
fn mx_routing_preference_fallback_null_mx_and_implicit_mx() {
    // Two receivers on the same port of two loopback addresses (mx_port is global).
    let first = Sink::start(SinkConfig {
        bind: ip("127.0.0.10"),
        rules: vec![Rule::reply(Step::Mail, "451 4.7.1 greylisted")],
        ..Default::default()
    });
    let port = first.port();
    let second = Sink::start(SinkConfig {
        bind: ip("127.0.0.11"),
        port,
        ..Default::default()
    });
    let dns = DnsServer::start(
        Zone::new()
            .mx("example.test", 10, "mx1.example.test")
            .mx("example.test", 20, "mx2.example.test")
            .a("mx1.example.test", Ipv4Addr::new(127, 0, 0, 10))
            .a("mx2.example.test", Ipv4Addr::new(127, 0, 0, 11))
            .null_mx("nomail.test")
            .a("plain.test", Ipv4Addr::new(127, 0, 0, 11)),
    );
    let env = Env::new();
    env.conf(&format!("dns = [\"{}\"]\nmx_port = {port}", dns.addr()));
    env.virtusers("root root@shop.example 127.0.0.2\n");
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    let m = &second.wait_messages(1, WAIT)[0];
    assert_eq!(m.peer.ip(), ip("127.0.0.2"));
    assert_eq!(
        first.connections().len(),
        1,
        "the preferred MX was tried first"
    );
    // Null MX: permanent failure, said clearly.
    let o = env.run(&["-i", "x@nomail.test"], MSG);
    o.expect_code(69);
    assert!(
        o.stderr.contains("nomail.test accepts no mail (null MX"),
        "{o}"
    );
    // No MX: the domain's own address.
    env.run(&["-i", "y@plain.test"], MSG).expect_code(0);
    let msgs = second.wait_messages(2, WAIT);
    assert_eq!(msgs[1].rcpts, vec!["y@plain.test"]);
}

#[test]
fn nxdomain_fails_permanently() {
    let dns = DnsServer::start(Zone::new().a("other.test", Ipv4Addr::new(127, 0, 0, 11)));
    let env = Env::new();
    env.conf(&format!("dns = [\"{}\"]", dns.addr()));
    let o = env.run(&["-i", "x@missing.test"], MSG);
    o.expect_code(69);
    assert!(o.stderr.contains("does not exist"), "{o}");
}

#[test]
fn ipv4_only_identity_never_uses_an_ipv6_mx_address() {
    let sink = Sink::start(SinkConfig {
        bind: ip("127.0.0.12"),
        ..Default::default()
    });
    let dns = DnsServer::start(
        Zone::new()
            .mx("dual.test", 10, "mx.dual.test")
            .aaaa("mx.dual.test", "::1".parse().unwrap())
            .a("mx.dual.test", Ipv4Addr::new(127, 0, 0, 12)),
    );
    let env = Env::new();
    env.conf(&format!(
        "dns = [\"{}\"]\nmx_port = {}",
        dns.addr(),
        sink.port()
    ));
    env.virtusers("root root@shop.example 127.0.0.2\n");
    env.run(&["-i", "x@dual.test"], MSG).expect_code(0);
    assert_eq!(sink.wait_messages(1, WAIT)[0].peer.ip(), ip("127.0.0.2"));
}

#[test]
fn hang_after_greeting_times_out_and_queues() {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::new(Step::Ehlo, Action::Hang)],
        ..Default::default()
    });
    let env = Env::new();
    env.relay(sink.addr());
    env.conf("[timeouts]\ncommand = 1");
    let t = std::time::Instant::now();
    env.run(&["-i", "bob@example.org"], MSG).expect_code(0);
    assert!(t.elapsed() < Duration::from_secs(20));
    assert!(env.run(&["-bp"], b"").stdout.contains("timeout"));
}

#[test]
fn end_to_end_through_a_real_postfix_whose_received_header_shows_the_source() {
    let sink = Sink::start_default();
    let pf = Postfix::start(PostfixOpts::new(sink.addr()));
    let env = Env::new();
    env.relay(pf.addr());
    env.virtusers("root root@shop.example 127.0.0.2 helo=mail.shop.example\n");
    env.run(&["-i", "bob@example.org"], MSG).expect_code(0);
    let m = &sink.wait_messages(1, Duration::from_secs(60))[0];
    let received = m.headers("Received");
    assert!(
        received
            .iter()
            .any(|r| r.contains("[127.0.0.2]") && r.contains("mail.shop.example")),
        "Postfix's Received: must show the bound source: {received:?}"
    );
    assert_eq!(m.mail_from, "root@shop.example");
}

#[test]
fn bs_client_going_away_mid_data_sends_nothing() {
    let (env, sink) = setup();
    let cut = b"HELO client\r\nMAIL FROM:<root@shop.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: half\r\n\r\nfirst half";
    let o = env.run(&["-bs"], cut);
    assert!(!o.stdout.contains("queued as"), "{o}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        sink.connections().is_empty(),
        "a truncated message is never sent"
    );
    assert!(
        env.run(&["-bp"], b"")
            .stdout
            .contains("Mail queue is empty")
    );
}
