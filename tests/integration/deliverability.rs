//! Deliverability (DESIGN.md "Deliverability"): DKIM signatures checked by an
//! independent verifier (dkimpy, its DNS pointed at the test DNS server),
//! BATV tags checked against a second implementation written here,
//! `--batv-check`, `--policy` driven directly and by a real Postfix, and
//! `--doctor` against test zones where each check is broken alone.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use hmac::{KeyInit, Mac};

use crate::support::client::Client;
use crate::support::dns::{DnsServer, Zone};
use crate::support::postfix::{Postfix, PostfixOpts};
use crate::support::sink::{Action, Rule, Sink, Step};
use crate::support::vs::{self, Env};
use crate::support::{TempDir, users};

const T: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- helpers

fn run_ok(cmd: &mut Command, what: &str) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum KeyKind {
    Rsa(u32),
    Ed25519,
}

/// Make a private key with openssl in `dir`; returns its path and the DKIM
/// TXT record of its public key, derived by openssl (not by vsendmail).
fn make_key(dir: &Path, name: &str, kind: KeyKind) -> (PathBuf, String) {
    let path = dir.join(name);
    let mut c = Command::new("openssl");
    c.arg("genpkey").arg("-out").arg(&path);
    match kind {
        KeyKind::Rsa(bits) => {
            c.args(["-algorithm", "RSA", "-pkeyopt"])
                .arg(format!("rsa_keygen_bits:{bits}"));
        }
        KeyKind::Ed25519 => {
            c.args(["-algorithm", "ed25519"]);
        }
    }
    run_ok(&mut c, "openssl genpkey");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let der = run_ok(
        Command::new("openssl")
            .args(["pkey", "-pubout", "-outform", "DER", "-in"])
            .arg(&path),
        "openssl pkey -pubout",
    );
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let txt = match kind {
        KeyKind::Rsa(_) => format!("v=DKIM1; k=rsa; p={}", b64.encode(&der)),
        // RFC 8463: the raw 32-byte key, i.e. the tail of the SPKI.
        KeyKind::Ed25519 => format!(
            "v=DKIM1; k=ed25519; p={}",
            b64.encode(&der[der.len() - 32..])
        ),
    };
    (path, txt)
}

const VERIFY_PY: &str = r#"
import sys, dkim, dns.message, dns.query, dns.rdatatype
port = int(sys.argv[1])
def dnsfunc(name, timeout=5):
    n = name.decode() if isinstance(name, bytes) else name
    q = dns.message.make_query(n, dns.rdatatype.TXT)
    r = dns.query.tcp(q, '127.0.0.1', port=port, timeout=timeout)
    for rrset in r.answer:
        for rd in rrset:
            return b''.join(rd.strings)
    return None
msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg, minkey=1024)
try:
    ok = d.verify(dnsfunc=dnsfunc)
except Exception as e:
    print('fail', e)
    sys.exit(0)
print('pass' if ok else 'fail')
"#;

/// dkimpy's verdict on `msg`, keys looked up in the test DNS server.
fn dkimpy(dns: &DnsServer, dir: &Path, msg: &[u8]) -> String {
    let script = dir.join("dkimverify.py");
    if !script.exists() {
        std::fs::write(&script, VERIFY_PY).unwrap();
    }
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(dns.addr().port().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/install-test-deps.sh installs dkimpy)");
    child.stdin.take().unwrap().write_all(msg).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the dkimpy verifier did not run (scripts/install-test-deps.sh installs dkimpy and dnspython): {err}"
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A signing setup: DNS with the public key, a sink as relay, root's identity
/// alice@shop.test signing with `kind`.
pub(crate) struct Signing {
    pub(crate) env: Env,
    dns: DnsServer,
    pub(crate) sink: Sink,
    key: PathBuf,
    txt: String,
}

pub(crate) fn signing(kind: KeyKind) -> Signing {
    let env = Env::new();
    let (key, txt) = make_key(env.dir(), "dkim.pem", kind);
    let dns = DnsServer::start(Zone::new().txt("sel._domainkey.shop.test", &txt));
    let sink = Sink::start_default();
    env.relay(sink.addr());
    env.conf(&format!("dns = [\"{}\"]", dns.addr()));
    env.virtusers(&format!(
        "root alice@shop.test - dkim=sel:{}\n",
        key.display()
    ));
    Signing {
        env,
        dns,
        sink,
        key,
        txt,
    }
}

impl Signing {
    pub(crate) fn send(&self, args: &[&str], msg: &[u8]) -> crate::support::sink::Msg {
        let before = self.sink.messages().len();
        self.env.run(args, msg).expect_code(0);
        self.sink.wait_messages(before + 1, T).pop().unwrap()
    }

    pub(crate) fn verify(&self, msg: &[u8]) -> String {
        dkimpy(&self.dns, self.env.dir(), msg)
    }
}

fn dkim_header(m: &crate::support::sink::Msg) -> String {
    m.header("DKIM-Signature").expect("a DKIM-Signature header")
}

/// The `h=` list of a DKIM-Signature value.
fn h_tag(sig: &str) -> Vec<String> {
    let compact: String = sig.chars().filter(|c| !c.is_whitespace()).collect();
    compact
        .split(';')
        .find_map(|t| t.strip_prefix("h="))
        .unwrap_or("")
        .split(':')
        .map(|s| s.to_ascii_lowercase())
        .collect()
}

// ---------------------------------------------------------------- DKIM

#[test]
fn deliverability_dkim_rsa2048_plain_message_passes_and_a_changed_byte_fails() {
    let s = signing(KeyKind::Rsa(2048));
    let m = s.send(
        &["-i", "bob@example.test"],
        b"To: Bob <bob@example.test>\nSubject: hello\nReply-To: sales@shop.test\n\nHello Bob,\nthis is signed.\n",
    );
    assert!(
        m.data
            .starts_with(b"DKIM-Signature: v=1; a=rsa-sha256; s=sel; d=shop.test;"),
        "{}",
        m.text()
    );
    let sig = dkim_header(&m);
    assert!(sig.contains("c=relaxed/relaxed"), "{sig}");
    let h = h_tag(&sig);
    for name in ["from", "to", "subject", "date", "message-id", "reply-to"] {
        assert!(h.contains(&name.to_string()), "h= lacks {name}: {sig}");
    }
    for absent in ["cc", "mime-version", "content-type", "received", "bcc"] {
        assert!(!h.contains(&absent.to_string()), "h= names {absent}: {sig}");
    }
    assert_eq!(s.verify(&m.data), "pass");
    // One body byte changed: the independent verifier must say fail.
    let mut bad = m.data.clone();
    let p = sink_find(&bad, b"this is signed").unwrap();
    bad[p] = b'T';
    assert!(
        s.verify(&bad).starts_with("fail"),
        "a changed body byte must fail"
    );
    // A changed signed header fails too.
    let hb = String::from_utf8_lossy(&m.data).replace("Subject: hello", "Subject: hellO");
    assert!(s.verify(hb.as_bytes()).starts_with("fail"));
    // -bv says it would sign.
    let out = s.env.run(&["-bv", "bob@example.test"], b"");
    out.expect_code(0);
    assert!(
        out.stdout.contains("dkim yes (s=sel, d=shop.test)"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("batv no"), "{}", out.stdout);
    let _ = (&s.key, &s.txt);
}

fn sink_find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn deliverability_dkim_ed25519_t_mode_eightbit_dots_and_bare_lf() {
    let s = signing(KeyKind::Ed25519);
    // -t with To, Cc and Bcc (removed before signing).
    let m = s.send(
        &["-t", "-i"],
        b"From: Alice <alice@shop.test>\nTo: bob@example.test\nCc: carol@example.test\nBcc: secret@example.test\nSubject: t mode\n\nbody\n",
    );
    let sig = dkim_header(&m);
    assert!(sig.contains("a=ed25519-sha256"), "{sig}");
    assert!(h_tag(&sig).contains(&"cc".to_string()), "{sig}");
    assert!(!m.text().contains("secret@"), "Bcc removed");
    assert_eq!(s.verify(&m.data), "pass", "-t");
    // 8-bit body and headers of a MIME message.
    let m = s.send(
        &["-i", "bob@example.test"],
        "Subject: Grüße\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nSchöne Grüße aus Köln\n"
            .as_bytes(),
    );
    let h = h_tag(&dkim_header(&m));
    for n in ["mime-version", "content-type", "content-transfer-encoding"] {
        assert!(h.contains(&n.to_string()), "{h:?}");
    }
    assert_eq!(s.verify(&m.data), "pass", "8-bit");
    // Dot-leading lines, sendmail style (without -i: `..` is read as `.`).
    let m = s.send(
        &["bob@example.test"],
        b"Subject: dots\n\n..leading dot\n...two\nplain\n.\n",
    );
    assert!(
        sink_find(&m.data, b"\r\n.leading dot\r\n").is_some(),
        "{}",
        m.text()
    );
    assert!(
        sink_find(&m.raw_data, b"\r\n..leading dot\r\n").is_some(),
        "stuffed on the wire"
    );
    assert_eq!(s.verify(&m.data), "pass", "dots");
    // With -i, a lone dot and leading dots are data.
    let m = s.send(
        &["-i", "bob@example.test"],
        b"Subject: dots -i\n\n.\n.x\n..y\n",
    );
    assert_eq!(s.verify(&m.data), "pass", "dots -i");
    // Bare LF, bare CR and mixed line ends, trailing white space, empty lines at the end.
    let m = s.send(
        &["-i", "bob@example.test"],
        b"Subject: line ends\r\nX-Mixed: yes\n\nfirst\r\nsecond\nthird\rfourth  \t\n\n\n",
    );
    assert_eq!(s.verify(&m.data), "pass", "bare LF");
}

#[test]
fn deliverability_dkim_queued_then_flushed_and_smtp_mode_and_1024_bit_key() {
    let s = signing(KeyKind::Rsa(2048));
    s.env
        .run(
            &["-odq", "-i", "bob@example.test"],
            b"Subject: queued\n\nlater\n",
        )
        .expect_code(0);
    assert!(s.sink.messages().is_empty());
    s.env.run(&["-q"], b"").expect_code(0);
    let m = s.sink.wait_messages(1, T).pop().unwrap();
    assert_eq!(s.verify(&m.data), "pass", "queued then flushed");
    // -bs (Symfony's default).
    let dialogue = b"EHLO app.test\r\nMAIL FROM:<alice@shop.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: via -bs\r\nTo: bob@example.test\r\n\r\nhello\r\n..dot\r\n.\r\nQUIT\r\n";
    let out = s.env.run(&["-bs"], dialogue);
    out.expect_code(0);
    let m = s.sink.wait_messages(2, T).pop().unwrap();
    assert!(m.text().contains("via -bs"));
    assert_eq!(s.verify(&m.data), "pass", "-bs");

    // A 1024-bit RSA key (the smallest accepted), PKCS#1 PEM.
    let (k, txt) = make_key(s.env.dir(), "small.pem", KeyKind::Rsa(1024));
    let pkcs1 = s.env.dir().join("small-pkcs1.pem");
    run_ok(
        Command::new("openssl")
            .args(["rsa", "-traditional", "-in"])
            .arg(&k)
            .arg("-out")
            .arg(&pkcs1),
        "openssl rsa -traditional",
    );
    assert!(
        std::fs::read_to_string(&pkcs1)
            .unwrap()
            .contains("BEGIN RSA PRIVATE KEY")
    );
    s.dns
        .set_zone(Zone::new().txt("small._domainkey.shop.test", &txt));
    s.env.virtusers(&format!(
        "root alice@shop.test - dkim=small:{}\n",
        pkcs1.display()
    ));
    let m = s.send(&["-i", "bob@example.test"], b"Subject: small key\n\nx\n");
    assert!(dkim_header(&m).contains("s=small"));
    assert_eq!(s.verify(&m.data), "pass", "1024-bit PKCS#1");
}

#[test]
fn deliverability_dkim_weak_missing_or_malformed_key_exits_78() {
    let env = Env::new();
    let sink = Sink::start_default();
    env.relay(sink.addr());
    let (weak, _) = make_key(env.dir(), "weak.pem", KeyKind::Rsa(512));
    let garbage = env.write(
        "garbage.pem",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let missing = env.dir().join("missing.pem");
    for (key, what) in [
        (&weak, "too weak"),
        (&missing, "cannot read"),
        (&garbage, ""),
    ] {
        env.virtusers(&format!(
            "# keys\nroot alice@shop.test - dkim=sel:{}\n",
            key.display()
        ));
        let out = env.run(&["-i", "bob@example.test"], b"Subject: x\n\ny\n");
        out.expect_code(78);
        assert!(out.stderr.starts_with("vsendmail: "), "{out}");
        assert!(
            out.stderr
                .contains(&format!("{}:2", env.dir().join("virtusers").display())),
            "{out}"
        );
        assert!(out.stderr.contains(what), "{out}");
        let bi = env.run(&["-bi"], b"");
        assert_ne!(bi.code, 0, "{bi}");
        assert!(
            bi.stderr.contains(&format!(
                "{}:2: dkim=sel:{}",
                env.dir().join("virtusers").display(),
                key.display()
            )),
            "{bi}"
        );
    }
    assert!(sink.messages().is_empty());
    assert!(
        std::fs::read_dir(env.spool().join("queue"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "nothing accepted"
    );
}

/// Peak RSS (KiB) of one run of the binary, as GNU time reports it (time
/// forks the binary from its own small process: a child spawned straight from
/// this big, threaded test process would inherit its high-water mark).
fn peak_rss(env: &Env, args: &[&str], input: &Path) -> (i32, i64) {
    let report = env.dir().join("rss.txt");
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(vs::bin())
        .arg("-C")
        .arg(env.conf_path())
        .args(args)
        .env_clear()
        .env("PATH", vs::PATH)
        .stdin(std::fs::File::open(input).unwrap())
        .output()
        .expect("/usr/bin/time (scripts/install-test-deps.sh installs it)");
    let rss = std::fs::read_to_string(&report).unwrap();
    let kib = rss
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no RSS in {rss:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    (out.status.code().unwrap_or(-1), kib)
}

#[test]
fn deliverability_dkim_50mb_message_signs_in_constant_memory() {
    let env = Env::new();
    env.conf("max_message_size = 104857600");
    let (key, _) = make_key(env.dir(), "k.pem", KeyKind::Rsa(2048));
    let big = env.dir().join("big.txt");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        f.write_all(b"Subject: big\n\n").unwrap();
        let line = [b"x".repeat(76), b"\n".to_vec()].concat();
        for _ in 0..(50 * 1024 * 1024 / line.len()) {
            f.write_all(&line).unwrap();
        }
    }
    env.virtusers("root alice@shop.test -\n");
    let (code, unsigned) = peak_rss(&env, &["-odq", "-i", "bob@example.test"], &big);
    assert_eq!(code, 0);
    env.virtusers(&format!(
        "root alice@shop.test - dkim=sel:{}\n",
        key.display()
    ));
    let (code, signed) = peak_rss(&env, &["-odq", "-i", "bob@example.test"], &big);
    assert_eq!(code, 0);
    // Signing streams the spool file: it adds little to what intake needs,
    // whatever the size (a whole-message buffer would add 50 MB).
    assert!(
        signed - unsigned < 4 * 1024,
        "signing a 50 MB message raised the peak RSS from {unsigned} KiB to {signed} KiB"
    );
    let envs: Vec<String> = std::fs::read_dir(env.spool().join("queue"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "env"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(envs.len(), 2);
    assert_eq!(
        envs.iter()
            .filter(|e| e.contains("DKIM-Signature: v=1"))
            .count(),
        1
    );
}

// ---------------------------------------------------------------- BATV

/// The test's own BATV implementation (draft-levine-smtp-batv prvs).
fn prvs(addr: &str, digit: u8, secret: &str, expiry_day: u64) -> String {
    let ddd = format!("{:03}", expiry_day % 1000);
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{digit}{ddd}{addr}").as_bytes());
    let h = mac.finalize().into_bytes();
    format!(
        "prvs={digit}{ddd}{:02x}{:02x}{:02x}={addr}",
        h[0], h[1], h[2]
    )
}

fn day_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86400
}

/// root sends as alice@shop.test with BATV keys `0 oldsecret`, `4 newsecret`.
fn batv_env() -> (Env, Sink) {
    let env = Env::new();
    let sink = Sink::start_default();
    env.relay(sink.addr());
    let keys = env.write("batv.keys", "# rotated keys\n0 oldsecret\n\n4 newsecret\n");
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o640)).unwrap();
    env.virtusers(&format!("root alice@shop.test - batv={}\n", keys.display()));
    (env, sink)
}

#[test]
fn deliverability_batv_envelope_sender_is_tagged_as_a_second_implementation_computes() {
    let (env, sink) = batv_env();
    let d0 = day_now();
    env.run(&["-i", "bob@example.test"], b"Subject: tagged\n\nx\n")
        .expect_code(0);
    let d1 = day_now();
    let m = sink.wait_messages(1, T).pop().unwrap();
    let want: Vec<String> = [d0, d1]
        .iter()
        .map(|d| prvs("alice@shop.test", 4, "newsecret", d + 7))
        .collect();
    assert!(
        want.contains(&m.mail_from),
        "MAIL FROM {} is not {want:?}",
        m.mail_from
    );
    // From: is never changed.
    assert_eq!(m.header("From").as_deref(), Some("alice@shop.test"));
    assert!(!m.text().contains("prvs="), "no tag in the message");
    // The tag checks as valid.
    let out = env.run(&["--batv-check", &m.mail_from], b"");
    assert_eq!((out.code, out.stdout.as_str()), (0, "valid\n"), "{out}");
    // batv_days changes the expiry day.
    env.conf("batv_days = 30");
    env.run(&["-i", "bob@example.test"], b"Subject: tagged 30\n\nx\n")
        .expect_code(0);
    let m = sink.wait_messages(2, T).pop().unwrap();
    let want30: Vec<String> = [d0, day_now()]
        .iter()
        .map(|d| prvs("alice@shop.test", 4, "newsecret", d + 30))
        .collect();
    assert!(
        want30.contains(&m.mail_from),
        "{} / {want30:?}",
        m.mail_from
    );
    // The null sender is never tagged.
    env.run(
        &["-f", "<>", "-i", "bob@example.test"],
        b"Subject: null\n\nx\n",
    )
    .expect_code(0);
    let m = sink.wait_messages(3, T).pop().unwrap();
    assert_eq!(m.mail_from, "");
    // -bv tells.
    let bv = env.run(&["-bv", "bob@example.test"], b"");
    assert!(bv.stdout.contains("batv yes"), "{bv}");
}

#[test]
fn deliverability_batv_bounces_that_vsendmail_sends_use_the_null_sender() {
    let (env, sink) = batv_env();
    sink.set_rules(vec![
        Rule::new(
            Step::Rcpt("nobody@example.test".into()),
            Action::Reply("550 5.1.1 no such user".into()),
        )
        .times(1),
    ]);
    env.run(
        &["-oem", "-i", "nobody@example.test"],
        b"Subject: will bounce\n\nx\n",
    )
    .expect_code(0);
    let m = sink.wait_messages(1, T).pop().unwrap();
    assert_eq!(m.mail_from, "", "a bounce goes out with <>");
    assert_eq!(m.rcpts, vec!["alice@shop.test"]);
}

#[test]
fn deliverability_batv_check_answers() {
    let (env, _sink) = batv_env();
    let today = day_now();
    let check = |addr: &str| {
        let out = env.run(&["--batv-check", addr], b"");
        (out.code, out.stdout.trim_end().to_string())
    };
    let valid = prvs("alice@shop.test", 4, "newsecret", today + 7);
    assert_eq!(check(&valid), (0, "valid".into()));
    // Made with the older key (still listed): valid; on its last day: valid.
    assert_eq!(
        check(&prvs("alice@shop.test", 0, "oldsecret", today + 2)),
        (0, "valid".into())
    );
    assert_eq!(
        check(&prvs("alice@shop.test", 4, "newsecret", today)),
        (0, "valid".into())
    );
    // Expired: yesterday, long ago, and wrapped around the 1000-day cycle.
    assert_eq!(
        check(&prvs("alice@shop.test", 4, "newsecret", today - 1)),
        (1, "expired".into())
    );
    assert_eq!(
        check(&prvs("alice@shop.test", 4, "newsecret", today - 400)),
        (1, "expired".into())
    );
    // A key digit the file does not list, or the wrong secret for a listed digit.
    assert_eq!(
        check(&prvs("alice@shop.test", 7, "newsecret", today + 7)),
        (1, "bad signature".into())
    );
    assert_eq!(
        check(&prvs("alice@shop.test", 0, "newsecret", today + 7)),
        (1, "bad signature".into())
    );
    // A changed signature digit, a tag moved to another address.
    let mut flipped = valid.clone().into_bytes();
    flipped[9] = if flipped[9] == b'0' { b'1' } else { b'0' };
    assert_eq!(
        check(&String::from_utf8(flipped).unwrap()),
        (1, "bad signature".into())
    );
    assert_eq!(
        check(&valid.replace("=alice@", "=mallory@")),
        (1, "bad signature".into())
    );
    assert_eq!(
        check("prvs=xyz=alice@shop.test"),
        (1, "bad signature".into())
    );
    assert_eq!(check("alice@shop.test"), (1, "untagged".into()));
    assert_eq!(check("bob@other.test"), (1, "no key for other.test".into()));
    // Case: tag type, hex digits and domain in any case.
    assert_eq!(check(&valid.to_uppercase()), (0, "valid".into()));
    // Local-part case: a lower-case original survives a relay that upper-cases
    // it; a mixed-case original is signed exactly as written, and a tag moved
    // to another case of it is not valid.
    let mixed = prvs("Alice.Smith@shop.test", 4, "newsecret", today + 7);
    assert_eq!(check(&mixed), (0, "valid".into()));
    assert_eq!(
        check(&mixed.replace("Alice.Smith", "alice.smith")),
        (1, "bad signature".into())
    );
    // Another identity of the same domain with its own key file also verifies.
    let k2 = env.write("batv2.keys", "9 otherkey\n");
    let vu = std::fs::read_to_string(env.dir().join("virtusers")).unwrap();
    env.virtusers(&format!(
        "{vu}%nogroup @shop.test - batv={}\n",
        k2.display()
    ));
    assert_eq!(
        check(&prvs("x@shop.test", 9, "otherkey", today + 1)),
        (0, "valid".into())
    );
    env.run(&["-bi"], b"").expect_code(0);
}

#[test]
fn deliverability_batv_bad_key_file_is_reported() {
    let env = Env::new();
    let keys = env.write("batv.keys", "0 a\nzero b\n");
    env.virtusers(&format!("root alice@shop.test - batv={}\n", keys.display()));
    let bi = env.run(&["-bi"], b"");
    assert_eq!(bi.code, 78, "{bi}");
    assert!(
        bi.stderr
            .contains(&format!("virtusers:1: batv={}: line 2:", keys.display())),
        "{bi}"
    );
    let out = env.run(&["--batv-check", "prvs=0123abcdef=alice@shop.test"], b"");
    assert_eq!(out.code, 78, "{out}");
}

// ---------------------------------------------------------------- --policy

fn policy_request(sender: &str, rcpt: &str) -> String {
    format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=127.0.0.1\nclient_name=localhost\nhelo_name=mx.example.test\nsender={sender}\nrecipient={rcpt}\nrecipient_count=0\nqueue_id=\nsize=0\n\n"
    )
}

#[test]
fn deliverability_policy_on_stdin_many_requests() {
    let (env, _sink) = batv_env();
    let today = day_now();
    let valid = prvs("alice@shop.test", 4, "newsecret", today + 7);
    let expired = prvs("alice@shop.test", 4, "newsecret", today - 3);
    let input = [
        policy_request("", "alice@shop.test"),
        policy_request("", &valid),
        policy_request("someone@example.test", "alice@shop.test"),
        policy_request("", &expired),
        policy_request("", "someone@other.test"),
        policy_request("", &valid.replace("=alice", "=bob")),
        // Unknown attributes and a request without recipient: DUNNO.
        "request=smtpd_access_policy\nfuture_attribute=1\nsender=\n\n".to_string(),
    ]
    .concat();
    let out = env.run(&["--policy"], input.as_bytes());
    out.expect_code(0);
    assert_eq!(
        out.stderr, "",
        "nothing on stderr: spawn(8) connects it to Postfix"
    );
    let answers: Vec<&str> = out.stdout.split_terminator("\n\n").collect();
    assert_eq!(answers.len(), 7, "{}", out.stdout);
    assert!(
        answers[0].starts_with("action=REJECT 5.7.1 "),
        "{}",
        answers[0]
    );
    assert!(answers[0].contains("no BATV tag"), "{}", answers[0]);
    assert_eq!(answers[1], "action=DUNNO");
    assert_eq!(answers[2], "action=DUNNO");
    assert!(
        answers[3].starts_with("action=REJECT 5.7.1 "),
        "{}",
        answers[3]
    );
    assert!(answers[3].contains("expired"), "{}", answers[3]);
    assert_eq!(answers[4], "action=DUNNO");
    assert!(answers[5].starts_with("action=REJECT 5.7.1 "));
    assert_eq!(answers[6], "action=DUNNO");
    assert!(!out.stdout.contains("\n\n\n"));
    let logs = env.log_lines();
    assert!(
        logs.iter().any(|l| l.contains("policy: reject bounce")),
        "{logs:?}"
    );
}

#[test]
fn deliverability_policy_malformed_input_ends_the_run_with_a_log_line() {
    let (env, _sink) = batv_env();
    let input = format!(
        "{}this line has no equals sign\n\n{}",
        policy_request("", "alice@shop.test"),
        policy_request("", "alice@shop.test")
    );
    let out = env.run(&["--policy"], input.as_bytes());
    assert_eq!(out.code, 65, "{out}");
    assert_eq!(out.stderr, "");
    assert_eq!(out.stdout.matches("action=").count(), 1, "{out}");
    let logs = env.log_lines();
    assert!(
        logs.iter()
            .any(|l| l.contains("policy: malformed input") && l.contains("after 1 request")),
        "{logs:?}"
    );
    // Binary garbage, an over-long line, input ending inside a request: the same.
    for bad in [
        b"sender=\n\xff\xfe=\x00\n\n".to_vec(),
        format!("recipient={}\n\n", "a".repeat(20_000)).into_bytes(),
        b"sender=\nrecipient=alice@shop.test\n".to_vec(),
    ] {
        let out = env.run(&["--policy"], &bad);
        assert_eq!(out.code, 65, "{out}");
        assert_eq!(out.stdout, "", "{out}");
        assert_eq!(out.stderr, "");
    }
}

#[test]
fn deliverability_policy_in_a_real_postfix_rejects_untagged_bounces() {
    let (env, _unused) = batv_env();
    let sink = Sink::start_default();
    // spawn(8) refuses to run commands as root: a throwaway user reads the
    // config (0644) and the key file (its group).
    // spawn(8) sets the user's primary group only.
    let user = "vsbatvpolicy";
    let (_, gid) = users::user(user);
    let keys = env.dir().join("batv.keys");
    nix::unistd::chown(&keys, Some(0.into()), Some(gid.into())).unwrap();
    // The policy service's user may check tags; not being set-gid here, it
    // cannot write the spool's counters, so the rate is off.
    env.conf(&format!(
        "policy_users = [\"{user}\"]\npolicy_rate = \"none\""
    ));
    let maps_dir = TempDir::new("vs-batv-maps");
    let strip = maps_dir.path().join("batv_strip");
    // The regexp of vsendmail.8: strip a tag before local delivery.
    std::fs::write(&strip, "/^prvs=[0-9]{4}[0-9a-f]{6}=(.+@.+)$/ ${1}\n").unwrap();
    let pf = Postfix::start(PostfixOpts {
        extra_master_cf: vec![format!(
            "batv      unix  -       n       n       -       0       spawn user={user} argv={} -C {} --policy",
            vs::bin(),
            env.conf_path().display()
        )],
        extra_main_cf: vec![
            "batv_time_limit = 3600s".into(),
            "smtpd_recipient_restrictions = check_policy_service unix:private/batv, permit_mynetworks, reject".into(),
            format!("recipient_canonical_maps = regexp:{}", strip.display()),
            "recipient_canonical_classes = envelope_recipient".into(),
        ],
        ..PostfixOpts::new(sink.addr())
    });
    let today = day_now();
    let valid = prvs("alice@shop.test", 4, "newsecret", today + 7);
    let mut c = Client::connect(pf.addr());
    assert!(c.reply().starts_with("220"));
    assert!(c.cmd("EHLO mx.example.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<>").starts_with("250"));
    let r = c.cmd("RCPT TO:<alice@shop.test>");
    assert!(
        r.starts_with("5") && r.contains("5.7.1"),
        "untagged bounce: {r}\n{}",
        pf.maillog()
    );
    let r = c.cmd(&format!("RCPT TO:<{valid}>"));
    assert!(r.starts_with("250"), "valid tag: {r}\n{}", pf.maillog());
    assert!(c.cmd("DATA").starts_with("354"));
    let r = c.cmd("From: MAILER-DAEMON@example.test\r\nSubject: Undelivered Mail\r\n\r\nyour message bounced\r\n.");
    assert!(r.starts_with("250"), "{r}");
    c.cmd("QUIT");
    let m = sink
        .wait_messages(1, Duration::from_secs(60))
        .pop()
        .unwrap();
    assert_eq!(m.mail_from, "");
    assert_eq!(
        m.rcpts,
        vec!["alice@shop.test"],
        "the tag is stripped by the canonical map"
    );
    // A normal (non-bounce) message to an untagged address is not the policy's business.
    let mut c = Client::connect(pf.addr());
    assert!(c.reply().starts_with("220"));
    c.cmd("EHLO mx.example.test");
    assert!(c.cmd("MAIL FROM:<someone@example.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<alice@shop.test>").starts_with("250"));
    c.cmd("QUIT");
    let logs = env.log_lines();
    assert!(
        logs.iter()
            .any(|l| l.contains("policy: reject bounce") && l.contains("<alice@shop.test>")),
        "{logs:?}"
    );
}

// ---------------------------------------------------------------- --doctor

const SRC: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// What the test zone gets right (each flag breaks one check).
#[derive(Clone, Copy)]
struct Good {
    ptr: bool,
    fcrdns: bool,
    helo: bool,
    spf: Option<&'static str>,
    dkim: bool,
    dmarc: Option<&'static str>,
}

const ALL_GOOD: Good = Good {
    ptr: true,
    fcrdns: true,
    helo: true,
    spf: Some("v=spf1 ip4:127.0.0.2 -all"),
    dkim: true,
    dmarc: Some("v=DMARC1; p=reject; rua=mailto:dmarc@shop.test"),
};

struct DoctorSetup {
    env: Env,
    dns: DnsServer,
    txt: String,
    batv: PathBuf,
}

fn zone(g: Good, txt: &str, other_txt: &str, src: IpAddr) -> Zone {
    let mut z = Zone::new().a(
        "rdns.shop.test",
        if g.fcrdns {
            SRC
        } else {
            Ipv4Addr::new(127, 0, 0, 9)
        },
    );
    if let IpAddr::V4(v4) = src
        && v4 != SRC
    {
        z = z.a("rdns.shop.test", v4).a("mail.shop.test", v4);
    }
    if g.ptr {
        z = z.ptr(src, "rdns.shop.test");
    }
    z = z.a(
        "mail.shop.test",
        if g.helo {
            SRC
        } else {
            Ipv4Addr::new(127, 0, 0, 3)
        },
    );
    if let Some(s) = g.spf {
        z = z.txt("shop.test", s);
    }
    z = z.txt("shop.test", "some-site-verification=abc");
    z = z.txt(
        "sel._domainkey.shop.test",
        if g.dkim { txt } else { other_txt },
    );
    if let Some(d) = g.dmarc {
        z = z.txt("_dmarc.shop.test", d);
    }
    z
}

fn doctor_setup() -> DoctorSetup {
    let env = Env::new();
    let (key, txt) = make_key(env.dir(), "dkim.pem", KeyKind::Rsa(2048));
    let batv = env.write("batv.keys", "1 s3cret\n");
    std::fs::set_permissions(&batv, std::fs::Permissions::from_mode(0o640)).unwrap();
    // alice sends with the vsendmail group (here vstest): it must read both keys.
    for k in [&key, &batv] {
        nix::unistd::chown(k, None, Some(crate::support::users::vstest_gid().into())).unwrap();
    }
    let dns = DnsServer::start(zone(ALL_GOOD, &txt, "", IpAddr::V4(SRC)));
    env.conf(&format!("dns = [\"{}\"]", dns.addr()));
    env.virtusers(&format!(
        "# the shop\nalice alice@shop.test 127.0.0.2 helo=mail.shop.test dkim=sel:{} batv={}\n",
        key.display(),
        batv.display()
    ));
    DoctorSetup {
        env,
        dns,
        txt,
        batv,
    }
}

fn doctor(env: &Env, args: &[&str]) -> (i32, Vec<String>) {
    let mut a = vec!["--doctor"];
    a.extend_from_slice(args);
    let out = env.run(&a, b"");
    assert!(out.code == 0 || out.code == 1, "{out}");
    (out.code, out.stdout.lines().map(str::to_string).collect())
}

fn line<'a>(lines: &'a [String], status: &str, check: &str) -> &'a str {
    let prefix = format!("{status} {check} alice@shop.test ");
    lines
        .iter()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}...` line in:\n{}", lines.join("\n")))
}

#[test]
fn deliverability_doctor_all_good_then_each_check_broken_alone() {
    let s = doctor_setup();
    let (code, lines) = doctor(&s.env, &[]);
    assert_eq!(code, 0, "{}", lines.join("\n"));
    for check in [
        "source", "ptr", "fcrdns", "helo", "spf", "dkim", "dmarc", "batv",
    ] {
        let l = line(&lines, "ok", check);
        assert!(
            l.starts_with(&format!("ok {check} alice@shop.test 127.0.0.2: ")),
            "{l}"
        );
    }
    // And dmarc-align (ok), mta-sts and tlsrpt (warn: not published).
    assert_eq!(lines.len(), 11, "{}", lines.join("\n"));
    // The same for the login named.
    let (code, named) = doctor(&s.env, &["alice"]);
    assert_eq!((code, named.len()), (0, 11), "{}", named.join("\n"));
    // The PTR question reached the test server (not answered `localhost` locally).
    assert!(
        s.dns
            .queries()
            .iter()
            .any(|(n, t)| n == "2.0.0.127.in-addr.arpa" && t == "PTR")
    );

    let (_, other_txt) = make_key(s.env.dir(), "other.pem", KeyKind::Rsa(2048));
    let broken = |g: Good| {
        s.dns.set_zone(zone(g, &s.txt, &other_txt, IpAddr::V4(SRC)));
        doctor(&s.env, &[])
    };
    let (code, l) = broken(Good {
        ptr: false,
        ..ALL_GOOD
    });
    assert_eq!(code, 1);
    assert!(
        line(&l, "FAIL", "ptr").contains("2.0.0.127.in-addr.arpa PTR mail.shop.test"),
        "{l:?}"
    );
    let (code, l) = broken(Good {
        fcrdns: false,
        ..ALL_GOOD
    });
    assert_eq!(code, 1);
    assert!(
        line(&l, "FAIL", "fcrdns").contains("rdns.shop.test A 127.0.0.2"),
        "{l:?}"
    );
    assert!(
        l.iter().filter(|x| x.starts_with("FAIL")).count() == 1,
        "{l:?}"
    );
    let (code, l) = broken(Good {
        helo: false,
        ..ALL_GOOD
    });
    assert_eq!(code, 1);
    assert!(
        line(&l, "FAIL", "helo").contains("mail.shop.test A 127.0.0.2"),
        "{l:?}"
    );
    assert!(
        l.iter().filter(|x| x.starts_with("FAIL")).count() == 1,
        "{l:?}"
    );
    let (code, l) = broken(Good {
        spf: None,
        ..ALL_GOOD
    });
    assert_eq!(code, 1);
    assert!(
        line(&l, "FAIL", "spf").contains("shop.test TXT \"v=spf1 ip4:127.0.0.2 -all\""),
        "{l:?}"
    );
    let (code, l) = broken(Good {
        spf: Some("v=spf1 ip4:127.0.0.99 -all"),
        ..ALL_GOOD
    });
    assert_eq!(code, 1);
    let f = line(&l, "FAIL", "spf");
    assert!(f.contains("fail") && f.contains("add ip4:127.0.0.2"), "{f}");
    assert!(
        l.iter().filter(|x| x.starts_with("FAIL")).count() == 1,
        "{l:?}"
    );
    let (code, l) = broken(Good {
        spf: Some("v=spf1 ip4:127.0.0.2 ~all"),
        ..ALL_GOOD
    });
    assert_eq!(code, 0, "~all is a warning");
    assert!(line(&l, "warn", "spf").contains("~all"));
    let (code, l) = broken(Good {
        dkim: false,
        ..ALL_GOOD
    });
    assert_eq!(code, 1);
    let f = line(&l, "FAIL", "dkim");
    assert!(
        f.contains(&format!("sel._domainkey.shop.test TXT \"{}\"", s.txt)),
        "{f}"
    );
    assert!(
        l.iter().filter(|x| x.starts_with("FAIL")).count() == 1,
        "{l:?}"
    );
    let (code, l) = broken(Good {
        dmarc: None,
        ..ALL_GOOD
    });
    assert_eq!(code, 1);
    assert!(
        line(&l, "FAIL", "dmarc").contains("_dmarc.shop.test TXT"),
        "{l:?}"
    );
    let (code, l) = broken(Good {
        dmarc: Some("v=DMARC1; p=none"),
        ..ALL_GOOD
    });
    assert_eq!(code, 0, "p=none is a warning");
    line(&l, "warn", "dmarc");

    // batv: a malformed key file.
    s.dns
        .set_zone(zone(ALL_GOOD, &s.txt, &other_txt, IpAddr::V4(SRC)));
    std::fs::write(&s.batv, "one secret\n").unwrap();
    let (code, l) = doctor(&s.env, &[]);
    assert_eq!(code, 1);
    assert!(line(&l, "FAIL", "batv").contains("line 1"), "{l:?}");
    assert!(
        l.iter().filter(|x| x.starts_with("FAIL")).count() == 1,
        "{l:?}"
    );
    std::fs::write(&s.batv, "1 s3cret\n").unwrap();
    assert_eq!(doctor(&s.env, &[]).0, 0);
}

#[test]
fn deliverability_doctor_source_not_configured_here() {
    let s = doctor_setup();
    // TEST-NET-1: never configured on a test machine (only asked about in DNS).
    let far = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77));
    let vu = std::fs::read_to_string(s.env.dir().join("virtusers")).unwrap();
    s.env.virtusers(&vu.replace(" 127.0.0.2 ", " 192.0.2.77 "));
    let good = Good {
        spf: Some("v=spf1 ip4:192.0.2.77 -all"),
        ..ALL_GOOD
    };
    s.dns.set_zone(zone(good, &s.txt, "", far));
    let (code, l) = doctor(&s.env, &[]);
    assert_eq!(code, 1, "{l:?}");
    let prefix = "FAIL source alice@shop.test 192.0.2.77: ";
    assert!(l.iter().any(|x| x.starts_with(prefix)), "{l:?}");
    assert!(
        l.iter().filter(|x| x.starts_with("FAIL")).count() == 1,
        "{l:?}"
    );
}

#[test]
fn deliverability_dkim_addon_domain_signs_with_its_own_key() {
    let env = Env::new();
    let (main, main_txt) = make_key(env.dir(), "shop.pem", KeyKind::Ed25519);
    let (blog, blog_txt) = make_key(env.dir(), "blog.pem", KeyKind::Rsa(2048));
    let dns = DnsServer::start(
        Zone::new()
            .txt("sel._domainkey.shop.test", &main_txt)
            .txt("bsel._domainkey.blog.test", &blog_txt),
    );
    let sink = Sink::start_default();
    env.relay(sink.addr());
    env.conf(&format!("dns = [\"{}\"]", dns.addr()));
    env.virtusers(&format!(
        "root alice@shop.test - from=*@blog.test dkim=sel:{},blog.test=bsel:{}\n",
        main.display(),
        blog.display()
    ));
    let send = |from: &str| {
        let before = sink.messages().len();
        env.run(
            &["-i", "bob@example.test"],
            format!("From: {from}\nTo: bob@example.test\nSubject: addon\n\nhello\n").as_bytes(),
        )
        .expect_code(0);
        sink.wait_messages(before + 1, T).pop().unwrap()
    };
    // The addon domain's message: its own key, so DKIM aligns with From:.
    let m = send("Blog <news@blog.test>");
    let sig = dkim_header(&m);
    assert!(
        sig.contains("d=blog.test") && sig.contains("s=bsel"),
        "{sig}"
    );
    assert_eq!(dkimpy(&dns, env.dir(), &m.data), "pass");
    // The identity's own domain, and a From: domain without a key of its
    // own: the identity's key.
    for from in ["alice@shop.test", "x@other.test"] {
        let m = send(from);
        let sig = dkim_header(&m);
        assert!(
            sig.contains("d=shop.test") && sig.contains("s=sel"),
            "{from}: {sig}"
        );
        assert_eq!(dkimpy(&dns, env.dir(), &m.data), "pass", "{from}");
    }
    let bv = env.run(&["-bv", "bob@example.test"], b"");
    assert!(
        bv.stdout
            .contains("dkim yes (s=sel, d=shop.test; s=bsel, d=blog.test for From: *@blog.test)"),
        "{bv}"
    );
    env.run(&["-bi"], b"").expect_code(0);
    let doc = env.run(&["--doctor"], b"");
    for name in ["sel._domainkey.shop.test", "bsel._domainkey.blog.test"] {
        assert!(
            doc.stdout.lines().any(|l| l.starts_with("ok dkim ")
                && l.contains(&format!("{name} holds the public key"))),
            "{name}:\n{doc}"
        );
    }
    // A broken addon key is -bi's problem, with its entry.
    std::fs::write(&blog, "not a key\n").unwrap();
    let bi = env.run(&["-bi"], b"");
    bi.expect_code(78);
    assert!(
        bi.stderr.contains(&format!(
            "virtusers:1: dkim=blog.test=bsel:{}",
            blog.display()
        )),
        "{bi}"
    );
}
