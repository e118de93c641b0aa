//! Searching a log through its index.

use crate::request::Action;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use rusqlite::types::Value as Sql;
use serde::Serialize;

use super::{AuditError, Index, record};
use crate::decision::Effect;

/// Filters for [`query`]; `None` matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub effect: Option<Effect>,
    /// An event kind (`net.connect`, `file`, `policy_reload`…) or a Cedar
    /// action (`Net::Action::"Connect"`).
    pub action: Option<String>,
    /// Exact agent name.
    pub principal: Option<String>,
    /// Substring of the resource (`host:port`, path, `server/tool`…).
    pub resource: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// The most recent `limit` matches are returned (oldest first).
    pub limit: Option<usize>,
    /// Also read each record's full JSON line from the log.
    pub with_lines: bool,
}

/// One matching record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    pub seq: u64,
    pub time: DateTime<Utc>,
    #[serde(rename = "type")]
    pub r#type: String,
    pub kind: String,
    pub action: Option<String>,
    pub effect: Option<String>,
    pub principal: Option<String>,
    pub resource: Option<String>,
    pub reason: Option<String>,
    /// The record as stored (without its newline), when asked for.
    #[serde(skip)]
    pub line: Option<String>,
    #[serde(skip)]
    pub(crate) offset: u64,
    #[serde(skip)]
    pub(crate) len: u64,
}

/// Brings the index of `log` up to date, then runs `query` on it.
pub fn query(log: &Path, query: &Query) -> Result<Vec<Row>, AuditError> {
    // Fail before an index file is created beside a log that is not there.
    File::open(log).map_err(AuditError::io(log, "open"))?;
    let mut index = Index::open(log)?;
    index.catch_up(log)?;
    let mut rows = select(&index, query)?;
    if query.with_lines {
        read_lines(log, &mut rows)?;
    }
    Ok(rows)
}

fn select(index: &Index, query: &Query) -> Result<Vec<Row>, AuditError> {
    let mut sql = String::from(
        "SELECT seq, time_us, type, kind, action, effect, principal, resource, reason, byte_offset, line_len \
         FROM records WHERE 1=1",
    );
    let mut params: Vec<Sql> = Vec::new();
    let mut filter = |clause: &str, values: &[Sql]| {
        sql.push_str(clause);
        params.extend_from_slice(values);
    };
    if let Some(effect) = query.effect {
        filter(" AND effect = ?", &[Sql::Text(effect.as_str().into())]);
    }
    // `Net::Action::Connect` (what a shell leaves of `Net::Action::"Connect"`
    // unquoted) and `Net::Connect` name the same action.
    let action = query.action.as_deref().map(|text| text.parse::<Action>().map_or(text, |a| a.cedar_str()));
    match action.map(|action| (action, kind_of_action(action))) {
        Some((action, Some(kind))) => {
            filter(" AND kind = ? AND action = ?", &[Sql::Text(kind.into()), Sql::Text(action.into())])
        }
        Some((kind, None)) => filter(" AND kind = ?", &[Sql::Text(kind.into())]),
        None => {}
    }
    if let Some(principal) = &query.principal {
        filter(" AND principal = ?", &[Sql::Text(principal.clone())]);
    }
    if let Some(resource) = &query.resource {
        filter(" AND instr(resource, ?) > 0", &[Sql::Text(resource.clone())]);
    }
    if let Some(since) = query.since {
        filter(" AND time_us >= ?", &[Sql::Integer(since.timestamp_micros())]);
    }
    if let Some(until) = query.until {
        filter(" AND time_us <= ?", &[Sql::Integer(until.timestamp_micros())]);
    }
    let limit = query.limit.map_or(-1, |limit| i64::try_from(limit).unwrap_or(i64::MAX));
    filter(" ORDER BY seq DESC LIMIT ?", &[Sql::Integer(limit)]);
    let mut stmt = index.conn().prepare(&sql).map_err(index.error("prepare query"))?;
    let mapped = stmt.query_map(rusqlite::params_from_iter(params), row_from_sql).map_err(index.error("query"))?;
    let mut rows = mapped.collect::<Result<Vec<Row>, _>>().map_err(index.error("read rows"))?;
    rows.reverse();
    Ok(rows)
}

/// The event kind a Cedar action belongs to, so the `kind` index narrows
/// the search: `Net::Action::"Connect"` → `net.connect`.
fn kind_of_action(action: &str) -> Option<&'static str> {
    let (namespace, _) = action.split_once("::Action::")?;
    Some(match namespace {
        "Net" => "net.connect",
        "Dns" => "dns.query",
        "Http" => "http.request",
        "File" => "file",
        "Mcp" => "mcp.message",
        _ => return None,
    })
}

fn row_from_sql(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let time_us: i64 = r.get(1)?;
    Ok(Row {
        seq: r.get::<_, i64>(0)? as u64,
        time: DateTime::from_timestamp_micros(time_us).unwrap_or_default(),
        r#type: r.get(2)?,
        kind: r.get(3)?,
        action: r.get(4)?,
        effect: r.get(5)?,
        principal: r.get(6)?,
        resource: r.get(7)?,
        reason: r.get(8)?,
        line: None,
        offset: r.get::<_, i64>(9)? as u64,
        len: r.get::<_, i64>(10)? as u64,
    })
}

fn read_lines(log: &Path, rows: &mut [Row]) -> Result<(), AuditError> {
    let file = File::open(log).map_err(AuditError::io(log, "open"))?;
    for row in rows {
        let stale = || AuditError::StaleIndex { path: log.to_path_buf(), seq: row.seq, offset: row.offset };
        let mut bytes = vec![0; usize::try_from(row.len).map_err(|_| stale())?];
        file.read_exact_at(&mut bytes, row.offset).map_err(|_| stale())?;
        if bytes.pop() != Some(b'\n') || record::guess_seq(&bytes) != Some(row.seq) {
            return Err(stale());
        }
        row.line = Some(String::from_utf8(bytes).map_err(|_| stale())?);
    }
    Ok(())
}

/// `90s`, `30m`, `1h`, `2d` (that long before now) or an RFC 3339 time.
pub fn parse_since(input: &str) -> Result<DateTime<Utc>, AuditError> {
    parse_since_at(input, Utc::now())
}

fn parse_since_at(input: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, AuditError> {
    let text = input.trim();
    let bad = || AuditError::BadTime { input: input.to_string() };
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let split = text.len().checked_sub(1).filter(|at| text.is_char_boundary(*at)).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let amount: i64 = number.parse().map_err(|_| bad())?;
    let span = match unit {
        "s" => Duration::try_seconds(amount),
        "m" => Duration::try_minutes(amount),
        "h" => Duration::try_hours(amount),
        "d" => Duration::try_days(amount),
        _ => None,
    };
    span.filter(|_| amount >= 0).and_then(|span| now.checked_sub_signed(span)).ok_or_else(bad)
}

#[cfg(test)]
mod tests;
