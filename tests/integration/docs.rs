//! The man pages keep up with the code: every flag and own command is in
//! vsendmail.8, every virtusers option in virtusers.5, every configuration
//! key in vsendmail.conf.5 (the keys are read from src/config.rs, so a new
//! key without documentation fails here), and mandoc finds nothing to warn.

use std::path::Path;

fn page(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("man").join(name);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        // man(7) escapes: \- is a hyphen in the source.
        .replace("\\-", "-")
}

#[test]
fn every_flag_is_in_vsendmail_8() {
    let man = page("vsendmail.8");
    let flags = [
        "-t",
        "-i",
        "-oi",
        "-O",
        "-f",
        "-r",
        "-F",
        "-bm",
        "-bs",
        "-bp",
        "-bi",
        "-bv",
        "-q",
        "-qI",
        "-qR",
        "-qS",
        "-odi",
        "-odb",
        "-odq",
        "-oem",
        "-oep",
        "-oeq",
        "-v",
        "-N",
        "-R",
        "-V",
        "-B",
        "-L",
        "-C",
        "-X",
        "-bd",
        "-bD",
        "-h",
        "-n",
        "-U",
        "-m",
        "-G",
        "-d",
        "--who",
        "--hold",
        "--release",
        "--delete",
        "--batv-check",
        "--policy",
        "--doctor",
        "--version",
        "--help",
        "--window",
        "--log",
        "--stats",
        "--suspend",
        "--unsuspend",
        "--suspended",
        "--user",
        "--since",
        "--status",
        "--rcpt",
        "--json",
        "--action",
        "--reason",
        "mailq",
        "newaliases",
    ];
    let missing: Vec<&str> = flags.iter().copied().filter(|f| !man.contains(f)).collect();
    assert!(missing.is_empty(), "not in man/vsendmail.8: {missing:?}");
}

#[test]
fn every_virtusers_option_is_in_virtusers_5() {
    let man = page("virtusers.5");
    // The options the parser knows, read from its error message.
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/virtusers.rs"),
    )
    .unwrap();
    let known = src
        .split("(known: ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("the parser lists its known options");
    for opt in known.split(", ") {
        assert!(
            man.contains(&format!("{opt}=")),
            "virtusers option {opt}= not in man/virtusers.5"
        );
    }
}

#[test]
fn every_config_key_is_in_vsendmail_conf_5() {
    let man = page("vsendmail.conf.5");
    let src =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/conf.rs"))
            .unwrap();
    // Fields of `pub struct Config` and `pub struct Timeouts`.
    let mut keys = Vec::new();
    for strukt in [
        "pub struct Config {",
        "pub struct Timeouts {",
        "pub struct BreakerConf {",
    ] {
        let body = src
            .split(strukt)
            .nth(1)
            .expect(strukt)
            .split("\n}")
            .next()
            .unwrap();
        for line in body.lines() {
            let l = line.trim();
            if let Some(rest) = l.strip_prefix("pub ") {
                keys.push(rest.split(':').next().unwrap().trim().to_string());
            }
        }
    }
    assert!(keys.len() > 30, "read the keys: {keys:?}");
    let missing: Vec<&String> = keys.iter().filter(|k| !man.contains(k.as_str())).collect();
    assert!(
        missing.is_empty(),
        "not in man/vsendmail.conf.5: {missing:?}"
    );
}

#[test]
fn mandoc_lint_is_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let out = std::process::Command::new("mandoc")
        .args(["-T", "lint", "-W", "warning"])
        .arg(dir.join("vsendmail.8"))
        .arg(dir.join("virtusers.5"))
        .arg(dir.join("vsendmail.conf.5"))
        .output()
        .expect("mandoc (make test installs it)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.trim().is_empty(), "mandoc -T lint:\n{text}");
}
