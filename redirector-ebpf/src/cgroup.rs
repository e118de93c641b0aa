//! A cgroup v2 directory Bridle creates for a guarded session.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use crate::{Result, error::Step, mounts::cgroup2_mount};

/// A child cgroup under the v2 hierarchy, removed by [`Cgroup::remove`].
#[derive(Debug)]
pub struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    /// Create `<cgroup2 mount>/<name>` (parents included). An existing
    /// directory is reused.
    pub fn create(name: &str) -> Result<Self> {
        let path = cgroup2_mount()?.join(name);
        std::fs::create_dir_all(&path).step(|| format!("create cgroup {}", path.display()))?;
        Ok(Self { path })
    }

    /// Wrap an existing cgroup v2 directory.
    pub fn open(path: &Path) -> Result<Self> {
        std::fs::metadata(path).step(|| format!("open cgroup {}", path.display()))?;
        Ok(Self { path: path.to_owned() })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cgroup id BPF reports (`bpf_get_current_cgroup_id`): the inode.
    pub fn id(&self) -> Result<u64> {
        let meta = std::fs::metadata(&self.path).step(|| format!("stat cgroup {}", self.path.display()))?;
        Ok(meta.ino())
    }

    /// Depth below the cgroup v2 root (the root is 0), as
    /// `bpf_get_current_ancestor_cgroup_id` counts. Assumes the mount shows
    /// the real root (no private cgroup namespace: containers need
    /// `cgroup: host`).
    pub fn level(&self) -> Result<u32> {
        let root = cgroup2_mount()?;
        let below = self.path.strip_prefix(&root).map_err(|_| {
            crate::Error::Config(format!("{} is not under the cgroup v2 mount {}", self.path.display(), root.display()))
        })?;
        u32::try_from(below.components().count()).map_err(|_| crate::Error::Config("cgroup too deep".into()))
    }

    /// Move a process into this cgroup.
    pub fn add_pid(&self, pid: u32) -> Result<()> {
        let procs = self.path.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).step(|| format!("move pid {pid} into {}", procs.display()))
    }

    /// Remove the directory (it must hold no processes any more).
    pub fn remove(self) -> Result<()> {
        std::fs::remove_dir(&self.path).step(|| format!("remove cgroup {}", self.path.display()))
    }
}
