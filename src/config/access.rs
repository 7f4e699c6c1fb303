//! Can the vsendmail group read this file? The checks (`-bi`, `-bv`,
//! `--doctor`) run as root, who can read anything; a send runs as the user
//! with the binary's set-gid group, who can read only what that group (or
//! everybody) may. So the answer is computed from the file's mode and
//! owner, and from every directory above it, never by trying to open it.
//! Owns only that question; which files a send opens is the caller's list.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// The group a send runs as: the set-gid group of this binary, else the
/// group that owns the spool (what `make install` gives both), else the
/// group named `vsendmail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceGroup {
    pub gid: u32,
    pub name: String,
}

impl ServiceGroup {
    pub fn find(spool: &Path) -> Option<ServiceGroup> {
        let setgid = std::fs::metadata("/proc/self/exe")
            .ok()
            .filter(|m| m.mode() & 0o2000 != 0)
            .map(|m| m.gid());
        let spool_gid = std::fs::metadata(spool)
            .ok()
            .map(|m| m.gid())
            .filter(|g| *g != 0);
        let gid = setgid.or(spool_gid).or_else(|| {
            nix::unistd::Group::from_name("vsendmail")
                .ok()
                .flatten()
                .map(|g| g.gid.as_raw())
        })?;
        Some(ServiceGroup {
            gid,
            name: group_name(gid),
        })
    }
}

/// The name of a group, or its number.
pub fn group_name(gid: u32) -> String {
    nix::unistd::Group::from_gid(gid.into())
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_else(|| gid.to_string())
}

/// The name of a user, or its number.
pub fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

/// `mode 0600 root:root`.
pub fn mode_owner(m: &std::fs::Metadata) -> String {
    format!(
        "mode {:04o} {}:{}",
        m.permissions().mode() & 0o7777,
        user_name(m.uid()),
        group_name(m.gid())
    )
}

/// `Ok` when a process of group `g` (and any uid but the file's owner) can
/// read `path` and search every directory above it; else what is wrong and
/// the commands that fix it.
pub fn group_can_read(path: &Path, g: &ServiceGroup) -> Result<(), String> {
    let m = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let may = |m: &std::fs::Metadata, bit: u32| {
        let mode = m.permissions().mode();
        (m.gid() == g.gid && mode & (bit << 3) != 0) || mode & bit != 0
    };
    if let Some(parent) = path.parent() {
        for dir in parent.ancestors().filter(|d| !d.as_os_str().is_empty()) {
            let Ok(dm) = std::fs::metadata(dir) else {
                continue;
            };
            if !may(&dm, 0o001) {
                return Err(format!(
                    "directory {} is not searchable by group {} ({}); chgrp {} {} && chmod g+x {}",
                    dir.display(),
                    g.name,
                    mode_owner(&dm),
                    g.name,
                    dir.display(),
                    dir.display()
                ));
            }
        }
    }
    if !may(&m, 0o004) {
        return Err(format!(
            "{} is not readable by group {} ({}); chgrp {} {} && chmod 0640 {}",
            path.display(),
            g.name,
            mode_owner(&m),
            g.name,
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn mode_and_group_decide() {
        let d = std::env::temp_dir().join(format!("vs-access-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = d.join("key.pem");
        std::fs::write(&f, "x").unwrap();
        let m = std::fs::metadata(&f).unwrap();
        let own = ServiceGroup {
            gid: m.gid(),
            name: "own".into(),
        };
        let other = ServiceGroup {
            gid: m.gid().wrapping_add(4242),
            name: "other".into(),
        };
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = group_can_read(&f, &own).unwrap_err();
        assert!(
            e.contains("is not readable by group own (mode 0600 "),
            "{e}"
        );
        assert!(e.contains("chmod 0640"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(group_can_read(&f, &own).is_ok());
        assert!(group_can_read(&f, &other).is_err());
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(group_can_read(&f, &other).is_ok());
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        let e = group_can_read(&f, &other).unwrap_err();
        assert!(e.contains("is not searchable by group other"), "{e}");
        assert!(group_can_read(&d.join("missing"), &own).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
