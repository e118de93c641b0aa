//! `/proc/self/mountinfo`, as the covers read it: which mounts there are,
//! of what, where ([`Mount`]), and the mount points below a directory
//! ([`points_below`]).

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
}

impl Mount {
    /// `ID PARENT MAJOR:MINOR ROOT POINT …`, paths with `\ooo` escapes.
    pub fn parse(line: &str) -> Option<Mount> {
        let mut fields = line.split(' ');
        let (id, _, dev, root, point) =
            (fields.next()?, fields.next()?, fields.next()?, fields.next()?, fields.next()?);
        let (major, minor) = dev.split_once(':')?;
        let dev = (major.parse().ok()?, minor.parse().ok()?);
        Some(Mount { id: id.parse().ok()?, dev, root: unescape(root), point: unescape(point) })
    }
}

/// A mountinfo path with its octal escapes (`\040` for a space) undone.
fn unescape(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt as _;
    let bytes = field.as_bytes();
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
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// The mount points strictly below `top` in this mount namespace (none
/// when mountinfo cannot be read: the caller's other checks still hold).
pub(super) fn points_below(top: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    text.lines()
        .filter_map(Mount::parse)
        .map(|m| m.point)
        .filter(|point| point != top && point.starts_with(top))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_with_their_escapes_undone() {
        let mount = Mount::parse("36 35 98:0 /mnt\\0401 /a\\040b\\134c rw,noatime master:1 - ext3 /dev/root rw")
            .expect("parsed");
        assert_eq!((mount.id, mount.dev), (36, (98, 0)));
        assert_eq!(mount.root, Path::new("/mnt 1"));
        assert_eq!(mount.point, Path::new("/a b\\c"));
        assert!(Mount::parse("36 35 nodev / /x").is_none());
        assert!(Mount::parse("36 35").is_none());
    }

    #[test]
    fn this_namespaces_mount_points_below_a_directory_are_listed() {
        // /proc is a mount point below /; / itself is not listed.
        let below = points_below(Path::new("/"));
        assert!(below.iter().any(|point| point == Path::new("/proc")), "{below:?}");
        assert!(!below.iter().any(|point| point == Path::new("/")), "{below:?}");
    }
}
