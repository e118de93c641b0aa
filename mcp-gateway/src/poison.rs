//! Poisoning heuristics on what a server says to the agent's model: tool
//! definitions (description, title, parameter descriptions, names) and
//! tool results.
//!
//! Findings are short kind strings, put in `context.findings` of every call
//! to a flagged tool and in the audit record:
//!
//! | kind | what | where |
//! |---|---|---|
//! | `hidden-instructions` | prompt-injection phrasing: "ignore previous instructions", `<IMPORTANT>`/`<SYSTEM>` tags, "before using this tool, read …", "new instructions:" | definitions, results, sampling requests |
//! | `conceal-from-user` | "do not tell the user", "without informing the user", "hide this from the user" | definitions, results, sampling requests |
//! | `credential-access` | names a credential file: `~/.ssh`, `id_rsa`, `.env`, `.aws/credentials`, `.netrc`, `.npmrc`, `.git-credentials`, `mcp.json`… | definitions |
//! | `invisible-unicode` | tag characters U+E0000–E007F, zero-width U+200B–U+200D (a joiner inside an emoji excepted), U+2060–U+2064, U+FEFF, soft hyphen, fillers | definitions, results, sampling requests |
//! | `bidi-control` | bidirectional overrides and isolates (U+202A–U+202E, U+2066–U+2069, U+200E/F, U+061C) | definitions, results, sampling requests |
//! | `tool-shadowing` | the tool's name is also a tool of another wrapped server (from the pins directory) | definitions |
//! | `cross-tool-reference` | the definition names another server's distinctive tool (`send_email`), the usual way one server rewrites how another's tools are used | definitions |
//! | `secret-in-result` | a token-shaped secret (engine DLP) in a tool result | results |
//!
//! Text is normalized before matching: invisible characters are dropped
//! (so `ig\u{200b}nore` still reads "ignore"), tag characters are decoded
//! to the ASCII they smuggle, and everything is lowercased. Credential
//! paths are not looked for in results: listing a directory that holds a
//! `.env` is not an attack.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

pub const HIDDEN_INSTRUCTIONS: &str = "hidden-instructions";
pub const CONCEAL_FROM_USER: &str = "conceal-from-user";
pub const CREDENTIAL_ACCESS: &str = "credential-access";
pub const INVISIBLE_UNICODE: &str = "invisible-unicode";
pub const BIDI_CONTROL: &str = "bidi-control";
pub const TOOL_SHADOWING: &str = "tool-shadowing";
pub const CROSS_TOOL_REFERENCE: &str = "cross-tool-reference";
pub const SECRET_IN_RESULT: &str = "secret-in-result";

/// Every kind, for documentation and tests.
pub const ALL_KINDS: [&str; 8] = [
    HIDDEN_INSTRUCTIONS,
    CONCEAL_FROM_USER,
    CREDENTIAL_ACCESS,
    INVISIBLE_UNICODE,
    BIDI_CONTROL,
    TOOL_SHADOWING,
    CROSS_TOOL_REFERENCE,
    SECRET_IN_RESULT,
];

const HIDDEN: &[&str] = &[
    r"\b(ignore|disregard|forget|override)\s+(all\s+|any\s+)?(of\s+)?(the\s+|your\s+|my\s+)?(previous|prior|above|earlier|preceding|former|original|system)\s+(instructions?|prompts?|messages?|rules|directions|directives|guidelines|context)",
    r"<\s*/?\s*(important|system|instructions?|secret|hidden|admin|critical)\s*>",
    r"\[\s*/?\s*(inst|system|important)\s*\]",
    r"<\|im_(start|end)\|>",
    r"\bbefore\s+(using|calling|invoking|running|executing)\s+(this|the|any|that)\s+tool\b[^.]{0,80}?\b(read|open|cat|load|fetch|get|send|call|include|pass|upload|post|attach)\b",
    r"\b(new|updated|additional|hidden|secret)\s+instructions?\s*:",
    r"\byou\s+are\s+now\s+(in\s+)?(developer|admin|god|dan|jailbreak|unrestricted)\b",
    r"\bsystem\s+prompt\s*:",
    r"\b(this|it)\s+is\s+(very\s+|extremely\s+|vitally\s+|critically\s+)?(important|crucial|critical|essential)\s+that\s+you\b",
    r"\b(do\s+not|don't)\s+(follow|obey)\s+the\s+user",
];

const CONCEAL: &[&str] = &[
    r"\b(do\s+not|don't|never|must\s+not|should\s+not)\s+(tell|inform|notify|alert|warn|show|let)\s+(this\s+to\s+|it\s+to\s+)?(the\s+)?user\b",
    r"\b(do\s+not|don't|never)\s+(reveal|mention|disclose)\s+(this\s+|it\s+|that\s+|anything\s+)?to\s+(the\s+)?user\b",
    r"\b(do\s+not|don't|never)\s+mention\s+(this|that|it|these)\b",
    r"\bwithout\s+(telling|informing|notifying|alerting|asking|showing)\s+(the\s+)?user\b",
    r"\bwithout\s+(the\s+)?user'?s?\s+(knowledge|consent|noticing)\b",
    r"\b(hide|conceal|keep)\s+(this|it|that|these|them)?\s*(secret\s+)?from\s+the\s+user\b",
    r"\bthe\s+user\s+(must|should|needs?\s+to|need)\s+(not|never)\s+(know|see|notice|find\s+out|be\s+(told|informed|aware))",
    r"\b(secretly|covertly)\b",
];

const CREDENTIALS: &[&str] = &[
    r"~/\.ssh\b",
    r"\.ssh/",
    r"\bid_(rsa|dsa|ecdsa|ed25519)\b",
    r"\bauthorized_keys\b",
    r"\.aws/(credentials|config)\b",
    r"(^|[\s'`(/~=:,])\.env(\.[a-z]+)?\b",
    r"\.netrc\b",
    r"\.npmrc\b",
    r"\.pypirc\b",
    r"\.git-credentials\b",
    r"\.docker/config\.json\b",
    r"\.kube/config\b",
    r"/etc/shadow\b",
    r"\.gnupg\b",
    r"\bcredentials\.json\b",
    r"\bmcp\.json\b",
    r"\.config/gcloud\b",
    r"\.bash_history\b",
    r"\.pgpass\b",
];

struct Patterns {
    hidden: Regex,
    conceal: Regex,
    credentials: Regex,
}

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| Patterns {
    hidden: alternation(HIDDEN),
    conceal: alternation(CONCEAL),
    credentials: alternation(CREDENTIALS),
});

#[expect(clippy::expect_used, reason = "the patterns are constants, covered by every test")]
fn alternation(parts: &[&str]) -> Regex {
    Regex::new(&parts.join("|")).expect("poisoning patterns compile")
}

/// What is scanned: definitions get every check, results and
/// server-initiated requests the ones that do not misfire on data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Definition,
    Result,
}

/// Findings in one text.
pub fn scan_text(text: &str, scope: Scope) -> BTreeSet<&'static str> {
    let mut found = BTreeSet::new();
    let normal = normalize(text, &mut found);
    let patterns = &*PATTERNS;
    if patterns.hidden.is_match(&normal) {
        found.insert(HIDDEN_INSTRUCTIONS);
    }
    if patterns.conceal.is_match(&normal) {
        found.insert(CONCEAL_FROM_USER);
    }
    if scope == Scope::Definition && patterns.credentials.is_match(&normal) {
        found.insert(CREDENTIAL_ACCESS);
    }
    if scope == Scope::Result && bridle_engine::dlp::contains_secret(text) {
        found.insert(SECRET_IN_RESULT);
    }
    found
}

/// Findings in every string (and object key) of `value`, skipping binary
/// payloads (`data`, `blob`: base64 images and files).
pub fn scan_value(value: &Value, scope: Scope) -> BTreeSet<&'static str> {
    let mut text = String::new();
    collect_text(value, &mut text);
    scan_text(&text, scope)
}

/// Findings for one tool definition. `others` maps tool names to the other
/// servers that offer them (see [`crate::pins::PinStore::other_tools`]).
pub fn scan_tool(tool: &Value, others: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut text = String::new();
    collect_text(tool, &mut text);
    let mut found = scan_text(&text, Scope::Definition);
    let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
    if others.contains_key(name) {
        found.insert(TOOL_SHADOWING);
    }
    let own = name.to_lowercase();
    let foreign: BTreeSet<String> =
        others.keys().map(|k| k.to_lowercase()).filter(|k| *k != own && distinctive(k)).collect();
    if !foreign.is_empty() {
        let normal = normalize(&text, &mut BTreeSet::new());
        let words = normal.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        if words.into_iter().any(|word| foreign.contains(word)) {
            found.insert(CROSS_TOOL_REFERENCE);
        }
    }
    found.into_iter().map(str::to_string).collect()
}

/// A tool name unlikely to appear in prose by chance: `send_email`,
/// `read-file`, not `search`.
fn distinctive(word: &str) -> bool {
    word.len() >= 5 && (word.contains('_') || word.contains('-'))
}

fn collect_text(value: &Value, out: &mut String) {
    match value {
        Value::String(text) => {
            out.push_str(text);
            out.push('\n');
        }
        Value::Array(items) => items.iter().for_each(|item| collect_text(item, out)),
        Value::Object(object) => {
            for (key, item) in object {
                if key == "data" || key == "blob" {
                    continue;
                }
                out.push_str(key);
                out.push('\n');
                collect_text(item, out);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Lowercased text with invisible characters dropped and tag characters
/// decoded; notes `invisible-unicode` / `bidi-control` in `found`.
fn normalize(text: &str, found: &mut BTreeSet<&'static str>) -> String {
    // Nothing invisible fits in ASCII; std's bulk lowercasing is much
    // faster than the loop below on multi-megabyte results.
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(text.len());
    let mut previous = '\0';
    for c in text.chars() {
        let code = u32::from(c);
        match code {
            0xE0000..=0xE007F => {
                found.insert(INVISIBLE_UNICODE);
                if let Some(ascii) = char::from_u32(code - 0xE0000).filter(|a| a.is_ascii_graphic() || *a == ' ') {
                    out.push(ascii.to_ascii_lowercase());
                }
            }
            // A joiner between emoji builds a family or a flag: not hidden.
            0x200D if is_emoji(previous) => {}
            0x200B..=0x200D
            | 0x2060..=0x2064
            | 0xFEFF
            | 0x00AD
            | 0x180E
            | 0x034F
            | 0x115F
            | 0x1160
            | 0x3164
            | 0xFFA0 => {
                found.insert(INVISIBLE_UNICODE);
            }
            0x202A..=0x202E | 0x2066..=0x2069 | 0x200E | 0x200F | 0x061C => {
                found.insert(BIDI_CONTROL);
            }
            0x2018 | 0x2019 => out.push('\''),
            _ => out.extend(c.to_lowercase()),
        }
        previous = c;
    }
    out
}

fn is_emoji(c: char) -> bool {
    matches!(u32::from(c), 0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0xFE0F)
}

#[cfg(test)]
mod tests;
