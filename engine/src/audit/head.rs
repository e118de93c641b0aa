//! The checkpoint `<log>.head`: `{"seq":N,"hash":"…"}` of the last record
//! known durable. A log that ends before it lost whole records at its tail,
//! which the hash chain alone cannot show.

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

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    seq: u64,
    hash: String,
}

pub(crate) fn path_for(log: &Path) -> PathBuf {
    sidecar(log, ".head")
}

/// The checkpoint beside `log`, `None` when there is none.
pub fn read(log: &Path) -> Result<Option<Checkpoint>, AuditError> {
    let path = path_for(log);
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AuditError::io(&path, "read checkpoint")(e)),
    };
    let invalid = |reason: String| AuditError::InvalidCheckpoint { path: path.clone(), reason };
    let on_disk: OnDisk = serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
    let hash = Hash::from_hex(on_disk.hash.as_bytes()).ok_or_else(|| invalid("hash is not 64 lowercase hex".into()))?;
    Ok(Some(Checkpoint { seq: on_disk.seq, hash }))
}

/// Replaces the checkpoint atomically: a crash leaves the old or the new one.
pub(crate) fn write(log: &Path, checkpoint: Checkpoint) -> Result<(), AuditError> {
    let path = path_for(log);
    let tmp = sidecar(log, ".head.tmp");
    let on_disk = OnDisk { seq: checkpoint.seq, hash: checkpoint.hash.to_string() };
    let mut text =
        serde_json::to_vec(&on_disk).map_err(|source| AuditError::Serialize { what: "checkpoint", source })?;
    text.push(b'\n');
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
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
    }
}
