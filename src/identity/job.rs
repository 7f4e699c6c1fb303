//! The job: who runs vsendmail, with which command line and configuration,
//! and where it logs. Built once by the entry point (`app`) from argv, the
//! config file and the real uid, and handed down to every mode; it lives
//! below all of them, so any stage above identity may take it, and it knows
//! nothing of what they do with it.

use crate::base::syslog::Syslog;
use crate::cli::invocation::Invocation;
use crate::config::conf::Loaded;
use crate::config::virtusers::{Table, VirtusersError};
use crate::identity::invoker::Invoker;
use crate::identity::profile::Identity;

/// Everything a mode needs about this run.
pub struct Job {
    pub inv: Invocation,
    pub cfg: Loaded,
    pub invoker: Invoker,
    pub log: Syslog,
}

impl Job {
    /// Root or one of `trusted_users`: may act on others' mail.
    pub fn trusted(&self) -> bool {
        self.cfg.is_trusted(&self.invoker.login)
    }

    /// The invoking user's identity from virtusers (or the host identity).
    pub fn identity(&self) -> Result<Identity, VirtusersError> {
        identity_of(&self.cfg, &self.invoker)
    }
}

/// Resolve a user's identity as virtusers says today.
pub fn identity_of(cfg: &Loaded, who: &Invoker) -> Result<Identity, VirtusersError> {
    let table = Table::read(&cfg.cfg.virtusers)?;
    let entry = table.lookup_with(&who.login, || who.groups().to_vec())?;
    Ok(Identity::resolve(
        entry.as_ref(),
        &who.login,
        who.uid,
        &cfg.hostname,
    ))
}

/// The identity a queued message's owner has today: `Ok(None)` when the
/// login no longer exists; an error when virtusers (or the owner's line)
/// cannot be read now.
pub fn current_identity(cfg: &Loaded, login: &str) -> Result<Option<Identity>, VirtusersError> {
    match crate::identity::invoker::by_login(login) {
        None => Ok(None),
        Some(who) => identity_of(cfg, &who).map(Some),
    }
}
