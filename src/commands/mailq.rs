//! `-bp` / `mailq`: the queue listed as Postfix's mailq does. Only the
//! invoking user's messages unless root (or a trusted user). The queue id
//! column is as wide as the longest id (ours are 16 to 20 characters, shown
//! in full, as Postfix's long ids); a held message says why when its owner
//! did not hold it (`held (identity changed)`, also before the queue run
//! that holds it has come); and a user at one of its
//! per-user spool limits is told which, after the total line.

use crate::exit::Result;
use crate::identity::job::Job;
use crate::spool::envelope::{Envelope, RcptState};
use crate::spool::store::Spool;
use std::fmt::Write;

pub fn print(job: &Job) -> Result<i32> {
    // Read-only: a spool that does not exist yet is an empty queue, and
    // listing never creates it (a root `mailq` must leave the host as it was).
    let Some(spool) = Spool::of_existing(&job.cfg)? else {
        print!("{}", render(&[]));
        return Ok(0);
    };
    // SAFETY: getuid has no preconditions.
    let at_limit = if unsafe { libc::getuid() } == 0 {
        Vec::new() // root is never limited
    } else {
        spool.limits_reached(job.invoker.uid)
    };
    let mut shown: Vec<Envelope> = Vec::new();
    // The owners' identities today, once per login: a message whose
    // identity changed since it was queued is shown as the next queue run
    // will hold it.
    let mut current = std::collections::HashMap::new();
    for id in spool.list()? {
        let Ok(mut env) = spool.load(&id) else {
            continue;
        };
        if !(job.trusted() || env.identity.uid == job.invoker.uid) {
            continue;
        }
        if !env.held {
            let now = current
                .entry(env.identity.login.clone())
                .or_insert_with(|| {
                    crate::identity::job::current_identity(&job.cfg, &env.identity.login)
                })
                .as_ref()
                .ok()
                .cloned();
            if let Some(now) = now
                && let Some(by) = env.identity_hold(now.as_ref())
            {
                env.held = true;
                env.held_by = Some(by);
            }
        }
        shown.push(env);
    }
    print!("{}", render_with(&shown, job.inv.verbose));
    for e in &at_limit {
        if let crate::spool::store::SpoolError::UserLimit {
            what,
            count,
            key,
            max,
            ..
        } = e
        {
            println!(
                "-- At a spool limit: {count} {what} ({key} = {max}); new messages are refused until some leave the queue."
            );
        }
    }
    Ok(0)
}

/// The listing text for these envelopes.
pub fn render(envs: &[Envelope]) -> String {
    render_with(envs, false)
}

/// The listing; `verbose` (`-bp -v`) adds each message's attribution.
pub fn render_with(envs: &[Envelope], verbose: bool) -> String {
    if envs.is_empty() {
        return "Mail queue is empty\n".into();
    }
    let mut s = String::new();
    let w = envs.iter().map(|e| e.id.len()).max().unwrap_or(0).max(14);
    let _ = writeln!(
        s,
        "{:<w1$} --Size-- ----Arrival Time---- -Sender/Recipient-------",
        "-Queue ID-",
        w1 = w + 1
    );
    // Recipients and notes line up under the sender.
    let ind = w + 31;
    let mut bytes = 0u64;
    for e in envs {
        bytes += e.size;
        let mark = if e.held { "!" } else { " " };
        let sender = if e.sender.is_empty() {
            "MAILER-DAEMON"
        } else {
            &e.sender
        };
        let _ = writeln!(
            s,
            "{:<w$}{mark} {:>8} {} {}",
            e.id,
            e.size,
            crate::base::clock::mailq_stamp(e.created as i64),
            sender
        );
        if verbose {
            let a = e.attribution.log_fields();
            if !a.is_empty() {
                let _ = writeln!(s, "{:>ind$}({})", "", a.trim_start());
            }
        }
        match (e.held, e.held_by) {
            (true, _) if e.suspended => {
                let _ = writeln!(s, "{:>ind$}(held (suspended))", "");
            }
            (true, None) => {
                let _ = writeln!(s, "{:>ind$}(held)", "");
            }
            (true, Some(by)) => {
                let _ = writeln!(
                    s,
                    "{:>ind$}(held ({}): root or a trusted user decides: --release {} or --delete {})",
                    "",
                    by.text(),
                    e.id,
                    e.id
                );
            }
            (false, _) if e.rate_held => {
                let _ = writeln!(s, "{:>ind$}(rate limited)", "");
            }
            _ => {}
        }
        for r in e
            .recipients
            .iter()
            .filter(|r| r.state == RcptState::Pending)
        {
            if let Some(reply) = &r.reply {
                let _ = writeln!(
                    s,
                    "{:>ind$}({})",
                    "",
                    crate::base::address::printable(reply)
                );
            }
            let _ = writeln!(s, "{:>ind$}{}", "", r.addr);
        }
        s.push('\n');
    }
    let n = envs.len();
    let _ = writeln!(
        s,
        "-- {} Kbytes in {} Request{}.",
        bytes.div_ceil(1024),
        n,
        if n == 1 { "" } else { "s" }
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_queue() {
        assert_eq!(render(&[]), "Mail queue is empty\n");
    }

    #[test]
    fn lists_pending_with_reply_and_total() {
        let mut e = Envelope::new_for_test("4F2A9C1B000001");
        e.size = 2048;
        e.recipients[0].reply = Some("451 4.3.0 try later".into());
        e.held = true;
        let s = render(&[e]);
        assert!(s.contains("4F2A9C1B000001!"), "{s}");
        assert!(s.contains("(held)"), "{s}");
        assert!(s.contains("(451 4.3.0 try later)"), "{s}");
        assert!(s.contains("a@x.test"), "{s}");
        assert!(s.ends_with("-- 2 Kbytes in 1 Request.\n"), "{s}");
    }

    #[test]
    fn long_ids_in_full_with_the_columns_aligned_and_hold_reasons() {
        let mut a = Envelope::new_for_test("4F2A9C1B0000000001AB");
        a.held = true;
        a.held_by = Some(crate::spool::envelope::HeldBy::IdentityRemoved);
        let b = Envelope::new_for_test("4F2A9C1B00000001");
        let s = render(&[a, b]);
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines[1].starts_with("4F2A9C1B0000000001AB! "), "{s}");
        assert!(s.contains("\n4F2A9C1B00000001     "), "{s}");
        assert_eq!(
            lines[1].find(" 0 ").unwrap() + 2,
            lines[0].find("--Size--").unwrap() + 8,
            "{s}"
        );
        assert!(s.contains("(held (identity removed): root"), "{s}");
        let sender_col = lines[1].find("root@host.test").unwrap();
        assert_eq!(lines[3].find("a@x.test"), Some(sender_col), "{s}");
    }
}
