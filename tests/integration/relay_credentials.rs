//! Relay credentials go only to a relay whose certificate is verified or
//! pinned (issue 13, point 12), whatever `tls =` says; and client
//! certificates on relay URLs with AUTH EXTERNAL (issue 16, point 3). The
//! attack: a local user binds the relay's port while it is down and presents
//! a self-signed certificate; no password may reach it.

use crate::support::pki::{self, self_signed};
use crate::support::sink::{Sink, SinkConfig, server_tls, server_tls_client_auth};
use crate::support::vs::Env;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
const MSG: &[u8] = b"Subject: credentials\n\nHello.\n";
const PASSWORD: &str = "Rl-9z!only-for-the-real-relay";

fn secrets(env: &Env, text: &str) {
    let p = env.write("secrets", text);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
    env.conf(&format!("secrets = \"{}\"", p.display()));
}

fn relay_sink(ip: &str, chain: pki::Chain, implicit: bool) -> Sink {
    Sink::start(SinkConfig {
        bind: ip.parse().unwrap(),
        tls: Some(server_tls(chain.0, chain.1)),
        implicit_tls: implicit,
        auth: vec![("relayuser".into(), PASSWORD.into())],
        ..Default::default()
    })
}

fn sha256(der: &[u8]) -> String {
    // The fingerprint an admin reads with `openssl x509 -noout -fingerprint -sha256`.
    let out = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-hex"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(der)?;
            c.wait_with_output()
        })
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.rsplit(' ').next().unwrap().trim().to_string()
}

#[test]
fn a_self_signed_listener_on_the_relays_port_never_gets_the_password() {
    for (implicit, scheme) in [(false, "smtp"), (true, "smtps")] {
        let ip = if implicit { "127.0.19.2" } else { "127.0.19.1" };
        let impostor = relay_sink(ip, self_signed(&[ip]), implicit);
        let env = Env::new();
        env.virtusers("root  root@shop.example  127.0.0.2\n");
        env.conf(&format!("relay = \"{scheme}://{}\"", impostor.addr()));
        // tls = "opportunistic" (the default) does not let the password go.
        secrets(&env, &format!("{} relayuser {PASSWORD}\n", impostor.addr()));
        let o = env.run(&["-v", "-i", "bob@example.test"], MSG);
        o.expect_code(0);
        let conns = impostor.wait_connections(1, WAIT);
        for c in &conns {
            assert!(
                c.auth.is_empty() && !c.commands.iter().any(|x| x.starts_with("AUTH")),
                "{}",
                impostor.dump()
            );
            assert!(!String::from_utf8_lossy(&c.raw).contains(PASSWORD));
        }
        assert!(impostor.messages().is_empty());
        let q = env.run(&["-bp"], b"").stdout;
        assert!(q.contains("bob@example.test"), "stays queued: {q}");
        let log: Vec<String> = env.log_records().into_iter().map(|l| l.msg).collect();
        let log = log.join("\n");
        assert!(
            log.contains("are sent only to a relay whose certificate is verified"),
            "{log}"
        );
        assert!(
            !log.contains(PASSWORD) && !o.stderr.contains(PASSWORD),
            "{log}\n{o}"
        );
    }
}

#[test]
fn a_pinned_fingerprint_or_a_verified_certificate_gets_it() {
    // Pinned: the self-signed certificate whose SHA-256 is on the line.
    let chain = self_signed(&["127.0.19.3"]);
    let pin = sha256(chain.0[0].as_ref());
    let relay = relay_sink("127.0.19.3", chain, false);
    let env = Env::new();
    env.virtusers("root  root@shop.example  127.0.0.2\n");
    env.conf(&format!("relay = \"smtp://{}\"", relay.addr()));
    secrets(
        &env,
        &format!(
            "{} relayuser {PASSWORD} fingerprint=sha256:{pin}\n",
            relay.addr()
        ),
    );
    let bv = env.run(&["-bv", "bob@example.test"], b"");
    assert!(bv.stdout.contains("(auth: password from "), "{bv}");
    assert!(bv.stdout.contains("pinned certificate required"), "{bv}");
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    let m = &relay.wait_messages(1, WAIT)[0];
    let c = &relay.connections()[m.conn];
    assert!(c.auth.len() == 1 && c.auth[0].ok, "{}", relay.dump());

    // A wrong pin: not sent, queued.
    let other = relay_sink("127.0.19.4", self_signed(&["127.0.19.4"]), false);
    let env = Env::new();
    env.virtusers("root  root@shop.example  127.0.0.2\n");
    env.conf(&format!("relay = \"smtp://{}\"", other.addr()));
    secrets(
        &env,
        &format!(
            "{} relayuser {PASSWORD} fingerprint=sha256:{pin}\n",
            other.addr()
        ),
    );
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    other.wait_connections(1, WAIT);
    assert!(other.connections().iter().all(|c| c.auth.is_empty()));
    assert!(other.messages().is_empty());

    // Verified: issued by the CA of tls_ca_file for the relay's address.
    let relay = relay_sink(
        "127.0.19.5",
        pki::shared().leaf(&["127.0.19.5"], false),
        true,
    );
    let env = Env::new();
    env.virtusers("root  root@shop.example  127.0.0.2\n");
    env.conf(&format!(
        "relay = \"smtps://{}\"\ntls_ca_file = \"{}\"",
        relay.addr(),
        pki::shared_ca_file(env.dir()).display()
    ));
    secrets(&env, &format!("{} relayuser {PASSWORD}\n", relay.addr()));
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    let m = &relay.wait_messages(1, WAIT)[0];
    assert!(relay.connections()[m.conn].auth[0].ok);
}

/// A key file as the admin installs it: mode 0640, group vsendmail (vstest here).
fn group_key(env: &Env, name: &str, pem: &str) -> std::path::PathBuf {
    let key = env.write(name, pem);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    nix::unistd::chown(&key, None, Some(crate::support::users::vstest_gid().into())).unwrap();
    key
}

/// A relay that requires a client certificate from the shared CA and offers
/// AUTH EXTERNAL; the cert and key files for the relay URL.
fn cert_relay(ip: &str, env: &Env) -> (Sink, String) {
    let ca = pki::shared();
    let (chain, key) = ca.leaf(&[ip], false);
    let sink = Sink::start(SinkConfig {
        bind: ip.parse().unwrap(),
        tls: Some(server_tls_client_auth(chain, key, ca.ca.der().clone())),
        auth: vec![("unused".into(), "unused".into())],
        auth_mechs: vec!["EXTERNAL".into()],
        ..Default::default()
    });
    let (cert_pem, key_pem) = ca.client_pem("shop.example");
    let cert = env.write("client.pem", &cert_pem);
    let key = group_key(env, "client.key", &key_pem);
    (
        sink,
        format!("?cert={}&key={}", cert.display(), key.display()),
    )
}

#[test]
fn a_client_certificate_is_presented_and_auth_external_used() {
    let env = Env::new();
    let (sink, q) = cert_relay("127.0.19.6", &env);
    env.virtusers(&format!(
        "root  root@shop.example  127.0.0.2  relay=smtp://{}{q}\n",
        sink.addr()
    ));
    let o = env.run(&["-bi"], b"");
    assert!(!o.stderr.contains("client"), "{o}");
    let o = env.run(&["-v", "-i", "bob@example.test"], MSG);
    o.expect_code(0);
    let m = &sink.wait_messages(1, WAIT)[0];
    let c = &sink.connections()[m.conn];
    assert!(c.tls && c.client_cert, "{}", sink.dump());
    assert!(
        c.auth.len() == 1 && c.auth[0].mech == "EXTERNAL" && c.auth[0].ok,
        "{}",
        sink.dump()
    );
    assert!(o.stderr.contains(">>> AUTH EXTERNAL ="), "{o}");
}

#[test]
fn bad_client_certificates_are_configuration_errors() {
    let env = Env::new();
    let (sink, q) = cert_relay("127.0.19.7", &env);
    let conf = |query: &str| {
        env.conf(&format!("relay = \"smtp://{}{query}\"", sink.addr()));
        env.run(&["-bi"], b"")
    };
    // A matching pair: no problem.
    let o = conf(&q);
    assert!(!o.stderr.contains("client"), "{o}");
    // A cert without key: a URL error with the config line.
    let o = conf(&format!("?cert={}", env.dir().join("client.pem").display()));
    o.expect_code(78);
    assert!(o.stderr.contains("cert= without key="), "{o}");
    // A key of another certificate.
    let (_, other_key) = pki::shared().client_pem("other.example");
    let k2 = group_key(&env, "other.key", &other_key);
    let o = conf(&format!(
        "?cert={}&key={}",
        env.dir().join("client.pem").display(),
        k2.display()
    ));
    assert_eq!(o.code, 78, "{o}");
    assert!(o.stderr.contains("do not match"), "{o}");
    // A key every user can read.
    std::fs::set_permissions(&k2, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = conf(&format!(
        "?cert={}&key={}",
        env.dir().join("client.pem").display(),
        k2.display()
    ));
    assert_eq!(o.code, 78, "{o}");
    assert!(o.stderr.contains("lets every user read it"), "{o}");
    // A key the vsendmail group cannot read (a send would fail).
    std::fs::set_permissions(&k2, std::fs::Permissions::from_mode(0o600)).unwrap();
    nix::unistd::chown(&k2, None, Some(0.into())).unwrap();
    std::fs::copy(env.dir().join("client.key"), &k2).unwrap();
    let o = conf(&format!(
        "?cert={}&key={}",
        env.dir().join("client.pem").display(),
        k2.display()
    ));
    assert_eq!(o.code, 78, "{o}");
    assert!(o.stderr.contains("is not readable by group"), "{o}");
    // An unreadable (missing) key.
    let o = conf(&format!(
        "?cert={}&key=/nonexistent/k.pem",
        env.dir().join("client.pem").display()
    ));
    assert_eq!(o.code, 78, "{o}");
    assert!(o.stderr.contains("/nonexistent/k.pem"), "{o}");
}

#[test]
fn a_users_set_gid_send_never_gives_the_password_to_an_impostor() {
    // As the attack happens: a hosting user's send through the set-gid
    // binary, the secrets readable by its group only, and a self-signed
    // listener where the relay should be.
    const USER: &str = "vst_rcred";
    crate::support::users::user(USER);
    let impostor = relay_sink("127.0.19.8", self_signed(&["127.0.19.8"]), false);
    let env = Env::new();
    let sg = crate::support::setgid::SetGid::install();
    sg.attach(&env);
    env.virtusers(&format!("{USER}  {USER}@shop.example  127.0.0.2\n"));
    env.conf(&format!("relay = \"smtp://{}\"", impostor.addr()));
    let p = env.write(
        "secrets",
        &format!("{} relayuser {PASSWORD}\n", impostor.addr()),
    );
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
    nix::unistd::chown(&p, Some(0.into()), Some(sg.gid().into())).unwrap();
    env.conf(&format!("secrets = \"{}\"", p.display()));
    let o = sg.run(&env, Some(USER), &["-i", "bob@example.test"], MSG);
    o.expect_code(0);
    impostor.wait_connections(1, WAIT);
    for c in impostor.connections() {
        assert!(c.auth.is_empty(), "{}", impostor.dump());
        assert!(!String::from_utf8_lossy(&c.raw).contains(PASSWORD));
    }
    assert!(!o.stderr.contains(PASSWORD), "{o}");
    // ...and the user cannot read the file either.
    let cat = crate::support::setgid::as_user(USER, "cat", &[&p.display().to_string()]);
    assert_ne!(cat.code, 0, "{cat}");
}
