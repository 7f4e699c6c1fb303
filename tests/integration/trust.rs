//! Issue 6, the trust boundary: a user can send only as itself, and hostile
//! input (argv, message bytes, server replies) can do no harm.
//!
//! How: every product run here uses the binary as it is installed, a
//! set-group-id copy (`support::setgid`, group `vstrust`, which no test user
//! belongs to) run by throwaway users through `setpriv`. A set-gid run refuses
//! `-C` for a non-root user, so it reads `/etc/vsendmail.conf`; rather than
//! writing the host's file under a global lock (which would serialise these
//! tests and race with anything else reading it), each run gets a private
//! mount namespace whose `/etc` is a read-only overlay carrying the test's
//! config (see `support::setgid`). So these tests run in parallel and leave
//! the host's `/etc` untouched. Runs that compare with a non-set-id run use
//! `Env::run` (root, `-C`).
//!
//! Covered: `-C` refused (77); the environment ignored when set-id; spool
//! directories never owned by a user; the sender policy (`-f` inside and
//! outside the identity's patterns, rewrite with X-Authentication-Warning or
//! reject naming the patterns, trusted users) and `from_policy`; a user cannot
//! see or touch another user's queued mail; a corpus of argv injection
//! payloads creates no file and sends nothing unintended; SMTP-smuggling
//! sequences go out as canonical CRLF with one end of data; megabyte-long and
//! thousand-line server replies end in a clean failure (message queued);
//! each limit with its message and exit code; and `dist/nftables.conf` in a
//! network namespace: a user's own SMTP connection is refused, vsendmail's
//! gets through.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::TempDir;
use crate::support::setgid::{self, SetGid};
use crate::support::sink::{Msg, Rule, Sink, SinkConfig, Step, find};
use crate::support::vs::{Env, Out};

const ALICE: &str = "vstr-alice";
const BOB: &str = "vstr-bob";
const TRUSTED: &str = "vstr-trusted";
const ALICE_ID: &str = "alice@alice-shop.test";
const BOB_ID: &str = "bob@bob-shop.test";
const T: Duration = Duration::from_secs(10);

/// A set-gid installation, its config and a sink as relay.
struct World {
    env: Env,
    sg: SetGid,
    sink: Sink,
}

impl World {
    fn new() -> World {
        World::with_sink(Sink::start_default())
    }

    fn with_sink(sink: Sink) -> World {
        let env = Env::new();
        let sg = SetGid::install();
        sg.attach(&env);
        env.relay(sink.addr());
        env.virtusers(&format!(
            "# trust tests\n\
             {ALICE} {ALICE_ID} - from=*@alice-shop.test,alice@alice-other.test\n\
             {BOB} {BOB_ID} - from=*@bob-shop.test\n"
        ));
        env.set_timeout(Duration::from_secs(90));
        World { env, sg, sink }
    }

    /// Run the set-gid binary as `user` (root: `None`).
    fn run(&self, user: Option<&str>, args: &[&str], stdin: &[u8]) -> Out {
        self.sg.run(&self.env, user, args, stdin)
    }

    fn alice(&self, args: &[&str], stdin: &[u8]) -> Out {
        self.run(Some(ALICE), args, stdin)
    }

    /// Files in the spool's queue/ and tmp/.
    fn spool_files(&self) -> Vec<String> {
        let mut v = Vec::new();
        for sub in ["queue", "tmp"] {
            if let Ok(rd) = fs::read_dir(self.sg.spool().join(sub)) {
                for e in rd.flatten() {
                    v.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
                }
            }
        }
        v.sort();
        v
    }

    /// Ids of queued messages (complete ones: `queue/ID.env`).
    fn queued(&self) -> Vec<String> {
        self.spool_files()
            .iter()
            .filter_map(|f| {
                f.strip_prefix("queue/")?
                    .strip_suffix(".env")
                    .map(str::to_string)
            })
            .collect()
    }
}

fn msg(to: &str, subject: &str) -> Vec<u8> {
    format!("To: {to}\nSubject: {subject}\n\nHello.\n").into_bytes()
}

fn only_message(w: &World) -> Msg {
    let m = w.sink.messages();
    assert_eq!(
        m.len(),
        1,
        "expected exactly one message at the sink:\n{}",
        w.sink.dump()
    );
    m.into_iter().next().unwrap()
}

// ---------------------------------------------------------------------------
// Privilege model

#[test]
fn trust_setgid_refuses_c_for_users_not_for_root() {
    let w = World::new();
    let meta = fs::metadata(w.sg.bin()).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o2755, "installed mode");
    assert_eq!(meta.gid(), w.sg.gid());

    let evil = w.env.write("evil.conf", "spool = \"/tmp\"\n");
    let evil = evil.to_str().unwrap();
    let glued = format!("-C{evil}");
    for args in [
        vec!["-C", evil, "-bp"],
        vec![glued.as_str(), "-bp"],
        vec!["-C", evil, "-t"],
    ] {
        let o = w.alice(&args, &msg("x@dest.test", "c"));
        o.expect_code(77);
        assert!(o.stderr.starts_with("vsendmail: -C "), "{o}");
        assert!(o.stderr.contains("refused"), "{o}");
    }
    assert!(w.sink.messages().is_empty());
    // Root may choose another configuration, set-gid or not.
    let conf = w.env.conf_path();
    w.run(None, &["-C", conf.to_str().unwrap(), "-bp"], b"")
        .expect_code(0);
    // And the same user without the set-gid bit (plain copy) may too:
    // -C is refused because of the privilege, not because of the user.
    Env::new().run_as(ALICE, &["-bp"], b"").expect_code(0);
}

#[test]
fn trust_setgid_never_creates_spool_directories_a_user_would_own() {
    let w = World::new();
    for sub in ["tmp", "queue"] {
        fs::remove_dir(w.sg.spool().join(sub)).unwrap();
    }
    let o = w.alice(&[ALICE_ID], &msg(ALICE_ID, "first"));
    o.expect_code(73);
    assert!(o.stderr.contains("must be created by root"), "{o}");
    assert!(!w.sg.spool().join("tmp").exists() && !w.sg.spool().join("queue").exists());
    // Root's queue runner creates them, owned by root (a read-only -bp
    // creates nothing).
    w.run(None, &["-q"], b"").expect_code(0);
    for sub in ["tmp", "queue"] {
        let m = fs::metadata(w.sg.spool().join(sub)).unwrap();
        assert_eq!(m.uid(), 0, "{sub} owner");
        assert_eq!(m.gid(), w.sg.gid(), "{sub} group");
        assert_eq!(m.mode() & 0o7777, 0o2770, "{sub} mode");
    }
    w.alice(&[ALICE_ID], &msg(ALICE_ID, "second"))
        .expect_code(0);
    assert_eq!(w.sink.messages().len(), 1);
}

/// TZ changes the Date: header of a plain run; a set-gid run ignores it, and
/// every other variable that could carry a path or a behaviour.
#[test]
fn trust_setgid_ignores_the_environment() {
    let w = World::new();
    let tz = "<+1337>-13:37";
    // Control: without set-id, TZ reaches the product (so this test can fail).
    let mut c = w.env.cmd(None);
    c.arg("-C")
        .arg(w.env.conf_path())
        .arg(ALICE_ID)
        .env("TZ", tz);
    w.env.output(c, &msg(ALICE_ID, "plain")).expect_code(0);
    let date = only_message(&w).header("Date").unwrap();
    assert!(
        date.ends_with("+1337"),
        "TZ not honoured by the plain run: {date}"
    );

    let hostile = TempDir::new("vs-hostile-env");
    let h = hostile.path().display().to_string();
    fs::write(hostile.path().join("hosts"), "relayalias localhost\n").unwrap();
    let mut c = w.sg.cmd(&w.env, Some(ALICE), None, &[ALICE_ID]);
    c.env("TZ", tz)
        .env("USER", BOB)
        .env("LOGNAME", BOB)
        .env("HOME", &h)
        .env("TMPDIR", &h)
        .env("SSL_CERT_FILE", format!("{h}/ca.pem"))
        .env("SSL_CERT_DIR", &h)
        .env("LOCPATH", &h)
        .env("HOSTALIASES", format!("{h}/hosts"))
        .env("RES_OPTIONS", "ndots:15 attempts:1 timeout:1")
        .env("LOCALDOMAIN", "evil.test")
        .env("RUST_BACKTRACE", "full")
        .env("RUST_LOG", "trace")
        .env("VSENDMAIL_CONF", format!("{h}/x.conf"));
    let o = w.env.output(c, &msg(ALICE_ID, "setgid"));
    o.expect_code(0);
    let m = w.sink.wait_messages(2, T);
    let m = &m[1];
    let date = m.header("Date").unwrap();
    assert!(!date.ends_with("+1337"), "set-gid run honoured TZ: {date}");
    assert_eq!(
        m.mail_from, ALICE_ID,
        "identity from the real uid, not $USER"
    );
    let received = m.header("Received").unwrap();
    assert!(received.contains(&format!("user {ALICE}")), "{received}");
    assert_eq!(
        fs::read_dir(hostile.path()).unwrap().count(),
        1,
        "nothing written in $TMPDIR/$HOME"
    );
}

#[test]
fn trust_users_cannot_see_or_touch_each_others_queue() {
    let w = World::new();
    w.run(
        Some(BOB),
        &["-odq", "friend@dest.test"],
        &msg("friend@dest.test", "bob's secret"),
    )
    .expect_code(0);
    let ids = w.queued();
    assert_eq!(ids.len(), 1, "{:?}", w.spool_files());
    let id = &ids[0];

    // Bob sees his message; Alice sees an empty queue; root sees it.
    let o = w.run(Some(BOB), &["-bp"], b"");
    o.expect_code(0);
    assert!(
        o.stdout.contains(id.as_str()) && o.stdout.contains(BOB_ID),
        "{o}"
    );
    let o = w.alice(&["-bp"], b"");
    o.expect_code(0);
    assert_eq!(o.stdout, "Mail queue is empty\n", "{o}");
    let o = w.run(None, &["-bp"], b"");
    assert!(o.stdout.contains(id.as_str()), "{o}");

    // On disk: files 0660 owned by Bob, group vstrust; directories root-owned
    // 2770; neither Alice nor Bob (without the set-gid binary) can list,
    // read or remove anything.
    let q = w.sg.spool().join("queue");
    for ext in ["msg", "env"] {
        let m = fs::metadata(q.join(format!("{id}.{ext}"))).unwrap();
        assert_eq!(m.mode() & 0o777, 0o660, "{ext} mode");
        assert_eq!(m.gid(), w.sg.gid(), "{ext} group");
    }
    for d in [w.sg.spool(), q.clone(), w.sg.spool().join("tmp")] {
        let m = fs::metadata(&d).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o7777), (0, 0o2770), "{}", d.display());
    }
    let msgf = q.join(format!("{id}.msg")).display().to_string();
    let envf = q.join(format!("{id}.env")).display().to_string();
    for user in [ALICE, BOB] {
        let o = setgid::as_user(user, "cat", &[&msgf]);
        assert_ne!(o.code, 0, "{user} read a queue file directly:\n{o}");
        let o = setgid::as_user(user, "ls", &[q.to_str().unwrap()]);
        assert_ne!(o.code, 0, "{user} listed the queue:\n{o}");
        let o = setgid::as_user(user, "rm", &["-f", &envf, &msgf]);
        assert_ne!(o.code, 0, "{user} removed a queue file:\n{o}");
        let o = setgid::as_user(
            user,
            "ln",
            &[
                "-s",
                "/etc/passwd",
                &w.sg.spool().join("tmp/x").display().to_string(),
            ],
        );
        assert_ne!(o.code, 0, "{user} created a link in the spool:\n{o}");
    }
    assert!(Path::new(&envf).exists() && Path::new(&msgf).exists());
    // Alice's queue run does not show or change Bob's message either.
    let o = w.alice(&["-bp"], b"");
    assert!(!o.stdout.contains(id.as_str()));
}

// ---------------------------------------------------------------------------
// Sender policy

#[test]
fn trust_sender_outside_patterns_is_rewritten_with_a_warning_by_default() {
    let w = World::new();
    // Alice tries to send as Bob.
    let o = w.alice(
        &["-f", BOB_ID, "x@dest.test"],
        &msg("x@dest.test", "as bob"),
    );
    o.expect_code(0);
    let m = only_message(&w);
    assert_eq!(m.mail_from, ALICE_ID);
    let warn = m
        .header("X-Authentication-Warning")
        .expect("X-Authentication-Warning");
    assert!(warn.contains("host.test"), "{warn}");
    assert!(
        warn.contains(ALICE) && warn.contains(BOB_ID) && warn.contains("-f"),
        "{warn}"
    );
    let rec = w.env.log_lines().join("\n");
    assert!(rec.contains("sender rewritten"), "{rec}");
}

#[test]
fn trust_sender_policy_reject_refuses_with_77_naming_the_patterns() {
    let w = World::new();
    w.env.conf("sender_policy = \"reject\"");
    for args in [
        vec!["-f", BOB_ID, "x@dest.test"],
        vec!["-rceo@bank.test", "x@dest.test"],
    ] {
        let o = w.alice(&args, &msg("x@dest.test", "as bob"));
        o.expect_code(77);
        assert!(o.stderr.starts_with("vsendmail: "), "{o}");
        for must in [
            ALICE_ID,
            "*@alice-shop.test",
            "alice@alice-other.test",
            "virtusers:2",
        ] {
            assert!(
                o.stderr.contains(must),
                "refusal does not name {must}:\n{o}"
            );
        }
    }
    assert!(w.sink.messages().is_empty());
    assert!(w.queued().is_empty(), "{:?}", w.spool_files());
    // Inside the patterns: kept, no warning, under reject too.
    for (req, want) in [
        ("sales@alice-shop.test", "sales@alice-shop.test"),
        ("alice@alice-other.test", "alice@alice-other.test"),
        ("<>", ""),
    ] {
        w.alice(&["-f", req, "x@dest.test"], &msg("x@dest.test", "inside"))
            .expect_code(0);
        let m = w.sink.messages().pop().unwrap();
        assert_eq!(m.mail_from, want);
        assert!(m.header("X-Authentication-Warning").is_none());
    }
}

#[test]
fn trust_sender_inside_patterns_and_trusted_users() {
    let w = World::new();
    w.env
        .conf(&format!("trusted_users = [\"root\", \"{TRUSTED}\"]"));
    w.alice(
        &["-fsupport@alice-shop.test", "x@dest.test"],
        &msg("x@dest.test", "1"),
    )
    .expect_code(0);
    w.run(
        Some(TRUSTED),
        &["-f", BOB_ID, "x@dest.test"],
        &msg("x@dest.test", "2"),
    )
    .expect_code(0);
    w.run(
        None,
        &["-f", "anyone@anywhere.test", "x@dest.test"],
        &msg("x@dest.test", "3"),
    )
    .expect_code(0);
    let m = w.sink.wait_messages(3, T);
    let froms: Vec<&str> = m.iter().map(|m| m.mail_from.as_str()).collect();
    assert_eq!(
        froms,
        ["support@alice-shop.test", BOB_ID, "anyone@anywhere.test"]
    );
    assert!(
        m.iter()
            .all(|m| m.header("X-Authentication-Warning").is_none())
    );
}

#[test]
fn trust_from_header_policy_keep_rewrite_reject() {
    let w = World::new();
    let input = b"From: \"The CEO\" <ceo@bank.test>\nTo: x@dest.test\nSubject: f\n\nHi.\n";
    // keep (default)
    w.alice(&["-t"], input).expect_code(0);
    assert_eq!(
        w.sink.messages()[0].header("From").unwrap(),
        "\"The CEO\" <ceo@bank.test>"
    );
    // rewrite keeps the display name
    w.env.conf("from_policy = \"rewrite\"");
    w.alice(&["-t"], input).expect_code(0);
    assert_eq!(
        w.sink.messages()[1].header("From").unwrap(),
        format!("\"The CEO\" <{ALICE_ID}>")
    );
    // a From: inside the patterns is kept under rewrite
    w.alice(
        &["-t"],
        b"From: Shop <info@alice-shop.test>\nTo: x@dest.test\n\nHi.\n",
    )
    .expect_code(0);
    assert_eq!(
        w.sink.messages()[2].header("From").unwrap(),
        "Shop <info@alice-shop.test>"
    );
    // reject
    w.env.conf("from_policy = \"reject\"");
    let o = w.alice(&["-t"], input);
    o.expect_code(77);
    assert!(
        o.stderr.contains("ceo@bank.test") && o.stderr.contains("*@alice-shop.test"),
        "{o}"
    );
    assert_eq!(w.sink.messages().len(), 3);
}

// ---------------------------------------------------------------------------
// Argv injection

/// PHP's escapeshellcmd(), which mail() applies to its additional_parameters
/// before running `sh -c "sendmail_path params"`.
fn escapeshellcmd(s: &str) -> String {
    let b: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut open: Option<usize> = None;
    for (x, &c) in b.iter().enumerate() {
        match c {
            '"' | '\'' => {
                if let Some(p) = open {
                    if b[p] == c {
                        open = None;
                    } else {
                        out.push('\\');
                    }
                } else if let Some(p) = b[x + 1..].iter().position(|&d| d == c) {
                    open = Some(x + 1 + p);
                } else {
                    out.push('\\');
                }
                out.push(c);
            }
            '#' | '&' | ';' | '`' | '|' | '*' | '?' | '~' | '<' | '>' | '^' | '(' | ')' | '['
            | ']' | '{' | '}' | '$' | '\\' | '\n' | '\u{ff}' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// PHP's escapeshellarg().
fn escapeshellarg(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// How a payload reaches the binary.
enum Via {
    /// argv exactly as given.
    Argv(Vec<String>),
    /// PHP mail(): `sh -c "sendmail -t -i " + escapeshellcmd(params)`.
    PhpMail(String),
}

struct Case {
    name: &'static str,
    via: Via,
    /// Expected exit code; 0 means: one message, to the intended recipient
    /// only, from Alice's identity.
    code: i32,
}

#[test]
fn trust_injection_corpus_creates_no_file_and_sends_nothing_unintended() {
    let w = World::new();
    // A directory the payloads aim at, writable by the user: were anything
    // written as the user (or the group), it would land here.
    let target = TempDir::new("vs-inject");
    fs::set_permissions(target.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    let t = target.path().display().to_string();
    let to = "rcpt@dest.test";
    let av = |v: &[&str]| Via::Argv(v.iter().map(|s| s.replace("{T}", &t)).collect());
    let php = |params: &str| Via::PhpMail(params.replace("{T}", &t));
    let cases = vec![
        // PHPMailer < 5.2.18, CVE-2016-10033: Sender goes into -f%s.
        Case {
            name: "PHPMailer CVE-2016-10033",
            via: php("-f\"attacker\\\" -oQ{T}/ -X{T}/phpcode.php some\"@email.com"),
            code: 65,
        },
        // PHPMailer 5.2.18, CVE-2016-10045: escapeshellarg, then mail()'s escapeshellcmd.
        Case {
            name: "PHPMailer CVE-2016-10045",
            via: php(&format!(
                "-f{}",
                escapeshellarg("\"attacker\\' -oQ{T}/ -X{T}/phpcode.php some\\\"@email.com")
            )),
            code: 65,
        },
        // SwiftMailer < 5.4.5, CVE-2016-10074 (same sink: -f%s into mail()).
        Case {
            name: "SwiftMailer CVE-2016-10074",
            via: php("-f\"attacker\\\" -oQ{T} -X{T}/shell.php \"@email.com"),
            code: 65,
        },
        // Roundcube < 1.2.3, CVE-2016-9920: _from with spaces into -f.
        Case {
            name: "Roundcube CVE-2016-9920",
            via: php("-fexample@example.com -OQueueDirectory={T} -X{T}/rce.php"),
            code: 0,
        },
        // The PHPMailer payload as one argument (a caller that does not use a shell).
        Case {
            name: "quoted payload as one -f argument",
            via: av(&[
                "-t",
                "-i",
                "-f",
                "\"attacker\\\" -oQ{T}/ -X{T}/phpcode.php some\"@email.com",
            ]),
            code: 65,
        },
        // mail() additional_parameters written by an attacker.
        Case {
            name: "-X and -oQ as separate flags",
            via: av(&[
                "-t",
                "-i",
                "-X",
                "{T}/log.php",
                "-oQ{T}/q",
                "-O",
                "QueueDirectory={T}/q2",
            ]),
            code: 0,
        },
        Case {
            name: "file-naming -o/-O spellings",
            via: av(&[
                "-t",
                "-oA{T}/aliases",
                "-oS{T}/status",
                "-oH{T}/help",
                "-OAliasFile={T}/aliases2",
                "-ODeadLetterDrop={T}/dead",
                "-OErrorHeader={T}/errhdr",
                "-OStatusFile={T}/st",
            ]),
            code: 0,
        },
        Case {
            name: "-C as an additional parameter",
            via: php("-fbob@bob-shop.test -C{T}/evil.conf -X{T}/x.php"),
            code: 77,
        },
        Case {
            name: "-D debug file",
            via: av(&["-t", "-D", "{T}/debug.log"]),
            code: 64,
        },
        // Exim: -be expansion and ${run} in addresses.
        Case {
            name: "Exim -be",
            via: av(&["-be", "${run{/bin/touch {T}/pwned}}"]),
            code: 64,
        },
        Case {
            name: "Exim -be through mail()",
            via: php("-be ${run{/bin/touch {T}/pwned}}"),
            code: 64,
        },
        Case {
            name: "Exim ${run} sender with spaces",
            via: av(&["-t", "-f", "${run{/bin/sh -c \"touch {T}/pwned\"}}@x.test"]),
            code: 65,
        },
        // CVE-2019-10149 shape: no space (Exim expands ${substr{10}{1}{$tod_log}} to one).
        // The local part is RFC-valid atext: accepted, and rewritten by policy.
        Case {
            name: "Exim ${run} sender without spaces",
            via: av(&[
                "-t",
                "-f${run{/usr/bin/touch${substr{10}{1}{$tod_log}}{T}/pwned}}@x.test",
            ]),
            code: 0,
        },
        Case {
            name: "${run} in a recipient domain",
            via: av(&["-i", "x@${run{x}}.test", to]),
            code: 65,
        },
        // Option-shaped recipients.
        Case {
            name: "recipient after --",
            via: av(&["-i", "--", "-oQ{T}/", to]),
            code: 65,
        },
        Case {
            name: "recipient '-'",
            via: av(&["-i", to, "-"]),
            code: 65,
        },
        Case {
            name: "CRLF in a recipient",
            via: av(&["-i", "rcpt@dest.test\r\nRCPT TO:<victim@evil.test>"]),
            code: 65,
        },
        Case {
            name: "CRLF in the sender",
            via: av(&[
                "-i",
                "-f",
                "a@alice-shop.test>\r\nRCPT TO:<victim@evil.test",
                to,
            ]),
            code: 65,
        },
        Case {
            name: "space in a recipient",
            via: av(&["-i", "rcpt@dest.test victim@evil.test"]),
            code: 65,
        },
        Case {
            name: "unbalanced quote",
            via: av(&["-i", "\"victim@evil.test"]),
            code: 65,
        },
        Case {
            name: "-q swallowing nothing",
            via: av(&["-qR{T}", "-i"]),
            code: 0, // a queue run: sends nothing (checked below like the rest)
        },
        // -f with a value that looks like a flag.
        Case {
            name: "-f -oQ",
            via: av(&["-t", "-f", "-oQ{T}/"]),
            code: 65,
        },
        Case {
            name: "-F with CR",
            via: av(&["-t", "-F", "x\rBcc: victim@evil.test"]),
            code: 64,
        },
    ];
    let input = format!("To: {to}\nSubject: injection test\n\nbody\n");
    let before_env: BTreeSet<String> = dir_entries(w.env.dir());
    let mut failures = Vec::new();
    for case in &cases {
        let sent_before = w.sink.messages().len();
        let o = match &case.via {
            Via::Argv(v) => {
                let args: Vec<&str> = v.iter().map(String::as_str).collect();
                w.alice(&args, input.as_bytes())
            }
            Via::PhpMail(params) => {
                let script = format!(
                    "exec {} -t -i {}",
                    w.sg.bin().display(),
                    escapeshellcmd(params)
                );
                let mut c = w.sg.cmd_program(
                    &w.env,
                    Some(ALICE),
                    None,
                    Path::new("/bin/sh"),
                    &["-c", &script],
                );
                c.env("X", "");
                w.env.output(c, input.as_bytes())
            }
        };
        let sent: Vec<Msg> = w.sink.messages().split_off(sent_before);
        let files: Vec<String> = dir_entries(target.path()).into_iter().collect();
        let queued = w.spool_files();
        let mut bad = Vec::new();
        if o.code != case.code {
            bad.push(format!("exit {} (wanted {})", o.code, case.code));
        }
        if !files.is_empty() {
            bad.push(format!("files appeared in {t}: {files:?}"));
        }
        if !queued.is_empty() {
            bad.push(format!("spool not empty: {queued:?}"));
        }
        let is_queue_run = case.name.starts_with("-q");
        let want_msgs = usize::from(case.code == 0 && !is_queue_run);
        if sent.len() != want_msgs {
            bad.push(format!("{} messages sent (wanted {want_msgs})", sent.len()));
        }
        for m in &sent {
            if m.rcpts != [to] || m.mail_from != ALICE_ID {
                bad.push(format!(
                    "unintended: MAIL FROM <{}> to {:?}",
                    m.mail_from, m.rcpts
                ));
            }
        }
        if o.code != 0 && !o.stderr.starts_with("vsendmail: ") {
            bad.push("error message does not start with `vsendmail: `".into());
        }
        if !bad.is_empty() {
            failures.push(format!("{}: {}\n{o}", case.name, bad.join("; ")));
        }
    }
    let after_env: BTreeSet<String> = dir_entries(w.env.dir());
    assert_eq!(
        before_env, after_env,
        "files appeared in the working directory"
    );
    assert!(
        failures.is_empty(),
        "{} of {} payloads misbehaved:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // The refused flags said so.
    let o = w.alice(&["-X", &format!("{t}/x"), "-oQ/x", to], input.as_bytes());
    o.expect_code(0);
    assert!(
        o.stderr.contains("warning: -X") && o.stderr.contains("warning: -oQ"),
        "{o}"
    );
}

fn dir_entries(d: &Path) -> BTreeSet<String> {
    fs::read_dir(d)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn trust_php_escaping_helpers_match_php() {
    // Known outputs of PHP's functions (php -r 'echo escapeshellcmd(...)').
    assert_eq!(escapeshellcmd("a'b'c"), "a'b'c");
    assert_eq!(escapeshellcmd("a'bc"), "a\\'bc");
    assert_eq!(escapeshellcmd("$x; rm"), "\\$x\\; rm");
    assert_eq!(
        escapeshellcmd("-f\"attacker\\\" -oQ/tmp/ x some\"@e.com"),
        "-f\"attacker\\\\\" -oQ/tmp/ x some\\\"@e.com"
    );
    assert_eq!(escapeshellarg("it's"), "'it'\\''s'");
}

// ---------------------------------------------------------------------------
// Hostile bytes in

/// No bare CR or LF: every CR is followed by LF and every LF preceded by CR.
fn canonical_crlf(b: &[u8]) -> bool {
    b.iter().enumerate().all(|(i, &c)| match c {
        b'\r' => b.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && b[i - 1] == b'\r',
        _ => true,
    })
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    let mut n = 0;
    let mut at = 0;
    while let Some(p) = find(&hay[at..], needle) {
        n += 1;
        at += p + 1;
    }
    n
}

#[test]
fn trust_smuggling_sequences_go_out_as_canonical_crlf() {
    let w = World::new();
    let smuggled =
        "MAIL FROM:<evil@evil.test>\r\nRCPT TO:<victim@evil.test>\r\nDATA\r\nsmuggled\r\n";
    let seqs: [(&str, &[u8]); 9] = [
        ("\\n.\\r\\n", b"\n.\r\n"),
        ("\\r.\\n", b"\r.\n"),
        ("\\r\\n.\\r", b"\r\n.\r"),
        ("\\r.\\r", b"\r.\r"),
        ("\\n.\\n", b"\n.\n"),
        ("\\r\\n.\\n", b"\r\n.\n"),
        ("\\n.\\r", b"\n.\r"),
        ("\\r\\n.\\r\\n", b"\r\n.\r\n"), // the plain one, for reference
        ("\\n..\\r", b"\n..\r"),
    ];
    let mut n = 0;
    for ignore_dots in [true, false] {
        for (name, seq) in seqs {
            let mut input =
                b"To: rcpt@dest.test\r\nSubject: smuggle\nX-Mixed: a\r\r\nhello".to_vec();
            input.extend_from_slice(seq);
            input.extend_from_slice(smuggled.as_bytes());
            input.extend_from_slice(b"after\r\n.\r\nQUIT\r\n");
            let args: &[&str] = if ignore_dots {
                &["-i", "rcpt@dest.test"]
            } else {
                &["rcpt@dest.test"]
            };
            w.alice(args, &input).expect_code(0);
            n += 1;
            let msgs = w.sink.wait_messages(n, T);
            let m = &msgs[n - 1];
            let what = format!("{name} (-i: {ignore_dots})");
            assert_eq!(m.rcpts, ["rcpt@dest.test"], "{what}");
            assert_eq!(m.mail_from, ALICE_ID, "{what}");
            assert!(
                canonical_crlf(&m.raw_data),
                "{what}: bare CR or LF on the wire: {:?}",
                String::from_utf8_lossy(&m.raw_data)
            );
            assert!(
                !m.raw_data.starts_with(b".\r\n") && find(&m.raw_data, b"\r\n.\r\n").is_none(),
                "{what}: a lone dot inside the data"
            );
            let conn = &w.sink.connections()[m.conn];
            assert_eq!(
                count(&conn.raw, b"\r\n.\r\n"),
                1,
                "{what}: end-of-data sequences on the connection"
            );
            assert_eq!(
                conn.commands
                    .iter()
                    .filter(|c| c.eq_ignore_ascii_case("DATA"))
                    .count(),
                1,
                "{what}"
            );
            assert!(
                !conn.commands.iter().any(|c| c.contains("evil")),
                "{what}: smuggled command {:?}",
                conn.commands
            );
            let body = String::from_utf8_lossy(m.body()).into_owned();
            if ignore_dots {
                // Everything is body text, line by line.
                assert!(
                    body.contains("MAIL FROM:<evil@evil.test>\r\n") && body.contains("after\r\n"),
                    "{what}: {body:?}"
                );
            } else if seq.starts_with(b"\n..") {
                assert!(
                    body.contains("\r\n.\r\n") || body.contains("hello\r\n."),
                    "{what}: {body:?}"
                );
            } else {
                // The lone dot ended the message, as in sendmail 8; the rest is never sent.
                assert_eq!(body, "hello\r\n", "{what}");
            }
            assert_eq!(m.header("X-Mixed").as_deref(), Some("a"), "{what}");
        }
    }
    assert!(
        w.sink
            .messages()
            .iter()
            .all(|m| m.rcpts == ["rcpt@dest.test"])
    );
    assert!(w.queued().is_empty());
}

#[test]
fn trust_bare_cr_and_lf_everywhere_become_crlf() {
    let w = World::new();
    let input = b"To: rcpt@dest.test\rSubject: cr only\r\rline one\rline two\nline three\r\nfour\n\r\n\rlast";
    w.alice(&["-i", "-t"], input).expect_code(0);
    let m = only_message(&w);
    assert!(
        canonical_crlf(&m.raw_data),
        "{:?}",
        String::from_utf8_lossy(&m.raw_data)
    );
    assert_eq!(m.header("Subject").as_deref(), Some("cr only"));
    assert_eq!(
        m.body(),
        b"line one\r\nline two\r\nline three\r\nfour\r\n\r\n\r\nlast\r\n"
    );
}

// ---------------------------------------------------------------------------
// Hostile replies

#[test]
fn trust_hostile_replies_end_in_a_clean_failure() {
    let mega = format!("250 {}", "x".repeat(1 << 20));
    let thousand: String = (0..1000).map(|i| format!("250 line {i}\r\n")).collect();
    let thousand_550: String = (0..1000).map(|i| format!("550 no {i}\r\n")).collect();
    let cases: Vec<(&str, Rule, &str)> = vec![
        (
            "megabyte greeting",
            Rule::reply(Step::Connect, &mega.replacen("250", "220", 1)),
            "longer than",
        ),
        (
            "megabyte EHLO reply",
            Rule::reply(Step::Ehlo, &mega),
            "longer than",
        ),
        (
            "thousand-line EHLO reply",
            Rule::reply(Step::Ehlo, &thousand),
            "more than",
        ),
        (
            "thousand-line RCPT reply",
            Rule::reply(Step::Rcpt(String::new()), &thousand_550),
            "more than",
        ),
        (
            "megabyte reply to the final dot",
            Rule::reply(Step::Dot, &mega),
            "longer than",
        ),
    ];
    for (name, rule, why) in cases {
        let w = World::with_sink(Sink::start(SinkConfig {
            rules: vec![rule],
            ..Default::default()
        }));
        let started = Instant::now();
        let o = w.alice(&["rcpt@dest.test"], &msg("rcpt@dest.test", name));
        let took = started.elapsed();
        // Queued for a later try: exit 0, the message safe in the spool.
        assert_eq!(o.code, 0, "{name}:\n{o}");
        assert_eq!(
            w.queued().len(),
            1,
            "{name}: not queued: {:?}\n{o}",
            w.spool_files()
        );
        assert!(took < Duration::from_secs(60), "{name}: took {took:?}");
        let logs = w.env.log_lines().join("\n");
        assert!(
            logs.contains("status=deferred") && logs.contains(why),
            "{name}: log does not say why:\n{logs}"
        );
        // -bp shows the reason, printable and bounded.
        let o = w.alice(&["-bp"], b"");
        assert!(
            o.stdout.lines().all(|l| l.len() < 8192),
            "{name}: -bp line too long"
        );
    }
}

// ---------------------------------------------------------------------------
// Limits

#[test]
fn trust_limit_message_size() {
    let w = World::new();
    w.env.conf("max_message_size = 20000");
    let mut big = msg("rcpt@dest.test", "big");
    big.extend(
        std::iter::repeat_n(
            b"0123456789012345678901234567890123456789\n".as_slice(),
            600,
        )
        .flatten(),
    );
    let o = w.alice(&["rcpt@dest.test"], &big);
    o.expect_code(65);
    assert!(
        o.stderr
            .contains("larger than the limit of 20000 bytes (max_message_size)"),
        "{o}"
    );
    assert!(
        w.sink.messages().is_empty() && w.spool_files().is_empty(),
        "{:?}",
        w.spool_files()
    );
    w.alice(&["rcpt@dest.test"], &big[..10000]).expect_code(0);
}

#[test]
fn trust_limit_message_size_default_is_50_mb() {
    let w = World::new();
    let line = [b"y".repeat(998), b"\n".to_vec()].concat();
    let mut big = msg("rcpt@dest.test", "huge");
    while big.len() <= 50 * 1024 * 1024 + 4096 {
        big.extend_from_slice(&line);
    }
    let o = w.alice(&["rcpt@dest.test"], &big);
    o.expect_code(65);
    assert!(
        o.stderr
            .contains(&format!("limit of {} bytes", 50 * 1024 * 1024)),
        "{o}"
    );
    assert!(w.spool_files().is_empty());
}

#[test]
fn trust_limit_header_block() {
    let w = World::new();
    w.env.conf("max_header_size = 4096");
    let mut h = String::from("To: rcpt@dest.test\n");
    for i in 0..100 {
        h.push_str(&format!("X-Pad-{i}: {}\n", "p".repeat(40)));
    }
    h.push_str("\nbody\n");
    let o = w.alice(&["rcpt@dest.test"], h.as_bytes());
    o.expect_code(65);
    assert!(o.stderr.contains("header is larger than 4096 bytes"), "{o}");
    assert!(w.sink.messages().is_empty() && w.spool_files().is_empty());
}

#[test]
fn trust_limit_line_length_998() {
    let w = World::new();
    for (where_, n, code) in [
        ("body", 998, 0),
        ("body", 999, 65),
        ("header", 999, 65),
        ("header", 998, 0),
    ] {
        let input = if where_ == "body" {
            format!("To: rcpt@dest.test\n\n{}\nend\n", "b".repeat(n))
        } else {
            format!(
                "To: rcpt@dest.test\nX-Long: {}\n\nend\n",
                "h".repeat(n - "X-Long: ".len())
            )
        };
        let o = w.alice(&["rcpt@dest.test"], input.as_bytes());
        o.expect_code(code);
        if code == 65 {
            assert!(o.stderr.contains("longer than 998 octets"), "{o}");
        }
    }
    let m = w.sink.messages();
    assert_eq!(m.len(), 2);
    assert!(
        m[0].raw_data
            .split(|&b| b == b'\n')
            .all(|l| l.len() <= 1000)
    );
    assert!(w.spool_files().is_empty());
}

#[test]
fn trust_limit_recipients() {
    let w = World::new();
    let rcpts: Vec<String> = (0..1001).map(|i| format!("r{i}@dest.test")).collect();
    let args: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    let o = w.alice(&args, &msg("r0@dest.test", "many"));
    o.expect_code(65);
    assert!(
        o.stderr
            .contains("1001 recipients exceed the limit of 1000 (max_recipients)"),
        "{o}"
    );
    w.env.conf("max_recipients = 5");
    let o = w.alice(&args[..6], &msg("r0@dest.test", "six"));
    o.expect_code(65);
    // -t counts header recipients too.
    let o = w.alice(
        &["-t", "r9@dest.test"],
        b"To: r0@dest.test, r1@dest.test\nCc: r2@dest.test, r3@dest.test, r4@dest.test\n\nx\n",
    );
    o.expect_code(65);
    assert!(w.sink.messages().is_empty() && w.spool_files().is_empty());
    w.alice(&args[..5], &msg("r0@dest.test", "five"))
        .expect_code(0);
    assert_eq!(only_message(&w).rcpts.len(), 5);
}

#[test]
fn trust_limit_argv_length() {
    let w = World::new();
    let long = format!("{}@dest.test", "a".repeat(60));
    let mut args: Vec<&str> = vec!["-t"];
    let n = 256 * 1024 / (long.len() + 1) + 10;
    args.extend(std::iter::repeat_n(long.as_str(), n));
    let o = w.alice(&args, &msg("r@dest.test", "argv"));
    o.expect_code(64);
    assert!(o.stderr.contains("longer than 256 KiB"), "{o}");
    assert!(w.sink.messages().is_empty());
}

// ---------------------------------------------------------------------------
// Enforcement outside the binary: dist/nftables.conf

/// A network namespace with `lo` up; deleted when dropped.
struct NetNs(String);

impl NetNs {
    fn new() -> NetNs {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            "vstrust-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        sh(&["ip", "netns", "add", &name]);
        let ns = NetNs(name);
        sh(&[
            "ip", "netns", "exec", &ns.0, "ip", "link", "set", "lo", "up",
        ]);
        ns
    }

    /// Start a sink on 127.0.0.1:`port` inside the namespace.
    fn sink(&self, port: u16) -> NsSink {
        let sink = in_netns(&self.0, move || {
            Sink::start(SinkConfig {
                port,
                ..Default::default()
            })
        });
        NsSink {
            sink: Some(sink),
            ns: self.0.clone(),
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Run `f` in a thread that entered the network namespace `ns` (sockets it
/// creates stay in that namespace).
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = PathBuf::from(format!("/var/run/netns/{ns}"));
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let file = fs::File::open(&path).expect("open netns");
        // SAFETY: setns on a valid namespace fd; it affects this thread only.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("netns thread")
}

/// A sink listening inside a namespace, and dropped from inside it: a sink
/// wakes its acceptor by connecting to itself, which only works from there.
struct NsSink {
    sink: Option<Sink>,
    ns: String,
}

impl std::ops::Deref for NsSink {
    type Target = Sink;
    fn deref(&self) -> &Sink {
        self.sink.as_ref().expect("sink")
    }
}

impl Drop for NsSink {
    fn drop(&mut self) {
        if let Some(s) = self.sink.take() {
            in_netns(&self.ns, move || drop(s));
        }
    }
}

fn sh(args: &[&str]) -> String {
    let o = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Connect to 127.0.0.1:`port` in `ns` as `user` (None: root) with bash's
/// /dev/tcp (a user's own SMTP client, in its simplest form); true when the
/// connection was established.
fn direct_connect(ns: &NetNs, user: Option<&str>, port: u16) -> (bool, String) {
    let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected");
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns.0]);
    if let Some(u) = user {
        let (uid, gid) = crate::support::users::user(u);
        c.args([
            "setpriv",
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--init-groups",
            "--",
        ]);
    }
    let o = c
        .args(["timeout", "10", "bash", "-c", &script])
        .env_clear()
        .env("PATH", crate::support::vs::PATH)
        .output()
        .expect("run bash");
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.success() && out.contains("connected"), out)
}

#[test]
fn trust_nftables_lets_only_the_vsendmail_group_reach_smtp_ports() {
    let ruleset = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dist/nftables.conf"))
        .expect("dist/nftables.conf");
    let define = "define VSENDMAIL_GROUP = vsendmail";
    assert!(
        ruleset.contains(define),
        "dist/nftables.conf must have the line `{define}`"
    );
    let ruleset = ruleset.replace(
        define,
        &format!("define VSENDMAIL_GROUP = {}", setgid::GROUP),
    );

    let ns = NetNs::new();
    let sink = ns.sink(25);
    let other = ns.sink(8025);
    // The relay is the sink in the namespace (the World's own sink stays unused).
    let w = World::new();
    w.env.conf("relay = \"smtp://127.0.0.1:25\"");

    // Before the rule set: Alice's own client gets through (the test can fail).
    let (ok, out) = direct_connect(&ns, Some(ALICE), 25);
    assert!(ok, "without rules a direct connection must work: {out}");

    let file = w.env.write("nftables.conf", &ruleset);
    sh(&[
        "ip",
        "netns",
        "exec",
        &ns.0,
        "nft",
        "-f",
        file.to_str().unwrap(),
    ]);
    let listed = sh(&["ip", "netns", "exec", &ns.0, "nft", "list", "ruleset"]);
    assert!(listed.contains("skgid"), "{listed}");

    // A plain user's direct connection is refused, to every SMTP port.
    for port in [25, 465, 587] {
        let (ok, out) = direct_connect(&ns, Some(ALICE), port);
        assert!(!ok, "direct connection to port {port} got through: {out}");
        assert!(out.contains("refused"), "port {port}: {out}");
    }
    // Other ports are not affected; root is allowed.
    let (ok, out) = direct_connect(&ns, Some(ALICE), other.port());
    assert!(ok, "port {} must stay open: {out}", other.port());
    let (ok, out) = direct_connect(&ns, None, 25);
    assert!(ok, "root must get through: {out}");

    // vsendmail run by Alice (set-gid) gets through.
    let before = sink.connections().len();
    let c =
        w.sg.cmd(&w.env, Some(ALICE), Some(&ns.0), &["rcpt@dest.test"]);
    let o = w
        .env
        .output(c, &msg("rcpt@dest.test", "through the firewall"));
    o.expect_code(0);
    let m = sink.wait_messages(1, T);
    assert_eq!(m[0].mail_from, ALICE_ID);
    assert_eq!(m[0].rcpts, ["rcpt@dest.test"]);
    assert!(w.queued().is_empty(), "{:?}", w.spool_files());
    // Only vsendmail's connection reached the sink since root's probe.
    assert_eq!(sink.connections().len() - before, 1, "{}", sink.dump());
    assert!(w.sink.connections().is_empty());
}
