//! The sendmail command line -> [`Invocation`] (what was typed, nothing looked up).
//!
//! Hand-written on purpose: sendmail's grammar has glued values (`-fbob@x`,
//! `-FCronDaemon`, `-oem`, `-odq`, `-q5m`, `-B8BITMIME`), grouped flags (`-ti`),
//! multi-letter options behind one letter (`-oi`, `-bs`), values that must
//! stay glued (`-q a@b` must not swallow a recipient), legacy flags to accept
//! and ignore, and our own `--commands`. getopts fails on unknown flags and
//! lets `-q` swallow the next word; clap cannot express `-oem`. An argument is
//! an option only where this grammar says so; everything else is a recipient,
//! checked by `address::validate` (no leading `-`, spaces, controls).

use crate::base::dsn::ErrorMode;
use crate::cli::invocation::{
    BodyType, CliError, DeliveryMode, Invocation, LogQuery, MAX_FULL_NAME, Mode, Own, ProgName,
    QueueFilter, QueueRun,
};
use std::path::PathBuf;

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// Which program argv[0] names.
pub fn prog_name(argv0: &str) -> ProgName {
    let base = argv0.rsplit('/').next().unwrap_or(argv0);
    match base {
        "mailq" => ProgName::Mailq,
        "newaliases" => ProgName::Newaliases,
        _ => ProgName::Sendmail,
    }
}

/// Parse argv (without argv[0]) for the program `prog`.
pub fn parse(prog: ProgName, args: &[String]) -> Result<Invocation, CliError> {
    let mut inv = Invocation::default();
    match prog {
        ProgName::Mailq => inv.mode = Mode::PrintQueue,
        ProgName::Newaliases => inv.mode = Mode::Init,
        ProgName::Sendmail => {}
    }
    let mut i = 0;
    // Own commands: the first argument, or the first after -C FILE.
    let mut own_at = 0;
    if let Some(a) = args.first() {
        if a == "-C" && args.len() > 1 {
            own_at = 2;
        } else if a.starts_with("-C") && a.len() > 2 {
            own_at = 1;
        }
    }
    if let Some(cmd) = args
        .get(own_at)
        .filter(|a| a.starts_with("--") && a.len() > 2)
    {
        if own_at == 2 {
            inv.config = Some(PathBuf::from(&args[1]));
        } else if own_at == 1 {
            inv.config = Some(PathBuf::from(&args[0][2..]));
        }
        inv.mode = Mode::Own(parse_own(cmd, &args[own_at + 1..])?);
        return Ok(inv);
    }
    let mut recipients_only = false;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if recipients_only || !arg.starts_with('-') || arg == "-" {
            if recipients_only && arg.starts_with('-') {
                // `--` ends the flags, but a recipient still may not look like one.
                crate::base::address::validate(arg, "recipient")?;
            }
            add_recipients(&mut inv, arg)?;
            continue;
        }
        if arg == "--" {
            recipients_only = true;
            continue;
        }
        if arg.starts_with("--") {
            return Err(usage(format!(
                "unknown option {arg} (vsendmail's own --commands must come first)"
            )));
        }
        let flags: Vec<char> = arg[1..].chars().collect();
        let mut k = 0;
        while k < flags.len() {
            let c = flags[k];
            let rest: String = flags[k + 1..].iter().collect();
            // A value glued to the flag, or the next argument.
            let mut value = |name: &str| -> Result<String, CliError> {
                if !rest.is_empty() {
                    Ok(rest.clone())
                } else if i < args.len() {
                    i += 1;
                    Ok(args[i - 1].clone())
                } else {
                    Err(usage(format!("-{name} needs a value")))
                }
            };
            match c {
                't' => inv.read_recipients = true,
                'i' => inv.ignore_dots = true,
                'v' => inv.verbose = true,
                'n' | 'U' | 'm' | 'G' => {}
                'f' | 'r' => {
                    let v = value(&c.to_string())?;
                    let a = crate::base::address::validate(&v, "sender")?;
                    inv.sender = Some(a);
                    break;
                }
                'F' => {
                    let v = value("F")?;
                    if v.chars().any(|c| c.is_control()) {
                        return Err(usage("-F name contains a control character"));
                    }
                    if v.chars().count() > MAX_FULL_NAME {
                        return Err(usage(format!(
                            "-F name is longer than {MAX_FULL_NAME} characters"
                        )));
                    }
                    inv.full_name = Some(v);
                    break;
                }
                'C' => {
                    inv.config = Some(PathBuf::from(value("C")?));
                    break;
                }
                'X' => {
                    let v = value("X")?;
                    inv.warnings.push(format!(
                        "-X {} refused: vsendmail never writes a traffic log file (use -v)",
                        crate::base::address::printable(&v)
                    ));
                    break;
                }
                'B' => {
                    let v = value("B")?;
                    inv.body = Some(match v.to_ascii_uppercase().as_str() {
                        "7BIT" => BodyType::SevenBit,
                        "8BITMIME" => BodyType::EightBitMime,
                        _ => return Err(usage(format!("-B {v}: use 7BIT or 8BITMIME"))),
                    });
                    break;
                }
                'L' => {
                    let v = value("L")?;
                    if v.is_empty() || v.len() > 32 || !v.chars().all(|c| c.is_ascii_graphic()) {
                        return Err(usage("-L tag must be 1-32 printable characters"));
                    }
                    inv.tag = Some(v);
                    break;
                }
                'N' => {
                    let v = value("N")?.to_ascii_lowercase();
                    let ok = v == "never"
                        || v.split(',')
                            .all(|p| matches!(p, "success" | "failure" | "delay"));
                    if !ok {
                        return Err(usage(format!(
                            "-N {v}: use never, or a list of success,failure,delay"
                        )));
                    }
                    inv.dsn_notify = Some(v.to_ascii_uppercase());
                    break;
                }
                'R' => {
                    let v = value("R")?.to_ascii_lowercase();
                    if v != "full" && v != "hdrs" {
                        return Err(usage(format!("-R {v}: use full or hdrs")));
                    }
                    inv.dsn_ret = Some(v.to_ascii_uppercase());
                    break;
                }
                'V' => {
                    let v = value("V")?;
                    if v.is_empty()
                        || v.len() > 100
                        || !v
                            .chars()
                            .all(|c| c.is_ascii_graphic() && c != '+' && c != '=')
                    {
                        return Err(usage("-V envid must be printable ASCII without '+' or '='"));
                    }
                    inv.envid = Some(v);
                    break;
                }
                'h' => {
                    value("h")?;
                    break;
                }
                // Legacy flags that take a value in sendmail's getopt
                // grammar (`-d0.1`, `-d 0.1`, `-Ac`, `-pESMTP:host`): the
                // value is consumed (so it never becomes a recipient) and
                // ignored; at the end of argv they are ignored alone.
                'd' | 'A' | 'p' => {
                    let _ = value(&c.to_string());
                    break;
                }
                'b' => {
                    let v = value("b")?;
                    inv.mode = match v.as_str() {
                        "m" => Mode::Deliver,
                        "s" => Mode::Smtp,
                        "p" => Mode::PrintQueue,
                        "i" => Mode::Init,
                        "v" => Mode::Verify,
                        "d" | "D" => Mode::Daemon(format!("-b{v}")),
                        _ => return Err(usage(format!("-b{v} is not supported"))),
                    };
                    break;
                }
                'q' => {
                    inv.mode = Mode::QueueRun(parse_queue(&rest)?);
                    break;
                }
                'o' => {
                    let v = value("o")?;
                    parse_o(&mut inv, &v)?;
                    break;
                }
                'O' => {
                    let v = value("O")?;
                    parse_big_o(&mut inv, &v)?;
                    break;
                }
                _ => return Err(usage(format!("unknown option -{c}"))),
            }
            k += 1;
        }
    }
    if inv.recipients.is_empty() && inv.mode == Mode::Deliver && !inv.read_recipients {
        // Reported by the app with the right wording; nothing to do here.
    }
    Ok(inv)
}

fn add_recipients(inv: &mut Invocation, arg: &str) -> Result<(), CliError> {
    for part in arg.split(',') {
        let p = part.trim();
        if p.is_empty() {
            continue;
        }
        let a = crate::base::address::validate(p, "recipient")?;
        if a.is_empty() {
            return Err(usage("<> is not a recipient"));
        }
        inv.recipients.push(a);
    }
    Ok(())
}

/// `-o` options: `-oi`, `-oem`, `-odq`, ... ; the rest are legacy and ignored,
/// except the queue-directory and log-file spellings, which are refused loudly.
fn parse_o(inv: &mut Invocation, v: &str) -> Result<(), CliError> {
    let mut ch = v.chars();
    let Some(letter) = ch.next() else {
        return Err(usage("-o needs an option letter"));
    };
    let arg: String = ch.collect();
    match letter {
        'i' => inv.ignore_dots = arg.is_empty() || matches!(arg.as_str(), "T" | "t" | "true"),
        'e' => {
            inv.errors = Some(match arg.as_str() {
                "m" | "w" => ErrorMode::Mail,
                "p" | "" => ErrorMode::Print,
                "q" => ErrorMode::Quiet,
                "e" => ErrorMode::Print,
                _ => return Err(usage(format!("-oe{arg}: use -oem, -oep or -oeq"))),
            })
        }
        'd' => {
            inv.delivery = match arg.as_str() {
                "i" | "" => DeliveryMode::Interactive,
                "b" => DeliveryMode::Background,
                "q" | "d" => DeliveryMode::QueueOnly,
                _ => return Err(usage(format!("-od{arg}: use -odi, -odb or -odq"))),
            }
        }
        // Sendmail's options that name files (queue directory, traffic log,
        // alias, help and status files) or the log level: never used.
        'Q' | 'X' | 'L' | 'A' | 'H' | 'S' => inv.warnings.push(format!(
            "-o{letter}{} ignored: vsendmail's spool and logs are set by the administrator only",
            crate::base::address::printable(&arg)
        )),
        _ => {}
    }
    Ok(())
}

/// `-O Name=value`: IgnoreDots, DeliveryMode, ErrorMode understood; queue
/// directory and log options refused with a warning; the rest ignored.
fn parse_big_o(inv: &mut Invocation, v: &str) -> Result<(), CliError> {
    let (k, val) = v.split_once('=').unwrap_or((v, "true"));
    let (k, val) = (k.trim(), val.trim());
    // The first character of the value (not byte: `-ODeliveryMode=é` must not panic).
    let first: String = val.chars().take(1).collect();
    match k.to_ascii_lowercase().as_str() {
        "ignoredots" => {
            inv.ignore_dots = matches!(
                val.to_ascii_lowercase().as_str(),
                "true" | "t" | "yes" | "1"
            )
        }
        "deliverymode" => parse_o(inv, &format!("d{first}"))?,
        "errormode" => parse_o(inv, &format!("e{first}"))?,
        "queuedirectory"
        | "logfile"
        | "statusfile"
        | "helpfile"
        | "aliasfile"
        | "deadletterdrop"
        | "errorheader"
        | "forwardpath"
        | "pidfile"
        | "hoststatusdirectory"
        | "safefilenvironment"
        | "controlsocketname" => inv.warnings.push(format!(
            "-O {}= ignored: vsendmail's files are set by the administrator only",
            crate::base::address::printable(k)
        )),
        _ => {}
    }
    Ok(())
}

/// `-q`, `-q5m`, `-qIid`, `-qRdomain`, `-qSsender`, `-qf` (foreground: same).
fn parse_queue(rest: &str) -> Result<QueueRun, CliError> {
    let mut q = QueueRun::default();
    let mut r = rest;
    if let Some(x) = r.strip_prefix('f') {
        r = x;
    }
    if r.is_empty() {
        return Ok(q);
    }
    let sel = |v: &str| -> Result<String, CliError> {
        if v.is_empty() || v.chars().any(|c| c.is_control() || c == ' ') {
            Err(usage(
                "-qI/-qR/-qS need a value glued to them (e.g. -qRexample.org)",
            ))
        } else {
            Ok(v.to_string())
        }
    };
    // sendmail allows a leading `!` (negation); we do not.
    match r.as_bytes()[0] {
        b'I' => q.filters.push(QueueFilter::Id(sel(&r[1..])?)),
        b'R' => q.filters.push(QueueFilter::Recipient(sel(&r[1..])?)),
        b'S' => q.filters.push(QueueFilter::Sender(sel(&r[1..])?)),
        b'0'..=b'9' => {
            q.interval = Some(
                crate::base::duration::parse_duration(r)
                    .ok_or_else(|| usage(format!("-q{r}: not an interval (e.g. -q5m, -q1h)")))?,
            )
        }
        _ => return Err(usage(format!("-q{r} is not supported"))),
    }
    Ok(q)
}

/// The options of vsendmail's own commands that take a value, and the
/// commands each belongs to.
const VALUE_OPTIONS: [(&str, &[&str]); 7] = [
    ("--window", &["--who"]),
    ("--user", &["--log"]),
    ("--since", &["--log", "--stats"]),
    ("--status", &["--log"]),
    ("--rcpt", &["--log"]),
    ("--action", &["--suspend"]),
    ("--reason", &["--suspend"]),
];

fn parse_own(cmd: &str, rest: &[String]) -> Result<Own, CliError> {
    let mut pos: Vec<String> = Vec::new();
    let mut opts: std::collections::HashMap<&'static str, String> = Default::default();
    let mut json = false;
    let mut i = 0;
    let mut only_pos = false;
    while i < rest.len() {
        let a = &rest[i];
        i += 1;
        if !only_pos && a == "--" {
            only_pos = true;
            continue;
        }
        if only_pos || !a.starts_with('-') || a.len() == 1 {
            pos.push(a.clone());
            continue;
        }
        if a == "--json" {
            if cmd != "--log" && cmd != "--stats" {
                return Err(usage("--json belongs to --log and --stats"));
            }
            json = true;
            continue;
        }
        let (name, glued) = match a.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        let Some((key, cmds)) = VALUE_OPTIONS.iter().find(|(k, _)| *k == name) else {
            return Err(usage(format!("{cmd}: unknown option {a}")));
        };
        if !cmds.contains(&cmd) {
            return Err(usage(format!("{key} belongs to {}", cmds.join(", "))));
        }
        let v = match glued {
            Some(v) => v,
            None => {
                i += 1;
                rest.get(i - 1)
                    .cloned()
                    .ok_or_else(|| usage(format!("{key} needs a value")))?
            }
        };
        opts.insert(key, v);
    }
    let one = |what: &str| -> Result<String, CliError> {
        if pos.len() != 1 {
            return Err(usage(format!("{cmd} takes exactly one {what}")));
        }
        Ok(pos[0].clone())
    };
    let none = || -> Result<(), CliError> {
        if pos.is_empty() {
            Ok(())
        } else {
            Err(usage(format!("{cmd} takes no arguments")))
        }
    };
    let mut opt = |k: &str| opts.remove(k);
    Ok(match cmd {
        "--who" => {
            if pos.is_empty() || pos.len() > 2 {
                return Err(usage("--who QUERY [TIME] [--window DURATION]"));
            }
            Own::Who {
                query: pos[0].clone(),
                time: pos.get(1).cloned(),
                window: opt("--window"),
            }
        }
        "--log" => {
            none()?;
            Own::Log(LogQuery {
                user: opt("--user"),
                since: opt("--since"),
                status: opt("--status"),
                rcpt: opt("--rcpt"),
                json,
            })
        }
        "--stats" => {
            none()?;
            Own::Stats {
                since: opt("--since"),
                json,
            }
        }
        "--suspend" => Own::Suspend {
            login: one("login name")?,
            action: opt("--action"),
            reason: opt("--reason"),
        },
        "--unsuspend" => Own::Unsuspend(one("login name")?),
        "--suspended" => {
            none()?;
            Own::Suspended
        }
        "--hold" => Own::Hold(one("selector (queue id, user=LOGIN or ALL)")?),
        "--release" => Own::Release(one("selector (queue id, user=LOGIN or ALL)")?),
        "--delete" => Own::Delete(one("selector (queue id, user=LOGIN or ALL)")?),
        "--batv-check" => Own::BatvCheck(one("address")?),
        "--policy" => {
            none()?;
            Own::Policy
        }
        "--doctor" => Own::Doctor(pos),
        "--version" => {
            none()?;
            Own::Version
        }
        "--help" => Own::Help,
        _ => return Err(usage(format!("unknown command {cmd}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn p(args: &[&str]) -> Result<Invocation, CliError> {
        parse(
            ProgName::Sendmail,
            &args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn glued_and_separate_values() {
        assert_eq!(
            p(&["-fbob@x.example"]).unwrap().sender.as_deref(),
            Some("bob@x.example")
        );
        assert_eq!(
            p(&["-f", "bob@x.example"]).unwrap().sender.as_deref(),
            Some("bob@x.example")
        );
        assert_eq!(p(&["-r", "<>"]).unwrap().sender.as_deref(), Some(""));
        assert_eq!(
            p(&["-FCronDaemon"]).unwrap().full_name.as_deref(),
            Some("CronDaemon")
        );
        assert_eq!(
            p(&["-F", "Cron Daemon"]).unwrap().full_name.as_deref(),
            Some("Cron Daemon")
        );
        assert_eq!(
            p(&["-B8BITMIME"]).unwrap().body,
            Some(BodyType::EightBitMime)
        );
        assert_eq!(p(&["-B", "7bit"]).unwrap().body, Some(BodyType::SevenBit));
    }

    #[test]
    fn grouped_flags() {
        let i = p(&["-ti", "a@x"]).unwrap();
        assert!(i.read_recipients && i.ignore_dots);
        assert_eq!(i.recipients, vec!["a@x"]);
        let i = p(&["-tif", "s@x"]).unwrap();
        assert_eq!(i.sender.as_deref(), Some("s@x"));
    }

    #[test]
    fn an_explicit_oe_is_told_from_none() {
        assert_eq!(p(&["a@x"]).unwrap().errors, None);
        assert_eq!(p(&["-oep", "a@x"]).unwrap().errors, Some(ErrorMode::Print));
        assert_eq!(
            p(&["-OErrorMode=p", "a@x"]).unwrap().errors,
            Some(ErrorMode::Print)
        );
        assert_eq!(p(&["-oeq", "a@x"]).unwrap().errors, Some(ErrorMode::Quiet));
    }

    #[test]
    fn cron_lines() {
        let i = p(&["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "alice"]).unwrap();
        assert_eq!(i.errors, Some(ErrorMode::Mail));
        assert_eq!(i.recipients, vec!["alice"]);
        let i = p(&[
            "-FCronDaemon",
            "-i",
            "-odi",
            "-oem",
            "-oi",
            "-t",
            "-f",
            "root",
        ])
        .unwrap();
        assert!(i.read_recipients);
        assert_eq!(i.delivery, DeliveryMode::Interactive);
    }

    #[test]
    fn modes_and_queue() {
        assert_eq!(p(&["-bs"]).unwrap().mode, Mode::Smtp);
        assert_eq!(p(&["-bp"]).unwrap().mode, Mode::PrintQueue);
        assert_eq!(
            p(&["-odq", "a@x"]).unwrap().delivery,
            DeliveryMode::QueueOnly
        );
        assert_eq!(
            p(&["-q"]).unwrap().mode,
            Mode::QueueRun(QueueRun::default())
        );
        match p(&["-q5m"]).unwrap().mode {
            Mode::QueueRun(q) => assert_eq!(q.interval, Some(Duration::from_secs(300))),
            m => panic!("{m:?}"),
        }
        match p(&["-qRexample.org"]).unwrap().mode {
            Mode::QueueRun(q) => assert_eq!(
                q.filters,
                vec![QueueFilter::Recipient("example.org".into())]
            ),
            m => panic!("{m:?}"),
        }
        // -q never swallows the next word.
        let i = p(&["-q", "a@b"]).unwrap();
        assert_eq!(i.recipients, vec!["a@b"]);
        assert!(matches!(p(&["-bd"]).unwrap().mode, Mode::Daemon(_)));
    }

    #[test]
    fn recipients_commas_and_double_dash() {
        let i = p(&["a@x, b@y", "c@z"]).unwrap();
        assert_eq!(i.recipients, vec!["a@x", "b@y", "c@z"]);
        let i = p(&["-i", "--", "a@x"]).unwrap();
        assert_eq!(i.recipients, vec!["a@x"]);
        assert!(matches!(
            p(&["--", "-oQ/tmp"]),
            Err(CliError::BadAddress(_))
        ));
    }

    #[test]
    fn refusals() {
        assert!(matches!(p(&["-Z"]), Err(CliError::Usage(_))));
        assert!(matches!(p(&["-f", "a b@x"]), Err(CliError::BadAddress(_))));
        assert!(matches!(p(&["-f"]), Err(CliError::Usage(_))));
        let i = p(&["-X", "/var/www/x.php", "a@x"]).unwrap();
        assert_eq!(i.recipients, vec!["a@x"]);
        assert_eq!(i.warnings.len(), 1);
        let i = p(&["-oQ/tmp/", "a@x"]).unwrap();
        assert_eq!(i.warnings.len(), 1);
        // PHPMailer CVE-2016-10033 payload as one -f argument.
        assert!(
            p(&["-fattacker\\\" -oQ/tmp/ -X/var/www/cache/phpcode.php some\"@email.com"]).is_err()
        );
    }

    #[test]
    fn own_commands() {
        assert_eq!(
            p(&[
                "--who",
                "192.0.2.10:40312",
                "2026-11-23 12:03",
                "--window",
                "5m"
            ])
            .unwrap()
            .mode,
            Mode::Own(Own::Who {
                query: "192.0.2.10:40312".into(),
                time: Some("2026-11-23 12:03".into()),
                window: Some("5m".into())
            })
        );
        let i = p(&["-C", "/tmp/c.conf", "--hold", "ALL"]).unwrap();
        assert_eq!(i.mode, Mode::Own(Own::Hold("ALL".into())));
        assert_eq!(i.config, Some(PathBuf::from("/tmp/c.conf")));
        assert!(p(&["a@x", "--who", "x"]).is_err());
        assert_eq!(parse(ProgName::Mailq, &[]).unwrap().mode, Mode::PrintQueue);
    }

    #[test]
    fn abuse_desk_commands_take_their_options_anywhere() {
        assert_eq!(
            p(&[
                "--log",
                "--json",
                "--user=alice",
                "--since",
                "2h",
                "--status",
                "sent"
            ])
            .unwrap()
            .mode,
            Mode::Own(Own::Log(LogQuery {
                user: Some("alice".into()),
                since: Some("2h".into()),
                status: Some("sent".into()),
                rcpt: None,
                json: true,
            }))
        );
        assert_eq!(
            p(&[
                "--suspend",
                "--reason",
                "spam run",
                "alice",
                "--action",
                "hold"
            ])
            .unwrap()
            .mode,
            Mode::Own(Own::Suspend {
                login: "alice".into(),
                action: Some("hold".into()),
                reason: Some("spam run".into()),
            })
        );
        assert_eq!(
            p(&["--stats"]).unwrap().mode,
            Mode::Own(Own::Stats {
                since: None,
                json: false
            })
        );
        assert!(p(&["--stats", "--user", "a"]).is_err());
        assert!(p(&["--suspend"]).is_err());
        assert!(p(&["--suspended", "x"]).is_err());
        assert!(p(&["--who", "x", "--json"]).is_err());
        assert!(p(&["--log", "--since"]).is_err());
    }

    #[test]
    fn legacy_value_flags_consume_their_value() {
        // sendmail's getopt: -d, -A, -p take a value, glued or separate.
        let i = p(&["-d", "0.1", "a@x"]).unwrap();
        assert_eq!(i.recipients, vec!["a@x"]);
        let i = p(&["-pESMTP:host", "-A", "c", "a@x"]).unwrap();
        assert_eq!(i.recipients, vec!["a@x"]);
        assert!(p(&["a@x", "-d"]).is_ok());
    }

    #[test]
    fn non_ascii_option_values_do_not_panic() {
        assert!(p(&["-ODeliveryMode=\u{e9}", "a@x"]).is_err());
        assert!(p(&["-OErrorMode=\u{1F600}", "a@x"]).is_err());
        assert!(p(&["-q\u{e9}"]).is_err());
        assert!(p(&["-o\u{e9}x", "a@x"]).is_ok());
        assert!(p(&["-\u{e9}"]).is_err());
    }

    #[test]
    fn full_name_is_bounded() {
        assert!(p(&["-F", &"n".repeat(MAX_FULL_NAME), "a@x"]).is_ok());
        assert!(matches!(
            p(&["-F", &"n".repeat(MAX_FULL_NAME + 1), "a@x"]),
            Err(CliError::Usage(_))
        ));
    }

    /// Known argv injection payloads, as they reach us after a shell split
    /// them (PHP mail() runs `sh -c`): each is refused, or the dangerous parts
    /// are only warnings. Nothing here may name a config or become a sender
    /// that carries the payload.
    #[test]
    fn injection_payloads() {
        // PHPMailer CVE-2016-10033 after escapeshellcmd.
        assert!(
            p(&[
                "-fattacker\\",
                "-oQ/tmp/",
                "-X/var/www/cache/phpcode.php",
                "some\"@email.com"
            ])
            .is_err()
        );
        // PHPMailer CVE-2016-10045: escapeshellarg + escapeshellcmd.
        assert!(
            p(&[
                "-f'attacker\\\\'",
                "-oQ/tmp/",
                "-X/var/www/cache/phpcode.php",
                "some\"@email.com"
            ])
            .is_err()
        );
        // As one argument (proc_open with an array, or a quoting caller).
        for payload in [
            "\"attacker\\\" -oQ/tmp/ -X/var/www/cache/phpcode.php some\"@email.com",
            "\"attacker\\' -oQ/tmp/ -X/var/www/cache/phpcode.php some\\\"@email.com",
            "attacker@example.com -OQueueDirectory=/tmp -X/var/www/html/rce.php",
            "${run{/bin/touch /tmp/pwned}}@x.example",
            "a@${run{/usr/bin/id}}",
            "-oQ/tmp/",
            "a@x\r\nRCPT TO:<victim@y.example>",
            "a\\@x.example",
        ] {
            assert!(
                p(&["-f", payload, "a@x"]).is_err(),
                "-f {payload:?} accepted"
            );
            assert!(
                p(&[&format!("-f{payload}"), "a@x"]).is_err(),
                "-f{payload:?} accepted"
            );
            assert!(
                p(&["-t", "--", payload]).is_err(),
                "recipient {payload:?} accepted"
            );
        }
        // The dangerous flags themselves only ever warn.
        let i = p(&[
            "-t",
            "-OQueueDirectory=/tmp",
            "-X",
            "/var/www/x.php",
            "-oQ/tmp/",
            "-O",
            "QueueDirectory = /x",
        ])
        .unwrap();
        assert_eq!(i.warnings.len(), 4, "{:?}", i.warnings);
        assert!(i.recipients.is_empty() && i.config.is_none());
        // Exim's expansion test mode does not exist here.
        assert!(matches!(
            p(&["-be", "${run{/bin/touch /tmp/x}}"]),
            Err(CliError::Usage(_))
        ));
    }

    #[test]
    fn dsn_flags() {
        let i = p(&["-N", "success,failure", "-R", "hdrs", "-V", "abc", "a@x"]).unwrap();
        assert_eq!(i.dsn_notify.as_deref(), Some("SUCCESS,FAILURE"));
        assert_eq!(i.dsn_ret.as_deref(), Some("HDRS"));
        assert_eq!(i.envid.as_deref(), Some("abc"));
    }
}
