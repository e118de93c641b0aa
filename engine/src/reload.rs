//! Hot reload of a policy directory.
//!
//! A change under the directory (an editor's save, a `git pull`, an
//! approval writing into `overrides/`) reloads the whole set after a short
//! quiet period. A broken set is reported with file:line:col and the last
//! good set stays active. Every reload, good or bad, is an audit record.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use crate::audit::{AuditEntry, AuditLog};
use crate::authorizer::Authorizer;
use crate::policy::{LoadedPolicies, PolicyError, PolicyFile, load_files, read_dir};

/// Reads of a changing directory before a reload gives up (and keeps the
/// last good set), and the pause between them.
const SETTLE_TRIES: u32 = 5;
const SETTLE_PAUSE: Duration = Duration::from_millis(50);

/// How long the directory must be quiet before a reload: editors write a
/// file in several steps, and a half-written set must not be judged.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(150);

/// Reloads one directory into one authorizer.
#[derive(Debug, Clone)]
pub struct Reloader {
    dir: PathBuf,
    authorizer: Arc<Authorizer>,
    audit: Option<Arc<AuditLog>>,
}

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    #[error("cannot watch policy directory {}: {source}", dir.display())]
    Notify { dir: PathBuf, source: notify::Error },
    #[error("cannot start the policy watcher thread: {0}")]
    Thread(std::io::Error),
}

/// Keeps the watcher alive; dropping it stops watching.
#[derive(Debug)]
pub struct WatchHandle {
    _watcher: notify::RecommendedWatcher,
    _thread: JoinHandle<()>,
}

impl Reloader {
    pub fn new(dir: impl Into<PathBuf>, authorizer: Arc<Authorizer>, audit: Option<Arc<AuditLog>>) -> Self {
        Reloader { dir: dir.into(), authorizer, audit }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads the directory now; on success installs it and returns the new
    /// generation, on failure keeps the current set. Audited either way.
    pub fn reload_now(&self) -> Result<u64, PolicyError> {
        let source = self.dir.display().to_string();
        let loaded = load_settled(&self.dir).and_then(|loaded| {
            refuse_emptied(&self.authorizer.policies(), &loaded)?;
            Ok(loaded)
        });
        match loaded {
            Ok(loaded) => {
                let policies = loaded.meta.len();
                let generation = self.authorizer.replace(loaded);
                tracing::info!(%source, generation, policies, "policy set reloaded");
                self.record(AuditEntry::PolicyReload { ok: true, generation, source, policies, error: None });
                Ok(generation)
            }
            Err(error) => {
                let generation = self.authorizer.generation();
                let policies = self.authorizer.policies().meta.len();
                tracing::error!(%source, %error, generation, "policy reload failed; keeping the last good set");
                let entry = AuditEntry::PolicyReload {
                    ok: false,
                    generation,
                    source,
                    policies,
                    error: Some(error.to_string()),
                };
                self.record(entry);
                Err(error)
            }
        }
    }

    fn record(&self, entry: AuditEntry) {
        if let Some(audit) = &self.audit {
            // The log counts what it could not write; nothing more to do here.
            if let Err(error) = audit.append(entry) {
                tracing::error!(%error, "could not audit a policy reload");
            }
        }
    }

    /// Watches the directory and reloads after each burst of changes.
    pub fn watch(self, debounce: Duration) -> Result<WatchHandle, WatchError> {
        let (tx, rx) = mpsc::channel::<()>();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !e.kind.is_access()) {
                // A closed receiver only means the reloader stopped.
                let _ = tx.send(());
            }
        })
        .map_err(|source| WatchError::Notify { dir: self.dir.clone(), source })?;
        watcher
            .watch(&self.dir, RecursiveMode::Recursive)
            .map_err(|source| WatchError::Notify { dir: self.dir.clone(), source })?;
        let thread = std::thread::Builder::new()
            .name("bridle-policy-watch".into())
            .spawn(move || self.run(&rx, debounce))
            .map_err(WatchError::Thread)?;
        Ok(WatchHandle { _watcher: watcher, _thread: thread })
    }

    fn run(&self, rx: &mpsc::Receiver<()>, debounce: Duration) {
        while rx.recv().is_ok() {
            loop {
                match rx.recv_timeout(debounce) {
                    Ok(()) => continue,
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            // Errors are audited and logged inside; the last good set stays.
            let _ = self.reload_now();
        }
    }
}

/// Refuses `next` when a file that holds forbid policies of `current` is
/// empty in it (whitespace only): a save caught between truncating the file
/// and writing it would lift those forbids while the write is slow. The
/// write reloads again; a file meant to hold nothing can be removed, or keep
/// a comment. (An emptied file of permits only narrows what is allowed, and
/// is installed.)
fn refuse_emptied(current: &LoadedPolicies, next: &LoadedPolicies) -> Result<(), PolicyError> {
    for file in next.files.iter().filter(|file| file.text.trim().is_empty()) {
        let policies = current.meta.values().filter(|meta| meta.forbid && meta.file == file.name).count();
        if policies > 0 {
            return Err(PolicyError::Emptied { path: file.name.clone(), policies });
        }
    }
    Ok(())
}

/// [`load_dir`], trusted only when reading the directory again right
/// after finds the same files with the same text: a file written while it
/// was read (an editor's save, a `git checkout` mid-way) must not install a
/// torn set. A file left empty for longer than the two reads take (truncated
/// now, written seconds later) reads the same twice; [`refuse_emptied`]
/// keeps it from dropping the policies it held.
fn load_settled(dir: &Path) -> Result<LoadedPolicies, PolicyError> {
    settled(dir, read_dir)
}

/// [`load_settled`] with the directory read by `read`.
fn settled(
    dir: &Path,
    mut read: impl FnMut(&Path) -> Result<Vec<PolicyFile>, PolicyError>,
) -> Result<LoadedPolicies, PolicyError> {
    for try_number in 0..SETTLE_TRIES {
        if try_number > 0 {
            std::thread::sleep(SETTLE_PAUSE);
        }
        let files = read(dir)?;
        let loaded = load_files(dir.display().to_string(), files.clone());
        if read(dir)? == files {
            return loaded;
        }
    }
    Err(PolicyError::Unsettled { path: dir.to_path_buf(), tries: SETTLE_TRIES })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditOptions;
    use crate::decision::Effect;
    use crate::event::{Connect, Event, EventKind};

    fn connect() -> Event {
        Event::now("s", "agent", EventKind::Connect(Connect::tls_to("a.test", 443)))
    }

    fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
        for _ in 0..200 {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }

    #[test]
    fn watcher_reloads_good_sets_keeps_last_good_on_errors_and_audits_both() {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = dir.path().join("p.cedar");
        std::fs::write(&policy, "@id(\"all\") permit(principal, action, resource);").expect("write");
        let authz = Arc::new(Authorizer::new(crate::policy::load_dir(dir.path()).expect("valid"), 100));
        let log_dir = tempfile::tempdir().expect("tempdir");
        let log_path = log_dir.path().join("audit.jsonl");
        let audit = Arc::new(AuditLog::open(&log_path, AuditOptions::default()).expect("open"));
        let _handle = Reloader::new(dir.path(), Arc::clone(&authz), Some(Arc::clone(&audit)))
            .watch(Duration::from_millis(50))
            .expect("watch");
        assert_eq!(authz.decide(&connect()).effect, Effect::Allow);

        std::fs::write(&policy, "@id(\"none\") forbid(principal, action, resource);").expect("write");
        assert!(wait_for(|| authz.decide(&connect()).effect == Effect::Deny), "good change applied");
        let good_generation = authz.generation();

        std::fs::write(&policy, "forbid(principal, action resource);").expect("write");
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(authz.generation(), good_generation, "broken set not installed");
        assert_eq!(authz.decide(&connect()).effect, Effect::Deny);

        audit.sync().expect("sync");
        let text = std::fs::read_to_string(&log_path).expect("read log");
        let reloads: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["type"] == "policy_reload")
            .collect();
        assert!(reloads.iter().any(|r| r["ok"] == true));
        let failed = reloads.iter().find(|r| r["ok"] == false).expect("failed reload audited");
        let error = failed["error"].as_str().unwrap_or_default();
        assert!(error.contains("p.cedar:1:"), "error names file:line:col: {error}");
    }

    /// An editor's save truncates, then writes: caught between the two, a
    /// file of forbids must not leave the set without them. Removing the
    /// file, or leaving a comment in it, does drop them.
    #[test]
    fn a_file_emptied_by_a_save_in_progress_keeps_its_policies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let allow = dir.path().join("allow.cedar");
        let forbid = dir.path().join("forbid.cedar");
        std::fs::write(&allow, "@id(\"all\") permit(principal, action, resource);").expect("write");
        std::fs::write(&forbid, "@id(\"none\") forbid(principal, action, resource);").expect("write");
        let authz = Arc::new(Authorizer::new(crate::policy::load_dir(dir.path()).expect("valid"), 100));
        let reloader = Reloader::new(dir.path(), Arc::clone(&authz), None);
        assert_eq!(authz.decide(&connect()).effect, Effect::Deny);

        std::fs::write(&forbid, " \n").expect("truncate");
        let error = reloader.reload_now().expect_err("an emptied file is not installed");
        assert!(matches!(&error, PolicyError::Emptied { policies: 1, .. }), "{error}");
        assert!(error.to_string().contains("forbid.cedar: empty"), "{error}");
        assert_eq!(authz.decide(&connect()).effect, Effect::Deny, "the forbid stays");

        std::fs::write(&forbid, "// nothing forbidden for now\n").expect("comment");
        reloader.reload_now().expect("a file left with a comment is installed");
        assert_eq!(authz.decide(&connect()).effect, Effect::Allow);
        // Empty now, and it held nothing: nothing to keep.
        std::fs::write(&forbid, "").expect("truncate");
        reloader.reload_now().expect("a file that held nothing may be empty");

        // Emptying a file of permits only narrows what is allowed.
        std::fs::write(&allow, "").expect("truncate");
        reloader.reload_now().expect("an emptied file of permits is installed");
        assert_eq!(authz.decide(&connect()).effect, Effect::Deny, "default deny");

        // A removed file of forbids drops them.
        std::fs::write(&allow, "@id(\"all\") permit(principal, action, resource);").expect("write");
        std::fs::write(&forbid, "@id(\"none\") forbid(principal, action, resource);").expect("write");
        reloader.reload_now().expect("valid");
        std::fs::remove_file(&forbid).expect("remove");
        reloader.reload_now().expect("a removed file drops its policies");
        assert_eq!(authz.decide(&connect()).effect, Effect::Allow);
    }

    #[test]
    fn a_set_read_differently_twice_is_not_trusted_until_it_settles() {
        let dir = Path::new("/policies");
        let file = |text: &str| vec![PolicyFile { name: "/policies/p.cedar".into(), text: text.into() }];
        let forbid = "@id(\"none\") forbid(principal, action, resource);";
        // Every read differs (a writer mid-way each time): never trusted.
        let mut n = 0;
        let changing = settled(dir, |_| {
            n += 1;
            Ok(file(&format!("// {n}\n{forbid}")))
        });
        assert!(matches!(changing, Err(PolicyError::Unsettled { tries: SETTLE_TRIES, .. })), "{changing:?}");
        assert_eq!(n, 2 * SETTLE_TRIES);
        // Half-written on the first read (empty), whole from then on: the
        // whole set is what is installed.
        let mut reads = 0;
        let settling = settled(dir, |_| {
            reads += 1;
            Ok(file(if reads == 1 { "" } else { forbid }))
        })
        .expect("settles");
        assert_eq!(settling.meta.len(), 1, "the forbid is in the set");
        assert_eq!(reads, 4);
    }
}
