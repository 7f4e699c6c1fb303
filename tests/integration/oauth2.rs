//! OAuth2 relay AUTH (issue 16, point 4; DESIGN.md, "OAuth2"): a secrets
//! line `host user oauth2 token_url= client_id= client_secret=
//! refresh_token=`; XOAUTH2 or OAUTHBEARER against a relay that accepts only
//! the current token; the refresh-token grant against a loopback HTTPS
//! endpoint (support::oauth); the token cached in the spool with its expiry,
//! a rotated refresh token kept, 8 concurrent senders refreshing once, a
//! refused token refreshed once, a refused refresh a permanent failure that
//! says what to renew; no secret in any output or readable file.

use crate::support::oauth::{CLIENT_ID, CLIENT_SECRET, FIRST_REFRESH, TokenServer};
use crate::support::pki;
use crate::support::sink::{Sink, SinkConfig, server_tls};
use crate::support::vs::Env;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
const MSG: &[u8] = b"Subject: oauth2\n\nHello.\n";
const USER: &str = "shop@tenant.example";

struct World {
    env: Env,
    sink: Sink,
    ts: TokenServer,
}

fn world(ip: &str, expires_in: u64, mechs: &[&str]) -> World {
    let ts = TokenServer::start(expires_in);
    let (chain, key) = pki::shared().leaf(&[ip], false);
    let sink = Sink::start(SinkConfig {
        bind: ip.parse().unwrap(),
        tls: Some(server_tls(chain, key)),
        auth: vec![("unused".into(), "unused".into())],
        auth_mechs: mechs.iter().map(|m| m.to_string()).collect(),
        oauth_token: Some(ts.access.clone()),
        ..Default::default()
    });
    let env = Env::new();
    env.virtusers("root  root@shop.example  127.0.0.2\n");
    env.conf(&format!(
        "relay = \"smtp://{}\"\ntls_ca_file = \"{}\"",
        sink.addr(),
        pki::shared_ca_file(env.dir()).display()
    ));
    let p = env.write(
        "secrets",
        &format!(
            "# Microsoft 365\n{} {USER} oauth2 token_url={} client_id={CLIENT_ID} client_secret={CLIENT_SECRET} refresh_token={FIRST_REFRESH} scope=https://outlook.office.com/SMTP.Send\n",
            sink.addr(),
            ts.url()
        ),
    );
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
    env.conf(&format!("secrets = \"{}\"", p.display()));
    World { env, sink, ts }
}

/// Every file under `dir` that others may read.
fn readable_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            readable_files(&p, out);
        } else if m.is_file() && m.mode() & 0o004 != 0 {
            out.push(p);
        }
    }
}

fn assert_no_secret(w: &World, texts: &[(&str, String)]) {
    for s in w.ts.secrets() {
        for (what, t) in texts {
            assert!(!t.contains(&s), "a secret in {what}: {t}");
        }
    }
    let mut files = Vec::new();
    readable_files(w.env.dir(), &mut files);
    for f in files {
        let t = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).to_string();
        for s in w.ts.secrets() {
            assert!(
                !t.contains(&s),
                "a secret in the readable file {}",
                f.display()
            );
        }
    }
}

fn log(env: &Env) -> String {
    env.log_records()
        .into_iter()
        .map(|l| l.raw)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn first_use_then_reuse_within_expiry_and_no_secret_anywhere() {
    let w = world("127.0.20.1", 3600, &["XOAUTH2"]);
    let o = w.env.run(&["-v", "-i", "bob@example.test"], MSG);
    o.expect_code(0);
    let m = &w.sink.wait_messages(1, WAIT)[0];
    let a = &w.sink.connections()[m.conn].auth;
    assert!(
        a.len() == 1 && a[0].ok && a[0].mech == "XOAUTH2" && a[0].user == USER,
        "{}",
        w.sink.dump()
    );
    assert_eq!(w.ts.requests(), 1);
    assert!(o.stderr.contains(">>> AUTH XOAUTH2 ****"), "{o}");
    // Within expiry: the cached token, no second request.
    let o2 = w.env.run(&["-i", "bob@example.test"], MSG);
    o2.expect_code(0);
    w.sink.wait_messages(2, WAIT);
    assert_eq!(w.ts.requests(), 1, "the cached token was reused");
    // The cache is the group's only.
    let cache: Vec<_> = std::fs::read_dir(w.env.spool().join("oauth2"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(cache.len(), 1);
    let meta = cache[0].metadata().unwrap();
    assert_eq!(meta.mode() & 0o007, 0, "no access for others");
    let bp = w.env.run(&["-bp"], b"");
    let bv = w.env.run(&["-bv", "bob@example.test"], b"");
    let bi = w.env.run(&["-bi"], b"");
    assert!(
        bv.stdout.contains("(auth: OAuth2 from ")
            && bv.stdout.contains("verified certificate required"),
        "{bv}"
    );
    assert_no_secret(
        &w,
        &[
            ("-v stderr", o.stderr.clone()),
            ("stdout", o.stdout.clone()),
            ("stderr", o2.stderr.clone()),
            ("syslog", log(&w.env)),
            ("audit", w.env.audit_lines().join("\n")),
            ("-bp", format!("{bp}")),
            ("-bv", format!("{bv}")),
            ("-bi", format!("{bi}")),
        ],
    );
}

#[test]
fn oauthbearer_when_offered_and_expiry_with_a_rotated_refresh_token() {
    // expires_in below vsendmail's one-minute margin: every send refreshes.
    let w = world("127.0.20.2", 30, &["OAUTHBEARER", "XOAUTH2"]);
    w.ts.state.lock().unwrap().rotate = true;
    for n in 1..=3 {
        w.env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
        w.sink.wait_messages(n, WAIT);
    }
    let st = w.ts.state.lock().unwrap();
    assert_eq!((st.requests, st.refused.len()), (3, 0), "{st:?}");
    drop(st);
    let conns = w.sink.connections();
    assert!(
        conns
            .iter()
            .all(|c| c.auth.iter().all(|a| a.mech == "OAUTHBEARER" && a.ok))
    );
    assert_no_secret(&w, &[("syslog", log(&w.env))]);
}

#[test]
fn a_refused_token_is_refreshed_once_and_a_refused_refresh_says_what_to_renew() {
    let w = world("127.0.20.3", 3600, &["XOAUTH2"]);
    w.env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    w.sink.wait_messages(1, WAIT);
    // The relay revokes the token: refreshed once, then accepted.
    *w.ts.access.lock().unwrap() = "revoked".into();
    w.env.run(&["-i", "bob@example.test"], MSG).expect_code(0);
    w.sink.wait_messages(2, WAIT);
    assert_eq!(w.ts.requests(), 2);

    // The endpoint refuses the refresh: permanent, names what to renew.
    *w.ts.access.lock().unwrap() = "revoked again".into();
    w.ts.state.lock().unwrap().refuse = true;
    let o = w.env.run(&["-oep", "-i", "bob@example.test"], MSG);
    o.expect_code(69);
    assert!(
        o.stderr.contains("refused the refresh")
            && o.stderr.contains("renew the refresh token")
            && o.stderr.contains("secrets:2"),
        "{o}"
    );
    assert!(
        w.env
            .run(&["-bp"], b"")
            .stdout
            .contains("Mail queue is empty")
    );
    assert_no_secret(&w, &[("stderr", o.stderr.clone()), ("syslog", log(&w.env))]);
}

#[test]
fn eight_concurrent_senders_refresh_once() {
    let w = world("127.0.20.4", 3600, &["XOAUTH2"]);
    let mut kids = Vec::new();
    for _ in 0..8 {
        let mut c = w.env.cmd(None);
        c.arg("-C")
            .arg(w.env.conf_path())
            .args(["-i", "bob@example.test"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        kids.push(c.spawn().unwrap());
    }
    for k in &mut kids {
        k.stdin.take().unwrap().write_all(MSG).unwrap();
    }
    for k in kids {
        let o = k.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    w.sink.wait_messages(8, WAIT);
    assert_eq!(w.ts.requests(), 1, "one refresh for eight senders");
}

#[test]
fn an_oauth2_line_missing_a_field_is_a_configuration_error() {
    let w = world("127.0.20.5", 3600, &["XOAUTH2"]);
    let p = w.env.write(
        "secrets",
        &format!(
            "{} {USER} oauth2 token_url={} client_id={CLIENT_ID} client_secret={CLIENT_SECRET}\n",
            w.sink.addr(),
            w.ts.url()
        ),
    );
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
    let o = w.env.run(&["-bi"], b"");
    o.expect_code(78);
    assert!(
        o.stderr.contains(&format!(
            "{}:1: oauth2 line without refresh_token=",
            p.display()
        )),
        "{o}"
    );
    assert!(!o.stderr.contains(CLIENT_SECRET), "{o}");
}

#[test]
fn a_users_set_gid_send_uses_oauth2_and_leaves_no_secret_it_owns() {
    const LOGIN: &str = "vst_oauth";
    crate::support::users::user(LOGIN);
    let w = world("127.0.20.6", 3600, &["XOAUTH2"]);
    let sg = crate::support::setgid::SetGid::install();
    sg.attach(&w.env);
    w.env
        .virtusers(&format!("{LOGIN}  {LOGIN}@shop.example  127.0.0.2\n"));
    let secrets = w.env.dir().join("secrets");
    nix::unistd::chown(&secrets, Some(0.into()), Some(sg.gid().into())).unwrap();
    let ca = w.env.dir().join("shared-ca.pem");
    assert!(ca.exists());
    for n in 1..=2 {
        let o = sg.run(&w.env, Some(LOGIN), &["-i", "bob@example.test"], MSG);
        o.expect_code(0);
        w.sink.wait_messages(n, WAIT);
        assert_no_secret(&w, &[("stderr", o.stderr.clone())]);
    }
    // No file the user owns holds a secret (it could chmod and read it).
    let (uid, _) = crate::support::users::user(LOGIN);
    fn walk(d: &Path, uid: u32, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                walk(&p, uid, out);
            } else if m.uid() == uid {
                out.push(p);
            }
        }
    }
    let mut owned = Vec::new();
    walk(&sg.spool(), uid, &mut owned);
    for f in owned {
        let t = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).to_string();
        for s in w.ts.secrets() {
            assert!(
                !t.contains(&s),
                "a secret in {}, owned by the user",
                f.display()
            );
        }
    }
    assert_no_secret(&w, &[("syslog", log(&w.env))]);
    // Root's queue run creates the account's token cache (root's, group
    // only); from then on the user's sends, whose network part runs without
    // the group, keep and reuse the token through the descriptor the
    // set-gid parent opened: one more refresh, then none.
    sg.run(&w.env, None, &["-q"], b"").expect_code(0);
    let before = w.ts.requests();
    for n in 3..=4 {
        let o = sg.run(&w.env, Some(LOGIN), &["-i", "bob@example.test"], MSG);
        o.expect_code(0);
        w.sink.wait_messages(n, WAIT);
        assert_no_secret(&w, &[("stderr", o.stderr.clone())]);
    }
    assert_eq!(
        w.ts.requests(),
        before + 1,
        "the user's second send reused the cached token"
    );
    let cache = std::fs::read_dir(sg.spool().join("oauth2"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .expect("a token cache file");
    let m = cache.metadata().unwrap();
    assert_eq!((m.uid(), m.mode() & 0o777), (0, 0o660));
}
