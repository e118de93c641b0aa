//! The tamper-evident audit store: a hash-chained JSON-lines log, a SQLite
//! index beside it, a verifier and a query layer.
//!
//! Every decision the engine makes (and every policy reload, recovery and
//! notice) is one [`AuditEntry`], redacted by a [`Redactor`] and appended by
//! [`AuditLog`] as one line:
//!
//! ```text
//! {"seq":0,"time":"2026-11-27T06:00:00.000000Z","prev":"000…0","type":"notice",…,"hash":"<64 hex>"}
//! ```
//!
//! `hash` is SHA-256 of the line's bytes up to `,"hash":"`, and `prev` is the
//! hash of the record before, so editing, deleting, reordering or truncating
//! records is caught by [`verify`]. `<log>.head` checkpoints the last durable
//! record so losing whole trailing lines is caught too.
//!
//! Files beside `<log>`: `<log>.head` (checkpoint), `<log>.index.sqlite`
//! (query index, rebuilt by [`Index::catch_up`] whenever it lags),
//! `<log>.corrupt-<unix-seconds>` (bytes of a damaged tail, preserved on
//! recovery).
//!
//! The store never drops a record silently: a write that fails is returned to
//! the caller and counted in [`AuditLog::dropped`].

use std::io;
use std::path::PathBuf;

mod entry;
mod feed;
#[cfg(test)]
mod fixtures;
mod format;
mod head;
mod index;
mod log;
mod query;
mod record;
mod redact;
mod tail;
mod verify;

pub use entry::AuditEntry;
pub use format::{format_csv, format_json_lines, format_table};
pub use head::Checkpoint;
pub use index::{Index, IndexRow};
pub use log::{AuditLog, AuditOptions};
pub use query::{Query, Row, parse_since, query};
pub use record::{Hash, RecordFault};
pub use redact::{REDACTED, Redactor, is_sensitive_header, redact_query};
pub use verify::{Problem, VerifyFailure, VerifyReport, verify};

/// What can go wrong in the audit store. Every variant names the file (and
/// line, offset or seq where there is one) so the message is actionable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// An I/O call on an audit file failed.
    #[error("{}: cannot {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// The last complete record of an existing log is damaged, so its chain
    /// cannot be continued; the log is left untouched.
    #[error(
        "{}:{line}: last record (byte {offset}) is invalid ({fault}); refusing to continue its chain (run `bridle audit verify`)",
        path.display()
    )]
    InvalidTail { path: PathBuf, line: u64, offset: u64, fault: RecordFault },
    /// Another process (a concurrent session, the appliance) writes this
    /// log: two writers would each continue the chain from their own last
    /// record, and break it.
    #[error(
        "{}: another Bridle is writing this audit log (a session still running); give this one a log of its own \
         (--audit FILE, or [audit] path)",
        path.display()
    )]
    InUse { path: PathBuf },
    /// The checkpoint file exists but cannot be read as one.
    #[error("{}: invalid checkpoint: {reason}", path.display())]
    InvalidCheckpoint { path: PathBuf, reason: String },
    /// An entry (or the checkpoint) could not be turned into JSON.
    #[error("cannot serialize {what} for the audit log: {source}")]
    Serialize {
        /// The entry type (`decision`…) or `checkpoint`.
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The SQLite index failed.
    #[error("{}: index {op} failed: {source}", path.display())]
    Index {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// A time filter is neither a duration (`90s`, `30m`, `1h`, `2d`) nor RFC 3339.
    #[error("invalid time {input:?}: expected a duration like 30m, 1h, 2d or an RFC 3339 time")]
    BadTime { input: String },
    /// A query row points at bytes that are not in the log (index from
    /// another log, or a log rewritten under it).
    #[error("{}: index row seq {seq} points at byte {offset}, past the log", path.display())]
    StaleIndex { path: PathBuf, seq: u64, offset: u64 },
}

impl AuditError {
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str) -> impl FnOnce(io::Error) -> AuditError {
        let path = path.into();
        move |source| AuditError::Io { path, op, source }
    }
}

/// `<log>` + `suffix`, e.g. `audit.jsonl.head`.
pub(crate) fn sidecar(path: &std::path::Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}
