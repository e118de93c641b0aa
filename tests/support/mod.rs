//! Shared helpers for the end-to-end tests: run the real `bridle` binary.
#![allow(dead_code, reason = "each test binary uses its own part")]

use std::path::Path;
use std::process::{Command, Output};

/// The outcome of one `bridle` invocation.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Both streams, for assertion messages.
    pub fn all(&self) -> String {
        format!("exit {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Runs `bridle ARGS` in `dir`.
pub fn bridle_in(dir: &Path, args: &[&str]) -> Run {
    let output: Output = Command::new(env!("CARGO_BIN_EXE_bridle"))
        .args(args)
        .current_dir(dir)
        .env_remove("BRIDLE_LOG")
        .output()
        .expect("run bridle");
    Run::from(output)
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Runs `bridle ARGS` from the repository root.
pub fn bridle(args: &[&str]) -> Run {
    bridle_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

/// Writes `files` (relative path, text) under `dir`.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, text).expect("write");
    }
}

/// The id of the pending approval (in any session) whose summary names
/// `needle`, once one shows up (20 s at most).
pub fn wait_for_approval(needle: &str) -> String {
    let mut ids = wait_for_approvals(needle, 1);
    ids.swap_remove(0)
}

/// The ids of the `count` pending approvals whose summaries contain
/// `needle`, oldest first, once there are that many (at most 20 s).
#[allow(dead_code, reason = "not every test binary holds two at once")]
pub fn wait_for_approvals(needle: &str, count: usize) -> Vec<String> {
    for _ in 0..200 {
        let listed = bridle(&["approvals", "--json"]);
        let pending = serde_json::from_str::<serde_json::Value>(&listed.stdout).unwrap_or_default();
        let ids: Vec<String> = pending
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["summary"].as_str().is_some_and(|s| s.contains(needle)))
            .filter_map(|p| p["id"].as_str().map(str::to_owned))
            .collect();
        if ids.len() >= count {
            return ids;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("fewer than {count} pending approvals for {needle}");
}
