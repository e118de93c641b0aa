//! Diagnostics that point at a file, line and column.

use std::fmt;

use serde::Serialize;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// One finding about a policy file: `file:line:col: error[CODE]: message`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub col: usize,
    pub severity: Severity,
    /// Stable code for lint findings (`BL001`…); `None` for parse/schema errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    /// `@id` of the policy concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    pub message: String,
}

impl Diagnostic {
    /// An error at a byte offset of `text`.
    pub fn error_at(file: &str, text: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, col) = line_col(text, offset);
        Diagnostic {
            file: file.to_string(),
            line,
            col,
            severity: Severity::Error,
            code: None,
            policy: None,
            message: message.into(),
        }
    }

    pub fn with_policy(mut self, policy: Option<&str>) -> Self {
        self.policy = policy.map(str::to_string);
        self
    }

    pub fn with_code(mut self, code: &'static str, severity: Severity) -> Self {
        self.code = Some(code);
        self.severity = severity;
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{}:{}:{}: {level}", self.file, self.line, self.col)?;
        if let Some(code) = self.code {
            write!(f, "[{code}]")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(policy) = &self.policy {
            write!(f, " (policy `{policy}`)")?;
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |idx| idx + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 3), (2, 1));
        assert_eq!(line_col(text, 7), (2, 4));
        assert_eq!(line_col(text, 8), (3, 1));
        assert_eq!(line_col(text, 100), (3, 2));
    }

    #[test]
    fn display_names_file_line_col_code_and_policy() {
        let d = Diagnostic::error_at("p.cedar", "x\ny", 2, "bad")
            .with_code("BL002", Severity::Warning)
            .with_policy(Some("p1"));
        assert_eq!(d.to_string(), "p.cedar:2:1: warning[BL002]: bad (policy `p1`)");
    }
}
