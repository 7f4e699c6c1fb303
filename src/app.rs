//! The entry point, on top of everything: parse argv, load the configuration
//! and who is calling into a [`Job`], dispatch to the mode (a submission, the
//! `-bs` server, a queue job, one of the commands), and turn the result into
//! the one-line error and the exit code. Nothing imports this module.

use crate::base::syslog::Syslog;
use crate::cli::invocation::{Invocation, Mode, Own};
use crate::cli::parse;
use crate::config::conf;
use crate::exit;
use crate::exit::{Error, Result};
use crate::identity::invoker::Invoker;
use crate::identity::job::Job;

/// Program entry: returns the exit code.
pub fn main(argv: Vec<String>) -> i32 {
    let argv0 = argv.first().cloned().unwrap_or_else(|| "sendmail".into());
    let prog = parse::prog_name(&argv0);
    let total: usize = argv.iter().map(|a| a.len() + 1).sum();
    if total > 256 * 1024 {
        return report_error(&Error::CommandLineTooLong);
    }
    let inv = match parse::parse(prog, &argv[1..]) {
        Ok(i) => i,
        Err(e) => return report_error(&Error::from(e)),
    };
    for w in &inv.warnings {
        eprintln!("vsendmail: warning: {w}");
    }
    match execute(inv) {
        Ok(code) => code,
        Err(e) => report_error(&e),
    }
}

fn report_error(e: &Error) -> i32 {
    let code = exit::code(e);
    if !matches!(e, Error::NoMatch | Error::Quiet(_)) {
        for (i, line) in e.to_string().lines().enumerate() {
            if i == 0 {
                eprintln!("vsendmail: {line}");
            } else {
                eprintln!("{line}");
            }
        }
    }
    code
}

fn execute(inv: Invocation) -> Result<i32> {
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
                "own commands: --who QUERY [TIME] [--window D], --hold|--release|--delete SEL, --batv-check ADDR, --policy, --doctor [LOGIN...], --version, --help"
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
    let tag = inv.tag.clone().unwrap_or_else(|| "vsendmail".into());
    let log = Syslog::open(&cfg.cfg.syslog_socket, &tag);
    // Once per run, so nobody trusts a log that stays empty; -bi says it
    // among its own findings.
    if let Some(p) = log.problem()
        && inv.mode != Mode::Init
    {
        eprintln!("vsendmail: warning: {p}; nothing is logged");
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
