//! Flags exfiltration-shaped queries so policies can forbid them.
//!
//! These are heuristics, not proof: a flag only puts a marker in the
//! event's context, and what happens is the policy's call.
//!
//! Data smuggled out through DNS has a shape: long labels (an encoded
//! chunk per label), random-looking labels (base32/hex/base64 encodings),
//! many TXT queries in a burst (TXT carries the most data back), or many
//! distinct names under one domain (each query a chunk, short and plain
//! enough to pass the label tests; the attacker's authority for that
//! domain receives them all). The flags go in the event's
//! `context.flags`; the policy decides.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher as _, Hasher as _, RandomState};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Flag: a label longer than [`ExfilThresholds::max_label`] or a name
/// longer than [`ExfilThresholds::max_name`].
pub const LONG_LABEL: &str = "long-label";
/// Flag: a label of at least [`ExfilThresholds::entropy_min_len`] chars
/// whose Shannon entropy exceeds [`ExfilThresholds::entropy_bits`].
pub const HIGH_ENTROPY: &str = "high-entropy";
/// Flag: more than [`ExfilThresholds::txt_per_window`] TXT queries within
/// [`ExfilThresholds::txt_window`].
pub const TXT_FLOOD: &str = "txt-flood";
/// Flag: more than [`ExfilThresholds::names_per_domain`] distinct names
/// under one domain within [`ExfilThresholds::names_window`].
pub const SUBDOMAIN_FLOOD: &str = "subdomain-flood";

/// Domains whose recent names are remembered at once. Past it, domains
/// quiet for a window are forgotten first, then the one quiet longest: a
/// tunnel's own domain, asked all the time, stays counted however many
/// other names are asked beside it.
const MAX_DOMAINS: usize = 1024;

/// The heuristics' thresholds.
#[derive(Clone, Debug, PartialEq)]
pub struct ExfilThresholds {
    /// Longest ordinary label (DNS allows 63). Default 40.
    pub max_label: usize,
    /// Longest ordinary name, dots included, no trailing dot. Default 150.
    pub max_name: usize,
    /// Shortest label the entropy test looks at; shorter labels carry too
    /// few characters for entropy to mean anything. Default 16.
    pub entropy_min_len: usize,
    /// Bits per character above which any long label looks random.
    /// Default 4.0: long English-like labels stay under it
    /// (`objects-githubusercontent` 3.65, `marketplace-visualstudio` 3.89,
    /// `copilot-proxy-githubusercontent` 3.92), while 24+ random base32 or
    /// base36 characters average 3.96–4.2 and base64-like ones more.
    pub entropy_bits: f64,
    /// The lower bar for labels with at least [`Self::entropy_digits`]
    /// digits. Default 3.0. Encodings (hex, base32, base36) mix in digits
    /// that hostnames rarely have, but hex tops out at 4 bits and 16 random
    /// hex characters average only about 3.2, so entropy alone misses them.
    /// IP-shaped labels (`ip-172-31-22-155`, 2.8) stay under this bar.
    pub entropy_bits_with_digits: f64,
    /// Digits that make a label use the lower bar. Default 3, so
    /// `s3-us-west-2-amazonaws` and `windows10-update-cdn` (two each) do not.
    pub entropy_digits: usize,
    /// TXT queries tolerated per window, across all clients. Default 20.
    pub txt_per_window: usize,
    /// The sliding window for TXT queries. Default one second.
    pub txt_window: Duration,
    /// Distinct names tolerated under one domain per window, across all
    /// clients. Default 100: an agent's package managers, forges and CDNs
    /// use a handful each; a DNS tunnel sends a new name per chunk.
    pub names_per_domain: usize,
    /// The sliding window for distinct names. Default one minute.
    pub names_window: Duration,
}

impl Default for ExfilThresholds {
    fn default() -> Self {
        ExfilThresholds {
            max_label: 40,
            max_name: 150,
            entropy_min_len: 16,
            entropy_bits: 4.0,
            entropy_bits_with_digits: 3.0,
            entropy_digits: 3,
            txt_per_window: 20,
            txt_window: Duration::from_secs(1),
            names_per_domain: 100,
            names_window: Duration::from_secs(60),
        }
    }
}

/// The names recently asked under one domain.
#[derive(Debug, Default)]
struct Recent {
    /// Hash of a name under the domain → when it was last asked.
    names: HashMap<u64, Instant>,
    /// When any was.
    last: Option<Instant>,
}

/// The stateful part: recent TXT query times, and recent names by domain.
#[derive(Debug)]
pub struct ExfilDetector {
    thresholds: ExfilThresholds,
    txt_times: Mutex<VecDeque<Instant>>,
    /// Hash of a domain → its recent names.
    names: Mutex<HashMap<u64, Recent>>,
    hasher: RandomState,
}

impl ExfilDetector {
    pub fn new(thresholds: ExfilThresholds) -> Self {
        ExfilDetector {
            thresholds,
            txt_times: Mutex::new(VecDeque::new()),
            names: Mutex::new(HashMap::new()),
            hasher: RandomState::new(),
        }
    }

    /// The flags for a query of `labels` (wire labels, root excluded) and
    /// `qtype` arriving at `now`.
    pub fn flags(&self, labels: &[&[u8]], qtype: &str, now: Instant) -> Vec<String> {
        let t = &self.thresholds;
        let mut flags = Vec::new();
        let name_len = labels.iter().map(|l| l.len()).sum::<usize>() + labels.len().saturating_sub(1);
        if name_len > t.max_name || labels.iter().any(|l| l.len() > t.max_label) {
            flags.push(LONG_LABEL.to_string());
        }
        if labels.iter().any(|l| self.looks_random(l)) {
            flags.push(HIGH_ENTROPY.to_string());
        }
        if qtype == "TXT" && self.txt_flooding(now) {
            flags.push(TXT_FLOOD.to_string());
        }
        if self.names_flooding(labels, now) {
            flags.push(SUBDOMAIN_FLOOD.to_string());
        }
        flags
    }

    /// Records the name of `labels` under its domains at `now` (see
    /// [`domain_starts`]); true when one of them now has more distinct
    /// names in the window than allowed. Each domain keeps at most the
    /// threshold plus one names.
    fn names_flooding(&self, labels: &[&[u8]], now: Instant) -> bool {
        let mut flooding = false;
        for split in domain_starts(labels).into_iter().flatten() {
            let (below, domain) = labels.split_at(split);
            flooding |= self.count_name(self.folded_hash(domain), self.folded_hash(below), now);
        }
        flooding
    }

    fn count_name(&self, domain: u64, name: u64, now: Instant) -> bool {
        let t = &self.thresholds;
        let fresh = |at: &Instant| now.saturating_duration_since(*at) < t.names_window;
        let mut domains = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        if domains.len() >= MAX_DOMAINS && !domains.contains_key(&domain) {
            domains.retain(|_, recent| recent.last.as_ref().is_some_and(fresh));
            if domains.len() >= MAX_DOMAINS
                && let Some(quietest) = domains.iter().min_by_key(|(_, recent)| recent.last).map(|(key, _)| *key)
            {
                domains.remove(&quietest);
            }
        }
        let recent = domains.entry(domain).or_default();
        recent.last = Some(now);
        let names = &mut recent.names;
        names.retain(|_, at| fresh(at));
        if names.len() > t.names_per_domain && !names.contains_key(&name) {
            // Full: the oldest makes room, so the count stays over the bar.
            if let Some(oldest) = names.iter().min_by_key(|(_, at)| **at).map(|(hash, _)| *hash) {
                names.remove(&oldest);
            }
        }
        names.insert(name, now);
        names.len() > t.names_per_domain
    }

    /// A keyed hash of `labels`, case-folded: the names map holds no name
    /// itself, and a query allocates nothing for it.
    fn folded_hash(&self, labels: &[&[u8]]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        for label in labels {
            let mut folded = [0u8; 63];
            for (out, byte) in folded.iter_mut().zip(label.iter()) {
                *out = byte.to_ascii_lowercase();
            }
            // A label is at most 63 bytes on the wire; the length keeps
            // `a.bc` and `ab.c` apart.
            hasher.write_usize(label.len());
            hasher.write(&folded[..label.len().min(63)]);
        }
        hasher.finish()
    }

    /// The `high-entropy` test for one label (see [`ExfilThresholds`]).
    fn looks_random(&self, label: &[u8]) -> bool {
        let t = &self.thresholds;
        if label.len() < t.entropy_min_len {
            return false;
        }
        let bits = shannon_bits(label);
        let digits = label.iter().filter(|b| b.is_ascii_digit()).count();
        bits > t.entropy_bits || (digits >= t.entropy_digits && bits > t.entropy_bits_with_digits)
    }

    /// Records a TXT query at `now`; true when the window now holds more
    /// than allowed. The deque is bounded by the threshold plus one, so a
    /// flood cannot grow memory.
    fn txt_flooding(&self, now: Instant) -> bool {
        let t = &self.thresholds;
        let mut times = self.txt_times.lock().unwrap_or_else(PoisonError::into_inner);
        while times.front().is_some_and(|first| now.saturating_duration_since(*first) >= t.txt_window) {
            times.pop_front();
        }
        times.push_back(now);
        while times.len() > t.txt_per_window.saturating_add(1) {
            times.pop_front();
        }
        times.len() > t.txt_per_window
    }
}

/// Where the domains a name's other labels are counted under start: its
/// last two labels (`evil.example`), and also its last three under a
/// two-letter top level with a short second level (`evil.co.uk`, and
/// `ab.io` itself). Without the public suffix list the name counts under
/// both, so neither guess lets a tunnel through: `co.uk` as a whole counts
/// many shops' names together, and each shop its own. None where nothing
/// is below.
fn domain_starts(labels: &[&[u8]]) -> [Option<usize>; 2] {
    let n = labels.len();
    let below = |start: Option<usize>| start.filter(|&start| start > 0);
    let country_like = n >= 3 && labels[n - 1].len() == 2 && labels[n - 2].len() <= 3;
    [below(n.checked_sub(2)), below(n.checked_sub(3).filter(|_| country_like))]
}

/// Shannon entropy of `label` in bits per character, case-folded so that
/// 0x20-randomised names do not look random.
pub fn shannon_bits(label: &[u8]) -> f64 {
    if label.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for byte in label {
        counts[usize::from(byte.to_ascii_lowercase())] += 1;
    }
    let len = label.len() as f64;
    counts.iter().filter(|&&c| c > 0).map(|&c| f64::from(c) / len).map(|p| -p * p.log2()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(name: &str) -> Vec<&[u8]> {
        name.split('.').map(str::as_bytes).collect()
    }

    #[test]
    fn ordinary_names_are_not_flagged() {
        let d = ExfilDetector::new(ExfilThresholds::default());
        let names = [
            "allowed.test",
            "releases-download.github.com",
            "marketplace-visualstudio.example",
            "copilot-proxy-githubusercontent.example",
            "s3-us-west-2-amazonaws.example",
            "ip-172-31-22-155.example",
        ];
        for name in names {
            assert!(d.flags(&labels(name), "A", Instant::now()).is_empty(), "{name}");
        }
    }

    #[test]
    fn long_label_long_name_and_entropy() {
        let d = ExfilDetector::new(ExfilThresholds::default());
        let long = format!("{}.allowed.test", "a".repeat(41));
        assert_eq!(d.flags(&labels(&long), "A", Instant::now()), [LONG_LABEL]);
        let many = ["abcdefghij"; 15].join(".");
        assert_eq!(d.flags(&labels(&many), "A", Instant::now()), [LONG_LABEL]);
        for random in ["a8f3k2q9z7x1m4b6", "9f86d081884c7d65", "mfrggzdfmztwq2lknnwg23tpobyxe4"] {
            let name = format!("{random}.allowed.test");
            assert_eq!(d.flags(&labels(&name), "A", Instant::now()), [HIGH_ENTROPY], "{random}");
        }
        assert!((shannon_bits(b"abcdefghijklmnop") - 4.0).abs() < 1e-9);
        assert!(shannon_bits(b"AaAaAaAa") < 1e-9, "case-folded");
    }

    #[test]
    fn many_distinct_names_under_one_domain_are_a_flood() {
        let thresholds = ExfilThresholds { names_per_domain: 3, ..ExfilThresholds::default() };
        let d = ExfilDetector::new(thresholds);
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        for (i, chunk) in ["aa", "bb.x", "cc"].iter().enumerate() {
            assert!(d.flags(&labels(&format!("{chunk}.t.tunnel.test")), "A", at(i as u64)).is_empty());
        }
        assert!(d.flags(&labels("AA.t.tunnel.test"), "A", at(3)).is_empty(), "a name asked again is not new");
        assert!(d.flags(&labels("tunnel.test"), "A", at(3)).is_empty(), "the domain itself is no name under it");
        assert_eq!(d.flags(&labels("dd.tunnel.test"), "A", at(4)), [SUBDOMAIN_FLOOD]);
        assert_eq!(d.flags(&labels("ee.tunnel.test"), "AAAA", at(5)), [SUBDOMAIN_FLOOD], "any type counts");
        assert!(d.flags(&labels("ff.other.test"), "A", at(5)).is_empty(), "counted per domain");
        assert!(d.flags(&labels("gg.tunnel.test"), "A", at(200)).is_empty(), "the window slid");
        // Under a country code's short second level, a name counts under
        // both guesses at its domain: one shop's names, and all of co.uk's.
        let shop = ExfilDetector::new(ExfilThresholds { names_per_domain: 3, ..ExfilThresholds::default() });
        for chunk in ["a", "b", "c"] {
            assert!(shop.flags(&labels(&format!("{chunk}.shop.co.uk")), "A", at(300)).is_empty());
        }
        assert_eq!(shop.flags(&labels("d.shop.co.uk"), "A", at(300)), [SUBDOMAIN_FLOOD]);
        // `ab.io` is no public suffix for a tunnel to hide under.
        for chunk in ["a", "b", "c"] {
            assert!(shop.flags(&labels(&format!("{chunk}.ab.io")), "A", at(300)).is_empty());
        }
        assert_eq!(shop.flags(&labels("d.ab.io"), "A", at(300)), [SUBDOMAIN_FLOOD]);
    }

    #[test]
    fn remembered_domains_are_bounded_and_a_busy_one_is_kept() {
        let d = ExfilDetector::new(ExfilThresholds { names_per_domain: 3, ..ExfilThresholds::default() });
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        for i in 0..3 {
            d.flags(&labels(&format!("c{i}.tunnel.test")), "A", at(i));
        }
        // Junk domains asked to push the tunnel's count out, the tunnel
        // asking between them: it stays the most recent, never the one evicted.
        for i in 0..(MAX_DOMAINS as u64 * 3) {
            d.flags(&labels(&format!("www.site{i}.test")), "A", at(10 + 2 * i));
            if i % 500 == 0 {
                d.flags(&labels("c0.tunnel.test"), "A", at(11 + 2 * i));
            }
        }
        assert!(d.names.lock().expect("lock").len() <= MAX_DOMAINS);
        assert_eq!(d.flags(&labels("c3.tunnel.test"), "A", at(10_000)), [SUBDOMAIN_FLOOD]);
    }

    #[test]
    fn txt_flood_uses_a_sliding_window() {
        let thresholds = ExfilThresholds { txt_per_window: 3, ..ExfilThresholds::default() };
        let d = ExfilDetector::new(thresholds);
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        for ms in [0, 100, 200] {
            assert!(d.flags(&labels("txt.test"), "TXT", at(ms)).is_empty());
        }
        assert_eq!(d.flags(&labels("txt.test"), "TXT", at(300)), [TXT_FLOOD]);
        assert!(d.flags(&labels("txt.test"), "A", at(310)).is_empty(), "A queries do not count");
        assert!(d.flags(&labels("txt.test"), "TXT", at(2000)).is_empty(), "the window slid");
    }
}
