//! `/proc/self/mountinfo`, as the covers read it: which mounts there are,
//! of what, where ([`Mount`], [`read`]), and the mount points below a
//! directory ([`points_below`]). Read as bytes: a mount point may have any
//! name.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

/// The fields of a `/proc/self/mountinfo` line the covers need.
#[derive(Debug)]
pub(super) struct Mount {
    pub id: u64,
    /// `MAJOR:MINOR` of the file system.
    pub dev: (u64, u64),
    /// The directory of the file system mounted there.
    pub root: PathBuf,
    /// Where it is mounted.
    pub point: PathBuf,
    /// The file system type (`cgroup2`, `tmpfs`), after the ` - `.
    pub kind: Vec<u8>,
}

impl Mount {
    /// `ID PARENT MAJOR:MINOR ROOT POINT OPTIONS [OPTIONAL…] - TYPE …`,
    /// paths with `\ooo` escapes.
    pub fn parse(line: &[u8]) -> Option<Mount> {
        let mut fields = line.split(|byte| *byte == b' ');
        let (id, _, dev, root, point) =
            (fields.next()?, fields.next()?, fields.next()?, fields.next()?, fields.next()?);
        let number = |field: &[u8]| std::str::from_utf8(field).ok()?.parse::<u64>().ok();
        let colon = dev.iter().position(|byte| *byte == b':')?;
        let dev = (number(&dev[..colon])?, number(&dev[colon + 1..])?);
        let kind = fields.skip_while(|field| *field != b"-").nth(1).unwrap_or_default().to_vec();
        Some(Mount { id: number(id)?, dev, root: unescape(root), point: unescape(point), kind })
    }
}

/// Every mount of this mount namespace.
pub(super) fn read() -> std::io::Result<Vec<Mount>> {
    std::fs::read("/proc/self/mountinfo").map(|bytes| parse_all(&bytes))
}

/// The mounts of a mountinfo text; lines that are not one are skipped.
pub(super) fn parse_all(bytes: &[u8]) -> Vec<Mount> {
    bytes.split(|byte| *byte == b'\n').filter_map(Mount::parse).collect()
}

/// A mountinfo path with its octal escapes (`\040` for a space) undone.
fn unescape(bytes: &[u8]) -> PathBuf {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|digits| digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match (bytes[i], octal) {
            (b'\\', Some(digits)) => {
                out.push(digits.iter().fold(0u8, |value, digit| value.wrapping_mul(8).wrapping_add(digit - b'0')));
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    PathBuf::from(OsStr::from_bytes(&out))
}

/// The mount points of `mounts` strictly below `top`.
pub(super) fn points_below(mounts: &[Mount], top: &Path) -> HashSet<PathBuf> {
    mounts.iter().map(|m| m.point.clone()).filter(|point| point != top && point.starts_with(top)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_as_bytes_with_their_escapes_undone() {
        let line = b"36 35 98:0 /mnt\\0401 /a\\040b\\134c\xff rw,noatime master:1 - ext3 /dev/root rw";
        let mount = Mount::parse(line).expect("parsed");
        assert_eq!((mount.id, mount.dev), (36, (98, 0)));
        assert_eq!(mount.root, Path::new("/mnt 1"));
        assert_eq!(mount.point, Path::new(OsStr::from_bytes(b"/a b\\c\xff")));
        assert_eq!(mount.kind, b"ext3");
        let cgroups = Mount::parse(b"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw");
        assert_eq!(cgroups.expect("parsed").kind, b"cgroup2");
        assert!(Mount::parse(b"36 35 nodev / /x").is_none());
        assert!(Mount::parse(b"36 35").is_none());
    }

    #[test]
    fn the_mount_points_below_a_directory_are_those_strictly_below_it() {
        let mounts =
            parse_all(b"1 0 8:1 / / rw\n2 1 0:5 / /run rw\n3 2 0:6 / /run/user/1000 rw\n4 1 0:7 / /running rw\n");
        let below = points_below(&mounts, Path::new("/run"));
        assert_eq!(below, HashSet::from([PathBuf::from("/run/user/1000")]));
        // This namespace's own: /proc is below /, and / is not.
        let here = points_below(&read().expect("mountinfo"), Path::new("/"));
        assert!(here.contains(Path::new("/proc")) && !here.contains(Path::new("/")), "{here:?}");
    }
}
