//! Abuse desk (issue 15), attribution: a real PHP `mail()` from a directory
//! that looks like a WordPress plugin, and a shell pipeline, as throwaway
//! users; the script and cwd reach `--log`, the audit trail, the first
//! syslog line and `-bp -v`; PHP's header leaves the message unless
//! `keep_php_header = true`; the identity header replaces forged copies and
//! the DKIM signature still verifies (dkimpy).

use crate::support::sink::Sink;
use crate::support::users;
use crate::support::vs::{Env, bin};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);
const U: &str = "vst_abat_a";

/// A plugin folder with `send.php` calling mail(), readable by everyone.
fn plugin(env: &Env) -> PathBuf {
    let d = env.dir().join("www/wp-content/plugins/contact-form-x");
    std::fs::create_dir_all(&d).unwrap();
    let mut p = d.clone();
    while p != env.dir() {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p.pop();
    }
    std::fs::write(
        d.join("send.php"),
        "<?php\nif (!mail('rcpt@dest.example', 'hello', \"from the form\\n\", 'From: a@shop.example')) { exit(3); }\n",
    )
    .unwrap();
    std::fs::set_permissions(d.join("send.php"), std::fs::Permissions::from_mode(0o644)).unwrap();
    // The site's own file: PHP names its owner's uid in the header.
    let (uid, gid) = users::user(U);
    std::os::unix::fs::chown(d.join("send.php"), Some(uid), Some(gid)).unwrap();
    d
}

/// Run php's mail() in `dir` as `U`, with vsendmail (and `extra` flags) as sendmail_path.
fn php_mail(env: &Env, dir: &std::path::Path, extra: &str) {
    let mut c = env.cmd_program(Some(U), std::path::Path::new("/usr/bin/php"));
    c.arg("-n")
        .arg("-d")
        .arg("mail.add_x_header=On")
        .arg("-d")
        .arg(format!(
            "sendmail_path={} -C {} -t -i {extra}",
            bin(),
            env.conf_path().display()
        ))
        .arg("send.php")
        .current_dir(dir);
    env.output(c, b"").expect_code(0);
}

fn setup(sink: &Sink) -> Env {
    users::user(U);
    let env = Env::new();
    env.relay(sink.addr());
    env.virtusers(&format!("{U} a@shop.example 127.0.0.2\n"));
    env
}

#[test]
fn abuse_php_mail_from_a_plugin_names_the_script_and_cwd_everywhere() {
    let sink = Sink::start_default();
    let env = setup(&sink);
    let dir = plugin(&env);
    php_mail(&env, &dir, "");
    let m = sink.wait_messages(1, WAIT).pop().unwrap();
    assert_eq!(
        m.header("X-PHP-Originating-Script"),
        None,
        "PHP's header is removed by default"
    );
    let uid = users::user(U).0;
    let log = env.run(&["--log", "--json"], b"");
    log.expect_code(0);
    let rec: serde_json::Value = serde_json::from_str(log.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(rec["status"], "sent", "{rec}");
    assert_eq!(rec["cwd"], dir.display().to_string(), "{rec}");
    let script = rec["script"].as_str().unwrap();
    assert!(
        script.starts_with(&format!("{uid}:")) && script.ends_with("send.php"),
        "{script}"
    );
    // The audit trail has them too.
    let audit: String = std::fs::read_dir(env.spool().join("audit"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with("log-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(
        audit.contains("contact-form-x") && audit.contains("send.php"),
        "{audit}"
    );
    // The first syslog line of the message.
    let first = env
        .log_lines()
        .into_iter()
        .find(|l| l.contains("nrcpt="))
        .unwrap();
    assert!(
        first.contains(&format!("cwd={}", dir.display())) && first.contains("script="),
        "{first}"
    );
    // PHP's popen() runs `sh -c`: the caller names the shell and PHP above it.
    assert!(
        first.contains("sh -c") && first.contains("< /usr/bin/php"),
        "{first}"
    );

    // Queued only: -bp -v shows the attribution.
    php_mail(&env, &dir, "-odq");
    let q = env.run(&["-bp", "-v"], b"");
    assert!(
        q.stdout.contains("contact-form-x") && q.stdout.contains("send.php"),
        "{q}"
    );
}

#[test]
fn abuse_keep_php_header_keeps_it_and_a_shell_pipeline_names_its_shell() {
    let sink = Sink::start_default();
    let env = setup(&sink);
    env.conf("keep_php_header = true");
    let dir = plugin(&env);
    php_mail(&env, &dir, "");
    let m = sink.wait_messages(1, WAIT).pop().unwrap();
    assert!(
        m.header("X-PHP-Originating-Script")
            .is_some_and(|h| h.ends_with("send.php")),
        "kept with keep_php_header = true"
    );
    let mut c = env.cmd_program(Some(U), std::path::Path::new("/bin/sh"));
    c.arg("-c").arg(format!(
        "printf 'Subject: cron\\n\\nhi\\n' | {} -C {} -i rcpt@dest.example",
        bin(),
        env.conf_path().display()
    ));
    env.output(c, b"").expect_code(0);
    sink.wait_messages(2, WAIT);
    let line = env
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("nrcpt="))
        .nth(1)
        .unwrap();
    assert!(line.contains("caller=") && line.contains("sh"), "{line}");
    assert!(
        line.contains("argv=") && line.contains("rcpt@dest.example"),
        "{line}"
    );
}

#[test]
fn abuse_identity_header_replaces_forged_copies_and_dkim_passes() {
    let s = crate::deliverability::signing(crate::deliverability::KeyKind::Rsa(2048));
    s.env.conf("identity_header = \"X-AuthUser\"");
    let m = s.send(
        &["-i", "rcpt@dest.example"],
        b"X-AuthUser: someone-else@victim.example\nx-authuser: again@victim.example\nFrom: alice@shop.test\nSubject: id\n\nbody\n",
    );
    assert_eq!(m.headers("X-AuthUser"), vec!["alice@shop.test".to_string()]);
    assert_eq!(s.verify(&m.data), "pass");
    // A bad name is a configuration error with its line (-bi: 78).
    s.env.conf("identity_header = \"X Auth\"");
    let out = s.env.run(&["-bi"], b"");
    out.expect_code(78);
    assert!(out.stderr.contains("identity_header"), "{out}");
}
