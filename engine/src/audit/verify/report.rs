//! What [`verify`](super::verify) reports, and how a failure reads.

use std::fmt;
use std::path::PathBuf;

use crate::audit::{Checkpoint, Hash, RecordFault};

/// The outcome of [`verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub path: PathBuf,
    /// Good records before the first failure (all of them when it passed).
    pub records: u64,
    pub last_seq: Option<u64>,
    pub last_hash: Option<Hash>,
    /// The checkpoint the log was compared with, if there was one.
    pub checkpoint: Option<Checkpoint>,
    /// Seqs of `recovery` records: repairs made when the log was reopened.
    pub recoveries: Vec<u64>,
    /// The first bad record; `None` when the log verified.
    pub failure: Option<VerifyFailure>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

/// Where verification failed and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyFailure {
    /// 1-based line number.
    pub line: u64,
    /// Byte offset of the line's start.
    pub offset: u64,
    /// The record's seq, when it can be read.
    pub seq: Option<u64>,
    pub problem: Problem,
}

/// What is wrong with a record.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The hash does not match the content: a byte was changed.
    Edited,
    /// Not a record at all.
    Malformed(RecordFault),
    /// A record appears before one that should precede it.
    Reordered { expected: u64 },
    /// Records `from..=to` are missing.
    Deleted { from: u64, to: u64 },
    /// The record's `prev` is not the previous record's hash.
    BadPrevLink,
    /// The file ends inside a line.
    TruncatedMidLine { bytes: u64 },
    /// The log ends before the checkpoint's seq.
    Truncated { last_seq: Option<u64>, checkpoint_seq: u64 },
    /// The record at the checkpoint's seq has another hash.
    CheckpointMismatch,
    /// `<log>.head` exists but cannot be read.
    BadCheckpoint(String),
    /// The log has records but no `<log>.head`.
    NoCheckpoint,
    /// A recovery record says records the checkpoint vouched for were lost
    /// or rewritten (its message says which).
    Lost(String),
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seq = self.seq.map_or_else(|| "?".to_string(), |seq| seq.to_string());
        match &self.problem {
            Problem::Edited => write!(f, "record seq {seq} was edited (hash mismatch)"),
            Problem::Malformed(fault) => write!(f, "not a valid record (seq {seq}): {fault}"),
            Problem::Reordered { expected } => {
                write!(f, "record seq {seq} is out of order, expected seq {expected} (records reordered)")
            }
            Problem::Deleted { from, to } if from == to => {
                write!(f, "record seq {from} was deleted (seq gap before seq {seq})")
            }
            Problem::Deleted { from, to } => {
                write!(f, "records seq {from}..={to} were deleted (seq gap before seq {seq})")
            }
            Problem::BadPrevLink => write!(f, "record seq {seq} does not link to the record before it (bad prev hash)"),
            Problem::TruncatedMidLine { bytes } => {
                write!(f, "log truncated mid-line: record seq {seq} is incomplete ({bytes} bytes, no newline)")
            }
            Problem::Truncated { last_seq: Some(last), checkpoint_seq } => {
                write!(f, "log truncated: it ends at seq {last} but its checkpoint records seq {checkpoint_seq}")
            }
            Problem::Truncated { last_seq: None, checkpoint_seq } => {
                write!(f, "log truncated: it has no records but its checkpoint records seq {checkpoint_seq}")
            }
            Problem::CheckpointMismatch => write!(f, "record seq {seq} differs from the checkpoint (tail rewritten)"),
            Problem::BadCheckpoint(reason) => write!(f, "checkpoint file is invalid: {reason}"),
            Problem::NoCheckpoint => {
                write!(f, "no checkpoint file beside the log: records cut from its end would go unnoticed")
            }
            Problem::Lost(message) => write!(f, "recovery record seq {seq}: the log is not whole: {message}"),
        }
    }
}
