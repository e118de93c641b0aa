//! The checkpoint `<log>.head`: `{"seq":N,"hash":"…"}` of the last record
//! known durable. A log that ends before it lost whole records at its tail,
//! which the hash chain alone cannot show.
//!
//! A log created empty gets `{"seq":null,"hash":null}` at once: nothing is
//! vouched for yet, but the checkpoint exists, so a crash before the first
//! sync is not taken for records cut from a log whose checkpoint was
//! deleted (the only way a log with records has none).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{AuditError, Hash, sidecar};

/// The last durable record of a log, as of its last sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: Hash,
}

/// What the checkpoint file says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Head {
    /// There is none.
    Missing,
    /// Written when the log was created; nothing synced since.
    Empty,
    At(Checkpoint),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    // `deserialize_with` makes both required: `{}` is no checkpoint.
    #[serde(deserialize_with = "Option::deserialize")]
    seq: Option<u64>,
    #[serde(deserialize_with = "Option::deserialize")]
    hash: Option<String>,
}

pub(crate) fn path_for(log: &Path) -> PathBuf {
    sidecar(log, ".head")
}

/// The checkpoint beside `log`, `None` when there is none or it vouches
/// for nothing yet.
#[cfg(test)]
pub(crate) fn read(log: &Path) -> Result<Option<Checkpoint>, AuditError> {
    Ok(match read_head(log)? {
        Head::At(checkpoint) => Some(checkpoint),
        Head::Missing | Head::Empty => None,
    })
}

/// What the checkpoint file beside `log` says.
pub(crate) fn read_head(log: &Path) -> Result<Head, AuditError> {
    let path = path_for(log);
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Head::Missing),
        Err(e) => return Err(AuditError::io(&path, "read checkpoint")(e)),
    };
    let invalid = |reason: String| AuditError::InvalidCheckpoint { path: path.clone(), reason };
    let on_disk: OnDisk = serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
    let (seq, hash) = match (on_disk.seq, on_disk.hash) {
        (None, None) => return Ok(Head::Empty),
        (Some(seq), Some(hash)) => (seq, hash),
        _ => return Err(invalid("seq and hash must both be set or both null".into())),
    };
    let hash = Hash::from_hex(hash.as_bytes()).ok_or_else(|| invalid("hash is not 64 lowercase hex".into()))?;
    Ok(Head::At(Checkpoint { seq, hash }))
}

/// Replaces the checkpoint atomically: a crash leaves the old or the new one.
pub(crate) fn write(log: &Path, checkpoint: Checkpoint) -> Result<(), AuditError> {
    replace(log, &OnDisk { seq: Some(checkpoint.seq), hash: Some(checkpoint.hash.to_string()) })
}

/// The checkpoint of a log created empty.
pub(crate) fn write_empty(log: &Path) -> Result<(), AuditError> {
    replace(log, &OnDisk { seq: None, hash: None })
}

fn replace(log: &Path, on_disk: &OnDisk) -> Result<(), AuditError> {
    let path = path_for(log);
    let tmp = sidecar(log, ".head.tmp");
    let mut text =
        serde_json::to_vec(on_disk).map_err(|source| AuditError::Serialize { what: "checkpoint", source })?;
    text.push(b'\n');
    // Made anew, never opened through what stands at its name (a link
    // there would have Bridle, as root, truncate where it leads).
    match fs::remove_file(&tmp) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(AuditError::io(&tmp, "remove stale checkpoint")(error));
        }
        _ => {}
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(AuditError::io(&tmp, "create checkpoint"))?;
    file.write_all(&text).map_err(AuditError::io(&tmp, "write checkpoint"))?;
    file.sync_data().map_err(AuditError::io(&tmp, "sync checkpoint"))?;
    fs::rename(&tmp, &path).map_err(AuditError::io(&path, "replace checkpoint"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_and_reject_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("audit.jsonl");
        assert_eq!(read(&log).expect("read"), None);
        let checkpoint = Checkpoint { seq: 41, hash: Hash::of(b"x") };
        write(&log, checkpoint).expect("write");
        assert_eq!(read(&log).expect("read"), Some(checkpoint));
        fs::write(path_for(&log), br#"{"seq":1,"hash":"zz"}"#).expect("write");
        assert!(matches!(read(&log), Err(AuditError::InvalidCheckpoint { .. })));
        fs::write(path_for(&log), b"{}").expect("write");
        assert!(matches!(read(&log), Err(AuditError::InvalidCheckpoint { .. })));
        fs::write(path_for(&log), br#"{"seq":1,"hash":null}"#).expect("write");
        assert!(matches!(read(&log), Err(AuditError::InvalidCheckpoint { .. })));
        write_empty(&log).expect("write");
        assert_eq!(read_head(&log).expect("read"), Head::Empty);
        assert_eq!(read(&log).expect("read"), None);
        fs::remove_file(path_for(&log)).expect("remove");
        assert_eq!(read_head(&log).expect("read"), Head::Missing);
    }

    /// A link planted at the temporary name is replaced, not written
    /// through: where it leads is left as it was.
    #[test]
    fn a_checkpoint_is_never_written_through_a_link() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("audit.jsonl");
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep me\n").expect("victim");
        std::os::unix::fs::symlink(&victim, sidecar(&log, ".head.tmp")).expect("link");
        let checkpoint = Checkpoint { seq: 7, hash: Hash::of(b"y") };
        write(&log, checkpoint).expect("write");
        assert_eq!(read(&log).expect("read"), Some(checkpoint));
        assert_eq!(fs::read_to_string(&victim).expect("victim"), "keep me\n");
    }
}
