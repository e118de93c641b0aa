//! The resolver on 127.0.0.1:0 with a tiny authoritative server on
//! 127.0.0.1:0 as its only upstream, real policies, a real audit log, and
//! the real `dig` client. All traffic stays on loopback.

mod bad_input;
mod exfil;
mod negative;
mod resolve;
mod support;
