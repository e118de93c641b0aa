//! Host mode: `bridle run -- CMD`.
//!
//! One session: a cgroup v2 for the command, the eBPF redirector attached
//! to it, the transparent proxy listening for what it redirects, and the
//! command started inside the cgroup as an unprivileged user with
//! `no_new_privs`. Everything is torn down when the command exits; the
//! command's exit status is returned.

mod admin;
mod sandbox;
mod session;
mod user;

pub use admin::{down, status};
pub use sandbox::{SandboxArgs, exec as sandbox_exec};
pub use session::{RunArgs, run};
