//! The submission pipeline, shared by argv mode and each `-bs` transaction:
//! [`accept`] takes the message from its input into the spool (sender
//! policy, intake, recipients and aliases, DKIM, the rate limit, the commit);
//! from the moment it returns the mail is safe. [`finish`] turns one
//! delivery attempt into what the caller hears: stderr lines, a bounce as
//! `-oe` says, the message saved or removed, the exit code.

use crate::base::clock::unix_now;
use crate::base::dsn::{Dsn, ErrorMode};
use crate::cli::invocation::DeliveryMode;
use crate::deliver::context::Context;
use crate::deliver::outcome::Report;
use crate::deliver::privsep;
use crate::exit::{Error, Result};
use crate::identity::job::Job;
use crate::identity::profile::Identity;
use crate::intake::message::{self, IntakeOptions, Limits};
use crate::spool::envelope::{Envelope, Recipient};
use crate::spool::store::{Locked, Spool};
use std::io::BufRead;

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
    job: &Job,
    identity: &Identity,
    sub: &Submission,
    input: &mut R,
) -> Result<Locked> {
    let trusted = job.trusted();
    let choice =
        identity.envelope_sender(sub.requested_sender, trusted, job.cfg.cfg.sender_policy)?;
    if let Some(w) = &choice.warning {
        job.log.warning(&format!(
            "uid={} user={}: sender rewritten: {w}",
            identity.uid, identity.login
        ));
    }
    // Attribution first: what the caller's process shows now.
    let mut attribution = crate::intake::attribution::gather();
    let spool = Spool::of(&job.cfg)?;
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
            hostname: &job.cfg.hostname,
            auth_warning: choice.warning.as_deref(),
            from_policy: job.cfg.cfg.from_policy,
            trusted,
            limits: Limits::of(&job.cfg),
            now: unix_now() as i64,
            keep_php_header: job.cfg.cfg.keep_php_header,
            identity_header: job.cfg.identity_header.as_deref(),
        },
    )?;
    let recipients = expand_recipients(
        job,
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
    attribution.script = taken.script.clone();
    env.attribution = attribution;
    // The abuse desk's stops: a suspension, then the breaker (which may
    // suspend now); both before anything is counted or committed.
    let trip = crate::commands::abuse::stops(job, trusted, &mut env)?;
    if let Some(sig) =
        crate::sign::dkim::sign_draft(identity, taken.from_domain.as_deref(), &mut draft)?
    {
        env.prepend = sig;
    }
    if let Err(e) = crate::account::rate::admit(&job.cfg, &job.log, trusted, &mut env) {
        crate::commands::abuse::refused(job, &env, &e.to_string());
        return Err(e.into());
    }
    // Written ahead: a held message's records exist before it is accepted.
    crate::commands::abuse::held_records(job, &env)?;
    // Delivered at once: the message need not wait for the disk first; if it
    // stays queued, `finish` makes it durable before the caller hears 0.
    let at_once = sub.deliver_now && !env.rate_held && !env.held;
    let locked = if at_once {
        draft.commit_for_delivery(&env)?
    } else {
        draft.commit(&env)?
    };
    // From here on the mail is safe: delivered or made durable before exit 0.
    job.log.info(&format!(
        "{}: uid={} user={} identity={} from=<{}> size={} nrcpt={} msgid={}{}{}",
        env.id,
        identity.uid,
        identity.login,
        identity.sender,
        env.sender,
        env.size,
        env.recipients.len(),
        crate::base::syslog::value(&taken.message_id),
        env.attribution.log_fields(),
        if env.suspended {
            " (suspended, held)"
        } else if env.rate_held {
            " (rate limited, held)"
        } else {
            ""
        }
    ));
    if let Some((s, counts)) = trip {
        crate::commands::abuse::notify(job, &env.identity, &s, &counts);
    }
    Ok(locked)
}

/// Arguments plus header recipients, aliases expanded, qualified, checked,
/// duplicates removed.
fn expand_recipients(
    job: &Job,
    identity: &Identity,
    args: &[String],
    from_headers: &[String],
    read_recipients: bool,
) -> Result<Vec<Recipient>> {
    let (aliases, _) = crate::config::aliases::Aliases::load(&job.cfg.cfg.aliases);
    let domain = identity.domain();
    let mut out: Vec<Recipient> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for raw in args.iter().chain(from_headers.iter()) {
        let a = crate::base::address::validate(raw, "recipient")?;
        if a.is_empty() {
            continue;
        }
        for target in aliases.expand(&a) {
            let q = crate::base::address::qualify(&target, &domain);
            let q = crate::base::address::validate(&q, "recipient")?;
            if seen.insert(q.to_ascii_lowercase()) {
                let orig = (q != a).then(|| crate::base::address::qualify(&a, &domain));
                out.push(Recipient::new(q, orig));
            }
        }
    }
    if out.is_empty() {
        return Err(if read_recipients {
            Error::NoHeaderRecipients
        } else {
            Error::NoRecipients
        });
    }
    if out.len() > job.cfg.cfg.max_recipients {
        return Err(Error::TooManyRecipients {
            count: out.len(),
            max: job.cfg.cfg.max_recipients,
        });
    }
    Ok(out)
}

/// `sendmail [flags] rcpt...`: accept from stdin, then deliver as -od says.
pub fn submit(job: &Job) -> Result<i32> {
    let inv = &job.inv;
    if inv.recipients.is_empty() && !inv.read_recipients {
        return Err(Error::NoRecipients);
    }
    let identity = job.identity()?;
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
        errors: inv.errors.unwrap_or(ErrorMode::Print),
        deliver_now: inv.delivery == DeliveryMode::Interactive,
        require_dot: false,
    };
    let stdin = std::io::stdin();
    let mut input = std::io::BufReader::with_capacity(64 * 1024, stdin.lock());
    let locked = accept(job, &identity, &sub, &mut input)?;
    if locked.env.rate_held || locked.env.held {
        return Ok(0);
    }
    match inv.delivery {
        DeliveryMode::QueueOnly => Ok(0),
        DeliveryMode::Background => {
            background(job, locked);
            Ok(0)
        }
        DeliveryMode::Interactive => {
            let mut locked = locked;
            let mut ctx = Context::new(&job.cfg, &job.log, inv.verbose, false);
            let report = privsep::deliver(&mut ctx, &mut locked);
            finish(job, &mut ctx, locked, &report, inv.errors).map(|()| 0)
        }
    }
}

/// -odb: the message is safe; deliver from a detached child.
fn background(job: &Job, locked: Locked) {
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
            let mut ctx = Context::new(&job.cfg, &job.log, false, false);
            let report = privsep::deliver(&mut ctx, &mut locked);
            let _ = finish(job, &mut ctx, locked, &report, Some(ErrorMode::Mail));
            std::process::exit(0);
        }
        Ok(nix::unistd::ForkResult::Parent { .. }) => {}
        Err(e) => {
            job.log.warning(&format!(
                "{}: cannot fork for background delivery ({e}); the message stays queued",
                locked.env.id
            ));
        }
    }
}

/// After a delivery attempt at submission: save or remove, report failures
/// the way -oe says (`None`: no -oe flag, see `ErrorMode`); `Err` when the
/// caller must hear a failure.
pub fn finish(
    job: &Job,
    ctx: &mut Context,
    mut locked: Locked,
    report: &Report,
    errors: Option<ErrorMode>,
) -> Result<()> {
    crate::commands::abuse::flush(ctx, &report.notifications);
    for e in &report.local_errors {
        crate::base::stderr::line(&format!("vsendmail: {e}; the message stays queued"));
    }
    // Each failed recipient was printed (-oep) or is not to be (-oeq).
    let mut undelivered = None;
    if !report.failed.is_empty() {
        let print = || {
            for (a, why) in &report.failed {
                crate::base::stderr::line(&format!("vsendmail: <{a}>: {why}"));
            }
        };
        // Without -oe, a message that some recipient got (or will get from
        // the queue) is a success for the caller: a retry would duplicate it.
        let reached = !report.sent.is_empty() || (locked.env.has_pending() && job.cfg.cfg.queue);
        match errors {
            None if reached => {
                print();
                if !locked.env.sender.is_empty() {
                    crate::base::stderr::line(&format!(
                        "vsendmail: {}: the other recipients were delivered or queued; \
                         these failures are reported to <{}> in a bounce",
                        locked.env.id, locked.env.sender
                    ));
                }
                crate::deliver::bounce::send_failure(ctx, &locked.env, &report.failed);
            }
            None | Some(ErrorMode::Print) => {
                print();
                undelivered = Some(report.failed.len());
            }
            Some(ErrorMode::Quiet) => undelivered = Some(report.failed.len()),
            Some(ErrorMode::Mail) => {
                crate::deliver::bounce::send_failure(ctx, &locked.env, &report.failed);
            }
        }
    }
    if locked.env.has_pending() {
        if job.cfg.cfg.queue {
            locked.save()?;
            if job.inv.verbose {
                for (a, why) in &report.deferred {
                    crate::base::stderr::line(&format!(
                        "vsendmail: <{a}>: deferred: {why}; queued as {}",
                        locked.env.id
                    ));
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
            let e = Error::NotQueued { reasons: msg };
            if undelivered.is_none() {
                return Err(e);
            }
            crate::base::stderr::line(&format!("vsendmail: {e}"));
        }
    } else {
        locked.remove()?;
    }
    match undelivered {
        Some(count) => Err(Error::Quiet(Box::new(Error::Undelivered { count }))),
        None => Ok(()),
    }
}
