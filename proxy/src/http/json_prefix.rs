//! The top-level members of a JSON object, read from however much of the
//! document has arrived: a publish body is decided on its first bytes, and
//! a cut-off document is the normal case, not an error.
//!
//! Members are returned in document order; the last may be [`Value::Cut`]
//! when the prefix ends inside its value (its key is still evidence of
//! what the document is). Nested values are skipped, so a dependency's
//! `"name"` is never mistaken for the top-level one. Anything that is not
//! a JSON object ends the walk quietly. It never allocates for values
//! other than strings.

/// One top-level member whose key is complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    pub key: String,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    /// A complete string, decoded.
    String(String),
    /// A complete value of another type (or a string that is not UTF-8).
    Other,
    /// The prefix ends inside the value.
    Cut,
}

impl Member {
    /// The value when it is a complete string.
    pub fn string(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// The complete top-level members at the start of `prefix`.
pub(crate) fn members(prefix: &[u8]) -> Vec<Member> {
    let mut out = Vec::new();
    let mut at = skip_ws(prefix, 0);
    if prefix.get(at) != Some(&b'{') {
        return out;
    }
    at += 1;
    loop {
        at = skip_ws(prefix, at);
        if prefix.get(at) != Some(&b'"') {
            return out; // `}`, the end of the prefix, or not JSON
        }
        let Some(key_end) = string_end(prefix, at) else { return out };
        let Some(key) = decode(&prefix[at..key_end]) else { return out };
        at = skip_ws(prefix, key_end);
        match prefix.get(at) {
            Some(b':') => at = skip_ws(prefix, at + 1),
            Some(_) => return out,
            None => {
                out.push(Member { key, value: Value::Cut });
                return out;
            }
        }
        let end = match prefix.get(at) {
            Some(b'"') => string_end(prefix, at),
            Some(_) => value_end(prefix, at),
            None => None,
        };
        let Some(end) = end else {
            out.push(Member { key, value: Value::Cut });
            return out;
        };
        let value = match prefix[at] {
            b'"' => decode(&prefix[at..end]).map_or(Value::Other, Value::String),
            _ => Value::Other,
        };
        out.push(Member { key, value });
        at = skip_ws(prefix, end);
        match prefix.get(at) {
            Some(b',') => at += 1,
            _ => return out,
        }
    }
}

fn skip_ws(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')) {
        at += 1;
    }
    at
}

/// Index just past the closing quote of the string opening at `start`.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut at = start + 1;
    loop {
        match bytes.get(at)? {
            b'\\' => at += 2,
            b'"' => return Some(at + 1),
            _ => at += 1,
        }
    }
}

/// Index just past a non-string value starting at `start` (object, array,
/// number, literal); `None` when the prefix ends first. A scalar is only
/// complete once a delimiter follows it: `12` may be the start of `123`.
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut at = start;
    loop {
        match bytes.get(at)? {
            b'"' => {
                at = string_end(bytes, at)?;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    return Some(at + 1);
                }
            }
            b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n' if depth == 0 => return Some(at),
            _ => {}
        }
        at += 1;
    }
}

/// A quoted JSON string, escapes decoded.
fn decode(quoted: &[u8]) -> Option<String> {
    serde_json::from_slice(quoted).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Vec<(String, Value)> {
        members(text.as_bytes()).into_iter().map(|m| (m.key, m.value)).collect()
    }

    fn string(key: &str, value: &str) -> (String, Value) {
        (key.to_owned(), Value::String(value.to_owned()))
    }

    fn other(key: &str) -> (String, Value) {
        (key.to_owned(), Value::Other)
    }

    fn cut(key: &str) -> (String, Value) {
        (key.to_owned(), Value::Cut)
    }

    #[test]
    fn members_in_order_with_string_values() {
        let doc = r#" { "deps" : [{"name":"serde"}], "name":"a\u0062c", "n": 12, "ok":true, "o":{"x":"}"} } "#;
        assert_eq!(keys(doc), [other("deps"), string("name", "abc"), other("n"), other("ok"), other("o")]);
        let member = &members(br#"{"name":"x"}"#)[0];
        assert_eq!(member.string(), Some("x"));
    }

    #[test]
    fn cut_off_documents_give_what_is_complete_then_the_cut_key() {
        let doc = r#"{"_id":"x","name":"x","versions":{"1.0.0":{"name":"x"}},"_attachments":{"x.tgz":{"data":"H4sI"#;
        let whole = [string("_id", "x"), string("name", "x"), other("versions"), cut("_attachments")];
        for end in 0..doc.len() {
            let got = keys(&doc[..end]);
            let Some((last, done)) = got.split_last() else { continue };
            assert_eq!(done, &whole[..done.len()], "cut at {end}");
            let want = &whole[done.len()];
            assert!(last == want || *last == cut(&want.0), "cut at {end}: {last:?}");
        }
        assert_eq!(keys(doc), whole);
        assert_eq!(keys(r#"{"n":12"#), [cut("n")]);
        assert_eq!(keys(r#"{"s":"a\""#), [cut("s")]);
        assert_eq!(keys(r#"{"s""#), [cut("s")]);
        assert_eq!(keys(r#"{"s"#), []);
        assert_eq!(keys(r#"{"s":"a\"b","#), [string("s", "a\"b")]);
    }

    #[test]
    fn not_an_object_gives_nothing() {
        for doc in ["", "[1]", "\"x\"", "{name:1}", "{\"a\" 1}", "\u{feff}{\"a\":1}"] {
            assert_eq!(keys(doc), [], "{doc:?}");
        }
        assert_eq!(members(b"{\"a\":\"\xff\"}"), [Member { key: "a".into(), value: Value::Other }]);
    }
}
