//! The run, as the contract reads: parse argv, load who is sending, take the
//! message into the spool, and from there on the mail is safe: deliver, report,
//! exit with the mapped code. Other modes dispatch to their modules.

use crate::base::dsn::ErrorMode;
use crate::cli::{self, DeliveryMode, Invocation, Mode, Own};
use crate::clock::unix_now;
use crate::config::{self, Loaded};
use crate::deliver::{self, Report};
use crate::exit;
use crate::identity::Identity;
use crate::invoker::Invoker;
use crate::message::{self, IntakeOptions, Limits};
use crate::base::dsn::Dsn;
use crate::spool::{Envelope, Locked, Recipient, Spool};
use crate::syslog::Syslog;
use crate::virtusers::Table;
use crate::{Error, Result};
use std::io::BufRead;

/// Everything a mode needs about this run.
pub struct Run {
    pub inv: Invocation,
    pub cfg: Loaded,
    pub invoker: Invoker,
    pub log: Syslog,
}

impl Run {
    pub fn trusted(&self) -> bool {
        self.cfg.is_trusted(&self.invoker.login)
    }

    pub fn spool(&self) -> Result<Spool> {
        Ok(Spool::open(&self.cfg.cfg.spool)?)
    }

    /// The invoking user's identity from virtusers (or the host identity).
    pub fn identity(&self) -> Result<Identity> {
        identity_of(&self.cfg, &self.invoker)
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_message_size: self.cfg.cfg.max_message_size,
            max_header_size: self.cfg.cfg.max_header_size,
            max_line_length: self.cfg.cfg.max_line_length,
        }
    }
}

/// Resolve a user's identity as virtusers says today.
pub fn identity_of(cfg: &Loaded, who: &Invoker) -> Result<Identity> {
    let table = Table::read(&cfg.cfg.virtusers)?;
    let entry = table.lookup_with(&who.login, || who.groups().to_vec())?;
    let id = Identity::resolve(entry.as_ref(), &who.login, who.uid, &cfg.hostname);
    Ok(id)
}

/// Program entry: returns the exit code.
pub fn main(argv: Vec<String>) -> i32 {
    let argv0 = argv.first().cloned().unwrap_or_else(|| "sendmail".into());
    let prog = cli::prog_name(&argv0);
    let total: usize = argv.iter().map(|a| a.len() + 1).sum();
    if total > 256 * 1024 {
        eprintln!(
            "vsendmail: the command line is longer than 256 KiB; pass recipients with -t instead"
        );
        return exit::USAGE;
    }
    let inv = match cli::parse(prog, &argv[1..]) {
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
    if !matches!(e, Error::NoMatch) {
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
            println!("{}", cli::USAGE);
            println!(
                "own commands: --who QUERY [TIME] [--window D], --hold|--release|--delete SEL, --batv-check ADDR, --policy, --doctor [LOGIN...], --version, --help"
            );
            println!("see vsendmail(8), virtusers(5), vsendmail.conf(5)");
            return Ok(0);
        }
        Mode::Daemon(flag) => {
            return Err(Error::Usage(format!(
                "{flag}: vsendmail has no daemon mode; it delivers when called, and `vsendmail -q` from cron or the systemd timer retries the queue"
            )));
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
                return Err(Error::NoPerm(format!(
                    "-C {} refused: vsendmail runs set-id, and only root may choose another configuration",
                    p.display()
                )));
            }
            (p.clone(), true)
        }
        None => (std::path::PathBuf::from(config::DEFAULT_PATH), false),
    };
    let cfg = config::load(&path, explicit)?;
    let tag = inv.tag.clone().unwrap_or_else(|| "vsendmail".into());
    let log = Syslog::open(&cfg.cfg.syslog_socket, &tag);
    let run = Run {
        inv,
        cfg,
        invoker,
        log,
    };
    match run.inv.mode.clone() {
        Mode::Deliver => submit(&run),
        Mode::Smtp => crate::serve::run(&run),
        Mode::PrintQueue => crate::mailq::print(&run),
        Mode::Init => crate::check::run(&run),
        Mode::Verify => crate::verify::run(&run),
        Mode::QueueRun(q) => crate::runner::run(&run, &q),
        Mode::Own(own) => own_command(&run, own),
        Mode::Daemon(_) => unreachable!("handled above"),
    }
}

/// vsendmail's own `--commands`.
fn own_command(run: &Run, own: Own) -> Result<i32> {
    match own {
        Own::Who {
            query,
            time,
            window,
        } => crate::audit::who(run, &query, time.as_deref(), window.as_deref()),
        Own::Hold(sel) => crate::admin::hold(run, &sel),
        Own::Release(sel) => crate::admin::release(run, &sel),
        Own::Delete(sel) => crate::admin::delete(run, &sel),
        Own::BatvCheck(addr) => crate::batv::check_command(run, &addr),
        Own::Policy => crate::policy::serve(run),
        Own::Doctor(logins) => crate::doctor::run(run, &logins),
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

/// What a submission (argv mode or one -bs transaction) asks for.
pub struct Submission<'a> {
    pub requested_sender: Option<&'a str>,
    pub recipients: Vec<String>,
    pub read_recipients: bool,
    pub ignore_dots: bool,
    pub full_name: Option<&'a str>,
    pub dsn: Dsn,
    pub errors: ErrorMode,
    /// A delivery attempt follows at once (-odi, -bs).
    pub deliver_now: bool,
    /// SMTP DATA: the message must end with a `.` line.
    pub require_dot: bool,
}

/// Take a message from `input` into the spool. Returns the locked, queued
/// message: from the moment this returns Ok, the mail is safe.
pub fn accept<R: BufRead>(
    run: &Run,
    identity: &Identity,
    sub: &Submission,
    input: &mut R,
) -> Result<Locked> {
    let trusted = run.trusted();
    let choice =
        identity.envelope_sender(sub.requested_sender, trusted, run.cfg.cfg.sender_policy)?;
    if let Some(w) = &choice.warning {
        run.log.warning(&format!(
            "uid={} user={}: sender rewritten: {w}",
            identity.uid, identity.login
        ));
    }
    let spool = run.spool()?;
    let mut draft = spool.draft()?;
    let taken = message::take(
        input,
        &mut draft,
        &IntakeOptions {
            ignore_dots: sub.ignore_dots,
            require_dot: sub.require_dot,
            read_recipients: sub.read_recipients,
            identity,
            full_name: sub.full_name,
            hostname: &run.cfg.hostname,
            auth_warning: choice.warning.as_deref(),
            from_policy: run.cfg.cfg.from_policy,
            trusted,
            limits: run.limits(),
            now: unix_now() as i64,
        },
    )?;
    let recipients = expand_recipients(
        run,
        identity,
        &sub.recipients,
        &taken.header_recipients,
        sub.read_recipients,
    )?;
    let smtputf8 = !choice.sender.is_ascii() || recipients.iter().any(|r| !r.addr.is_ascii());
    let mut env = Envelope::new(
        draft.id.clone(),
        identity.clone(),
        choice.sender.clone(),
        recipients,
        taken.size,
    );
    env.message_id = Some(taken.message_id.clone());
    // -B8BITMIME is only a hint: BODY=8BITMIME is declared when 8-bit bytes are there.
    env.eightbit = taken.eightbit;
    env.smtputf8 = smtputf8;
    env.utf8_headers = taken.utf8_headers;
    env.dsn = sub.dsn.clone();
    env.errors = sub.errors;
    if let Some(sig) =
        crate::dkim::sign_draft(identity, &mut draft).map_err(|e| Error::Config78(e.to_string()))?
    {
        env.prepend = sig;
    }
    crate::rate::admit(run, &mut env)?;
    // Delivered at once: the message need not wait for the disk first; if it
    // stays queued, `finish` makes it durable before the caller hears 0.
    let at_once = sub.deliver_now && !env.rate_held;
    let locked = if at_once {
        draft.commit_for_delivery(&env)?
    } else {
        draft.commit(&env)?
    };
    // From here on the mail is safe: delivered or made durable before exit 0.
    run.log.info(&format!(
        "{}: uid={} user={} identity={} from=<{}> size={} nrcpt={} msgid={}{}",
        env.id,
        identity.uid,
        identity.login,
        identity.sender,
        env.sender,
        env.size,
        env.recipients.len(),
        taken.message_id,
        if env.rate_held {
            " (rate limited, held)"
        } else {
            ""
        }
    ));
    Ok(locked)
}

/// Arguments plus header recipients, aliases expanded, qualified, checked,
/// duplicates removed.
fn expand_recipients(
    run: &Run,
    identity: &Identity,
    args: &[String],
    from_headers: &[String],
    read_recipients: bool,
) -> Result<Vec<Recipient>> {
    let (aliases, _) = crate::aliases::Aliases::load(&run.cfg.cfg.aliases);
    let domain = identity.domain();
    let mut out: Vec<Recipient> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for raw in args.iter().chain(from_headers.iter()) {
        let a = crate::address::validate(raw, "recipient")?;
        if a.is_empty() {
            continue;
        }
        for target in aliases.expand(&a) {
            let q = crate::address::qualify(&target, &domain);
            let q = crate::address::validate(&q, "recipient")?;
            if seen.insert(q.to_ascii_lowercase()) {
                let orig = (q != a).then(|| crate::address::qualify(&a, &domain));
                out.push(Recipient::new(q, orig));
            }
        }
    }
    if out.is_empty() {
        return Err(if read_recipients {
            Error::Data("no recipients: -t found no address in To:, Cc: or Bcc:, and none was given as an argument".into())
        } else {
            Error::Usage("no recipients: give recipient addresses as arguments, or use -t to read them from the message".into())
        });
    }
    if out.len() > run.cfg.cfg.max_recipients {
        return Err(Error::Data(format!(
            "{} recipients exceed the limit of {} (max_recipients)",
            out.len(),
            run.cfg.cfg.max_recipients
        )));
    }
    Ok(out)
}

/// `sendmail [flags] rcpt...`: accept from stdin, then deliver as -od says.
fn submit(run: &Run) -> Result<i32> {
    let inv = &run.inv;
    if inv.recipients.is_empty() && !inv.read_recipients {
        return Err(Error::Usage(
            "no recipients: give recipient addresses as arguments, or use -t to read them from the message".into(),
        ));
    }
    let identity = run.identity()?;
    let sub = Submission {
        requested_sender: inv.sender.as_deref(),
        recipients: inv.recipients.clone(),
        read_recipients: inv.read_recipients,
        ignore_dots: inv.ignore_dots,
        full_name: inv.full_name.as_deref(),
        dsn: Dsn {
            notify: inv.dsn_notify.clone(),
            ret: inv.dsn_ret.clone(),
            envid: inv.envid.clone(),
        },
        errors: inv.errors,
        deliver_now: inv.delivery == DeliveryMode::Interactive,
        require_dot: false,
    };
    let stdin = std::io::stdin();
    let mut input = std::io::BufReader::with_capacity(64 * 1024, stdin.lock());
    let locked = accept(run, &identity, &sub, &mut input)?;
    if locked.env.rate_held {
        return Ok(0);
    }
    match inv.delivery {
        DeliveryMode::QueueOnly => Ok(0),
        DeliveryMode::Background => {
            background(run, locked);
            Ok(0)
        }
        DeliveryMode::Interactive => {
            let mut locked = locked;
            let mut ctx = deliver::Context::new(&run.cfg, &run.log, inv.verbose, false);
            let report = deliver::deliver(&mut ctx, &mut locked);
            finish(run, &mut ctx, locked, &report, inv.errors)
        }
    }
}

/// -odb: the message is safe; deliver from a detached child.
fn background(run: &Run, locked: Locked) {
    // SAFETY: single-threaded here; the child only delivers and exits.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let _ = nix::unistd::setsid();
            if let Ok(devnull) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                use std::os::fd::AsRawFd;
                let fd = devnull.as_raw_fd();
                // SAFETY: dup2 onto the standard descriptors.
                unsafe {
                    libc::dup2(fd, 0);
                    libc::dup2(fd, 1);
                    libc::dup2(fd, 2);
                }
            }
            let mut locked = locked;
            let mut ctx = deliver::Context::new(&run.cfg, &run.log, false, false);
            let report = deliver::deliver(&mut ctx, &mut locked);
            let _ = finish(run, &mut ctx, locked, &report, ErrorMode::Mail);
            std::process::exit(0);
        }
        Ok(nix::unistd::ForkResult::Parent { .. }) => {}
        Err(e) => {
            run.log.warning(&format!(
                "{}: cannot fork for background delivery ({e}); the message stays queued",
                locked.env.id
            ));
        }
    }
}

/// After a delivery attempt at submission: save or remove, report failures
/// the way -oe says, pick the exit code.
pub fn finish(
    run: &Run,
    ctx: &mut deliver::Context,
    mut locked: Locked,
    report: &Report,
    errors: ErrorMode,
) -> Result<i32> {
    for e in &report.local_errors {
        eprintln!("vsendmail: {e}; the message stays queued");
    }
    let mut code = 0;
    if !report.failed.is_empty() {
        match errors {
            ErrorMode::Print => {
                for (a, why) in &report.failed {
                    eprintln!("vsendmail: <{a}>: {why}");
                }
                code = exit::UNAVAILABLE;
            }
            ErrorMode::Quiet => code = exit::UNAVAILABLE,
            ErrorMode::Mail => {
                crate::bounce::send_failure(run, ctx, &locked.env, &report.failed);
            }
        }
    }
    if locked.env.has_pending() {
        if run.cfg.cfg.queue {
            locked.save()?;
            if run.inv.verbose {
                for (a, why) in &report.deferred {
                    eprintln!(
                        "vsendmail: <{a}>: deferred: {why}; queued as {}",
                        locked.env.id
                    );
                }
            }
        } else {
            let msg = report
                .deferred
                .iter()
                .map(|(a, w)| format!("<{a}>: {w}"))
                .collect::<Vec<_>>()
                .join("; ");
            locked.remove()?;
            if code == 0 {
                return Err(Error::TempFail(format!(
                    "temporary failure, message not queued (queue = false): {msg}"
                )));
            }
            eprintln!("vsendmail: temporary failure, message not queued (queue = false): {msg}");
        }
    } else {
        locked.remove()?;
    }
    Ok(code)
}
