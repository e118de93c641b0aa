//! Bridle's kernel egress capture (not built yet: issue 3).
//!
//! Will own: the cgroup `connect4/6`, `sendmsg4/6`, `recvmsg4/6`,
//! `getpeername4/6` and `sock_create` programs (C, built by `build.rs` with
//! clang), the one header for structs that cross the kernel boundary and its
//! `#[repr(C)]` mirror, and the aya loader that attaches, pins and re-adopts
//! them.
//!
//! Must never: redirect Bridle's own sockets, or leave guarded sockets
//! unredirected when a program fails to load (fail closed, say so loudly).
