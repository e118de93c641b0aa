//! Exact strings searched for together: configured secret values, honeytoken
//! canaries and Bridle placeholders (`bridle-secret-<name>`).
//!
//! One compiled set per list, built once at start, answers "which of these
//! occur in this haystack" in one pass over bytes (bodies need not be
//! UTF-8). It never keeps or prints the haystack, and its `Debug` shows only
//! how many literals it holds, because the literals may be real secrets.

use std::fmt;

use regex::bytes::{RegexSet, RegexSetBuilder};

/// What every Bridle placeholder starts with.
pub const PLACEHOLDER_PREFIX: &str = "bridle-secret-";

/// The placeholder the agent is given instead of the secret `name`.
pub fn placeholder(name: &str) -> String {
    format!("{PLACEHOLDER_PREFIX}{name}")
}

/// The compiled set grew past the regex size limit (megabytes of literals).
#[derive(Debug, thiserror::Error)]
#[error("{count} literals ({bytes} bytes) are too large to search for together")]
pub struct LiteralsTooLarge {
    pub count: usize,
    pub bytes: usize,
}

/// A fixed list of literals; [`Literals::matches`] reports which occur.
#[derive(Clone)]
pub struct Literals {
    /// `None` when the list is empty: nothing to search for.
    set: Option<RegexSet>,
    longest: usize,
}

impl fmt::Debug for Literals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.set.as_ref().map_or(0, RegexSet::len);
        f.debug_struct("Literals").field("count", &count).finish_non_exhaustive()
    }
}

/// The empty list: matches nothing.
impl Default for Literals {
    fn default() -> Self {
        Literals { set: None, longest: 0 }
    }
}

impl Literals {
    /// Each literal matches wherever its bytes occur. An empty literal
    /// matches every haystack, so callers reject empty values first.
    pub fn new<S: AsRef<str>>(literals: &[S]) -> Result<Literals, LiteralsTooLarge> {
        let patterns: Vec<String> = literals.iter().map(|l| regex::escape(l.as_ref())).collect();
        let longest = literals.iter().map(|l| l.as_ref().len()).max().unwrap_or(0);
        Literals::compile(&patterns, longest, literals.iter().map(|l| l.as_ref().len()).sum())
    }

    /// The placeholders of secrets `names`, each matching only as a whole
    /// token: `bridle-secret-gh` does not match inside `bridle-secret-gh_admin`,
    /// which names another secret.
    pub fn placeholders<S: AsRef<str>>(names: &[S]) -> Result<Literals, LiteralsTooLarge> {
        let placeholders: Vec<String> = names.iter().map(|n| placeholder(n.as_ref())).collect();
        // `(?-u:...)` so any byte, not only a UTF-8 character, ends the token.
        let patterns: Vec<String> =
            placeholders.iter().map(|p| format!(r"{}(?-u:[^A-Za-z0-9_\-]|\z)", regex::escape(p))).collect();
        let longest = placeholders.iter().map(String::len).max().unwrap_or(0);
        Literals::compile(&patterns, longest, placeholders.iter().map(String::len).sum())
    }

    fn compile(patterns: &[String], longest: usize, bytes: usize) -> Result<Literals, LiteralsTooLarge> {
        if patterns.is_empty() {
            return Ok(Literals { set: None, longest: 0 });
        }
        let set = RegexSetBuilder::new(patterns)
            .unicode(false)
            .size_limit(64 << 20)
            .build()
            .map_err(|_| LiteralsTooLarge { count: patterns.len(), bytes })?;
        Ok(Literals { set: Some(set), longest })
    }

    /// Indices (into the list given at construction) of the literals that
    /// occur in `haystack`, ascending.
    pub fn matches(&self, haystack: &[u8]) -> Vec<usize> {
        match &self.set {
            Some(set) => set.matches(haystack).into_iter().collect(),
            None => Vec::new(),
        }
    }

    /// Length in bytes of the longest literal (0 when empty): a streaming
    /// caller keeps this much overlap so a literal split across two chunks
    /// is still seen.
    pub fn longest(&self) -> usize {
        self.longest
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_literal_present_even_when_one_contains_another() {
        let literals = Literals::new(&["abc123", "abc123def", "zzz"]).expect("compiles");
        assert_eq!(literals.matches(b"x abc123def y"), vec![0, 1]);
        assert_eq!(literals.matches(b"zzz"), vec![2]);
        assert_eq!(literals.matches(b"ab c123"), Vec::<usize>::new());
        assert_eq!(literals.longest(), 9);
    }

    #[test]
    fn literals_are_exact_bytes_not_patterns() {
        let literals = Literals::new(&["a.b*c"]).expect("compiles");
        assert!(literals.matches(b"a.b*c").contains(&0));
        assert!(literals.matches(b"axbbbc").is_empty());
    }

    #[test]
    fn searches_binary_haystacks() {
        let literals = Literals::new(&["s3cr3t"]).expect("compiles");
        assert_eq!(literals.matches(b"\xff\x00s3cr3t\xfe"), vec![0]);
        let unicode = Literals::new(&["canary-\u{e9}t\u{e9}"]).expect("compiles");
        assert_eq!(unicode.matches("x canary-\u{e9}t\u{e9} y".as_bytes()), vec![0]);
        assert!(unicode.matches(b"canary-ete").is_empty());
    }

    #[test]
    fn placeholders_match_whole_tokens_only() {
        let names = ["gh", "gh_admin"];
        let set = Literals::placeholders(&names).expect("compiles");
        assert_eq!(set.matches(b"Bearer bridle-secret-gh"), vec![0]);
        assert_eq!(set.matches(b"Bearer bridle-secret-gh_admin"), vec![1]);
        assert_eq!(set.matches(b"a=bridle-secret-gh&b=bridle-secret-gh_admin\xff"), vec![0, 1]);
        assert_eq!(set.matches(b"bridle-secret-gh\xff"), vec![0]);
        assert!(set.matches(b"bridle-secret-ghx").is_empty());
        assert!(set.matches(b"bridle-secret-").is_empty());
    }

    #[test]
    fn empty_list_matches_nothing_and_debug_hides_values() {
        let none = Literals::new::<&str>(&[]).expect("compiles");
        assert!(none.is_empty() && none.matches(b"anything").is_empty() && none.longest() == 0);
        let shown = format!("{:?}", Literals::new(&["hunter2-value"]).expect("compiles"));
        assert!(!shown.contains("hunter2") && shown.contains("count: 1"), "{shown}");
    }
}
