//! Issue 13, point 13 (oracles and reach) and the rest of point 9 (what
//! `-bp` says about the spool limits).
//!
//! Each attack is played by an unprivileged throwaway user against the
//! set-gid binary (`support::setgid`): another user's queue id answers as no
//! message at all; an administrator's `--hold` binds the owner; mail queued
//! before the administrator changed or removed a virtusers line is held, not
//! sent from the old identity, until root decides; `-bi` and `--doctor` show
//! a user only its own identity; `--batv-check` and `--policy` are for the
//! policy users and counted; relative key and config paths are refused with
//! file:line; `-bp` names the spool limit a user has reached, and shows the
//! long queue ids in full.

use crate::support::setgid::SetGid;
use crate::support::sink::Sink;
use crate::support::users;
use crate::support::vs::{Env, Out};
use std::time::Duration;

const UA: &str = "vst_hor_a";
const UB: &str = "vst_hor_b";
const WAIT: Duration = Duration::from_secs(15);

struct World {
    env: Env,
    sg: SetGid,
    sink: Sink,
}

impl World {
    /// `UA` as a@shop.example on 127.0.0.2, `UB` as b@blog.example on
    /// 127.0.0.3, each line followed by `options`.
    fn new(options: &str) -> World {
        users::user(UA);
        users::user(UB);
        let sink = Sink::start_default();
        let env = Env::new();
        let sg = SetGid::install();
        sg.attach(&env);
        env.relay(sink.addr());
        env.virtusers(&lines(options));
        env.set_timeout(Duration::from_secs(90));
        World { env, sg, sink }
    }

    fn run(&self, user: Option<&str>, args: &[&str], stdin: &[u8]) -> Out {
        self.sg.run(&self.env, user, args, stdin)
    }

    /// Queue one message as `user` (`-odq`); its id.
    fn queue(&self, user: &str, subject: &str) -> String {
        let before = self.ids();
        let msg = format!("Subject: {subject}\n\nbody\n");
        self.run(Some(user), &["-odq", "friend@dest.example"], msg.as_bytes())
            .expect_code(0);
        let mut new: Vec<String> = self
            .ids()
            .into_iter()
            .filter(|i| !before.contains(i))
            .collect();
        assert_eq!(new.len(), 1, "{new:?}");
        new.pop().unwrap()
    }

    /// Ids of the complete queued messages.
    fn ids(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.sg.spool().join("queue"))
            .unwrap()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".env")
                    .map(str::to_string)
            })
            .collect();
        v.sort();
        v
    }

    fn envelope(&self, id: &str) -> Vec<u8> {
        std::fs::read(self.sg.spool().join(format!("queue/{id}.env"))).unwrap()
    }
}

fn lines(options: &str) -> String {
    format!("{UA}  a@shop.example  127.0.0.2  {options}\n{UB}  b@blog.example  127.0.0.3\n")
}

// ------------------------------------------------------------ queue control

#[test]
fn hostile_another_users_queue_id_answers_as_no_such_message() {
    let w = World::new("");
    let idb = w.queue(UB, "bob's");
    // An id of the same shape that names nothing.
    let fake: String = idb
        .chars()
        .rev()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    let before = w.envelope(&idb);
    for action in ["--hold", "--release", "--delete"] {
        let theirs = w.run(Some(UA), &[action, &idb], b"");
        let none = w.run(Some(UA), &[action, &fake], b"");
        assert_eq!((theirs.code, none.code), (1, 1), "{theirs}\n{none}");
        assert_eq!(
            theirs.stderr.replace(&idb, "ID"),
            none.stderr.replace(&fake, "ID"),
            "{action}: another user's message is told apart from none"
        );
        assert!(theirs.stdout.is_empty() && !theirs.stderr.contains(UB));
    }
    assert_eq!(w.envelope(&idb), before, "{UB}'s message changed");
    // Root still sees and acts on it.
    w.run(None, &["--hold", &idb], b"").expect_code(0);
}

#[test]
fn hostile_administrator_hold_binds_the_owner() {
    let w = World::new("");
    let id = w.queue(UA, "evidence");
    let o = w.run(None, &["--hold", &id], b"");
    o.expect_code(0);
    for action in ["--release", "--delete"] {
        let o = w.run(Some(UA), &[action, &id], b"");
        assert_eq!(o.code, 77, "{action}: {o}");
        assert!(
            o.stderr.starts_with("vsendmail: ") && o.stderr.contains("only root or a trusted user"),
            "{o}"
        );
    }
    // ALL, for the owner, cannot lift it either.
    assert_eq!(w.run(Some(UA), &["--release", "ALL"], b"").code, 77);
    let q = w.run(Some(UA), &["-bp"], b"").stdout;
    assert!(q.contains("(held (by the administrator)"), "{q}");
    w.run(Some(UA), &["-q"], b"").expect_code(0);
    w.run(None, &["-q"], b"").expect_code(0);
    assert!(
        w.sink.messages().is_empty(),
        "an administrator's hold was sent"
    );
    assert_eq!(w.ids(), vec![id.clone()]);
    w.run(None, &["--release", &id], b"").expect_code(0);
    w.run(None, &["-q"], b"").expect_code(0);
    assert_eq!(w.sink.wait_messages(1, WAIT).len(), 1);
}

#[test]
fn hostile_mail_queued_before_an_identity_changed_or_was_removed_is_held() {
    let w = World::new("");
    let ida = w.queue(UA, "before the change");
    let idb = w.queue(UB, "before the removal");
    // The administrator moves UA to another address and removes UB.
    w.env
        .virtusers(&format!("{UA}  a@shop.example  127.0.0.4\n"));
    // -bp says so before any queue run has come.
    let early = w.run(Some(UA), &["-bp"], b"").stdout;
    assert!(early.contains("(held (identity changed)"), "{early}");
    w.run(None, &["-q"], b"").expect_code(0);
    assert!(
        w.sink.messages().is_empty(),
        "sent from the old identity: {:?}",
        w.sink.messages().iter().map(|m| m.peer).collect::<Vec<_>>()
    );
    let q = w.run(None, &["-bp"], b"").stdout;
    assert!(q.contains("(held (identity changed)"), "{q}");
    assert!(q.contains("(held (identity removed)"), "{q}");
    let qa = w.run(Some(UA), &["-bp"], b"").stdout;
    assert!(
        qa.contains(&format!("{ida}!")) && qa.contains("identity changed"),
        "{qa}"
    );
    // The owner cannot decide; root can.
    assert_eq!(w.run(Some(UA), &["--release", &ida], b"").code, 77);
    let o = w.run(None, &["--release", &ida], b"");
    o.expect_code(0);
    assert!(
        o.stdout
            .contains("sent as the identity virtusers gives now"),
        "{o}"
    );
    w.run(None, &["--delete", &idb], b"").expect_code(0);
    w.run(None, &["-q"], b"").expect_code(0);
    let m = w.sink.wait_messages(1, WAIT);
    assert_eq!(m.len(), 1);
    assert_eq!(
        m[0].peer.ip().to_string(),
        "127.0.0.4",
        "sent from the new source"
    );
    assert!(w.ids().is_empty(), "{:?}", w.ids());
    assert!(
        w.env
            .log_lines()
            .iter()
            .any(|l| l.contains(&format!("{idb}: held (identity removed)"))),
        "{:?}",
        w.env.log_lines()
    );
}

// ------------------------------------------------------------ -bi, --doctor

#[test]
fn hostile_bi_and_doctor_show_a_user_only_its_own_identity() {
    let w = World::new("dkim=sel:/nonexistent/ua-key.pem");
    w.env.virtusers(&format!(
        "{UA}  a@shop.example  127.0.0.2  dkim=sel:/nonexistent/ua-key.pem\n\
         {UB}  b@blog.example  127.0.0.3  dkim=sel:/nonexistent/ub-secret.pem\n"
    ));
    let o = w.run(Some(UA), &["-bi"], b"");
    assert_eq!(o.code, 78, "{o}");
    assert!(o.stderr.contains("ua-key.pem"), "{o}");
    assert!(
        !o.stderr.contains("ub-secret") && !o.stderr.contains("blog.example"),
        "{UA} sees {UB}'s identity:\n{o}"
    );
    assert!(
        o.stderr
            .contains("1 problem(s) in other users' lines, not shown"),
        "{o}"
    );
    let root = w.run(None, &["-bi"], b"");
    assert!(root.stderr.contains("ub-secret.pem"), "{root}");
    let d = w.run(Some(UA), &["--doctor"], b"");
    assert!(d.stdout.contains("a@shop.example"), "{d}");
    let all = format!("{}{}", d.stdout, d.stderr);
    assert!(
        !all.contains("blog.example") && !all.contains("ub-secret") && !all.contains("127.0.0.3"),
        "{d}"
    );
    let d = w.run(Some(UA), &["--doctor", UB], b"");
    assert_eq!(d.code, 77, "{d}");
    assert!(!d.stdout.contains("blog.example"), "{d}");
}

// ------------------------------------------------------------ BATV oracles

#[test]
fn hostile_batv_checks_are_for_policy_users_and_counted() {
    let w = World::new("");
    w.env
        .conf(&format!("policy_users = [\"{UB}\"]\npolicy_rate = \"3/h\""));
    let tag = "prvs=0123abcdef=a@shop.example";
    let o = w.run(Some(UA), &["--batv-check", tag], b"");
    assert_eq!(o.code, 77, "{o}");
    assert!(o.stderr.contains("policy_users"), "{o}");
    let o = w.run(
        Some(UA),
        &["--policy"],
        b"sender=\nrecipient=a@shop.example\n\n",
    );
    assert_eq!(o.code, 77, "{o}");
    assert!(o.stdout.is_empty(), "{o}");
    // The policy user: three checks an hour, then refused (and --policy defers).
    let bounce = "request=smtpd_access_policy\nsender=\nrecipient=x@shop.example\n\n";
    let o = w.run(Some(UB), &["--policy"], bounce.repeat(2).as_bytes());
    o.expect_code(0);
    assert_eq!(o.stdout.matches("action=DUNNO").count(), 2, "{o}");
    assert_eq!(w.run(Some(UB), &["--batv-check", tag], b"").code, 1);
    let o = w.run(Some(UB), &["--batv-check", tag], b"");
    assert_eq!(o.code, 75, "{o}");
    assert!(o.stderr.contains("BATV tag checks"), "{o}");
    let o = w.run(Some(UB), &["--policy"], bounce.as_bytes());
    assert!(o.stdout.starts_with("action=DEFER_IF_PERMIT"), "{o}");
    // Root is never counted.
    for _ in 0..4 {
        assert_eq!(w.run(None, &["--batv-check", tag], b"").code, 1);
    }
}

// ------------------------------------------------------------ paths

#[test]
fn hostile_relative_key_and_config_paths_are_refused_with_their_line() {
    let w = World::new("dkim=sel:keys/a.pem");
    let o = w.run(Some(UA), &["friend@dest.example"], b"Subject: x\n\nbody\n");
    assert_eq!(o.code, 78, "{o}");
    assert!(
        o.stderr.contains("virtusers:1:") && o.stderr.contains("relative"),
        "{o}"
    );
    let o = w.run(Some(UA), &["-bi"], b"");
    assert_eq!(o.code, 78, "{o}");
    assert!(
        o.stderr.contains("virtusers:1:") && o.stderr.contains("relative"),
        "{o}"
    );
    w.env.virtusers(&lines("batv=batv.key"));
    let o = w.run(Some(UA), &["friend@dest.example"], b"Subject: x\n\nbody\n");
    assert_eq!(o.code, 78, "{o}");
    assert!(
        o.stderr.contains("batv=") && o.stderr.contains("relative"),
        "{o}"
    );
    w.env.virtusers(&lines(""));
    w.env.conf("aliases = \"aliases\"");
    for args in [&["-bi"][..], &["friend@dest.example"]] {
        let o = w.run(Some(UA), args, b"Subject: x\n\nbody\n");
        assert_eq!(o.code, 78, "{args:?}: {o}");
        assert!(
            o.stderr.contains("/etc/vsendmail.conf:")
                && o.stderr
                    .contains("aliases = \"aliases\" is a relative path"),
            "{o}"
        );
    }
    assert!(w.sink.messages().is_empty());
}

// ------------------------------------------------------------ point 9: -bp

#[test]
fn hostile_bp_names_the_spool_limit_a_user_reached_and_shows_long_ids() {
    let w = World::new("");
    w.env.conf("max_user_queued_messages = 2");
    let ids = [w.queue(UA, "one"), w.queue(UA, "two")];
    let o = w.run(
        Some(UA),
        &["-odq", "friend@dest.example"],
        b"Subject: 3\n\nx\n",
    );
    assert_eq!(o.code, 75, "{o}");
    let q = w.run(Some(UA), &["-bp"], b"").stdout;
    assert!(
        q.contains("At a spool limit: 2 messages queued (max_user_queued_messages = 2)"),
        "{q}"
    );
    for id in &ids {
        assert!(id.len() >= 16, "{id}");
        assert!(q.lines().any(|l| l.starts_with(&format!("{id} "))), "{q}");
    }
    let qb = w.run(Some(UB), &["-bp"], b"").stdout;
    assert!(!qb.contains("spool limit"), "{qb}");
}
