//! HTTP inspection: what a request is (git smart-HTTP, package publishing),
//! what it carries (secrets, placeholders), built into the request's event.
//!
//! Pure analyses the interception pipeline calls per request, no I/O:
//! [`git`] (fetch or push, pushed refs), [`publish`] (npm, cargo, PyPI),
//! [`secrets`] (placeholder → credential injection, misuse), [`scan`] (dlp
//! kinds in URL, headers and streamed bodies), [`fronting`] (SNI, Host and
//! `:authority` agree), [`websocket`] (frames after an upgrade, unmasked for
//! the scanner).

mod codec;
pub mod fronting;
pub mod git;
mod json_prefix;
pub mod publish;
pub mod scan;
pub mod secrets;
pub mod websocket;
