//! `--batv-check ADDRESS`: is this bounce address a valid BATV tag of one of
//! our domains? Prints the verdict; exit 0 only for `valid`, 1 otherwise.
//! For root, `trusted_users` and `policy_users` only (anyone else could
//! test tags until one is valid: 77), each check counted against
//! `policy_rate` (over it: 75).

use crate::exit::{Error, Result};
use crate::identity::job::Job;
use crate::sign::batv::{Domains, Verdict, today};

/// `--batv-check ADDRESS`: print the verdict; exit 0 only for `valid`.
pub fn run(job: &Job, addr: &str) -> Result<i32> {
    let login = &job.invoker.login;
    if !job.cfg.may_check_tags(login) {
        return Err(Error::NotPolicyUser {
            what: "--batv-check",
            login: login.clone(),
        });
    }
    crate::account::rate::count_tag_check(&job.cfg, job.invoker.uid, login)?;
    let domains = Domains::load(&job.cfg)?;
    let v = domains
        .check(addr, today(), job.cfg.cfg.batv_days)
        .map_err(Error::BatvKeys)?;
    println!("{v}");
    if v == Verdict::Valid {
        Ok(0)
    } else {
        Err(Error::NoMatch)
    }
}
