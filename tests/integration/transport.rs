//! Transport (issue 4): TLS (opportunistic, required, verify, implicit), AUTH
//! to relays with credentials from the secrets file (never shown), IPv6
//! sources (loopback, and two identities inside a network namespace made by
//! the test), SMTP extensions as seen by the receiver (PIPELINING, SIZE,
//! SMTPUTF8, DSN, enhanced status codes, HELO fallback) and every timeout
//! against a deliberately stalled receiver. Certificates come from a CA made
//! here with rcgen; Postfix with STARTTLS is the end-to-end check.

use crate::support::dns::{DnsServer, Zone};
use crate::support::pki::{Chain, Pki, self_signed};
use crate::support::postfix::{Postfix, PostfixOpts};
use crate::support::sink::{Action, Rule, Sink, SinkConfig, Step, server_tls};
use crate::support::vs::{self, Env, Out};
use crate::support::{users, wait_until};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MSG: &[u8] = b"Subject: transport\nTo: bob@example.test\n\nHello over the wire.\n";
const WAIT: Duration = Duration::from_secs(10);
/// A password that must never show up outside the secrets file and the wire.
const PASSWORD: &str = "Pw-7q2X!never-shown";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tls_cfg(chain: Chain) -> Option<Arc<rustls::ServerConfig>> {
    Some(server_tls(chain.0, chain.1))
}

// ---------------------------------------------------------------- set-ups

/// An Env relaying to `sink` (smtp://), root's identity on 127.0.0.2.
fn relay_env(sink: &Sink) -> Env {
    let env = Env::new();
    env.relay(sink.addr());
    env.virtusers("root  root@shop.example  127.0.0.2  helo=mail.shop.example\n");
    env
}

/// Direct delivery: example.test's MX is mx.test (127.0.0.1) on the sink's port.
fn mx_env(sink: &Sink) -> (Env, DnsServer) {
    let dns = DnsServer::start(
        Zone::new()
            .mx("example.test", 10, "mx.test")
            .a("mx.test", Ipv4Addr::LOCALHOST),
    );
    let env = Env::new();
    env.conf(&format!(
        "dns = [\"{}\"]\nmx_port = {}",
        dns.addr(),
        sink.port()
    ));
    env.virtusers("root  root@shop.example  127.0.0.2\n");
    (env, dns)
}

/// Write the secrets file (mode 0640) and point the config at it; trust the
/// shared test CA that issued `auth_sink`'s certificate.
fn secrets(env: &Env, text: &str, mode: u32) {
    let p = env.write("secrets", text);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    env.conf(&format!("secrets = \"{}\"", p.display()));
    let ca = crate::support::pki::shared_ca_file(env.dir());
    env.conf(&format!("tls_ca_file = \"{}\"", ca.display()));
}

fn queue(env: &Env) -> String {
    env.run(&["-bp"], b"").stdout
}

/// The syslog lines joined, for assertions and messages.
fn log(env: &Env) -> String {
    env.log_lines().join("\n")
}

/// Assert the password (and its base64 forms) appear nowhere in `text`.
fn assert_no_secret(text: &str, what: &str) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    for needle in [
        PASSWORD.to_string(),
        b64.encode(PASSWORD),
        b64.encode(format!("\0relayuser\0{PASSWORD}")),
    ] {
        assert!(
            !text.contains(&needle),
            "{what} contains the secret {needle:?}:\n{text}"
        );
    }
}

/// The message is queued with `why` in its reply, and the log says deferred.
fn assert_queued(env: &Env, why: &str) {
    let q = queue(env);
    assert!(
        q.contains("bob@example.test") && q.contains(why),
        "queue should hold the message with {why:?}:\n{q}"
    );
    let l = log(env);
    assert!(
        l.contains("status=deferred") && l.contains(why),
        "log:\n{l}"
    );
}

// ---------------------------------------------------------------- TLS

#[test]
fn opportunistic_starttls_takes_any_certificate_and_says_so() {
    let sink = Sink::start(SinkConfig {
        tls: tls_cfg(self_signed(&["someone-else.test"])),
        ..Default::default()
    });
    let env = relay_env(&sink);
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    let m = &sink.wait_messages(1, WAIT)[0];
    let c = &sink.connections()[m.conn];
    assert!(c.tls, "the message went over TLS");
    let cmds: Vec<&str> = c
        .commands
        .iter()
        .map(|s| s.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        &cmds[..3],
        ["EHLO", "STARTTLS", "EHLO"],
        "EHLO again after STARTTLS: {cmds:?}"
    );
    let l = log(&env);
    assert!(
        l.contains("Untrusted TLS connection established to 127.0.0.1[127.0.0.1]")
            && l.contains("certificate not verified"),
        "{l}"
    );
    assert!(l.contains("status=sent"), "{l}");
}

#[test]
fn opportunistic_broken_handshake_retries_once_without_tls() {
    let sink = Sink::start(SinkConfig {
        starttls_broken: true,
        ..Default::default()
    });
    let env = relay_env(&sink);
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    sink.wait_messages(1, WAIT);
    let conns = sink.wait_connections(2, WAIT);
    assert_eq!(
        conns.len(),
        2,
        "one failed TLS connection, one plain retry: {}",
        sink.dump()
    );
    assert!(conns[0].commands.iter().any(|c| c == "STARTTLS"));
    assert!(
        !conns[1].commands.iter().any(|c| c == "STARTTLS"),
        "the retry is without TLS"
    );
    assert!(!conns[1].tls);
    let l = log(&env);
    assert!(l.contains("retrying once without TLS"), "{l}");
    assert!(l.contains("status=sent"), "{l}");
}

#[test]
fn required_without_starttls_keeps_the_message_queued() {
    let sink = Sink::start_default();
    let env = relay_env(&sink);
    env.conf("tls = \"required\"");
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    assert!(sink.messages().is_empty());
    let conns = sink.wait_connections(1, WAIT);
    assert!(
        !conns
            .iter()
            .any(|c| c.commands.iter().any(|x| x.starts_with("MAIL"))),
        "{}",
        sink.dump()
    );
    assert_queued(&env, "does not offer STARTTLS");
}

#[test]
fn required_with_a_broken_handshake_does_not_fall_back() {
    let sink = Sink::start(SinkConfig {
        starttls_broken: true,
        ..Default::default()
    });
    let env = relay_env(&sink);
    env.conf("tls = \"required\"");
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    let conns = sink.wait_connections(1, WAIT);
    assert_eq!(conns.len(), 1, "no retry without TLS: {}", sink.dump());
    assert!(sink.messages().is_empty());
    assert_queued(&env, "TLS handshake with 127.0.0.1[127.0.0.1]");
}

/// Deliver by MX to a sink presenting `chain` with `tls = "verify"` and the test CA.
fn verify_case(pki: &Pki, chain: Chain) -> (Env, Sink, DnsServer, Out) {
    let sink = Sink::start(SinkConfig {
        tls: tls_cfg(chain),
        ..Default::default()
    });
    let (env, dns) = mx_env(&sink);
    let ca = env.write("ca.pem", &pki.ca_pem());
    env.conf(&format!(
        "tls = \"verify\"\ntls_ca_file = \"{}\"",
        ca.display()
    ));
    let o = env.run(&["-i", "bob@example.test"], MSG);
    (env, sink, dns, o)
}

#[test]
fn verify_accepts_a_ca_signed_certificate_for_the_mx_name() {
    let pki = Pki::new();
    let (env, sink, _dns, o) = verify_case(&pki, pki.leaf(&["mx.test"], false));
    o.expect_code(0);
    let m = &sink.wait_messages(1, WAIT)[0];
    assert!(sink.connections()[m.conn].tls);
    let l = log(&env);
    assert!(
        l.contains("Verified TLS connection established to mx.test[127.0.0.1]"),
        "{l}"
    );
}

#[test]
fn verify_refuses_a_certificate_for_another_name() {
    let pki = Pki::new();
    let (env, sink, _dns, o) = verify_case(&pki, pki.leaf(&["other.test"], false));
    o.expect_code(0);
    assert!(sink.messages().is_empty());
    assert_queued(&env, "not valid for");
}

#[test]
fn verify_refuses_an_expired_certificate() {
    let pki = Pki::new();
    let (env, sink, _dns, o) = verify_case(&pki, pki.leaf(&["mx.test"], true));
    o.expect_code(0);
    assert!(sink.messages().is_empty());
    assert_queued(&env, "expired");
}

#[test]
fn verify_refuses_a_self_signed_certificate_and_ignores_ssl_cert_file() {
    let pki = Pki::new();
    let chain = self_signed(&["mx.test"]);
    let leaf_pem = {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD.encode(chain.0[0].as_ref());
        let lines: Vec<&str> = b
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    };
    let sink = Sink::start(SinkConfig {
        tls: tls_cfg(chain),
        ..Default::default()
    });
    let (env, _dns) = mx_env(&sink);
    let ca = env.write("ca.pem", &pki.ca_pem());
    let trap = env.write("trap.pem", &leaf_pem);
    env.conf(&format!(
        "tls = \"verify\"\ntls_ca_file = \"{}\"",
        ca.display()
    ));
    // The environment must not add trusted roots (a set-gid binary's caller sets it).
    let mut c = env.cmd(None);
    c.env("SSL_CERT_FILE", &trap).env("SSL_CERT_DIR", env.dir());
    c.arg("-C")
        .arg(env.conf_path())
        .args(["-i", "bob@example.test"]);
    env.output(c, MSG).expect_code(0);
    assert!(sink.messages().is_empty());
    assert_queued(&env, "unknown issuer");
}

#[test]
fn implicit_tls_relay_with_verification() {
    let pki = Pki::new();
    let sink = Sink::start(SinkConfig {
        tls: tls_cfg(pki.leaf(&["127.0.0.1"], false)),
        implicit_tls: true,
        ..Default::default()
    });
    let env = Env::new();
    env.virtusers("root  root@shop.example  127.0.0.2\n");
    let ca = env.write("ca.pem", &pki.ca_pem());
    env.conf(&format!(
        "relay = \"smtps://127.0.0.1:{}\"\ntls = \"verify\"\ntls_ca_file = \"{}\"",
        sink.port(),
        ca.display()
    ));
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    let m = &sink.wait_messages(1, WAIT)[0];
    let c = &sink.connections()[m.conn];
    assert!(
        c.tls && !c.commands.iter().any(|x| x == "STARTTLS"),
        "{}",
        sink.dump()
    );
    assert_eq!(m.peer.ip(), ip("127.0.0.2"));
    assert!(log(&env).contains("Verified TLS connection established to 127.0.0.1[127.0.0.1]"));
}

// ---------------------------------------------------------------- AUTH

/// A relay offering AUTH; with `tls`, its certificate (for 127.0.0.1) is
/// issued by the shared test CA, which `secrets` trusts: credentials go only
/// to a verified certificate.
fn auth_sink(mechs: &[&str], tls: bool) -> Sink {
    Sink::start(SinkConfig {
        tls: if tls {
            tls_cfg(crate::support::pki::shared().leaf(&["127.0.0.1"], false))
        } else {
            None
        },
        auth: vec![("relayuser".into(), PASSWORD.into())],
        auth_mechs: mechs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
}

#[test]
fn auth_plain_after_starttls_and_the_password_is_never_shown() {
    let sink = auth_sink(&["PLAIN", "LOGIN"], true);
    let env = Env::new();
    env.virtusers("root  root@shop.example  127.0.0.2\n");
    env.conf(&format!(
        "relay = \"smtp://relayuser@127.0.0.1:{}\"",
        sink.port()
    ));
    secrets(
        &env,
        &format!(
            "# relay accounts\n127.0.0.1:{} relayuser {PASSWORD}\n",
            sink.port()
        ),
        0o640,
    );
    let o = env.run(&["-v", "-i", "bob@example.test"], MSG);
    o.expect_code(0);
    let m = &sink.wait_messages(1, WAIT)[0];
    let c = &sink.connections()[m.conn];
    assert_eq!(c.auth.len(), 1, "{}", sink.dump());
    let a = &c.auth[0];
    assert!(
        a.ok && a.tls && a.mech == "PLAIN" && a.user == "relayuser" && a.password == PASSWORD,
        "{a:?}"
    );
    assert!(o.stderr.contains(">>> AUTH PLAIN ****"), "{o}");
    assert_no_secret(&o.stderr, "-v output");
    assert_no_secret(&o.stdout, "stdout");
    let raw: Vec<String> = env.log_records().into_iter().map(|l| l.raw).collect();
    assert_no_secret(&raw.join("\n"), "syslog");
    assert!(log(&env).contains("status=sent"));
}

#[test]
fn auth_login_with_the_user_from_the_secrets_line() {
    let sink = auth_sink(&["LOGIN"], true);
    let env = relay_env(&sink);
    // No user in the URL: the line for the relay host enables AUTH.
    secrets(&env, &format!("127.0.0.1 relayuser {PASSWORD}\n"), 0o600);
    let o = env.run(&["-v", "-i", "bob@example.test"], MSG);
    o.expect_code(0);
    let m = &sink.wait_messages(1, WAIT)[0];
    let a = &sink.connections()[m.conn].auth[0];
    assert!(a.ok && a.mech == "LOGIN" && a.user == "relayuser", "{a:?}");
    assert!(
        o.stderr.contains(">>> AUTH LOGIN") && o.stderr.contains(">>> ****"),
        "{o}"
    );
    assert_no_secret(&o.stderr, "-v output");
    assert_no_secret(&log(&env), "syslog");
}

#[test]
fn auth_535_is_a_permanent_failure_that_says_so() {
    let sink = auth_sink(&["PLAIN"], true);
    let env = relay_env(&sink);
    let wrong = format!("{PASSWORD}-typo");
    secrets(
        &env,
        &format!("127.0.0.1:{} relayuser {wrong}\n", sink.port()),
        0o640,
    );
    let o = env.run(&["-oep", "-i", "bob@example.test"], MSG);
    o.expect_code(69);
    assert!(
        o.stderr.contains("535") && o.stderr.contains("permanent"),
        "{o}"
    );
    assert!(!o.stderr.contains(&wrong), "{o}");
    assert_no_secret(&o.stderr, "stderr");
    assert!(queue(&env).contains("Mail queue is empty"), "not retried");
    let l = log(&env);
    assert!(l.contains("status=failed") && l.contains("535"), "{l}");
    assert!(!l.contains(&wrong), "{l}");
    assert!(sink.messages().is_empty());
}

#[test]
fn credentials_are_never_sent_without_tls() {
    let sink = auth_sink(&["PLAIN", "LOGIN"], false);
    let env = relay_env(&sink);
    secrets(&env, &format!("127.0.0.1 relayuser {PASSWORD}\n"), 0o640);
    let o = env.run(&["-v", "-i", "bob@example.test"], MSG);
    o.expect_code(0);
    let conns = sink.wait_connections(1, WAIT);
    assert!(
        conns
            .iter()
            .all(|c| c.auth.is_empty() && !c.commands.iter().any(|x| x.starts_with("AUTH")))
    );
    assert_no_secret(
        &String::from_utf8_lossy(&conns[0].raw),
        "what the relay received",
    );
    assert!(sink.messages().is_empty());
    assert_queued(&env, "does not offer STARTTLS");
}

#[test]
fn a_world_readable_secrets_file_is_refused() {
    let sink = auth_sink(&["PLAIN"], true);
    let env = relay_env(&sink);
    secrets(&env, &format!("127.0.0.1 relayuser {PASSWORD}\n"), 0o644);
    let o = env.run(&["-i", "bob@example.test"], MSG);
    o.expect_code(0);
    assert!(
        sink.connections().is_empty(),
        "nothing sent: {}",
        sink.dump()
    );
    assert_queued(&env, "mode 0644");
    assert_no_secret(&o.stderr, "stderr");
    assert_no_secret(&log(&env), "syslog");
}

#[test]
fn a_user_missing_from_the_secrets_file_keeps_the_message() {
    let sink = auth_sink(&["PLAIN"], true);
    let env = Env::new();
    env.virtusers("root  root@shop.example  127.0.0.2\n");
    env.conf(&format!(
        "relay = \"smtp://nobody-here@127.0.0.1:{}\"",
        sink.port()
    ));
    secrets(&env, &format!("127.0.0.1 relayuser {PASSWORD}\n"), 0o640);
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    assert!(sink.connections().is_empty());
    assert_queued(&env, "names user nobody-here");
}

// ---------------------------------------------------------------- IPv6

#[test]
fn ipv6_from_loopback_to_loopback() {
    let sink = Sink::start(SinkConfig {
        bind: IpAddr::V6(Ipv6Addr::LOCALHOST),
        ..Default::default()
    });
    let env = Env::new();
    env.relay(sink.addr());
    env.virtusers("root  root@shop.example  127.0.0.2,::1\n");
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    let m = &sink.wait_messages(1, WAIT)[0];
    assert_eq!(m.peer.ip(), ip("::1"));
    let l = log(&env);
    assert!(l.contains(&format!("src=[::1]:{}", m.peer.port())), "{l}");
}

/// Sinks on 127.0.0.1 and ::1 (one port); mx.test has both A and AAAA.
fn dual_stack() -> (Sink, Sink, Env, DnsServer) {
    let mut s = Sink::start_many(vec![
        SinkConfig::default(),
        SinkConfig {
            bind: IpAddr::V6(Ipv6Addr::LOCALHOST),
            ..Default::default()
        },
    ]);
    let v6 = s.pop().unwrap();
    let v4 = s.pop().unwrap();
    let dns = DnsServer::start(
        Zone::new()
            .mx("example.test", 10, "mx.test")
            .a("mx.test", Ipv4Addr::LOCALHOST)
            .aaaa("mx.test", Ipv6Addr::LOCALHOST),
    );
    let env = Env::new();
    env.conf(&format!(
        "dns = [\"{}\"]\nmx_port = {}",
        dns.addr(),
        v4.port()
    ));
    (v4, v6, env, dns)
}

#[test]
fn aaaa_first_unless_prefer_ipv4_and_only_the_identitys_families() {
    let (v4, v6, env, _dns) = dual_stack();
    env.virtusers("root  root@shop.example  127.0.0.2,::1\n");
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    assert_eq!(
        v6.wait_messages(1, WAIT)[0].peer.ip(),
        ip("::1"),
        "AAAA first by default"
    );
    assert!(v4.messages().is_empty());

    env.conf("prefer = \"ipv4\"");
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    assert_eq!(
        v4.wait_messages(1, WAIT)[0].peer.ip(),
        ip("127.0.0.2"),
        "A first with prefer = ipv4"
    );

    // An identity without IPv6 never uses the AAAA record, whatever `prefer` says.
    env.conf("prefer = \"ipv6\"");
    env.virtusers("root  root@shop.example  127.0.0.3\n");
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    assert_eq!(v4.wait_messages(2, WAIT)[1].peer.ip(), ip("127.0.0.3"));
    // ... and one without IPv4 never uses the A record.
    env.conf("prefer = \"ipv4\"");
    env.virtusers("root  root@shop.example  ::1\n");
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    assert_eq!(v6.wait_messages(2, WAIT).len(), 2);
    assert_eq!(
        v4.messages().len(),
        2,
        "no IPv4 connection for a v6-only identity"
    );
}

#[test]
fn several_sources_of_one_family_use_the_first_that_binds() {
    let sink = Sink::start_default();
    let env = relay_env(&sink);
    // 192.0.2.55 is not on this host (a source only, never a destination).
    env.virtusers("root  root@shop.example  192.0.2.55,127.0.0.3,127.0.0.4\n");
    let bv = env.run(&["-bv", "bob@example.test"], b"");
    bv.expect_code(0);
    assert!(
        bv.stdout
            .contains("192.0.2.55 (NOT configured on this host)")
            && bv
                .stdout
                .contains("127.0.0.3 (bound here: ok, used for IPv4)")
            && bv.stdout.contains("127.0.0.4 (bound here: ok, spare)"),
        "{bv}"
    );
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    assert_eq!(sink.wait_messages(1, WAIT)[0].peer.ip(), ip("127.0.0.3"));
}

/// A network namespace private to one test, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("vst-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "cannot create network namespace {name} (tests run as root)"
        );
        let n = Netns { name };
        assert!(n.ip(&["link", "set", "lo", "up"]));
        n
    }

    fn ip(&self, args: &[&str]) -> bool {
        let o = Command::new("ip")
            .args(["-n", &self.name])
            .args(args)
            .output()
            .expect("run ip");
        o.status.success()
    }

    /// An interface carrying `addrs`: a dummy one, or a veth pair where the
    /// kernel has no dummy driver.
    fn interface_with(&self, addrs: &[&str]) {
        let ifname = if self.ip(&["link", "add", "vsdummy0", "type", "dummy"]) {
            "vsdummy0"
        } else {
            assert!(
                self.ip(&[
                    "link", "add", "vsveth0", "type", "veth", "peer", "name", "vsveth1"
                ]),
                "cannot create a dummy or veth interface in {}",
                self.name
            );
            assert!(self.ip(&["link", "set", "vsveth1", "up"]));
            "vsveth0"
        };
        for a in addrs {
            assert!(self.ip(&["addr", "add", &format!("{a}/64"), "dev", ifname, "nodad"]));
        }
        assert!(self.ip(&["link", "set", ifname, "up"]));
    }

    /// Run `f` on a thread that has entered the namespace (sockets it makes live there).
    fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        Netns::enter_and(format!("/run/netns/{}", self.name), f)
    }

    fn enter_and<T: Send + 'static>(path: String, f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            // SAFETY: setns on a valid namespace fd, for this thread only.
            let r =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("netns thread")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A sink listening inside a namespace. It must also be stopped from inside
/// (its drop wakes the acceptor with a connection to its own address).
struct NsSink {
    sink: Option<Sink>,
    path: String,
}

impl NsSink {
    fn start(ns: &Netns, f: impl FnOnce() -> Sink + Send + 'static) -> NsSink {
        NsSink {
            sink: Some(ns.within(f)),
            path: format!("/run/netns/{}", ns.name),
        }
    }
}

impl std::ops::Deref for NsSink {
    type Target = Sink;
    fn deref(&self) -> &Sink {
        self.sink.as_ref().unwrap()
    }
}

impl Drop for NsSink {
    fn drop(&mut self) {
        if let Some(sink) = self.sink.take() {
            Netns::enter_and(self.path.clone(), move || drop(sink));
        }
    }
}

#[test]
fn two_ipv6_identities_in_a_network_namespace_keep_their_own_source() {
    let ns = Netns::new("v6");
    ns.interface_with(&["fd00::10", "fd00::11"]);
    let sink = NsSink::start(&ns, || {
        Sink::start(SinkConfig {
            bind: IpAddr::V6(Ipv6Addr::LOCALHOST),
            ..Default::default()
        })
    });
    let env = Env::new();
    env.relay(sink.addr());
    env.virtusers(
        "vst_tr_v6a  a@site-a.example  fd00::10\n\
         vst_tr_v6b  b@site-b.example  fd00::11\n",
    );
    for u in ["vst_tr_v6a", "vst_tr_v6b"] {
        let (uid, gid) = users::user(u);
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &ns.name, "setpriv"])
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .args(["--init-groups", "--", vs::bin(), "-C"])
            .arg(env.conf_path())
            .args(["-i", "bob@example.test"]);
        c.env_clear().env("PATH", vs::PATH).current_dir(env.dir());
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
    assert_eq!(a.peer.ip(), ip("fd00::10"));
    assert_eq!(b.peer.ip(), ip("fd00::11"));
    let l = log(&env);
    assert!(
        l.contains(&format!("src=[fd00::10]:{}", a.peer.port())),
        "{l}"
    );
    assert!(
        l.contains(&format!("src=[fd00::11]:{}", b.peer.port())),
        "{l}"
    );
}

// ---------------------------------------------------------------- extensions

#[test]
fn pipelining_batches_mail_and_rcpt_in_one_write() {
    let sink = Sink::start_default();
    let env = relay_env(&sink);
    env.run(&["-i", "bob@example.test", "carol@example.test"], MSG)
        .expect_code(0);
    let m = &sink.wait_messages(1, WAIT)[0];
    let c = &sink.connections()[m.conn];
    let batch = c
        .reads
        .iter()
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .find(|r| r.contains("MAIL FROM:"));
    let batch = batch.expect("a read with MAIL FROM");
    assert!(
        batch.contains("RCPT TO:<bob@example.test>")
            && batch.contains("RCPT TO:<carol@example.test>"),
        "MAIL and both RCPTs in one read: {batch:?}"
    );

    // Without PIPELINING each command waits for its reply.
    let plain = Sink::start(SinkConfig {
        extensions: vec!["8BITMIME".into(), "ENHANCEDSTATUSCODES".into()],
        ..Default::default()
    });
    let env = relay_env(&plain);
    env.run(&["-i", "bob@example.test", "carol@example.test"], MSG)
        .expect_code(0);
    let m = &plain.wait_messages(1, WAIT)[0];
    let c = &plain.connections()[m.conn];
    assert!(
        !c.reads.iter().any(|r| {
            let s = String::from_utf8_lossy(r);
            s.contains("MAIL FROM:") && s.contains("RCPT TO:")
        }),
        "{:?}",
        c.reads
    );
}

#[test]
fn size_limit_fails_early_and_permanently() {
    let sink = Sink::start(SinkConfig {
        extensions: vec![
            "PIPELINING".into(),
            "SIZE 500".into(),
            "ENHANCEDSTATUSCODES".into(),
        ],
        ..Default::default()
    });
    let env = relay_env(&sink);
    let mut big = b"Subject: big\n\n".to_vec();
    big.extend(
        std::iter::repeat_n(b"0123456789012345678901234567890123456789\n".as_slice(), 50).flatten(),
    );
    let o = env.run(&["-oep", "-i", "bob@example.test"], &big);
    o.expect_code(69);
    assert!(o.stderr.contains("SIZE limit of 500 bytes"), "{o}");
    let conns = sink.wait_connections(1, WAIT);
    assert!(
        !conns[0].commands.iter().any(|c| c.starts_with("MAIL")),
        "refused before MAIL: {}",
        sink.dump()
    );
    assert!(queue(&env).contains("Mail queue is empty"));
}

#[test]
fn smtputf8_address_to_a_server_without_it_fails_clearly() {
    let sink = Sink::start(SinkConfig {
        extensions: vec!["PIPELINING".into(), "8BITMIME".into()],
        ..Default::default()
    });
    let env = relay_env(&sink);
    let o = env.run(&["-oep", "-i", "jörg@example.test"], MSG);
    o.expect_code(69);
    assert!(o.stderr.contains("SMTPUTF8"), "{o}");
    assert!(sink.messages().is_empty());
}

#[test]
fn dsn_parameters_reach_the_wire_when_offered() {
    let sink = Sink::start_default();
    let env = relay_env(&sink);
    env.run(
        &[
            "-N",
            "success,failure",
            "-R",
            "hdrs",
            "-V",
            "env-42",
            "-i",
            "bob@example.test",
        ],
        MSG,
    )
    .expect_code(0);
    let m = &sink.wait_messages(1, WAIT)[0];
    assert!(
        m.mail_params.contains("RET=HDRS") && m.mail_params.contains("ENVID=env-42"),
        "{}",
        m.mail_params
    );
    assert!(
        m.rcpt_params[0].contains("NOTIFY=SUCCESS,FAILURE")
            && m.rcpt_params[0].contains("ORCPT=rfc822;bob@example.test"),
        "{:?}",
        m.rcpt_params
    );

    // A server without DSN gets none of them.
    let no_dsn = Sink::start(SinkConfig {
        extensions: vec!["PIPELINING".into(), "8BITMIME".into()],
        ..Default::default()
    });
    let env = relay_env(&no_dsn);
    env.run(
        &[
            "-N",
            "never",
            "-R",
            "full",
            "-V",
            "env-43",
            "-i",
            "bob@example.test",
        ],
        MSG,
    )
    .expect_code(0);
    let m = &no_dsn.wait_messages(1, WAIT)[0];
    assert!(
        !m.mail_params.contains("RET=") && !m.mail_params.contains("ENVID="),
        "{}",
        m.mail_params
    );
    assert!(!m.rcpt_params[0].contains("NOTIFY="), "{:?}", m.rcpt_params);
}

#[test]
fn enhanced_status_codes_are_in_the_log_and_on_stderr() {
    let sink = Sink::start(SinkConfig {
        rules: vec![Rule::reply(
            Step::Rcpt("bob".into()),
            "550 5.1.1 <bob@example.test>: Recipient address rejected",
        )],
        ..Default::default()
    });
    let env = relay_env(&sink);
    let o = env.run(&["-oep", "-i", "bob@example.test"], MSG);
    o.expect_code(69);
    assert!(o.stderr.contains("550 5.1.1"), "{o}");
    let l = log(&env);
    assert!(
        l.contains("status=failed") && l.contains("550 5.1.1 <bob@example.test>"),
        "{l}"
    );
}

#[test]
fn helo_when_ehlo_is_refused() {
    let sink = Sink::start(SinkConfig {
        ehlo_refused: true,
        ..Default::default()
    });
    let env = relay_env(&sink);
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    let m = &sink.wait_messages(1, WAIT)[0];
    let c = &sink.connections()[m.conn];
    assert_eq!(c.helo_cmd, "HELO");
    assert_eq!(m.helo, "mail.shop.example");
    assert!(
        m.mail_params.is_empty(),
        "no ESMTP parameters after HELO: {}",
        m.mail_params
    );
}

// ---------------------------------------------------------------- timeouts

const SHORT: &str =
    "[timeouts]\nconnect = 1\ngreeting = 1\ncommand = 1\ndata_block = 1\nfinal_dot = 1";

/// Send with 1-second timeouts; the run must end well before the stall does,
/// exit 0 with the message queued and the log saying why.
fn assert_times_out(env: &Env, body: &[u8], why: &str) {
    env.conf(SHORT);
    env.set_timeout(Duration::from_secs(60));
    let t = Instant::now();
    let o = env.run(&["-i", "bob@example.test"], body);
    let took = t.elapsed();
    o.expect_code(0);
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_queued(env, why);
}

#[test]
fn connect_timeout() {
    // A listener whose backlog is full: further SYNs go unanswered.
    let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    l.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let filler: Vec<_> = (0..4)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()
        })
        .collect();
    assert!(!filler.is_empty());
    let env = Env::new();
    env.relay(addr);
    env.virtusers("root  root@shop.example  127.0.0.2\n");
    assert_times_out(&env, MSG, "timed out after 1s");
}

fn stalled(rule: Rule) -> (Env, Sink) {
    let sink = Sink::start(SinkConfig {
        rules: vec![rule],
        ..Default::default()
    });
    let env = relay_env(&sink);
    (env, sink)
}

#[test]
fn greeting_timeout() {
    let (env, _sink) = stalled(Rule::new(Step::Connect, Action::Hang));
    assert_times_out(&env, MSG, "greeting to 127.0.0.1[127.0.0.1]");
}

#[test]
fn command_timeout() {
    let (env, sink) = stalled(Rule::new(
        Step::Mail,
        Action::Delay(Duration::from_secs(30)),
    ));
    assert_times_out(&env, MSG, "MAIL FROM to 127.0.0.1[127.0.0.1]");
    assert!(log(&env).contains("no reply within 1s (timeout)"));
    assert!(sink.messages().is_empty());
}

#[test]
fn data_block_timeout() {
    let (env, sink) = stalled(Rule::new(
        Step::Data,
        Action::ReplyThenStall("354 go ahead".into()),
    ));
    // Larger than what the socket buffers of both sides hold.
    let mut big = b"Subject: big\n\n".to_vec();
    let line = b"0123456789012345678901234567890123456789012345678901234567890123456789\n";
    while big.len() < 24 * 1024 * 1024 {
        big.extend_from_slice(line);
    }
    assert_times_out(&env, &big, "message data to 127.0.0.1[127.0.0.1]");
    assert!(sink.messages().is_empty());
}

#[test]
fn final_dot_timeout() {
    let (env, _sink) = stalled(Rule::new(Step::Dot, Action::Hang));
    assert_times_out(&env, MSG, "end of data to 127.0.0.1[127.0.0.1]");
    let l = log(&env);
    assert!(l.contains("no reply within 1s"), "{l}");
}

// ---------------------------------------------------------------- Postfix

#[test]
fn postfix_with_starttls_verified_end_to_end() {
    let sink = Sink::start_default();
    let pf = Postfix::start(PostfixOpts {
        tls: true,
        ..PostfixOpts::new(sink.addr())
    });
    let env = Env::new();
    env.relay(pf.addr());
    env.virtusers("root  root@shop.example  127.0.0.2\n");
    env.conf(&format!(
        "tls = \"verify\"\ntls_ca_file = \"{}\"",
        pf.ca_path().display()
    ));
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    let m = &sink.wait_messages(1, Duration::from_secs(60))[0];
    assert_eq!(m.rcpts, vec!["bob@example.test"]);
    let received = m.headers("Received");
    assert!(
        received
            .iter()
            .any(|r| r.contains("[127.0.0.2]") && r.contains("using TLS")),
        "Postfix saw TLS from 127.0.0.2: {received:?}\n{}",
        pf.maillog()
    );
    let l = log(&env);
    assert!(
        l.contains("Verified TLS connection established to 127.0.0.1[127.0.0.1]"),
        "{l}"
    );
    wait_until("queue empty", WAIT, || {
        queue(&env).contains("Mail queue is empty").then_some(())
    });
}
