//! Privilege separation of a delivery attempt (the model is Postfix's
//! split of `sendmail`/`postdrop`, which hold the queue, from `smtp`, which
//! talks to the world). Run set-gid for a user, the process holds the
//! vsendmail group; the part of a delivery that reads what hostile servers
//! and resolvers send (DNS, TLS, replies, AUTH, the RSA code) runs in a
//! forked child that first gives that group up for good
//! (`setresgid(rgid, rgid, rgid)`: it can never regain it) and makes itself
//! undumpable, so the user can neither trace it nor read its memory.
//!
//! Before the fork the parent opens, with the group, everything the child
//! needs and may not open itself: the message (the locked descriptor), the
//! audit trail's daily files (`O_APPEND`, for the write-ahead records),
//! the secrets lines of the relays its routes may use (and their OAuth2
//! token caches, opened) and its BATV key (read into
//! memory, nothing of other relays), and a bounded number of unconnected
//! sockets, which the firewall (`dist/nftables.conf`) lets out because they
//! were made with the group. The DKIM signature was made at submission.
//!
//! The child delivers and writes its outcome (each recipient's state, reply
//! and try count, the local errors, in a queue run the unreachable
//! destinations) as JSON to a pipe, then exits. The parent takes nothing on
//! trust: only pending recipients change, replies are cut to their bounded
//! form, the retry time is computed again, the report is rebuilt from the
//! states; then it records (envelope, bounces, removal) as before. A child
//! that dies, is killed, or answers nonsense leaves every pending recipient
//! deferred (the message stays queued); the write-ahead audit record already
//! shows any connection it made. The child dies with its parent
//! (`PR_SET_PDEATHSIG`), so no orphan keeps the message's lock or goes on
//! sending what no process will record. A child still running when the message's
//! `message_time_budget` is over by a minute is killed.
//!
//! Root's own runs (queue runs from cron or the timer, root's submissions)
//! are not split: root holds no group to give up, and a hostile server that
//! compromised such a run would hold root, as it would in any MTA that
//! delivers as root; the man page says so.

use crate::base::clock::unix_now;
use crate::base::syslog::{MAX_REPLY, text};
use crate::deliver::attempt;
use crate::deliver::context::Context;
use crate::deliver::outcome::{Outcome, Outcomes, Report, backoff, record};
use crate::spool::envelope::RcptState;
use crate::spool::store::Locked;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Deliver the pending recipients of `msg` as `attempt::deliver` does; run
/// set-gid for a user, the network part runs in a child without the group.
pub fn deliver(ctx: &mut Context, msg: &mut Locked) -> Report {
    if !crate::spool::store::running_setid_for_user() {
        return attempt::deliver(ctx, msg);
    }
    split(ctx, msg)
}

/// What the child says happened, per recipient by index.
#[derive(Serialize, Deserialize)]
struct Answer {
    rcpts: Vec<Rcpt>,
    local_errors: Vec<String>,
    unreachable: Vec<(Option<IpAddr>, SocketAddr, String)>,
    /// The per-recipient log records of the attempt (`outcome::account`).
    #[serde(default)]
    events: Vec<crate::deliver::outcome::RcptEvent>,
    /// Replaced backoff and MTA-STS state files (`shared::replace_small`).
    #[serde(default)]
    writes: Vec<(PathBuf, String)>,
    /// Whether the attempt counted (not only waiting for backoffs), and the
    /// next try the child worked out.
    #[serde(default)]
    counted: bool,
    #[serde(default)]
    next_try: u64,
}

#[derive(Serialize, Deserialize)]
struct Rcpt {
    state: RcptState,
    reply: Option<String>,
    tries: u32,
}

/// The most the parent reads from a child.
const MAX_ANSWER: usize = 4 << 20;
/// The child's exit status when it could not give up the group.
const NO_DROP: i32 = 3;

fn split(ctx: &mut Context, msg: &mut Locked) -> Report {
    // Everything that needs the group, opened or read now.
    if let Err(e) = crate::account::audit::hold(ctx.cfg) {
        return defer_all(
            ctx,
            msg,
            format!(
                "not sent: cannot write the audit record to {}: {e}",
                ctx.cfg.audit_dir().display()
            ),
        );
    }
    let routes = pending_routes(ctx, msg);
    let relays: Vec<&crate::base::relay::Relay> = routes
        .iter()
        .filter_map(|c| c.relays.as_ref())
        .flat_map(|l| l.list())
        .collect();
    crate::config::secrets::hold(&ctx.cfg.cfg.secrets, &relays);
    crate::deliver::oauth2::hold(ctx.cfg, &relays);
    crate::spool::shared::hold_small(
        &[
            ctx.cfg.cfg.spool.join("backoff"),
            ctx.cfg.cfg.spool.join("mta-sts"),
        ],
        crate::deliver::mta_sts::MAX_STATE,
    );
    crate::sign::batv::hold(&msg.env.identity);
    crate::deliver::sockets::provide(sockets_needed(ctx, &routes, msg));
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        crate::deliver::sockets::withdraw();
        let e = std::io::Error::last_os_error();
        return defer_all(ctx, msg, format!("cannot make a pipe for delivery: {e}"));
    }
    // SAFETY: both descriptors were just made and are owned here only.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    // SAFETY: the process is single-threaded here (no resolver or runtime
    // was started in this process); the child only delivers and _exits.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            drop(rd);
            child(ctx, msg, wr, me)
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            crate::deliver::sockets::withdraw();
            crate::spool::shared::release_small();
            drop(wr);
            parent(ctx, msg, rd, child)
        }
        Err(e) => {
            crate::deliver::sockets::withdraw();
            crate::spool::shared::release_small();
            defer_all(ctx, msg, format!("cannot fork the delivery process: {e}"))
        }
    }
}

/// The routes of the message's pending recipients (as `attempt` will
/// choose them).
fn pending_routes(ctx: &Context, msg: &Locked) -> Vec<crate::deliver::route::Choice> {
    let pending: Vec<(usize, String)> = msg
        .env
        .recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| r.state == RcptState::Pending)
        .map(|(i, r)| (i, r.addr.clone()))
        .collect();
    crate::deliver::route::split(ctx.cfg, &msg.env.identity, &pending)
        .into_iter()
        .map(|(c, _)| c)
        .collect()
}

/// Sockets for one attempt: per destination (each relay of a failover list,
/// or each recipient domain of an MX route) as many addresses as may be
/// tried, twice (a TLS retry), at most 64.
fn sockets_needed(ctx: &Context, routes: &[crate::deliver::route::Choice], msg: &Locked) -> usize {
    let mut destinations = 0usize;
    let mut mx_domains: Vec<String> = msg
        .env
        .recipients
        .iter()
        .filter(|r| r.state == RcptState::Pending)
        .map(|r| crate::base::address::domain(&r.addr).unwrap_or_default())
        .map(|d| d.to_ascii_lowercase())
        .collect();
    mx_domains.sort();
    mx_domains.dedup();
    for c in routes {
        match &c.relays {
            Some(list) => destinations += list.list().len(),
            None => destinations += mx_domains.len().max(1),
        }
    }
    let per = match ctx.cfg.cfg.mx_address_limit {
        0 => 10,
        n => n as usize,
    };
    destinations
        .max(1)
        .saturating_mul(per)
        .saturating_mul(2)
        .min(64)
}

/// The child: give up the group, deliver, answer, exit. Never returns.
fn child(ctx: &mut Context, msg: &mut Locked, wr: OwnedFd, parent_pid: libc::pid_t) -> ! {
    if !drop_group() {
        // SAFETY: _exit ends this process without running the parent's destructors.
        unsafe { libc::_exit(NO_DROP) };
    }
    // Die with the parent (set after the drop, which clears it): a killed
    // parent never leaves a child holding the message's lock.
    // SAFETY: prctl and getppid on this process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != parent_pid {
            libc::_exit(70);
        }
    }
    crate::spool::shared::split_child();
    // A panic must not unwind into the parent's code in this process.
    let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let attempts = msg.env.attempts;
        let report = attempt::deliver(ctx, msg);
        if let Some(pool) = ctx.pool.as_mut() {
            pool.close_all();
        }
        let answer = Answer {
            rcpts: msg
                .env
                .recipients
                .iter()
                .map(|r| Rcpt {
                    state: r.state,
                    reply: r.reply.clone(),
                    tries: r.tries,
                })
                .collect(),
            local_errors: report.local_errors,
            unreachable: ctx
                .unreachable_routes()
                .into_iter()
                .map(|((src, dst), why)| (src, dst, why))
                .collect(),
            events: crate::deliver::outcome::take_child_events(),
            writes: crate::spool::shared::take_small_writes(),
            counted: msg.env.attempts > attempts,
            next_try: msg.env.next_try,
        };
        let line = serde_json::to_vec(&answer).unwrap_or_default();
        std::fs::File::from(wr).write_all(&line).is_ok()
    }));
    let code = if matches!(answered, Ok(true)) { 0 } else { 70 };
    // SAFETY: as above.
    unsafe { libc::_exit(code) }
}

/// Give up the set-gid group (and a set-uid user, if any) for good, and
/// become undumpable. False when any id is still privileged.
fn drop_group() -> bool {
    // SAFETY: plain id system calls on this process.
    unsafe {
        let (uid, gid) = (libc::getuid(), libc::getgid());
        if libc::setresgid(gid, gid, gid) != 0 {
            return false;
        }
        if libc::geteuid() != uid && libc::setresuid(uid, uid, uid) != 0 {
            return false;
        }
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        let (mut r, mut e, mut s) = (0, 0, 0);
        let (mut ur, mut ue, mut us) = (0, 0, 0);
        libc::getresgid(&mut r, &mut e, &mut s) == 0
            && libc::getresuid(&mut ur, &mut ue, &mut us) == 0
            && [r, e, s] == [gid; 3]
            && [ur, ue, us] == [uid; 3]
    }
}

/// The parent: read the answer (bounded in size and time), reap the child,
/// and record what it says, or defer everything when it said nothing usable.
fn parent(ctx: &mut Context, msg: &mut Locked, rd: OwnedFd, pid: nix::unistd::Pid) -> Report {
    let deadline = ctx
        .cfg
        .message_time_budget
        .map(|b| Instant::now() + b + Duration::from_secs(60));
    let (data, overdue) = read_answer(rd, deadline);
    if overdue {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    use nix::sys::wait::{WaitStatus, waitpid};
    let status = loop {
        match waitpid(pid, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other,
        }
    };
    let who = format!("the delivery process (pid {pid})");
    let why = match status {
        Ok(WaitStatus::Exited(_, 0)) => match serde_json::from_slice::<Answer>(&data) {
            Ok(a) if a.rcpts.len() == msg.env.recipients.len() => return apply(ctx, msg, a),
            Ok(_) => format!("{who} answered for other recipients"),
            Err(e) => format!("{who} gave no readable outcome ({e})"),
        },
        Ok(WaitStatus::Exited(_, NO_DROP)) => {
            format!("{who} could not give up the vsendmail group; not sent")
        }
        Ok(WaitStatus::Exited(_, n)) => format!("{who} ended with status {n}"),
        Ok(WaitStatus::Signaled(_, sig, _)) if overdue => format!(
            "{who} was still running a minute after message_time_budget and was killed ({sig})"
        ),
        Ok(WaitStatus::Signaled(_, sig, _)) => {
            format!("{who} was killed by {sig}")
        }
        Ok(s) => format!("{who} ended as {s:?}"),
        Err(e) => format!("cannot wait for {who}: {e}"),
    };
    ctx.log.warning(&format!("{}: {why}", msg.env.id));
    defer_all(ctx, msg, why)
}

/// Everything the child wrote, up to [`MAX_ANSWER`] bytes, until it closes
/// the pipe or `deadline` passes (then `true`: the child is overdue).
fn read_answer(rd: OwnedFd, deadline: Option<Instant>) -> (Vec<u8>, bool) {
    let mut f = std::fs::File::from(rd);
    let mut data = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let wait = match deadline {
            None => -1,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                None => return (data, true),
                Some(left) => left.as_millis().min(60_000) as libc::c_int,
            },
        };
        let mut pfd = libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, wait) };
        if r < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return (data, false);
        }
        if r == 0 {
            continue;
        }
        match f.read(&mut buf) {
            Ok(0) => return (data, false),
            Ok(n) if data.len() + n <= MAX_ANSWER => data.extend_from_slice(&buf[..n]),
            Ok(_) => return (Vec::new(), false),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return (data, false),
        }
    }
}

/// Merge the child's answer: only pending recipients that it tried change,
/// replies bounded; attempts, retry time and the report are the parent's.
fn apply(ctx: &mut Context, msg: &mut Locked, a: Answer) -> Report {
    let now = unix_now();
    let mut report = Report::default();
    let mut any_deferred = false;
    for (r, got) in msg.env.recipients.iter_mut().zip(a.rcpts) {
        if r.state != RcptState::Pending || got.tries <= r.tries {
            continue;
        }
        r.tries += 1;
        let reply = text(got.reply.as_deref().unwrap_or("no reason given"), MAX_REPLY);
        r.reply = Some(reply.clone());
        match got.state {
            RcptState::Sent => {
                r.state = RcptState::Sent;
                report.sent.push((r.addr.clone(), reply));
            }
            RcptState::Failed => {
                r.state = RcptState::Failed;
                report.failed.push((r.addr.clone(), reply));
            }
            RcptState::Pending => {
                any_deferred = true;
                report.deferred.push((r.addr.clone(), reply));
            }
        }
    }
    // Waiting for a destination that said slow down is not an attempt.
    if a.counted {
        msg.env.attempts += 1;
        msg.env.last_try = now;
    }
    if any_deferred {
        msg.env.next_try = now + backoff(ctx.cfg, msg.env.attempts).as_secs();
    }
    if !a.counted || (a.next_try > now && a.next_try < msg.env.next_try) {
        // The end of a backoff: never later than the longest retry wait.
        msg.env.next_try = a
            .next_try
            .clamp(now, now + ctx.cfg.retry_max.as_secs().max(60));
    }
    // The child's records, about this message's recipients only.
    let events: Vec<_> = a
        .events
        .into_iter()
        .filter(|e| msg.env.recipients.iter().any(|r| r.addr == e.to))
        .filter(|e| ["sent", "deferred", "failed"].contains(&e.status.as_str()))
        .take(msg.env.recipients.len() * 2)
        .map(|mut e| {
            e.reply = text(&e.reply, MAX_REPLY);
            e.src = text(&e.src, 64);
            e.dst = text(&e.dst, 300);
            e
        })
        .collect();
    if !msg.env.is_bounce {
        crate::deliver::outcome::account(ctx, &msg.env, &events, &mut report);
    }
    // Backoffs and MTA-STS policies the child learnt, in their directories only.
    for (path, text) in a.writes.iter().take(64) {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let ok_dir =
            dir == ctx.cfg.cfg.spool.join("backoff") || dir == ctx.cfg.cfg.spool.join("mta-sts");
        let ok_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.starts_with('.') && !n.contains('/'));
        if ok_dir && ok_name && text.len() as u64 <= crate::deliver::mta_sts::MAX_STATE {
            let gid = crate::spool::shared::spool_gid(ctx.cfg);
            if let Err(e) = crate::spool::shared::replace_small(&dir, path, gid, text) {
                ctx.log.warning(&format!(
                    "{}: cannot record {}: {e}",
                    msg.env.id,
                    path.display()
                ));
            }
        }
    }
    report.local_errors = a
        .local_errors
        .iter()
        .take(16)
        .map(|e| text(e, MAX_REPLY))
        .collect();
    for (src, dst, why) in a.unreachable.iter().take(64) {
        ctx.unreachable((*src, *dst), &text(why, MAX_REPLY));
    }
    report
}

/// Every pending recipient deferred with `why`, recorded as an attempt.
fn defer_all(ctx: &mut Context, msg: &mut Locked, why: String) -> Report {
    let identity = msg.env.identity.clone();
    let outcomes: Outcomes = msg
        .env
        .recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| r.state == RcptState::Pending)
        .map(|(i, _)| (i, (Outcome::Deferred(why.clone()), None, None)))
        .collect();
    let mut report = Report {
        local_errors: vec![why],
        ..Default::default()
    };
    record(ctx, msg, &identity, outcomes, &mut report);
    report
}
