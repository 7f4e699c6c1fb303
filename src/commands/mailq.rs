//! `-bp` / `mailq`: the queue listed as Postfix's mailq does. Only the
//! invoking user's messages unless root (or a trusted user).

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
    let mut shown: Vec<Envelope> = Vec::new();
    for id in spool.list()? {
        let Ok(env) = spool.load(&id) else { continue };
        if job.trusted() || env.identity.uid == job.invoker.uid {
            shown.push(env);
        }
    }
    print!("{}", render_with(&shown, job.inv.verbose));
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
    s.push_str("-Queue ID-     --Size-- ----Arrival Time---- -Sender/Recipient-------\n");
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
            "{}{mark} {:>8} {} {}",
            e.id,
            e.size,
            crate::base::clock::mailq_stamp(e.created as i64),
            sender
        );
        if verbose {
            let a = e.attribution.log_fields();
            if !a.is_empty() {
                let _ = writeln!(s, "{:>44}({})", "", a.trim_start());
            }
        }
        if e.held && e.suspended {
            let _ = writeln!(s, "{:>44}(held (suspended))", "");
        } else if e.held {
            let _ = writeln!(s, "{:>44}(held)", "");
        } else if e.rate_held {
            let _ = writeln!(s, "{:>44}(rate limited)", "");
        }
        for r in e
            .recipients
            .iter()
            .filter(|r| r.state == RcptState::Pending)
        {
            if let Some(reply) = &r.reply {
                let _ = writeln!(s, "{:>44}({})", "", crate::base::address::printable(reply));
            }
            let _ = writeln!(s, "{:>44}{}", "", r.addr);
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
}
