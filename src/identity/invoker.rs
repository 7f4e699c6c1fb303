//! Who is running us: the real uid's login name and groups, from the passwd and
//! group databases (never `$USER`/`$LOGNAME`), and whether we run set-id.

use nix::unistd::{Gid, Group, Uid, User};

#[derive(Debug, thiserror::Error)]
pub enum InvokerError {
    #[error("uid {0} has no passwd entry; a sending user must exist in the passwd database")]
    Unknown(u32),
}

#[derive(Debug, Clone)]
pub struct Invoker {
    pub uid: u32,
    pub login: String,
    /// Names of the primary and supplementary groups, looked up on first use
    /// (getgrouplist may load NSS modules: a third of a run's instructions,
    /// needed only when virtusers has no line for the user).
    groups: std::cell::OnceCell<Vec<String>>,
    /// The binary runs set-uid or set-gid (effective ids differ from real ones).
    pub setid: bool,
}

impl Invoker {
    pub fn current() -> Result<Invoker, InvokerError> {
        let uid = Uid::current();
        let user = User::from_uid(uid)
            .ok()
            .flatten()
            .ok_or(InvokerError::Unknown(uid.as_raw()))?;
        Ok(Invoker {
            uid: uid.as_raw(),
            groups: std::cell::OnceCell::new(),
            login: user.name,
            setid: uid != Uid::effective() || Gid::current() != Gid::effective(),
        })
    }

    /// Group names of the user (primary and supplementary).
    pub fn groups(&self) -> &[String] {
        self.groups.get_or_init(|| {
            User::from_name(&self.login)
                .ok()
                .flatten()
                .map(|u| groups_of(&u))
                .unwrap_or_default()
        })
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// Group names of a user: primary group plus getgrouplist().
fn groups_of(user: &User) -> Vec<String> {
    let mut names = Vec::new();
    let cname = std::ffi::CString::new(user.name.as_bytes()).unwrap_or_default();
    if let Ok(gids) = nix::unistd::getgrouplist(&cname, user.gid) {
        for g in gids {
            if let Ok(Some(gr)) = Group::from_gid(g)
                && !names.contains(&gr.name)
            {
                names.push(gr.name);
            }
        }
    } else if let Ok(Some(gr)) = Group::from_gid(user.gid) {
        names.push(gr.name);
    }
    names
}

/// Look up a user by login (for queue runs re-resolving an identity).
pub fn by_login(login: &str) -> Option<Invoker> {
    let user = User::from_name(login).ok().flatten()?;
    Some(Invoker {
        uid: user.uid.as_raw(),
        groups: std::cell::OnceCell::new(),
        login: user.name,
        setid: false,
    })
}
