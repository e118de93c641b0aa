//! Bridle's web console on :18080 (not built yet).
//!
//! Will own: the Leptos SSR pages (timeline, approvals, policies, audit,
//! status) and their JSON/SSE API, with token auth and Origin checks, bound
//! to 127.0.0.1 unless configured otherwise.
//!
//! Must never: show secrets, the CA key or the console token in a page or event.
