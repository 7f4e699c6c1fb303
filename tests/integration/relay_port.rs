//! The relay's default port (issue 14, point 9; DESIGN.md, `relay` URLs):
//! `smtp://host` is port 25, or 587 (submission) when the URL names a user
//! or the secrets file has a line for the host without a port; `smtps://host`
//! is 465. A real receiver listens on 587 of a loopback address of its own.

use crate::support::sink::{Sink, SinkConfig, server_tls};
use crate::support::vs::Env;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
const MSG: &[u8] = b"Subject: submission\n\nHello.\n";
/// The receiver's address: no other test listens on it.
const RELAY: &str = "127.0.14.9";

fn env_with_secrets(relay: &str, line: &str) -> Env {
    let env = Env::new();
    env.virtusers("root  root@shop.example  127.0.0.2\n");
    env.conf(&format!("relay = \"{relay}\""));
    let p = env.write("secrets", line);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
    env.conf(&format!("secrets = \"{}\"", p.display()));
    let ca = crate::support::pki::shared_ca_file(env.dir());
    env.conf(&format!("tls_ca_file = \"{}\"", ca.display()));
    env
}

/// The route part of `-bv`'s line for bob@example.test.
fn route(env: &Env) -> String {
    let o = env.run(&["-bv", "bob@example.test"], b"");
    o.expect_code(0);
    o.stdout.clone()
}

#[test]
fn a_secrets_line_without_a_port_makes_smtp_use_587() {
    // Credentials go only to a verified certificate: the shared test CA's.
    let (chain, key) = crate::support::pki::shared().leaf(&[RELAY], false);
    let sink = Sink::start(SinkConfig {
        bind: RELAY.parse().unwrap(),
        port: 587,
        tls: Some(server_tls(chain, key)),
        auth: vec![("relayuser".into(), "s3cret-587".into())],
        ..Default::default()
    });
    let env = env_with_secrets(
        &format!("smtp://{RELAY}"),
        &format!("{RELAY} relayuser s3cret-587\n"),
    );
    let r = route(&env);
    assert!(r.contains(&format!("{RELAY}:587")), "{r}");
    env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    let m = &sink.wait_messages(1, WAIT)[0];
    let c = &sink.connections()[m.conn];
    assert!(
        c.tls && c.auth.len() == 1 && c.auth[0].ok,
        "{}",
        sink.dump()
    );
}

#[test]
fn other_relays_keep_25_and_a_user_gets_587_smtps_465() {
    // A line with a port only applies to that port: no submission default.
    let env = env_with_secrets(
        &format!("smtp://{RELAY}"),
        &format!("{RELAY}:2525 relayuser pw\n"),
    );
    let r = route(&env);
    assert!(r.contains(&format!("{RELAY}:25]")), "{r}");
    env.conf(&format!("relay = \"smtp://relayuser@{RELAY}\""));
    let r = route(&env);
    assert!(r.contains(&format!("{RELAY}:587]")), "{r}");
    env.conf(&format!("relay = \"smtps://{RELAY}\""));
    let r = route(&env);
    assert!(r.contains(&format!("{RELAY}:465]")), "{r}");
}
