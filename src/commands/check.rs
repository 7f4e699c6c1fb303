//! `-bi` / `newaliases`: check the configuration, virtusers (every line) and
//! aliases, and every key file they name; print each problem as `file:line:`
//! and exit 78 when there is one.

use crate::config::virtusers::Table;
use crate::exit::{Error, Result};
use crate::identity::job::Job;

pub fn run(job: &Job) -> Result<i32> {
    let mut problems: Vec<String> = Vec::new();
    let table = Table::read(&job.cfg.cfg.virtusers)?;
    let (entries, errors) = table.check_all();
    problems.extend(errors.iter().map(|e| e.to_string()));
    for e in &entries {
        if let Some((sel, path)) = &e.dkim
            && let Err(msg) = crate::sign::dkim_key::check_key(path)
        {
            problems.push(format!(
                "{}: dkim={sel}:{}: {msg}",
                e.location(),
                path.display()
            ));
        }
        if let Some(path) = &e.batv
            && let Err(msg) = crate::sign::batv::check_key_file(path)
        {
            problems.push(format!("{}: batv={}: {msg}", e.location(), path.display()));
        }
    }
    if let Err(e) = crate::config::secrets::Secrets::load(&job.cfg.cfg.secrets) {
        problems.push(e.to_string());
    }
    let (_, alias_problems) = crate::config::aliases::Aliases::load(&job.cfg.cfg.aliases);
    let apath = job.cfg.cfg.aliases.display().to_string();
    let mut warnings = 0;
    for p in &alias_problems {
        eprintln!("vsendmail: {apath}:{}: warning: {}", p.line, p.msg);
        warnings += 1;
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
                job.cfg.cfg.virtusers.display()
            );
            String::new()
        }
    };
    println!(
        "vsendmail: {}: {} identities, no problems{index_note}; {}: {} warning(s); {}: ok",
        job.cfg.cfg.virtusers.display(),
        entries.len(),
        apath,
        warnings,
        job.cfg.path.display()
    );
    Ok(0)
}
