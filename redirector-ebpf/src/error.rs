//! The redirector's error type: every variant names the step that failed.

use std::{io, path::PathBuf};

/// What went wrong while loading, attaching, pinning or reading the
/// redirector. `step` reads like "attach connect4 to /sys/fs/cgroup/unified/x".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Parsing the embedded object or creating its maps failed.
    #[error("{step}: {source}")]
    Ebpf {
        /// What was being done.
        step: String,
        /// aya's error.
        #[source]
        source: Box<aya::EbpfError>,
    },
    /// Loading (verifier) or attaching a program failed.
    #[error("{step}: {source}")]
    Program {
        /// What was being done.
        step: String,
        /// aya's error.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// Opening, writing or reading a map failed.
    #[error("{step}: {source}")]
    Map {
        /// What was being done.
        step: String,
        /// aya's error.
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// Pinning a program, map or link in bpffs failed.
    #[error("{step}: {source}")]
    Pin {
        /// What was being done.
        step: String,
        /// aya's error.
        #[source]
        source: Box<aya::pin::PinError>,
    },
    /// Turning an attachment into a pinnable link failed.
    #[error("{step}: {source}")]
    Link {
        /// What was being done.
        step: String,
        /// aya's error.
        #[source]
        source: Box<aya::programs::links::LinkError>,
    },
    /// A filesystem or syscall step failed.
    #[error("{step}: {source}")]
    Io {
        /// What was being done.
        step: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// No cgroup v2 hierarchy is mounted.
    #[error(
        "no cgroup v2 mount found in /proc/self/mountinfo: Bridle's eBPF programs attach to a cgroup v2 \
         hierarchy (the cgroup2 filesystem, Linux 4.10 or later); mount one as root \
         (`mount -t cgroup2 none /sys/fs/cgroup/unified`), or in a container mount the host's \
         /sys/fs/cgroup read-write (compose.yaml does)"
    )]
    NoCgroup2,
    /// The pin directory is not on a bpffs and mounting one failed.
    #[error(
        "{path} is not on a bpf filesystem and mounting one failed ({source}); \
         as root run `mount -t bpf bpf /sys/fs/bpf`"
    )]
    NoBpffs {
        /// The directory that should hold the pins.
        path: PathBuf,
        /// Why the mount failed.
        #[source]
        source: io::Error,
    },
    /// Something is already pinned where this redirector would pin.
    #[error("{path} already holds pins (another bridle, or one that died): detach it first")]
    AlreadyPinned {
        /// The pin directory.
        path: PathBuf,
    },
    /// Pins exist but are not a complete, compatible set this Bridle can
    /// re-adopt.
    #[error("{path}: cannot re-adopt these pins ({why}); `bridle down --all` removes them")]
    CannotAdopt {
        /// The pin directory.
        path: PathBuf,
        /// What is wrong with them.
        why: String,
    },
    /// A directory on the way to the pins could be changed by someone
    /// other than root, who could then unpin (detach) the programs.
    #[error("{path} is {why}: someone other than root could remove Bridle's pins there; remove it (as root) and retry")]
    UnsafePinDir {
        /// The directory.
        path: PathBuf,
        /// Owned by whom, writable by whom.
        why: String,
    },
    /// The embedded object lacks a program the loader expects (build bug).
    #[error("the embedded eBPF object has no program `{0}`")]
    MissingProgram(&'static str),
    /// The embedded object lacks a map the loader expects (build bug).
    #[error("the embedded eBPF object has no map `{0}`")]
    MissingMap(&'static str),
    /// The configuration cannot be expressed in the kernel's config struct.
    #[error("invalid redirector config: {0}")]
    Config(String),
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a step description to an error (`.step(|| format!(...))`).
pub(crate) trait Step<T> {
    fn step(self, step: impl FnOnce() -> String) -> Result<T>;
}

macro_rules! impl_step {
    ($err:ty, $variant:ident, boxed) => {
        impl<T> Step<T> for std::result::Result<T, $err> {
            fn step(self, step: impl FnOnce() -> String) -> Result<T> {
                self.map_err(|source| Error::$variant { step: step(), source: Box::new(source) })
            }
        }
    };
}
impl_step!(aya::EbpfError, Ebpf, boxed);
impl_step!(aya::programs::ProgramError, Program, boxed);
impl_step!(aya::maps::MapError, Map, boxed);
impl_step!(aya::pin::PinError, Pin, boxed);
impl_step!(aya::programs::links::LinkError, Link, boxed);

impl<T> Step<T> for std::result::Result<T, io::Error> {
    fn step(self, step: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io { step: step(), source })
    }
}
