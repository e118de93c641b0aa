//! Finding the cgroup v2 hierarchy and the bpf filesystem in
//! `/proc/self/mountinfo`, and mounting bpffs when it is missing.

use std::path::{Path, PathBuf};

use crate::{Error, Result, error::Step};

/// Where bpffs is conventionally mounted.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

/// One mount: its mount point, filesystem type and whether it is writable.
#[derive(Debug, PartialEq, Eq)]
struct Mount {
    point: PathBuf,
    fstype: String,
    writable: bool,
}

fn mounts() -> Result<Vec<Mount>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").step(|| "read /proc/self/mountinfo".into())?;
    Ok(parse_mountinfo(&text))
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw` → point
/// is field 5, its options field 6, fstype the first field after " - ".
/// Octal escapes (`\040`) in the mount point are decoded.
fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut fields = left.split(' ').skip(4);
            let point = fields.next()?;
            let writable = fields.next()?.split(',').any(|option| option == "rw");
            let fstype = right.split(' ').next()?;
            Some(Mount { point: PathBuf::from(unescape(point)), fstype: fstype.to_owned(), writable })
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(o, 8).ok()) {
            Some(b) => {
                out.push(char::from(b));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The cgroup v2 mount: `/sys/fs/cgroup` on pure v2 hosts,
/// `/sys/fs/cgroup/unified` in hybrid mode, else the first cgroup2 mount.
/// A writable mount wins over a read-only one (a container sees the
/// runtime's read-only mount until the host's is mounted over it).
pub fn cgroup2_mount() -> Result<PathBuf> {
    pick_cgroup2(&mounts()?).ok_or(Error::NoCgroup2)
}

fn pick_cgroup2(mounts: &[Mount]) -> Option<PathBuf> {
    let pick = |writable_only: bool| {
        let v2: Vec<&Path> = mounts
            .iter()
            .filter(|m| m.fstype == "cgroup2" && (m.writable || !writable_only))
            .map(|m| m.point.as_path())
            .collect();
        ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
            .iter()
            .map(Path::new)
            .find(|p| v2.contains(p))
            .or_else(|| v2.first().copied())
            .map(Path::to_path_buf)
    };
    pick(true).or_else(|| pick(false))
}

/// Make sure `dir` lies on a bpffs: if no bpffs covers it and it is under
/// [`BPFFS_ROOT`], mount one there. Then create `dir`.
pub fn ensure_bpffs(dir: &Path) -> Result<()> {
    let mounts = mounts()?;
    let mut bpffs = covering(&mounts, dir).filter(|m| m.fstype == "bpf").map(|m| m.point.as_path());
    if bpffs.is_none() {
        let root = Path::new(BPFFS_ROOT);
        if !dir.starts_with(root) {
            return Err(Error::NoBpffs {
                path: dir.to_owned(),
                source: std::io::Error::other("not under /sys/fs/bpf, will not mount there"),
            });
        }
        mount_bpffs(root).map_err(|source| Error::NoBpffs { path: dir.to_owned(), source })?;
        tracing::info!(path = BPFFS_ROOT, "mounted bpffs");
        bpffs = Some(root);
    }
    std::fs::create_dir_all(dir).step(|| format!("create pin directory {}", dir.display()))?;
    only_root_can_change(dir, bpffs.unwrap_or(Path::new(BPFFS_ROOT)))
}

/// Every directory from below the bpffs mount `root` down to `dir` is
/// root's and writable by root alone. `/sys/fs/bpf` itself is often
/// world-writable (sticky): a user who made `bridle/` or a session's
/// directory there first would own it and could unlink the link pins,
/// which detaches the programs.
fn only_root_can_change(dir: &Path, root: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    for path in dir.ancestors().take_while(|p| p.starts_with(root) && *p != root) {
        let meta = std::fs::symlink_metadata(path).step(|| format!("inspect pin directory {}", path.display()))?;
        let why = if !meta.is_dir() {
            Some("not a directory".to_owned())
        } else if meta.uid() != 0 {
            Some(format!("owned by uid {}", meta.uid()))
        } else if meta.mode() & 0o022 != 0 {
            Some(format!("writable by group or others (mode {:o})", meta.mode() & 0o7777))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(Error::UnsafePinDir { path: path.to_owned(), why });
        }
    }
    Ok(())
}

/// The deepest mount covering `dir`.
fn covering<'a>(mounts: &'a [Mount], dir: &Path) -> Option<&'a Mount> {
    mounts.iter().filter(|m| dir.starts_with(&m.point)).max_by_key(|m| m.point.components().count())
}

/// Whether the deepest mount covering `dir` is a bpffs.
#[cfg(test)]
fn on_bpffs(mounts: &[Mount], dir: &Path) -> bool {
    covering(mounts, dir).is_some_and(|m| m.fstype == "bpf")
}

#[expect(unsafe_code, reason = "mount(2) has no safe std wrapper")]
fn mount_bpffs(root: &Path) -> std::io::Result<()> {
    use std::{ffi::CString, os::unix::ffi::OsStrExt};
    let target = CString::new(root.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let source = c"bpf";
    let fstype = c"bpf";
    // SAFETY: every pointer is a valid NUL-terminated C string that outlives
    // the call; data is null, which mount(2) accepts for bpffs.
    let rc = unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw
31 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
32 31 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
33 31 0:28 / /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu
40 25 0:35 / /sys/fs/bpf rw,relatime - bpf bpf rw
41 1 0:36 / /mnt/with\\040space rw - tmpfs tmpfs rw";

    #[test]
    fn picks_unified_in_hybrid_mode_and_root_on_pure_v2() {
        assert_eq!(pick_cgroup2(&parse_mountinfo(HYBRID)), Some("/sys/fs/cgroup/unified".into()));
        let pure = "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw";
        assert_eq!(pick_cgroup2(&parse_mountinfo(pure)), Some("/sys/fs/cgroup".into()));
        assert_eq!(pick_cgroup2(&parse_mountinfo("")), None);
    }

    #[test]
    fn a_writable_cgroup2_mount_wins_over_a_read_only_one() {
        let container = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw
31 25 0:26 / /host/cgroup rw,nosuid - cgroup2 cgroup2 rw";
        assert_eq!(pick_cgroup2(&parse_mountinfo(container)), Some("/host/cgroup".into()));
        let read_only = "30 25 0:26 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw";
        assert_eq!(pick_cgroup2(&parse_mountinfo(read_only)), Some("/sys/fs/cgroup".into()));
    }

    #[test]
    fn bpffs_detection_uses_deepest_mount() {
        let m = parse_mountinfo(HYBRID);
        assert!(on_bpffs(&m, Path::new("/sys/fs/bpf/bridle/x")));
        assert!(!on_bpffs(&m, Path::new("/sys/fs/cgroup/bridle")));
        assert!(m.iter().any(|m| m.point == Path::new("/mnt/with space")));
    }
}
