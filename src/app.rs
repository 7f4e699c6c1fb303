//! The entry point, on top of everything: parse argv, load the configuration
//! and who is calling into a [`Job`], dispatch to the mode (a submission, the
//! `-bs` server, a queue job, one of the commands), and turn the result into
//! the one-line error, its syslog line and the exit code. Nothing imports
//! this module.

use crate::base::syslog::{MAX_REPLY, Syslog, text, value};
use crate::cli::invocation::{Invocation, Mode, Own};
use crate::cli::parse;
use crate::config::conf;
use crate::exit;
use crate::exit::{Error, Result};
use crate::identity::invoker::Invoker;
use crate::identity::job::Job;
use std::path::{Path, PathBuf};

/// Program entry: returns the exit code.
pub fn main(argv: Vec<String>) -> i32 {
    crate::base::stderr::ignore_file_size_signal();
    let argv0 = argv.first().cloned().unwrap_or_else(|| "sendmail".into());
    let prog = parse::prog_name(&argv0);
    let total: usize = argv.iter().map(|a| a.len() + 1).sum();
    if total > 256 * 1024 {
        return report_error(&Error::CommandLineTooLong, None);
    }
    let inv = match parse::parse(prog, &argv[1..]) {
        Ok(i) => i,
        Err(e) => return report_error(&Error::from(e), None),
    };
    for w in &inv.warnings {
        crate::base::stderr::line(&format!("vsendmail: warning: {w}"));
    }
    let mut socket = None;
    match execute(inv, &mut socket) {
        Ok(code) => code,
        Err(e) => report_error(&e, socket.as_deref()),
    }
}

/// The one-line error on stderr, and, since PHP and cron throw stderr away,
/// the refusal in syslog at `warning` with uid, user and the reason
/// (bounded, escaped), so that the administrator learns of a broken or
/// exploited site. `socket`: the configuration's syslog socket, once loaded.
fn report_error(e: &Error, socket: Option<&Path>) -> i32 {
    let code = exit::code(e);
    if !matches!(e, Error::NoMatch | Error::Quiet(_)) {
        for (i, line) in e.to_string().lines().enumerate() {
            if i == 0 {
                crate::base::stderr::line(&format!("vsendmail: {line}"));
            } else {
                crate::base::stderr::line(line);
            }
        }
    }
    // Not refusals: "nothing matched", errors already logged where they
    // happened, and the reports of -bi and --doctor.
    if !matches!(
        e,
        Error::NoMatch | Error::Quiet(_) | Error::CheckFailed { .. } | Error::DoctorFailed
    ) {
        let path = match socket {
            Some(p) => p.to_path_buf(),
            // Before the configuration was read (argv): its socket if it can
            // be read now, else the default.
            None => conf::load(Path::new(conf::DEFAULT_PATH), false)
                .map(|c| c.cfg.syslog_socket)
                .unwrap_or_else(|_| "/dev/log".into()),
        };
        let (uid, user) = match Invoker::current() {
            Ok(i) => (i.uid, i.login),
            // SAFETY: getuid has no preconditions.
            Err(_) => (unsafe { libc::getuid() }, "unknown".to_string()),
        };
        Syslog::open(&path, "vsendmail").warning(&format!(
            "uid={uid} user={} refused (exit {code}): {}",
            value(&user),
            text(&e.to_string(), MAX_REPLY)
        ));
    }
    code
}

/// `-L TAG` from root or a trusted user: the tag, restricted to characters
/// that cannot forge the rest of a syslog line.
fn syslog_tag(tag: &str) -> String {
    let t: String = tag
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
        .take(32)
        .collect();
    if t.is_empty() { "vsendmail".into() } else { t }
}

fn execute(inv: Invocation, socket: &mut Option<PathBuf>) -> Result<i32> {
    match &inv.mode {
        Mode::Own(Own::Version) => {
            println!("vsendmail {}", env!("CARGO_PKG_VERSION"));
            return Ok(0);
        }
        Mode::Own(Own::Help) => {
            println!(
                "vsendmail {}: sendmail-compatible delivery as each user's virtual identity",
                env!("CARGO_PKG_VERSION")
            );
            println!("{}", crate::cli::invocation::USAGE);
            println!(
                "own commands: --who QUERY [TIME] [--window D], --log [--user L] [--since T] [--status S] [--rcpt A] [--json], --stats [--since D] [--json], --suspend LOGIN [--action hold|refuse] [--reason TEXT], --unsuspend LOGIN, --suspended, --hold|--release|--delete SEL, --batv-check ADDR, --policy, --doctor [LOGIN...], --version, --help"
            );
            println!("see vsendmail(8), virtusers(5), vsendmail.conf(5)");
            return Ok(0);
        }
        Mode::Daemon(flag) => {
            return Err(Error::NoDaemon { flag: flag.clone() });
        }
        _ => {}
    }
    let invoker = Invoker::current()?;
    if invoker.setid {
        harden_environment();
    }
    let (path, explicit) = match &inv.config {
        Some(p) => {
            if invoker.setid && !invoker.is_root() {
                return Err(Error::OtherConfig {
                    path: p.display().to_string(),
                });
            }
            (p.clone(), true)
        }
        None => (std::path::PathBuf::from(conf::DEFAULT_PATH), false),
    };
    let cfg = conf::load(&path, explicit)?;
    *socket = Some(cfg.cfg.syslog_socket.clone());
    // -L would let any user hide a site's lines from `journalctl -t
    // vsendmail`: only root and trusted_users choose the tag.
    let may_tag = invoker.is_root() || cfg.is_trusted(&invoker.login);
    let tag = match &inv.tag {
        Some(t) if may_tag => syslog_tag(t),
        _ => "vsendmail".into(),
    };
    let log = Syslog::open(&cfg.cfg.syslog_socket, &tag);
    let caller = format!("uid={} user={}", invoker.uid, value(&invoker.login));
    if let Some(t) = inv.tag.as_deref().filter(|_| !may_tag) {
        log.info(&format!(
            "{caller}: -L {} ignored: only root and trusted_users set the syslog tag",
            value(t)
        ));
    }
    for w in &inv.warnings {
        log.warning(&format!("{caller}: warning: {}", text(w, MAX_REPLY)));
    }
    // Once per run, so nobody trusts a log that stays empty; -bi says it
    // among its own findings.
    if let Some(p) = log.problem()
        && inv.mode != Mode::Init
    {
        crate::base::stderr::line(&format!("vsendmail: warning: {p}; nothing is logged"));
    }
    let job = Job {
        inv,
        cfg,
        invoker,
        log,
    };
    match job.inv.mode.clone() {
        Mode::Deliver => crate::commands::submit::submit(&job),
        Mode::Smtp => crate::commands::serve::run(&job),
        Mode::PrintQueue => crate::commands::mailq::print(&job),
        Mode::Init => crate::commands::check::run(&job),
        Mode::Verify => crate::commands::verify::run(&job),
        Mode::QueueRun(q) => crate::commands::queue_run::run(&job, &q),
        Mode::Own(own) => own_command(&job, own),
        Mode::Daemon(_) => unreachable!("handled above"),
    }
}

/// vsendmail's own `--commands`.
fn own_command(job: &Job, own: Own) -> Result<i32> {
    match own {
        Own::Who {
            query,
            time,
            window,
        } => crate::commands::who::who(job, &query, time.as_deref(), window.as_deref()),
        Own::Log(q) => crate::commands::log::run(job, &q),
        Own::Stats { since, json } => crate::commands::stats::run(job, since.as_deref(), json),
        Own::Suspend {
            login,
            action,
            reason,
        } => crate::commands::suspend::suspend(job, &login, action.as_deref(), reason.as_deref()),
        Own::Unsuspend(login) => crate::commands::suspend::unsuspend(job, &login),
        Own::Suspended => crate::commands::suspend::list(job),
        Own::Hold(sel) => crate::commands::admin::hold(job, &sel),
        Own::Release(sel) => crate::commands::admin::release(job, &sel),
        Own::Delete(sel) => crate::commands::admin::delete(job, &sel),
        Own::BatvCheck(addr) => crate::commands::batv_check::run(job, &addr),
        Own::Policy => crate::commands::policy::serve(job),
        Own::Doctor(logins) => crate::commands::doctor::run(job, &logins),
        Own::Version | Own::Help => Ok(0),
    }
}

/// Running set-id: nothing may come from the environment. Clear it, so no
/// library and no child sees a caller's SSL_CERT_FILE, TZ, LOCPATH ...
fn harden_environment() {
    let keys: Vec<std::ffi::OsString> = std::env::vars_os().map(|(k, _)| k).collect();
    for k in keys {
        // SAFETY: called at start-up, before any thread exists.
        unsafe { std::env::remove_var(&k) };
    }
    // SAFETY: as above.
    unsafe { std::env::set_var("PATH", "/usr/sbin:/usr/bin:/sbin:/bin") };
}
