//! Issue 14: what a mail administrator trips over in the first hour, and the
//! checks (`-bi`, `-bv`, `--doctor`, `-bp`) that said ok when it was not.

use crate::support::dns::{DnsServer, Zone};
use crate::support::setgid::{self, SetGid};
use crate::support::sink::Sink;
use crate::support::vs::Env;
use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const MSG: &[u8] = b"Subject: hello\nTo: bob@example.org\n\nHello Bob.\n";
const WAIT: Duration = Duration::from_secs(10);

/// An Ed25519 key made by openssl, mode `mode`, owner root:root.
fn key(dir: &Path, name: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    let o = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&p)
        .output()
        .expect("openssl");
    assert!(o.status.success(), "openssl genpkey: {o:?}");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

/// A nameserver on 127.0.0.1 that answers every question with `rcode`
/// (2 SERVFAIL, 5 REFUSED), or never answers (`None`).
struct BadDns {
    sock: Arc<UdpSocket>,
    stop: Arc<AtomicBool>,
}

impl BadDns {
    fn start(rcode: Option<u8>) -> BadDns {
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (sock.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !st.load(Ordering::SeqCst) {
                let Ok((n, from)) = s.recv_from(&mut buf) else {
                    continue;
                };
                let Some(rc) = rcode else { continue };
                // Header and question only: the question ends after the
                // name's zero label and QTYPE, QCLASS.
                let mut end = 12;
                while end < n && buf[end] != 0 {
                    end += buf[end] as usize + 1;
                }
                end += 5;
                if n < 12 || end > n {
                    continue;
                }
                let mut r = buf[..end].to_vec();
                r[2] = 0x80 | (buf[2] & 0x79);
                r[3] = 0x80 | rc;
                r[4..6].copy_from_slice(&[0, 1]);
                r[6..12].copy_from_slice(&[0; 6]);
                let _ = s.send_to(&r, from);
            }
        });
        BadDns { sock, stop }
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.sock.local_addr().unwrap()
    }
}

impl Drop for BadDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Every path under `dir`, sorted: what a command left behind.
fn tree(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            out.push(e.path().display().to_string());
            out.extend(tree(&e.path()));
        }
    }
    out.sort();
    out
}

#[test]
fn read_only_commands_never_create_the_spool() {
    let env = Env::new();
    let spool = env.dir().join("nospool");
    env.conf(&format!("spool = \"{}\"", spool.display()));
    env.virtusers("root root@shop.test -\n");
    let o = env.run(&["-bp"], b"");
    o.expect_code(0);
    assert_eq!(o.stdout, "Mail queue is empty\n", "{o}");
    for args in [
        &["-bp"][..],
        &["-bi"],
        &["-bv", "bob@example.org"],
        &["--who", "192.0.2.10"],
        &["--doctor"],
    ] {
        let o = env.run(args, b"");
        assert!(
            !spool.exists(),
            "{args:?} created {}:\n{o}",
            spool.display()
        );
    }
    // A spool root without queue/ (as make install leaves it before the
    // first run) is listed as empty too, and stays as it was.
    let spool = env.spool();
    let before = tree(&spool);
    env.conf(&format!("spool = \"{}\"", spool.display()));
    let o = env.run(&["-bp"], b"");
    o.expect_code(0);
    assert_eq!(o.stdout, "Mail queue is empty\n", "{o}");
    assert_eq!(tree(&spool), before, "-bp changed the spool");
}

#[test]
fn missing_syslog_socket_is_said_once_and_by_bi() {
    let env = Env::new();
    let sink = Sink::start_default();
    env.relay(sink.addr());
    env.virtusers("root root@shop.test 127.0.0.2\n");
    let nolog = env.dir().join("nolog");
    env.conf(&format!("syslog_socket = \"{}\"", nolog.display()));
    let o = env.run(&["-i", "bob@example.org"], MSG);
    o.expect_code(0);
    sink.wait_messages(1, WAIT);
    let want = format!("vsendmail: warning: cannot log to {} (", nolog.display());
    assert_eq!(o.stderr.matches(&want).count(), 1, "{o}");
    assert!(o.stderr.contains("; nothing is logged"), "{o}");
    let bi = env.run(&["-bi"], b"");
    bi.expect_code(0);
    assert!(
        bi.stderr.contains(&format!(
            "syslog_socket: cannot log to {} (",
            nolog.display()
        )),
        "{bi}"
    );
    // With the socket there, nothing is said.
    env.conf(&format!(
        "syslog_socket = \"{}\"",
        env.dir().join("log.sock").display()
    ));
    let o = env.run(&["-i", "bob@example.org"], MSG);
    o.expect_code(0);
    assert!(!o.stderr.contains("cannot log"), "{o}");
}

#[test]
fn bi_refuses_a_missing_virtusers_and_warns_of_missing_aliases() {
    let env = Env::new();
    let v = env.dir().join("no-virtusers");
    env.conf(&format!("virtusers = \"{}\"", v.display()));
    let bi = env.run(&["-bi"], b"");
    bi.expect_code(78);
    assert!(
        bi.stderr.contains(&format!(
            "{}: the virtusers file does not exist",
            v.display()
        )),
        "{bi}"
    );
    assert!(!bi.stdout.contains("no problems"), "{bi}");
    env.conf(&format!(
        "virtusers = \"{}\"",
        env.dir().join("virtusers").display()
    ));
    let a = env.dir().join("no-aliases");
    env.conf(&format!("aliases = \"{}\"", a.display()));
    let bi = env.run(&["-bi"], b"");
    bi.expect_code(0);
    assert!(
        bi.stderr.contains(&format!(
            "{}: warning: the aliases file does not exist",
            a.display()
        )),
        "{bi}"
    );
}

#[test]
fn bi_checks_the_spool_owner_and_mode() {
    let env = Env::new();
    let none = env.dir().join("none");
    env.conf(&format!("spool = \"{}\"", none.display()));
    let bi = env.run(&["-bi"], b"");
    bi.expect_code(78);
    assert!(
        bi.stderr
            .contains(&format!("{}: the spool cannot be used", none.display())),
        "{bi}"
    );
    assert!(!none.exists(), "-bi created the spool");
    env.conf(&format!("spool = \"{}\"", env.spool().display()));
    // Fresh: the subdirectories are not made yet, which is only a warning.
    let bi = env.run(&["-bi"], b"");
    bi.expect_code(0);
    assert!(
        bi.stderr.contains(&format!(
            "{}: warning: missing",
            env.spool().join("queue").display()
        )),
        "{bi}"
    );
    std::fs::set_permissions(env.spool(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bi = env.run(&["-bi"], b"");
    bi.expect_code(78);
    assert!(
        bi.stderr.contains(&format!(
            "{}: wrong owner or mode (mode 0755 root:vstest), expected a directory root:vstest mode 2770",
            env.spool().display()
        )),
        "{bi}"
    );
    std::fs::set_permissions(env.spool(), std::fs::Permissions::from_mode(0o2770)).unwrap();
    let q = env.spool().join("queue");
    std::fs::create_dir(&q).unwrap();
    nix::unistd::chown(&q, Some(0.into()), Some(0.into())).unwrap();
    std::fs::set_permissions(&q, std::fs::Permissions::from_mode(0o2770)).unwrap();
    let bi = env.run(&["-bi"], b"");
    bi.expect_code(78);
    assert!(
        bi.stderr.contains(&format!(
            "{}: wrong owner or mode (mode 2770 root:root)",
            q.display()
        )),
        "{bi}"
    );
}

#[test]
fn bi_refuses_a_short_hostname_and_a_relay_user_without_secret() {
    let env = Env::new();
    env.conf("hostname = \"myhost\"");
    let bi = env.run(&["-bi"], b"");
    bi.expect_code(78);
    assert!(
        bi.stderr
            .contains("hostname \"myhost\" is not a fully qualified domain name"),
        "{bi}"
    );
    assert!(bi.stderr.contains("vsendmail.conf:"), "{bi}");
    env.conf("hostname = \"host.test\"");
    env.conf("relay = \"smtp://alice@127.0.0.1:2525\"");
    let bi = env.run(&["-bi"], b"");
    bi.expect_code(78);
    assert!(bi.stderr.contains("names user alice but"), "{bi}");
    let secrets = env.write("secrets", "127.0.0.1:2525 alice s3cret-pw\n");
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o640)).unwrap();
    nix::unistd::chown(
        &secrets,
        None,
        Some(crate::support::users::vstest_gid().into()),
    )
    .unwrap();
    env.conf(&format!("secrets = \"{}\"", secrets.display()));
    let bi = env.run(&["-bi"], b"");
    bi.expect_code(0);
    assert!(!bi.stderr.contains("s3cret-pw") && !bi.stdout.contains("s3cret-pw"));
    // A secrets file the group cannot read is a problem too.
    nix::unistd::chown(&secrets, None, Some(0.into())).unwrap();
    let bi = env.run(&["-bi"], b"");
    bi.expect_code(78);
    assert!(
        bi.stderr
            .contains("is not readable by group vstest (mode 0640 root:root)"),
        "{bi}"
    );
}

#[test]
fn bi_refuses_a_queue_runner_that_calls_another_sendmail() {
    let sg = SetGid::install();
    let env = Env::new();
    sg.attach(&env);
    let etc = sg.dir().join("etc");
    std::fs::create_dir_all(etc.join("cron.d")).unwrap();
    let cron = etc.join("cron.d/vsendmail");
    std::fs::write(
        &cron,
        "# vsendmail queue\n*/5 * * * * root /usr/sbin/sendmail -q\n",
    )
    .unwrap();
    let bi = sg.run(&env, None, &["-bi"], b"");
    bi.expect_code(78);
    assert!(
        bi.stderr
            .contains("/etc/cron.d/vsendmail:2: the queue runner runs /usr/sbin/sendmail"),
        "{bi}"
    );
    std::fs::write(
        &cron,
        // As make install writes it: guarded by a test of the binary.
        format!(
            "*/5 * * * * root [ -x {b} ] && [ ! -d /run/systemd/system ] && {b} -q5m\n",
            b = sg.bin().display()
        ),
    )
    .unwrap();
    let bi = sg.run(&env, None, &["-bi"], b"");
    bi.expect_code(0);
    std::fs::create_dir_all(etc.join("systemd/system")).unwrap();
    std::fs::write(
        etc.join("systemd/system/vsendmail-queue.service"),
        "[Service]\nType=oneshot\nExecStart=/usr/bin/true -q\n",
    )
    .unwrap();
    let bi = sg.run(&env, None, &["-bi"], b"");
    bi.expect_code(78);
    assert!(
        bi.stderr.contains(
            "/etc/systemd/system/vsendmail-queue.service:3: the queue runner runs /usr/bin/true"
        ),
        "{bi}"
    );
}

#[test]
fn a_key_only_root_can_read_fails_bi_bv_and_doctor() {
    let sg = SetGid::install();
    let env = Env::new();
    sg.attach(&env);
    let sink = Sink::start_default();
    env.relay(sink.addr());
    let user = "vsfirsthour";
    crate::support::users::user(user);
    let k = key(env.dir(), "dkim.pem", 0o600);
    env.virtusers(&format!(
        "{user} {user}@shop.test 127.0.0.2 dkim=sel:{}\n",
        k.display()
    ));
    // What the checks missed: the user's send cannot read the key.
    let o = sg.run(&env, Some(user), &["-i", "bob@example.org"], MSG);
    o.expect_code(78);
    let g = setgid::GROUP;
    let want = format!(
        "{} is not readable by group {g} (mode 0600 root:root); chgrp {g} {} && chmod 0640 {}",
        k.display(),
        k.display(),
        k.display()
    );
    let bi = sg.run(&env, None, &["-bi"], b"");
    bi.expect_code(78);
    assert!(
        bi.stderr
            .contains(&format!("virtusers:1: dkim=sel:{}: {want}", k.display())),
        "{bi}"
    );
    let bv = sg.run(&env, Some(user), &["-bv", "bob@example.org"], b"");
    bv.expect_code(78);
    assert!(
        bv.stdout
            .contains(&format!("FAIL dkim {user}@shop.test: {want}")),
        "{bv}"
    );
    let doc = sg.run(&env, None, &["--doctor", user], b"");
    assert_eq!(doc.code, 1, "{doc}");
    assert!(
        doc.stdout
            .contains(&format!("FAIL dkim {user}@shop.test 127.0.0.2: {want}")),
        "{doc}"
    );
    // Fixed as the line says: all three are content and the send goes out.
    nix::unistd::chown(&k, None, Some(sg.gid().into())).unwrap();
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o640)).unwrap();
    sg.run(&env, None, &["-bi"], b"").expect_code(0);
    let bv = sg.run(&env, Some(user), &["-bv", "bob@example.org"], b"");
    bv.expect_code(0);
    assert!(!bv.stdout.contains("FAIL"), "{bv}");
    let doc = sg.run(&env, None, &["--doctor", user], b"");
    assert!(!doc.stdout.contains("not readable"), "{doc}");
    sg.run(&env, Some(user), &["-i", "bob@example.org"], MSG)
        .expect_code(0);
    sink.wait_messages(1, WAIT);
}

#[test]
fn a_relay_name_that_does_not_resolve_is_said_by_bi_and_bv() {
    let dns = DnsServer::start(Zone::new().a("relay.good.test", "127.0.0.1".parse().unwrap()));
    let env = Env::new();
    env.conf(&format!("dns = [\"{}\"]", dns.addr()));
    env.virtusers("root root@shop.test -\n");
    env.conf("relay = \"smtp://relay.typo.test:2525\"");
    let want = "warning: relay host relay.typo.test does not resolve: relay.typo.test does not exist (NXDOMAIN)";
    let bi = env.run(&["-bi"], b"");
    bi.expect_code(0);
    assert!(bi.stderr.contains(want), "{bi}");
    let bv = env.run(&["-bv", "bob@example.org"], b"");
    assert!(bv.stderr.contains(want), "{bv}");
    env.conf("relay = \"smtp://relay.good.test:2525\"");
    let bi = env.run(&["-bi"], b"");
    bi.expect_code(0);
    assert!(!bi.stderr.contains("relay host"), "{bi}");
}

/// `--doctor` with a nameserver that fails: every DNS check says it could
/// not ask, none says a record is missing.
fn doctor_with(ns: &str) -> crate::support::vs::Out {
    let env = Env::new();
    env.conf(&format!("dns = [\"{ns}\"]"));
    env.virtusers("root root@shop.test 127.0.0.2 helo=mail.shop.test\n");
    let doc = env.run(&["--doctor"], b"");
    assert_eq!(doc.code, 1, "{doc}");
    for missing in [
        "no SPF record",
        "no DMARC record",
        "no PTR record",
        "does not exist",
    ] {
        assert!(
            !doc.stdout.contains(missing),
            "{ns}: said {missing:?}:\n{doc}"
        );
    }
    doc
}

#[test]
fn doctor_says_dns_failures_are_failures_not_missing_records() {
    for rcode in [2u8, 5] {
        let bad = BadDns::start(Some(rcode));
        let doc = doctor_with(&bad.addr().to_string());
        for check in ["ptr", "spf", "dmarc"] {
            assert!(
                doc.stdout
                    .lines()
                    .any(|l| l.starts_with(&format!("FAIL {check} "))
                        && l.contains("could not ask DNS (")),
                "rcode {rcode}, {check}:\n{doc}"
            );
        }
    }
    // Nothing listens on the nameserver's port.
    let doc = doctor_with("127.0.0.1:9");
    assert!(
        doc.stdout
            .contains("FAIL spf root@shop.test 127.0.0.2: could not ask DNS ("),
        "{doc}"
    );
}

#[test]
fn doctor_with_a_silent_nameserver_ends_within_its_budget_and_says_what_it_skipped() {
    let bad = BadDns::start(None);
    let doc = doctor_with(&bad.addr().to_string());
    assert!(
        doc.stdout
            .contains("not checked: --doctor's time budget of 20 s ran out"),
        "{doc}"
    );
    assert!(
        doc.stderr
            .contains("--doctor stopped at its time budget of 20 s"),
        "{doc}"
    );
}
