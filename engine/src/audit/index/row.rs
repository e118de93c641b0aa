//! [`IndexRow`]: the summary columns of one record, from an entry being
//! appended or from a stored line.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use serde::Deserialize;

use crate::audit::{AuditEntry, Redactor};

/// Columns per row, in INSERT order.
pub(super) const COLUMNS: usize = 11;

/// The summary columns of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexRow {
    pub seq: u64,
    /// The entry's own time (a decision's event time), else the record's.
    pub time_us: i64,
    // The four columns below are constants for every known entry: borrowed,
    // they cost the append path no allocation.
    pub r#type: Cow<'static, str>,
    /// Event kind (`net.connect`…) of a decision, else the type.
    pub kind: Cow<'static, str>,
    /// Cedar action text, e.g. `Net::Action::"Connect"`.
    pub action: Option<Cow<'static, str>>,
    pub effect: Option<Cow<'static, str>>,
    pub principal: Option<String>,
    pub resource: Option<String>,
    pub reason: Option<String>,
    pub offset: u64,
    pub len: u64,
}

impl IndexRow {
    /// The entry's columns, scrubbed by `redactor` if given; `seq`, `offset`
    /// and `len` are filled in when the record is placed, and `time_us` when
    /// the entry has no time of its own.
    pub fn for_entry(entry: &AuditEntry, redactor: Option<&Redactor>) -> IndexRow {
        let scrub = |text: &str| redactor.map_or_else(|| text.to_string(), |r| r.redact_str(text));
        let resource = entry.resource().map(|text| match redactor {
            Some(redactor) => redactor.redact_str(&text),
            None => text,
        });
        IndexRow {
            seq: 0,
            time_us: entry.time().map_or(0, |t| t.timestamp_micros()),
            r#type: Cow::Borrowed(entry.type_name()),
            kind: Cow::Borrowed(entry.kind()),
            action: entry.action().map(Cow::Borrowed),
            effect: entry.effect().map(|e| Cow::Borrowed(e.as_str())),
            principal: entry.principal().map(scrub),
            resource,
            reason: entry.reason().map(scrub),
            offset: 0,
            len: 0,
        }
    }

    /// The columns in INSERT order, borrowed (no copies of the strings).
    pub(super) fn sql_values(&self) -> [ToSqlOutput<'_>; COLUMNS] {
        fn text(value: &str) -> ToSqlOutput<'_> {
            ToSqlOutput::Borrowed(ValueRef::Text(value.as_bytes()))
        }
        fn optional(value: Option<&str>) -> ToSqlOutput<'_> {
            value.map_or(ToSqlOutput::Owned(SqlValue::Null), text)
        }
        let int = |value: i64| ToSqlOutput::Owned(SqlValue::Integer(value));
        [
            int(self.seq as i64),
            int(self.time_us),
            text(&self.r#type),
            text(&self.kind),
            optional(self.action.as_deref()),
            optional(self.effect.as_deref()),
            optional(self.principal.as_deref()),
            optional(self.resource.as_deref()),
            optional(self.reason.as_deref()),
            int(self.offset as i64),
            int(self.len as i64),
        ]
    }

    /// A row with only a type, for entries this version cannot read.
    fn bare(type_name: String) -> IndexRow {
        IndexRow {
            seq: 0,
            time_us: 0,
            kind: Cow::Owned(type_name.clone()),
            r#type: Cow::Owned(type_name),
            action: None,
            effect: None,
            principal: None,
            resource: None,
            reason: None,
            offset: 0,
            len: 0,
        }
    }

    /// Parses a stored line (without its newline). Entries this version does
    /// not know still get a row with their seq, time and type.
    pub(super) fn from_line(line: &[u8], offset: u64) -> Option<IndexRow> {
        #[derive(Deserialize)]
        struct Stored {
            seq: u64,
            time: DateTime<Utc>,
            r#type: String,
        }
        let stored: Stored = serde_json::from_slice(line).ok()?;
        let entry: Option<AuditEntry> = serde_json::from_slice(line).ok();
        let mut row = match &entry {
            // Stored records were redacted when written.
            Some(entry) => IndexRow::for_entry(entry, None),
            None => IndexRow::bare(stored.r#type),
        };
        if entry.as_ref().and_then(AuditEntry::time).is_none() {
            row.time_us = stored.time.timestamp_micros();
        }
        (row.seq, row.offset, row.len) = (stored.seq, offset, line.len() as u64 + 1);
        Some(row)
    }
}
