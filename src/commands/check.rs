//! `-bi` / `newaliases`: check the configuration, virtusers (every line) and
//! aliases, and every key file they name; print each problem as `file:line:`
//! and exit 78 when there is one.
//!
//! It checks what a send will meet, not what root can see: every file a
//! send opens must be readable by the vsendmail group (`config::access`),
//! the spool must exist as `root:GROUP 2770`, the host name must be a FQDN,
//! a relay's user must have a secrets line and its host must resolve, the
//! queue runner (cron, systemd) must run this binary, and the log socket
//! must be there. Problems exit 78; warnings (a missing aliases file, a
//! spool directory the next root run creates, a relay name that does not
//! exist, no syslog) are printed and counted. Nothing is created but
//! the index of a clean virtusers.
//!
//! Root and `trusted_users` see every line's problems. Any other user sees
//! its own identity's line (the one a send by it would use) and the
//! configuration's; problems in other users' lines are counted, never
//! shown (their addresses, key paths and relays are not that user's to
//! know).

use crate::base::relay::Relay;
use crate::config::access::{ServiceGroup, group_can_read, mode_owner};
use crate::config::virtusers::{Table, Who};
use crate::exit::{Error, Result};
use crate::identity::job::Job;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where a queue runner that `make install` sets up may live.
const RUNNERS: &[&str] = &[
    "/etc/cron.d/vsendmail",
    "/etc/systemd/system/vsendmail-queue.service",
    "/usr/local/lib/systemd/system/vsendmail-queue.service",
    "/usr/lib/systemd/system/vsendmail-queue.service",
    "/lib/systemd/system/vsendmail-queue.service",
];

pub fn run(job: &Job) -> Result<i32> {
    let cfg = &job.cfg;
    let conf = cfg.path.display().to_string();
    let mut problems: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let group = ServiceGroup::find(&cfg.cfg.spool);
    // Whether a send, which runs with the vsendmail group, can read `path`.
    let readable = |problems: &mut Vec<String>, at: &str, path: &Path| {
        if let Some(g) = &group
            && let Err(m) = group_can_read(path, g)
        {
            problems.push(format!("{at}: {m}"));
        }
    };
    if cfg.path.exists() {
        readable(&mut problems, &conf, &cfg.path);
    }
    let vpath = cfg.cfg.virtusers.display().to_string();
    if cfg.cfg.virtusers.exists() {
        readable(&mut problems, &vpath, &cfg.cfg.virtusers);
    } else {
        problems.push(format!(
            "{vpath}: the virtusers file does not exist, so every user sends as the host ({}); create it (an empty file says so on purpose) or correct `virtusers` in {conf}",
            cfg.hostname
        ));
    }
    let table = Table::read(&cfg.cfg.virtusers)?;
    let (entries, errors) = table.check_all();
    // Which lines' problems this user may read: all (root, trusted), or
    // the one its sends use.
    let own_line = match table.lookup_with(&job.invoker.login, || job.invoker.groups().to_vec()) {
        Ok(e) => e.map(|e| e.line),
        Err(crate::config::virtusers::VirtusersError::Line { line, .. }) => Some(line),
        Err(_) => None,
    };
    let trusted = job.trusted();
    let visible = |line: usize| trusted || own_line == Some(line);
    let mut others = 0usize;
    for e in &errors {
        match e {
            crate::config::virtusers::VirtusersError::Line { line, .. } if !visible(*line) => {
                others += 1
            }
            e => problems.push(e.to_string()),
        }
    }
    let dns = crate::deliver::dns::Dns::new(&cfg.nameservers, std::time::Duration::from_secs(3));
    // (where, relay, whether this user may see its problems)
    let mut relays: Vec<(String, &Relay, bool)> = Vec::new();
    if let Some(list) = &cfg.relay {
        let line = cfg.relay_line.unwrap_or(1);
        for r in list.list() {
            relays.push((format!("{conf}:{line}: relay {}", r.text), r, true));
        }
    }
    for route in &cfg.routes.routes {
        if let crate::config::routes::Target::Relays(list) = &route.target {
            for r in list.list() {
                let at = format!(
                    "{conf}:{}: [routes] \"{}\" {}",
                    route.line, route.key, r.text
                );
                if !relays.iter().any(|(a, _, _)| *a == at) {
                    relays.push((at, r, true));
                }
            }
        }
    }
    for e in &entries {
        let show = visible(e.line);
        // Problems of a line the user may not read are counted, not shown:
        // each would name that identity's files.
        let mut mine: Vec<String> = Vec::new();
        // root reads every file; anyone else sends with the group only.
        let by_root = matches!(&e.who, Who::User(u) if u == "root");
        let keys = e.dkim.iter().map(|(sel, p)| (String::new(), sel, p)).chain(
            e.dkim_domains
                .iter()
                .map(|(d, sel, p)| (format!("{d}="), sel, p)),
        );
        for (dom, sel, path) in keys {
            let at = format!("{}: dkim={dom}{sel}:{}", e.location(), path.display());
            match crate::sign::dkim_key::check_key(path) {
                Err(msg) => mine.push(format!("{at}: {msg}")),
                Ok(()) if !by_root => readable(&mut mine, &at, path),
                Ok(()) => {}
            }
        }
        if let Some(path) = &e.batv {
            let at = format!("{}: batv={}", e.location(), path.display());
            match crate::sign::batv::check_key_file(path) {
                Err(msg) => mine.push(format!("{at}: {msg}")),
                Ok(()) if !by_root => readable(&mut mine, &at, path),
                Ok(()) => {}
            }
        }
        if let Some(list) = &e.relay {
            for r in list.list() {
                relays.push((format!("{}: relay={}", e.location(), r.text), r, show));
            }
        }
        if show {
            problems.extend(mine);
        } else {
            others += mine.len();
        }
    }
    match crate::config::secrets::Secrets::load(&cfg.cfg.secrets) {
        Err(e) => problems.push(e.to_string()),
        Ok(Some(_)) => readable(
            &mut problems,
            &cfg.cfg.secrets.display().to_string(),
            &cfg.cfg.secrets,
        ),
        Ok(None) => {}
    }
    let provider = rustls::crypto::ring::default_provider();
    for (at, r, show) in &relays {
        // The client certificate loads, matches its key, and the key is the group's only.
        if let Some((cert, key)) = &r.client_cert {
            let mut found = Vec::new();
            match crate::deliver::smtp::relay_tls::load_client_cert(cert, key, &provider) {
                Err(m) => found.push(format!("{at}: {m}")),
                Ok(_) => {
                    readable(&mut found, &format!("{at}: cert="), cert);
                    readable(&mut found, &format!("{at}: key="), key);
                }
            }
            if *show {
                problems.extend(found);
            } else {
                others += found.len();
            }
        }
        if r.user.is_some()
            && let Err(m) = crate::config::secrets::for_relay(&cfg.cfg.secrets, r)
        {
            if *show {
                problems.push(format!("{at}: {m}"));
            } else {
                others += 1;
            }
        }
        if *show
            && let Ok(d) = &dns
            && let Some(w) = relay_unresolved(d, r)
        {
            warnings.push(format!("{at}: warning: {w}"));
        }
    }
    if others > 0 {
        problems.push(format!(
            "{vpath}: {others} problem(s) in other users' lines, not shown to user {}; root or a trusted user sees them with -bi",
            job.invoker.login
        ));
    }
    let apath = cfg.cfg.aliases.display().to_string();
    let (_, alias_problems) = crate::config::aliases::Aliases::load(&cfg.cfg.aliases);
    let mut alias_warnings = alias_problems.len();
    for p in &alias_problems {
        warnings.push(format!("{apath}:{}: warning: {}", p.line, p.msg));
    }
    if cfg.cfg.aliases.exists() {
        readable(&mut problems, &apath, &cfg.cfg.aliases);
    } else {
        alias_warnings += 1;
        warnings.push(format!(
            "{apath}: warning: the aliases file does not exist, so mail to root, postmaster or cron's MAILTO goes to that name at the sending identity's domain (root@shop.example); create it with `root: admin@example.org` lines, or correct `aliases` in {conf}"
        ));
    }
    spool_checks(job, group.as_ref(), &mut problems, &mut warnings);
    if !cfg.hostname.contains('.') || cfg.hostname.ends_with('.') {
        let at = match config_line(&cfg.path, "hostname") {
            Some(n) => format!("{conf}:{n}: hostname \"{}\"", cfg.hostname),
            None => format!("{conf}: the system's host name \"{}\"", cfg.hostname),
        };
        problems.push(format!(
            "{at} is not a fully qualified domain name: receivers refuse it as HELO and as the sender's domain; set hostname = \"host.example.org\" in {conf}"
        ));
    }
    runner_checks(&mut problems);
    direct_delivery_checks(cfg, &mut problems, &mut warnings);
    if let Some(p) = job.log.problem() {
        warnings.push(format!(
            "{conf}: warning: syslog_socket: {p}; nothing is logged: start the system logger (rsyslog, systemd-journald) or point syslog_socket at its socket"
        ));
    }
    for w in &warnings {
        eprintln!("vsendmail: {w}");
    }
    for p in &problems {
        eprintln!("vsendmail: {p}");
    }
    if !problems.is_empty() {
        return Err(Error::CheckFailed {
            count: problems.len(),
        });
    }
    // A clean table gets its index (`<virtusers>.idx`): lookups by binary search.
    let index_note = match table.write_index() {
        Ok(Some(p)) => format!("; index {} written", p.display()),
        Ok(None) => String::new(),
        Err(e) => {
            eprintln!(
                "vsendmail: warning: cannot write the index of {}: {e}; lookups will scan the file",
                cfg.cfg.virtusers.display()
            );
            String::new()
        }
    };
    let other = warnings.len() - alias_warnings.min(warnings.len());
    let other_note = if other > 0 {
        format!("; {other} other warning(s) above")
    } else {
        String::new()
    };
    println!(
        "vsendmail: {vpath}: {} identities, no problems{index_note}; {apath}: {alias_warnings} warning(s); {conf}: ok{other_note}",
        entries.len(),
    );
    Ok(0)
}

/// Why the relay's host name does not resolve (`None`: it does, it is an
/// address, or DNS gave no definite answer). For `-bi` and `-bv`: a typo in a relay name is seen at
/// once, not when the first message stays queued.
pub fn relay_unresolved(dns: &crate::deliver::dns::Dns, r: &Relay) -> Option<String> {
    let host = r.host.trim_start_matches('[').trim_end_matches(']');
    if host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    match dns.addrs(host, true, true, false) {
        Ok(v) if !v.is_empty() => None,
        Ok(_) => Some(format!(
            "relay host {host} does not resolve: it has no A or AAAA record; mail through it stays queued until it does: correct the name"
        )),
        Err(e) if e.is_permanent() => Some(format!(
            "relay host {host} does not resolve: {e}; mail through it stays queued until it does: correct the name"
        )),
        // DNS that cannot be asked now says nothing about the name: delivery
        // reports it when it happens, and --doctor checks the nameservers.
        Err(_) => None,
    }
}

/// The spool as a send needs it: `root:GROUP`, mode 2770, with `tmp/`,
/// `queue/`, `rate/` and the audit directory inside, the same way.
fn spool_checks(
    job: &Job,
    group: Option<&ServiceGroup>,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    let cfg = &job.cfg;
    let spool = &cfg.cfg.spool;
    let gname = group.map(|g| g.name.as_str()).unwrap_or("vsendmail");
    let fix = |d: &Path| {
        format!(
            "install -d -o root -g {gname} -m 2770 {} (make install does)",
            d.display()
        )
    };
    let m = match std::fs::metadata(spool) {
        Ok(m) => m,
        Err(e) => {
            problems.push(format!(
                "{}: the spool cannot be used ({e}); every send fails with 73; create it: {}",
                spool.display(),
                fix(spool)
            ));
            return;
        }
    };
    let mut dirs: Vec<PathBuf> = ["tmp", "queue", "rate"]
        .iter()
        .map(|s| spool.join(s))
        .collect();
    dirs.push(cfg.audit_dir());
    if let Some(p) = shape(spool, &m, group) {
        problems.push(p);
    }
    for d in &dirs {
        match std::fs::metadata(d) {
            Ok(dm) => {
                if let Some(p) = shape(d, &dm, group) {
                    problems.push(p);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => warnings.push(format!(
                "{}: warning: missing; the next run as root (the queue runner) creates it, and until then users' sends fail: {}",
                d.display(),
                fix(d)
            )),
            Err(e) => problems.push(format!("{}: {e}", d.display())),
        }
    }
}

/// What is wrong with a spool directory's type, owner, group or mode.
fn shape(d: &Path, m: &std::fs::Metadata, group: Option<&ServiceGroup>) -> Option<String> {
    let mode = m.permissions().mode() & 0o7777;
    let gname = group.map(|g| g.name.as_str()).unwrap_or("vsendmail");
    let bad_group = group.is_none_or(|g| g.gid != m.gid());
    if !m.is_dir() || m.uid() != 0 || bad_group || mode != 0o2770 {
        return Some(format!(
            "{}: {} ({}), expected a directory root:{gname} mode 2770; chown root:{gname} {} && chmod 2770 {}",
            d.display(),
            if m.is_dir() {
                "wrong owner or mode"
            } else {
                "not a directory"
            },
            mode_owner(m),
            d.display(),
            d.display()
        ));
    }
    None
}

/// The line of `key = …` in the config file, if it is set there.
fn config_line(path: &Path, key: &str) -> Option<usize> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

/// The keys of direct delivery's manners and authenticated TLS: a cap of
/// 0 connections, DANE trusting a resolver that is not local, the spool
/// directories of backoffs and MTA-STS policies.
fn direct_delivery_checks(
    cfg: &crate::config::conf::Loaded,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    let conf = cfg.path.display();
    if cfg.cfg.destination_concurrency == 0 {
        let at = config_line(&cfg.path, "destination_concurrency")
            .map(|n| format!("{conf}:{n}"))
            .unwrap_or_else(|| conf.to_string());
        problems.push(format!(
            "{at}: destination_concurrency = 0: root's queue runs would never connect to any host; set it to 1 or more (default 2)"
        ));
    }
    if cfg.cfg.dnssec == crate::config::conf::Dnssec::TrustAd
        && (cfg.nameservers.is_empty() || cfg.nameservers.iter().any(|n| !n.ip().is_loopback()))
    {
        let at = config_line(&cfg.path, "dnssec")
            .map(|n| format!("{conf}:{n}"))
            .unwrap_or_else(|| conf.to_string());
        warnings.push(format!(
            "{at}: warning: dnssec = \"trust-ad\" trusts the AD bit of the dns nameservers, but {} not on this host (anyone on the path can set it): run a validating resolver (unbound) on 127.0.0.1 and set dns = [\"127.0.0.1\"]",
            if cfg.nameservers.is_empty() { "none is set (resolv.conf's are used, maybe" } else { "one is" }
        ));
    }
    for d in ["backoff", "mta-sts"] {
        let p = cfg.cfg.spool.join(d);
        if cfg.cfg.spool.is_dir() && !p.exists() {
            warnings.push(format!(
                "{}: warning: missing; until root's next run (the queue runner) creates it, users' deliveries cannot record {}: create it: install -d -m 2770 -g vsendmail {}",
                p.display(),
                if d == "backoff" { "the waits of hosts that said slow down" } else { "MTA-STS policies (each delivery fetches them again)" },
                p.display()
            ));
        }
    }
}

/// The queue runners (cron line, systemd unit) must run this binary: one
/// that runs another MTA's `sendmail -q` leaves vsendmail's queue unsent.
fn runner_checks(problems: &mut Vec<String>) {
    let me = std::fs::canonicalize("/proc/self/exe").ok();
    let mut seen: Vec<PathBuf> = Vec::new();
    for f in RUNNERS {
        let Ok(real) = std::fs::canonicalize(f) else {
            continue;
        };
        if seen.contains(&real) {
            continue;
        }
        seen.push(real);
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        let cron = f.starts_with("/etc/cron.d/");
        for (line, prog) in runner_commands(&text, cron) {
            let at = format!("{f}:{line}");
            let resolved = resolve_program(&prog, &text, cron);
            match (&resolved, &me) {
                (Some(r), Some(me)) if r == me => {}
                (Some(r), Some(me)) => problems.push(format!(
                    "{at}: the queue runner runs {prog} ({}), which is not this vsendmail ({}): vsendmail's queue is never retried; make it run {} -q5m",
                    r.display(),
                    me.display(),
                    me.display()
                )),
                (None, _) => problems.push(format!(
                    "{at}: the queue runner runs {prog}, which does not exist: vsendmail's queue is never retried; make it run {} -q5m",
                    me.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "vsendmail".into())
                )),
                (Some(_), None) => {}
            }
        }
    }
}

/// (line, program) of each command a cron file (`cron`) or systemd unit runs.
fn runner_commands(text: &str, cron: bool) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        let words: Vec<&str> = if cron {
            let first = l.split_whitespace().next().unwrap_or("");
            if first.contains('=') {
                continue; // PATH=..., MAILTO=...
            }
            // `m h dom mon dow user command` or `@every user command`.
            let skip = if first.starts_with('@') { 2 } else { 6 };
            l.split_whitespace().skip(skip).collect()
        } else {
            match l
                .strip_prefix("ExecStart")
                .and_then(|r| r.trim_start().strip_prefix('='))
            {
                Some(r) => r.split_whitespace().collect(),
                None => continue,
            }
        };
        // The program is the word before the `-q…` flag (a cron command may
        // be `[ -x PROG ] && PROG -q5m`); a command without one is not judged.
        let cmd = words
            .windows(2)
            .find(|w| w[1].starts_with("-q"))
            .map(|w| w[0].trim_start_matches(['-', '@', ':', '+', '!']));
        if let Some(c) = cmd.filter(|c| !c.is_empty()) {
            out.push((i + 1, c.to_string()));
        }
    }
    out
}

/// The file a runner's program name means: as written when it has a `/`,
/// else searched in the cron file's `PATH=` (cron's default otherwise).
fn resolve_program(prog: &str, text: &str, cron: bool) -> Option<PathBuf> {
    if prog.contains('/') {
        return std::fs::canonicalize(prog).ok();
    }
    let path = if cron {
        text.lines()
            .find_map(|l| l.trim().strip_prefix("PATH="))
            .unwrap_or("/usr/bin:/bin")
            .to_string()
    } else {
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()
    };
    path.split(':')
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_commands_of_cron_and_systemd() {
        let cron = "# queue\nSHELL=/bin/sh\nPATH=/usr/sbin:/usr/bin\n*/5 * * * * root [ -x /usr/local/sbin/vsendmail ] && /usr/local/sbin/vsendmail -q5m\n@reboot root sendmail -q\n0 * * * * root echo hi\n";
        assert_eq!(
            runner_commands(cron, true),
            vec![
                (4, "/usr/local/sbin/vsendmail".to_string()),
                (5, "sendmail".to_string())
            ]
        );
        let unit = "[Service]\nType=oneshot\nExecStart=-/usr/sbin/sendmail -q\n";
        assert_eq!(
            runner_commands(unit, false),
            vec![(3, "/usr/sbin/sendmail".to_string())]
        );
        assert_eq!(
            resolve_program("sh", "PATH=/bin:/usr/bin\n", true),
            std::fs::canonicalize("/bin/sh").ok()
        );
        assert_eq!(resolve_program("/nonexistent/x", "", false), None);
    }
}
