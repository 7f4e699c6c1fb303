//! `--suspend LOGIN [--action hold|refuse] [--reason TEXT]`, `--unsuspend
//! LOGIN` (root and `trusted_users` only; others 77, nothing changed) and
//! `--suspended` (every suspension with its time, action, reason and who set
//! it; others see only their own). The store is `account::suspend`.

use crate::account::suspend::{self, Suspension};
use crate::base::clock::{rfc3339_utc, unix_now};
use crate::base::syslog::value;
use crate::config::conf::SuspendAction;
use crate::exit::{Error, Result};
use crate::identity::job::Job;

fn allowed(job: &Job) -> Result<()> {
    if job.trusted() {
        Ok(())
    } else {
        Err(Error::SuspendNotAllowed {
            login: job.invoker.login.clone(),
        })
    }
}

fn known(login: &str) -> Result<()> {
    if crate::identity::invoker::by_login(login).is_some() {
        Ok(())
    } else {
        Err(Error::UnknownLogin {
            login: crate::base::address::printable(login),
        })
    }
}

pub fn suspend(job: &Job, login: &str, action: Option<&str>, reason: Option<&str>) -> Result<i32> {
    allowed(job)?;
    let action = match action {
        None => SuspendAction::Refuse,
        Some(a) => SuspendAction::parse(a).ok_or_else(|| Error::BadAction {
            shown: crate::base::address::printable(a),
        })?,
    };
    known(login)?;
    let s = Suspension {
        v: 1,
        login: login.to_string(),
        since: unix_now(),
        reason: crate::base::attribution::clean(reason.unwrap_or("suspended by the administrator")),
        by: job.invoker.login.clone(),
        action,
        breaker: false,
        until: 0,
    };
    suspend::set(&job.cfg, &s).map_err(|err| Error::SuspendWrite {
        login: login.to_string(),
        err,
    })?;
    job.log.warning(&format!(
        "user={} suspended by uid={} user={} action={} reason={}",
        value(login),
        job.invoker.uid,
        value(&job.invoker.login),
        action.as_str(),
        value(&s.reason)
    ));
    println!(
        "{login}: suspended since {} (action {}, reason: {})",
        rfc3339_utc(s.since as i64),
        action.as_str(),
        s.reason
    );
    Ok(0)
}

pub fn unsuspend(job: &Job, login: &str) -> Result<i32> {
    allowed(job)?;
    known(login)?;
    let lifted = suspend::lift(&job.cfg, login).map_err(|err| Error::SuspendWrite {
        login: login.to_string(),
        err,
    })?;
    crate::account::breaker::reset(&job.cfg, login);
    if !lifted {
        println!("{login}: not suspended");
        return Err(Error::NoMatch);
    }
    job.log.warning(&format!(
        "user={} unsuspended by uid={} user={}",
        value(login),
        job.invoker.uid,
        value(&job.invoker.login)
    ));
    println!(
        "{login}: unsuspended (messages held meanwhile stay held: vsendmail --release user={login})"
    );
    Ok(0)
}

pub fn list(job: &Job) -> Result<i32> {
    let all = suspend::list(&job.cfg);
    let shown: Vec<&Suspension> = all
        .iter()
        .filter(|s| job.trusted() || s.login == job.invoker.login)
        .collect();
    if shown.is_empty() {
        println!("no user is suspended");
        return Ok(0);
    }
    for s in shown {
        println!(
            "login={} since={} action={} by={}{} reason={}",
            value(&s.login),
            rfc3339_utc(s.since as i64),
            s.action.as_str(),
            value(&s.by),
            if s.until > 0 {
                format!(" until={}", rfc3339_utc(s.until as i64))
            } else {
                String::new()
            },
            value(&s.reason)
        );
    }
    Ok(0)
}
