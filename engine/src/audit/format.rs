//! Printing query results: an aligned table, JSON lines (the full records)
//! or CSV. Every value here may come from the agent (hostnames, paths, tool
//! arguments), so none of the formats lets a value forge structure.

use std::fmt::Write as _;

use super::Row;

const HEADERS: [&str; 8] = ["SEQ", "TIME", "TYPE", "ACTION", "EFFECT", "PRINCIPAL", "RESOURCE", "REASON"];

/// The row's cells, in [`HEADERS`] order. ACTION is the Cedar action, or the
/// kind for entries without one.
fn cells(row: &Row) -> [String; 8] {
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    [
        row.seq.to_string(),
        row.time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        row.r#type.clone(),
        row.action.clone().unwrap_or_else(|| row.kind.clone()),
        text(&row.effect),
        text(&row.principal),
        text(&row.resource),
        text(&row.reason),
    ]
}

/// An aligned text table with a header line. Control characters in cells
/// are escaped so a hostile value cannot forge extra lines.
pub fn format_table(rows: &[Row]) -> String {
    let table: Vec<[String; 8]> = rows.iter().map(|row| cells(row).map(|cell| printable(&cell))).collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &table {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = HEADERS.map(str::to_string);
    for row in std::iter::once(&header).chain(&table) {
        for (column, cell) in row.iter().enumerate() {
            if column + 1 == row.len() {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<width$}  ", width = widths[column]);
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
    }
    out
}

/// Control characters as escapes (`\n`, `\u{1b}`); everything else as is.
fn printable(cell: &str) -> String {
    if !cell.chars().any(char::is_control) {
        return cell.to_string();
    }
    cell.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// One JSON object per line: the stored records when they were read
/// ([`Query::with_lines`]), else the index columns.
pub fn format_json_lines(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows {
        match &row.line {
            Some(line) => out.push_str(line),
            None => out.push_str(&serde_json::to_string(row).unwrap_or_default()),
        }
        out.push('\n');
    }
    out
}

/// RFC 4180 CSV with a header line and CRLF line ends. Cells a spreadsheet
/// would run as a formula (`=`, `+`, `-`, `@` first) get a leading `'`:
/// agents choose hostnames, paths and tool arguments.
pub fn format_csv(rows: &[Row]) -> String {
    let mut out = String::new();
    let header = HEADERS.map(|h| h.to_ascii_lowercase());
    for row in std::iter::once(header).chain(rows.iter().map(cells)) {
        let fields: Vec<String> = row.iter().map(|cell| csv_field(cell)).collect();
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

fn csv_field(cell: &str) -> String {
    let cell = if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{cell}") } else { cell.to_string() };
    if cell.contains([',', '"', '\n', '\r']) { format!("\"{}\"", cell.replace('"', "\"\"")) } else { cell }
}

#[cfg(test)]
mod tests;
