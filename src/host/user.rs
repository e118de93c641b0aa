//! Who the guarded command runs as.
//!
//! Never as root by accident: the invoking user from `sudo` (`SUDO_UID` /
//! `SUDO_GID`), or `--user`, or root only with `--allow-root` and a warning.

use anyhow::{Context, bail};
use nix::unistd::{Gid, Uid, User};

/// The account the command runs as.
#[derive(Debug, Clone)]
pub struct Target {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
    pub home: String,
}

impl Target {
    fn from_user(user: User) -> Target {
        Target { uid: user.uid.as_raw(), gid: user.gid.as_raw(), name: user.name, home: user.dir.display().to_string() }
    }
}

/// Resolves `--user` (a name or a numeric uid), else the `sudo` caller.
/// `Ok(None)` means "stay root", allowed only with `allow_root`.
pub fn target(user: Option<&str>, allow_root: bool) -> anyhow::Result<Option<Target>> {
    if let Some(spec) = user {
        let found = match spec.parse::<u32>() {
            Ok(uid) => User::from_uid(Uid::from_raw(uid)),
            Err(_) => User::from_name(spec),
        };
        let user = found.with_context(|| format!("looking up user {spec}"))?;
        return match user {
            Some(user) if user.uid.is_root() && !allow_root => {
                bail!("--user {spec} is root; pass --allow-root to mean it")
            }
            Some(user) => Ok(Some(Target::from_user(user))),
            None => bail!("--user {spec}: no such user"),
        };
    }
    if let Some(uid) = std::env::var("SUDO_UID").ok().and_then(|v| v.parse::<u32>().ok()).filter(|uid| *uid != 0) {
        let user = User::from_uid(Uid::from_raw(uid)).context("looking up SUDO_UID")?;
        let mut target = match user {
            Some(user) => Target::from_user(user),
            None => Target { uid, gid: uid, name: uid.to_string(), home: "/".into() },
        };
        if let Some(gid) = std::env::var("SUDO_GID").ok().and_then(|v| v.parse::<u32>().ok()) {
            target.gid = Gid::from_raw(gid).as_raw();
        }
        return Ok(Some(target));
    }
    if allow_root {
        return Ok(None);
    }
    bail!(
        "refusing to run the command as root: run bridle through sudo (the command then runs as you), \
         pass --user USER, or pass --allow-root"
    )
}
