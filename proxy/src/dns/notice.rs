//! Bounds audit notices about bad packets: a client spraying garbage must
//! not be able to grow the audit log without limit, but nothing is lost
//! silently either — suppressed notices are counted into the next one.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Notices allowed per window before they are only counted.
pub const NOTICES_PER_WINDOW: u32 = 20;
const WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct State {
    window_start: Instant,
    in_window: u32,
    suppressed: u64,
}

/// A fixed-window limiter for notices.
#[derive(Debug)]
pub struct NoticeLimiter {
    state: Mutex<State>,
}

impl Default for NoticeLimiter {
    fn default() -> Self {
        NoticeLimiter { state: Mutex::new(State { window_start: Instant::now(), in_window: 0, suppressed: 0 }) }
    }
}

impl NoticeLimiter {
    /// `Some(message)` (with the count of notices suppressed before it
    /// appended) when it may be written at `now`; `None` when it is only
    /// counted.
    pub fn admit(&self, message: String, now: Instant) -> Option<String> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if now.saturating_duration_since(state.window_start) >= WINDOW {
            state.window_start = now;
            state.in_window = 0;
        }
        if state.in_window >= NOTICES_PER_WINDOW {
            state.suppressed += 1;
            return None;
        }
        state.in_window += 1;
        Some(match std::mem::take(&mut state.suppressed) {
            0 => message,
            n => format!("{message} ({n} similar notices suppressed before this one)"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excess_notices_are_counted_into_the_next_window() {
        let limiter = NoticeLimiter::default();
        let now = Instant::now();
        let admitted = (0..25).filter_map(|i| limiter.admit(format!("bad {i}"), now)).count();
        assert_eq!(admitted, NOTICES_PER_WINDOW as usize);
        let next = limiter.admit("bad again".into(), now + WINDOW).expect("new window");
        assert_eq!(next, "bad again (5 similar notices suppressed before this one)");
    }
}
