//! Bridle's transparent proxy (not built yet: issues 3 and 4).
//!
//! Will own: accepting connections the redirector sends here, recovering
//! their original destination, TLS interception with Bridle's CA, HTTP/1.1
//! and HTTP/2 inspection, the upstream pool, and the DNS resolver. Every
//! connection and request becomes an `engine::Event` decided by the engine.
//!
//! Must never: let guarded traffic through when a decision cannot be made,
//! use the agent's CA for upstream verification, or log secrets.
