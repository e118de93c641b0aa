//! Reading a policy directory: parse each `.cedar` file, give each policy
//! its `@id`, validate strictly against the built-in schema.
//!
//! Cedar numbers policies `policy0…` per parse and ignores `@id`; here the
//! `@id` (or `file:line` when absent) becomes the `PolicyId` used in every
//! decision, audit record and message.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{Effect as CedarEffect, Policy, PolicyId, PolicySet, ValidationError, ValidationMode, Validator};

use super::diag::{Diagnostic, Severity};
use super::{LoadedPolicies, PolicyError, PolicyFile, PolicyMeta};
use crate::schema::schema;

/// Annotations that change behaviour; anything else is a lint warning.
pub const KNOWN_ANNOTATIONS: [&str; 6] = ["id", "reason", "ask", "shadow", "passthrough", "description"];

/// Every `.cedar` file below `dir`, recursively, sorted by path.
pub fn read_dir(dir: &Path) -> Result<Vec<PolicyFile>, PolicyError> {
    let meta = std::fs::metadata(dir).map_err(|source| PolicyError::Io { path: dir.to_path_buf(), source })?;
    if !meta.is_dir() {
        return Err(PolicyError::NotADirectory { path: dir.to_path_buf() });
    }
    let mut paths = Vec::new();
    collect(dir, &mut paths)?;
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text =
                std::fs::read_to_string(&path).map_err(|source| PolicyError::Io { path: path.clone(), source })?;
            Ok(PolicyFile { name: path.display().to_string(), text })
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), PolicyError> {
    let entries = std::fs::read_dir(dir).map_err(|source| PolicyError::Io { path: dir.to_path_buf(), source })?;
    for entry in entries {
        let entry = entry.map_err(|source| PolicyError::Io { path: dir.to_path_buf(), source })?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(|source| PolicyError::Io { path: path.clone(), source })?;
        if file_type.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "cedar") {
            out.push(path);
        }
    }
    Ok(())
}

/// Parsed policies with their metadata, plus every problem found.
#[derive(Debug, Default)]
pub struct Parsed {
    pub policies: Vec<(Policy, PolicyMeta)>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses files and assigns ids; never stops at the first problem.
pub fn parse_files(files: &[PolicyFile]) -> Parsed {
    let mut parsed = Parsed::default();
    for file in files {
        parse_file(file, &mut parsed);
    }
    check_duplicate_ids(&mut parsed);
    parsed
}

fn parse_file(file: &PolicyFile, parsed: &mut Parsed) {
    let set = match PolicySet::from_str(&file.text) {
        Ok(set) => set,
        Err(errors) => {
            for error in errors.iter() {
                let offset = first_label_offset(error).unwrap_or(0);
                parsed.diagnostics.push(Diagnostic::error_at(&file.name, &file.text, offset, describe(error)));
            }
            return;
        }
    };
    for template in set.templates() {
        let offset = locate(&file.text, 0, template.to_cedar().as_str()).unwrap_or(0);
        let message = "templates (policies with ?principal or ?resource slots) are not supported";
        parsed.diagnostics.push(Diagnostic::error_at(&file.name, &file.text, offset, message));
    }
    let mut policies: Vec<&Policy> = set.policies().collect();
    policies.sort_by_key(|p| p.id().to_string().trim_start_matches("policy").parse::<usize>().unwrap_or(usize::MAX));
    let mut cursor = 0;
    for policy in policies {
        let text = policy.to_cedar().unwrap_or_default();
        let offset = locate(&file.text, cursor, &text).unwrap_or(cursor);
        cursor = offset + text.len();
        let meta = PolicyMeta::new(file, offset, policy, parsed.policies.len());
        check_annotations(file, offset, &meta, &mut parsed.diagnostics);
        let renamed = policy.new_id(PolicyId::new(&meta.id));
        parsed.policies.push((renamed, meta));
    }
}

/// Where a policy's own text starts in its file, searching from `cursor`.
fn locate(haystack: &str, cursor: usize, needle: &str) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.get(cursor..)?.find(needle).map(|idx| idx + cursor)
}

impl PolicyMeta {
    fn new(file: &PolicyFile, offset: usize, policy: &Policy, order: usize) -> Self {
        let (line, col) = super::diag::line_col(&file.text, offset);
        let id = policy.annotation("id").map_or_else(|| format!("{}:{line}", file.name), str::to_string);
        PolicyMeta {
            id,
            file: file.name.clone(),
            line,
            col,
            offset,
            order,
            forbid: policy.effect() == CedarEffect::Forbid,
            reason: policy.annotation("reason").map(str::to_string),
            ask: policy.annotation("ask").is_some(),
            shadow: policy.annotation("shadow").is_some(),
            passthrough: policy.annotation("passthrough").is_some(),
            has_id: policy.annotation("id").is_some(),
        }
    }
}

fn check_annotations(file: &PolicyFile, offset: usize, meta: &PolicyMeta, out: &mut Vec<Diagnostic>) {
    let mut problem = |message: &str| {
        out.push(Diagnostic::error_at(&file.name, &file.text, offset, message).with_policy(Some(&meta.id)));
    };
    if meta.shadow && !meta.forbid {
        problem("@shadow applies only to forbid policies (a shadow forbid logs what it would deny)");
    }
    if meta.shadow && meta.ask {
        problem("a policy cannot be both @shadow and @ask");
    }
    if meta.passthrough && meta.forbid {
        problem(
            "@passthrough applies only to permit policies (it lets a permitted TLS connection through uninspected)",
        );
    }
    if meta.has_id && meta.id.trim().is_empty() {
        problem("@id must not be empty");
    }
}

fn check_duplicate_ids(parsed: &mut Parsed) {
    let mut first: BTreeMap<&str, &PolicyMeta> = BTreeMap::new();
    for (_, meta) in &parsed.policies {
        match first.get(meta.id.as_str()) {
            Some(original) => parsed.diagnostics.push(Diagnostic {
                file: meta.file.clone(),
                line: meta.line,
                col: meta.col,
                severity: Severity::Error,
                code: Some("BL004"),
                policy: Some(meta.id.clone()),
                message: format!(
                    "duplicate @id `{}` (first defined at {}:{}:{})",
                    meta.id, original.file, original.line, original.col
                ),
            }),
            None => {
                first.insert(&meta.id, meta);
            }
        }
    }
}

/// Byte offset of a miette diagnostic's first label.
pub(crate) fn first_label_offset(diag: &dyn miette::Diagnostic) -> Option<usize> {
    diag.labels()?.next().map(|label| label.offset())
}

/// The error's message plus its help text, on one line.
pub(crate) fn describe(diag: &dyn miette::Diagnostic) -> String {
    match diag.help() {
        Some(help) => format!("{diag}; {help}"),
        None => diag.to_string(),
    }
}

/// Strict validation against the schema, mapped back to file:line:col.
///
/// Policies are validated under their position as id, so a set with
/// duplicate `@id`s (already reported) is still checked in full.
pub fn validate(files: &[PolicyFile], policies: &[(Policy, PolicyMeta)]) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
    let indexed = policies.iter().enumerate().map(|(idx, (p, _))| p.new_id(PolicyId::new(idx.to_string())));
    let Ok(set) = PolicySet::from_policies(indexed) else {
        return (Vec::new(), Vec::new());
    };
    let text_of = |file: &str| files.iter().find(|f| f.name == file).map_or("", |f| f.text.as_str());
    let locate_diag = |id: &PolicyId, diag: &dyn miette::Diagnostic, severity: Severity| {
        let meta = id.to_string().parse::<usize>().ok().and_then(|idx| policies.get(idx)).map(|(_, m)| m);
        let file = meta.map_or("<unknown>", |m| m.file.as_str());
        let offset = first_label_offset(diag).or(meta.map(|m| m.offset)).unwrap_or(0);
        let d = Diagnostic::error_at(file, text_of(file), offset, describe(diag));
        Diagnostic { severity, ..d.with_policy(meta.map(|m| m.id.as_str())) }
    };
    let result = Validator::new(schema().clone()).validate(&set, ValidationMode::Strict);
    let errors = result
        .validation_errors()
        .map(|e| {
            let d = locate_diag(e.policy_id(), e, Severity::Error);
            match e {
                ValidationError::UnsafeOptionalAttributeAccess(_) => d.with_code("BL005", Severity::Error),
                _ => d,
            }
        })
        .collect();
    let warnings = result.validation_warnings().map(|w| locate_diag(w.policy_id(), w, Severity::Warning)).collect();
    (errors, warnings)
}

/// Parses and validates; any error rejects the whole set.
pub fn load_files(source: impl Into<String>, files: Vec<PolicyFile>) -> Result<LoadedPolicies, PolicyError> {
    let parsed = parse_files(&files);
    let mut diagnostics = parsed.diagnostics;
    let (errors, warnings) = validate(&files, &parsed.policies);
    diagnostics.extend(errors);
    if !diagnostics.is_empty() {
        diagnostics.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
        return Err(PolicyError::Invalid { diagnostics });
    }
    let set = PolicySet::from_policies(parsed.policies.iter().map(|(p, _)| p.clone())).map_err(|e| {
        PolicyError::Invalid { diagnostics: vec![Diagnostic::error_at("<policy set>", "", 0, e.to_string())] }
    })?;
    let meta = parsed.policies.into_iter().map(|(_, m)| (m.id.clone(), m)).collect();
    Ok(LoadedPolicies { source: source.into(), set, meta, files, warnings })
}

/// Loads every `.cedar` file below `dir`.
pub fn load_dir(dir: &Path) -> Result<LoadedPolicies, PolicyError> {
    let files = read_dir(dir)?;
    load_files(dir.display().to_string(), files)
}
