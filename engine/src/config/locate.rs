//! Maps between byte offsets in the config text and key paths like `secrets[1].format`,
//! so every error can say both where (line:col) and what (the key).

use std::fmt;
use std::ops::Range;

use toml::de::{DeArray, DeTable, DeValue};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// A dotted key path, displayed as `secrets[1].format`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub fn key(mut self, key: &str) -> Self {
        self.0.push(Seg::Key(key.to_owned()));
        self
    }

    pub fn index(mut self, index: usize) -> Self {
        self.0.push(Seg::Index(index));
        self
    }

    /// The path without its last key, if it ends in `key`.
    pub fn parent_of(&self, key: &str) -> Option<KeyPath> {
        match self.0.split_last() {
            Some((Seg::Key(last), rest)) if last == key => Some(KeyPath(rest.to_vec())),
            _ => None,
        }
    }

    /// How a table is named in prose: `[dns]` when a header could say it, else the path.
    pub fn describe_table(&self) -> String {
        if self.0.is_empty() {
            "the top level".to_owned()
        } else if self.0.iter().all(|s| matches!(s, Seg::Key(_))) {
            format!("[{self}]")
        } else {
            format!("`{self}`")
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// The deepest key or value whose span holds `offset`; tables written as
/// `[section]` are not contiguous, so every branch is searched.
pub(super) fn path_at(doc: &DeTable<'_>, offset: usize) -> KeyPath {
    let mut path = KeyPath::default();
    search_table(doc, offset, &mut path);
    path
}

fn search_table(table: &DeTable<'_>, offset: usize, path: &mut KeyPath) -> bool {
    for (key, value) in table.iter() {
        path.0.push(Seg::Key(key.get_ref().to_string()));
        if holds(&key.span(), offset) || search_value(value.get_ref(), &value.span(), offset, path) {
            return true;
        }
        path.0.pop();
    }
    false
}

fn search_value(value: &DeValue<'_>, span: &Range<usize>, offset: usize, path: &mut KeyPath) -> bool {
    let inside = match value {
        DeValue::Table(table) => search_table(table, offset, path),
        DeValue::Array(array) => array.iter().enumerate().any(|(i, item)| {
            path.0.push(Seg::Index(i));
            let found = search_value(item.get_ref(), &item.span(), offset, path);
            if !found {
                path.0.pop();
            }
            found
        }),
        _ => false,
    };
    inside || holds(span, offset)
}

/// Span of the deepest existing part of `path`: the key itself when present,
/// else the table or array entry it should have been in.
pub(super) fn span_of(doc: &DeTable<'_>, path: &KeyPath) -> Option<Range<usize>> {
    let mut best = None;
    let mut table = Some(doc);
    let mut array: Option<&DeArray<'_>> = None;
    for seg in &path.0 {
        let found = match seg {
            Seg::Key(k) => table.and_then(|t| t.get_key_value(k.as_str())).map(|(k, v)| (k.span(), v)),
            Seg::Index(i) => array.and_then(|a| a.get(*i)).map(|v| (v.span(), v)),
        };
        let Some((span, value)) = found else { break };
        best = Some(span);
        table = value.get_ref().as_table();
        array = value.get_ref().as_array();
    }
    best
}

fn holds(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end.max(span.start + 1)
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
