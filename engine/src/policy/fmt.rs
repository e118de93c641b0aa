//! `bridle policy fmt`: Cedar's own formatter, applied file by file.

use super::PolicyFile;
use super::diag::Diagnostic;

/// Line width and indent of Bridle's policy style.
const CONFIG: cedar_policy_formatter::Config = cedar_policy_formatter::Config { line_width: 100, indent_width: 2 };

/// The formatted text of a file, or a diagnostic when it does not parse.
pub fn format_file(file: &PolicyFile) -> Result<String, Diagnostic> {
    if file.text.trim().is_empty() {
        return Ok(file.text.clone());
    }
    cedar_policy_formatter::policies_str_to_pretty(&file.text, &CONFIG).map_err(|report| {
        let offset = report.labels().and_then(|mut labels| labels.next()).map_or(0, |l| l.offset());
        let mut message = report.to_string();
        for cause in report.chain().skip(1) {
            message.push_str(": ");
            message.push_str(&cause.to_string());
        }
        Diagnostic::error_at(&file.name, &file.text, offset, message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_is_idempotent_and_keeps_comments() {
        let file = PolicyFile {
            name: "a.cedar".into(),
            text: "// keep me\n@id(\"a\") permit(principal,action,resource) when {  1==1 };".into(),
        };
        let once = format_file(&file).expect("formats");
        assert!(once.contains("// keep me"), "{once}");
        let twice = format_file(&PolicyFile { text: once.clone(), ..file }).expect("formats");
        assert_eq!(once, twice);
    }

    #[test]
    fn unparsable_file_is_reported_with_location() {
        let file = PolicyFile { name: "bad.cedar".into(), text: "permit(principal,\n action resource);".into() };
        let diag = format_file(&file).expect_err("must fail");
        assert_eq!(diag.file, "bad.cedar");
    }
}
