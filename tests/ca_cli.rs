//! `bridle ca …` end to end: the real binary, with a config whose
//! `[tls] ca_dir` is a temp dir. Run as root (like the other end-to-end
//! tests); one test drops to `nobody` with setpriv.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{Run, bridle, bridle_in, write_files};

/// A temp dir holding `bridle.toml` with `[tls] ca_dir = <dir>/ca`.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        write_files(dir.path(), &[("bridle.toml", "[tls]\nca_dir = \"ca\"\n")]);
        Project { dir }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    fn config(&self) -> String {
        self.dir.path().join("bridle.toml").display().to_string()
    }

    /// `bridle ca SUB --config <bridle.toml>`.
    fn ca_cmd(&self, sub: &str) -> Run {
        bridle(&["ca", sub, "--config", &self.config()])
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

fn is_one_certificate(pem: &str) -> bool {
    pem.starts_with("-----BEGIN CERTIFICATE-----\n")
        && pem.ends_with("-----END CERTIFICATE-----\n")
        && pem.matches("BEGIN").count() == 1
}

#[test]
fn export_creates_the_ca_and_prints_the_same_certificate_each_time() {
    let project = Project::new();
    let first = project.ca_cmd("export");
    assert_eq!(first.code, 0, "{}", first.all());
    assert!(is_one_certificate(&first.stdout), "{}", first.all());
    assert!(!first.stdout.contains("PRIVATE"), "{}", first.all());
    assert_eq!(mode(&project.ca().join("ca.key")), 0o600);
    assert_eq!(mode(&project.ca().join("ca.pem")), 0o644);
    assert_eq!(std::fs::read_to_string(project.ca().join("ca.pem")).expect("ca.pem"), first.stdout);

    let second = project.ca_cmd("export");
    assert_eq!(second.code, 0, "{}", second.all());
    assert_eq!(second.stdout, first.stdout, "export must not make a new CA");
}

#[test]
fn rotate_replaces_the_certificate_and_keeps_the_old_pair() {
    let project = Project::new();
    let before = project.ca_cmd("export");
    assert_eq!(before.code, 0, "{}", before.all());
    let old_key = std::fs::read(project.ca().join("ca.key")).expect("key");

    let rotate = project.ca_cmd("rotate");
    assert_eq!(rotate.code, 0, "{}", rotate.all());
    assert!(rotate.stdout.contains("Bridle CA ") && rotate.stdout.contains("ca.pem.old"), "{}", rotate.all());
    let after = project.ca_cmd("export");
    assert_eq!(after.code, 0, "{}", after.all());
    assert!(is_one_certificate(&after.stdout), "{}", after.all());
    assert_ne!(after.stdout, before.stdout, "rotate must change the certificate");
    assert_eq!(std::fs::read_to_string(project.ca().join("ca.pem.old")).expect("old cert"), before.stdout);
    assert_eq!(std::fs::read(project.ca().join("ca.key.old")).expect("old key"), old_key);
    for file in ["ca.pem.old", "ca.key.old", "ca.key"] {
        assert_eq!(mode(&project.ca().join(file)), 0o600, "{file}");
    }
}

#[test]
fn a_world_readable_key_is_refused_naming_the_file() {
    let project = Project::new();
    assert_eq!(project.ca_cmd("export").code, 0);
    let key = project.ca().join("ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let run = project.ca_cmd("export");
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stdout.is_empty(), "{}", run.all());
    assert!(run.stderr.contains(&key.display().to_string()) && run.stderr.contains("chmod 600"), "{}", run.all());
}

#[test]
fn path_prints_the_configured_directory_or_the_default() {
    let project = Project::new();
    let run = project.ca_cmd("path");
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(run.stdout.trim_end(), project.ca().display().to_string());
    assert!(!project.ca().exists(), "path must not create the CA");

    let empty = tempfile::tempdir().expect("tempdir");
    let run = bridle_in(empty.path(), &["ca", "path"]);
    assert_eq!((run.code, run.stdout.as_str()), (0, "/var/lib/bridle/ca\n"), "{}", run.all());
}

#[test]
fn a_broken_config_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(dir.path(), &[("bridle.toml", "[tls]\nleaf_cache_size = 0\n")]);
    let run = bridle_in(dir.path(), &["ca", "export"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("bridle.toml:2:1: `tls.leaf_cache_size` must be at least 1"), "{}", run.all());
}

/// Without root: an existing CA's certificate is still exported (the key is
/// root's); a missing CA cannot be created, and the error says what to do.
#[test]
fn unprivileged_export_prints_an_existing_certificate_or_explains() {
    let project = Project::new();
    std::fs::set_permissions(project.dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let as_nobody = |sub: &str| {
        let output = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_bridle"))
            .args(["ca", sub, "--config", &project.config()])
            .current_dir("/")
            .output()
            .expect("run setpriv (needs root)");
        let (stdout, stderr) = (output.stdout, output.stderr);
        (
            output.status.code(),
            String::from_utf8_lossy(&stdout).into_owned(),
            String::from_utf8_lossy(&stderr).into_owned(),
        )
    };
    let (code, _, stderr) = as_nobody("export");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("needs root") && stderr.contains("[tls] ca_dir"), "{stderr}");

    let made = project.ca_cmd("export");
    assert_eq!(made.code, 0, "{}", made.all());
    let (code, stdout, stderr) = as_nobody("export");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, made.stdout);
}

/// Host mode: the guarded command sees every trust variable pointing at
/// `bundle.pem` (system roots + Bridle's CA), readable by it, while the key
/// is not; a forwarded variable of the same name does not win. The command
/// makes no connection.
#[test]
fn host_mode_points_every_trust_variable_at_the_bundle() {
    let project = Project::new();
    let config = "[tls]\nca_dir = \"ca\"\n\n[env]\nforward = [\"PATH\", \"SSL_CERT_FILE\"]\n";
    write_files(project.dir.path(), &[("bridle.toml", config)]);
    std::fs::set_permissions(project.dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let script = "env; echo ---; cat \"$SSL_CERT_FILE\" | grep -c BEGIN; cat \"$(dirname \"$SSL_CERT_FILE\")/ca.key\" \
                  >/dev/null 2>&1 && echo KEY-READABLE; exit 0";
    let output = Command::new(env!("CARGO_BIN_EXE_bridle"))
        .args(["run", "--user", "nobody", "--config", &project.config(), "--", "sh", "-c", script])
        .env("SSL_CERT_FILE", "/forwarded/but/overridden.pem")
        .env_remove("BRIDLE_LOG")
        .current_dir("/")
        .output()
        .expect("run bridle (needs root)");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let bundle = project.ca().join("bundle.pem");
    for name in [
        "SSL_CERT_FILE",
        "NODE_EXTRA_CA_CERTS",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "GIT_SSL_CAINFO",
        "PIP_CERT",
        "CARGO_HTTP_CAINFO",
        "AWS_CA_BUNDLE",
        "DENO_CERT",
    ] {
        let line = format!("{name}={}\n", bundle.display());
        assert_eq!(stdout.matches(&line).count(), 1, "{name} in\n{stdout}\n{stderr}");
    }
    assert!(!stdout.contains("overridden"), "{stdout}");
    let (_, tail) = stdout.split_once("---\n").expect("marker");
    let certs: usize = tail.lines().next().and_then(|n| n.parse().ok()).expect("cert count");
    assert!(certs > 50, "system roots + Bridle's CA, got {certs}");
    assert!(!tail.contains("KEY-READABLE"), "the guarded command read the CA key");
    assert_eq!(mode(&bundle), 0o644);
    let bundle_text = std::fs::read_to_string(&bundle).expect("bundle");
    let ca = std::fs::read_to_string(project.ca().join("ca.pem")).expect("ca.pem");
    assert!(bundle_text.ends_with(&ca), "Bridle's CA comes last");
}
