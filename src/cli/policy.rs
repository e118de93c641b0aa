//! `bridle policy validate | fmt | lint | test | replay`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use bridle_engine::authorizer::{Authorizer, DEFAULT_CACHE_SIZE};
use bridle_engine::policy::testfile::{self, CaseResult, PolicyRef, TestFile};
use bridle_engine::policy::{
    Diagnostic, LoadedPolicies, PolicyError, PolicyFile, Severity, builtin_default_files, fmt, lint, load_files,
    read_dir,
};
use bridle_engine::replay::{ReplayReport, replay};
use clap::Subcommand;

use super::settings::{DecideArgs, load_policies};

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Check policies strictly against the built-in schema. Errors name
    /// file:line:col and the policy @id. Exit 1 on any error.
    Validate {
        /// Policy directories (default: --policies, the config's, else the built-in set).
        dirs: Vec<PathBuf>,
        #[command(flatten)]
        decide: DecideArgs,
    },
    /// Format policy files in place with Cedar's formatter.
    Fmt {
        /// Policy directories (default: --policies or the config's).
        dirs: Vec<PathBuf>,
        /// Change nothing; list the files that are not formatted and exit 1.
        #[arg(long)]
        check: bool,
        #[command(flatten)]
        decide: DecideArgs,
    },
    /// Findings beyond validation (codes BL001-BL008); exit 1 if any.
    Lint {
        /// Policy directories (default: --policies, the config's, else the built-in set).
        dirs: Vec<PathBuf>,
        #[command(flatten)]
        decide: DecideArgs,
    },
    /// Run policy test files (TOML; see `policies/tests/README.md`).
    /// Prints each case and the policies no case exercised; exit 1 if any case fails.
    Test {
        /// Test files, or directories searched for *.toml (default: policies/tests).
        paths: Vec<PathBuf>,
        #[command(flatten)]
        decide: DecideArgs,
    },
    /// Re-decide an audit log's events against a draft policy set and show
    /// what would change; exit 1 if anything would.
    Replay {
        /// The audit log to replay.
        #[arg(long, value_name = "FILE")]
        audit: PathBuf,
        /// How many changed records to show.
        #[arg(long, default_value_t = 10)]
        examples: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        decide: DecideArgs,
    },
}

pub fn run(cmd: PolicyCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCmd::Validate { dirs, decide } => validate(&sources(dirs, &decide)?),
        PolicyCmd::Fmt { dirs, check, decide } => format(&sources(dirs, &decide)?, check),
        PolicyCmd::Lint { dirs, decide } => lint_cmd(&sources(dirs, &decide)?),
        PolicyCmd::Test { paths, decide } => test(paths, &decide),
        PolicyCmd::Replay { audit, examples, json, decide } => replay_cmd(&audit, &decide, examples, json),
    }
}

/// A named group of policy files: a directory, or the built-in set.
struct Source {
    name: String,
    dir: Option<PathBuf>,
    files: Vec<PolicyFile>,
}

fn sources(dirs: Vec<PathBuf>, decide: &DecideArgs) -> anyhow::Result<Vec<Source>> {
    let dirs = if dirs.is_empty() { decide.policy_dir()?.into_iter().collect() } else { dirs };
    if dirs.is_empty() {
        let name = bridle_engine::policy::BUILTIN_DEFAULT.to_string();
        return Ok(vec![Source { name, dir: None, files: builtin_default_files() }]);
    }
    dirs.into_iter()
        .map(|dir| {
            let files = read_dir(&dir)?;
            Ok(Source { name: dir.display().to_string(), dir: Some(dir), files })
        })
        .collect()
}

fn print_all(diagnostics: &[Diagnostic]) {
    for d in diagnostics {
        println!("{d}");
    }
}

fn validate(sources: &[Source]) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for source in sources {
        match load_files(source.name.clone(), source.files.clone()) {
            Ok(loaded) => {
                print_all(&loaded.warnings);
                let (policies, files) = (loaded.meta.len(), loaded.files.len());
                println!("{}: OK, {policies} policies in {files} files", source.name);
            }
            Err(PolicyError::Invalid { diagnostics }) => {
                print_all(&diagnostics);
                let errors = diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
                println!("{}: {errors} error(s)", source.name);
                failed = true;
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn format(sources: &[Source], check: bool) -> anyhow::Result<ExitCode> {
    let mut unformatted = 0;
    let mut broken = 0;
    for source in sources {
        if source.dir.is_none() {
            bail!("nothing to format: give a policy directory (the built-in set is not a file)");
        }
        for file in &source.files {
            match fmt::format_file(file) {
                Ok(pretty) if pretty == file.text => {}
                Ok(_) if check => {
                    println!("{}: not formatted", file.name);
                    unformatted += 1;
                }
                Ok(pretty) => {
                    std::fs::write(&file.name, pretty).with_context(|| format!("writing {}", file.name))?;
                    println!("{}: formatted", file.name);
                }
                Err(diagnostic) => {
                    println!("{diagnostic}");
                    broken += 1;
                }
            }
        }
    }
    Ok(if unformatted + broken > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn lint_cmd(sources: &[Source]) -> anyhow::Result<ExitCode> {
    let mut total = 0;
    for source in sources {
        let findings = lint::lint(&source.files);
        print_all(&findings);
        println!("{}: {} finding(s)", source.name, findings.len());
        total += findings.len();
    }
    Ok(if total > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn test_files(paths: Vec<PathBuf>) -> anyhow::Result<Vec<PathBuf>> {
    let paths = if paths.is_empty() { vec![PathBuf::from("policies/tests")] } else { paths };
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|ext| ext == "toml"))
                .collect();
            found.sort();
            files.extend(found);
        } else if path.exists() {
            files.push(path);
        } else {
            bail!("{}: no such test file or directory", path.display());
        }
    }
    Ok(files)
}

fn test(paths: Vec<PathBuf>, decide: &DecideArgs) -> anyhow::Result<ExitCode> {
    let files: Vec<TestFile> = test_files(paths)?
        .iter()
        .map(|path| testfile::load(path).map_err(|d| anyhow::anyhow!("{d}")))
        .collect::<Result<_, _>>()?;
    let fallback = decide.policy_dir()?;
    let mut sets: BTreeMap<Option<PathBuf>, (Authorizer, BTreeSet<String>)> = BTreeMap::new();
    let (mut passed, mut failed) = (0, 0);
    for file in &files {
        let dir = match (&decide.policies, &file.policies) {
            (Some(dir), _) => Some(dir.clone()),
            (None, Some(PolicyRef::Dir(dir))) => Some(dir.clone()),
            (None, Some(PolicyRef::Builtin)) => None,
            (None, None) => fallback.clone(),
        };
        let (authz, exercised) = match sets.entry(dir.clone()) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let loaded = load_policies(dir.as_deref())?;
                e.insert((Authorizer::new(loaded, DEFAULT_CACHE_SIZE), BTreeSet::new()))
            }
        };
        println!("{} (policies: {})", file.path.display(), authz.policies().source);
        for result in testfile::run(file, authz) {
            print_case(&file.path, &result);
            exercised.extend(result.got.policies.iter().cloned());
            if result.passed { passed += 1 } else { failed += 1 }
        }
    }
    for (authz, exercised) in sets.values() {
        print_coverage(&authz.policies(), exercised);
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn print_case(path: &Path, result: &CaseResult) {
    let got = &result.got;
    let by = if got.policies.is_empty() { "default".to_string() } else { got.policies.join(", ") };
    if result.passed {
        println!("  ok    {}  [{}: {by}]", result.name, got.effect);
        return;
    }
    let want = match &result.expect_policies {
        Some(ids) => format!("{} by [{}]", result.expect, ids.join(", ")),
        None => result.expect.to_string(),
    };
    let reason = got.reason.as_deref().unwrap_or("");
    println!(
        "  FAIL  {}  ({}:{}): expected {want}, got {} by [{by}] {reason}",
        result.name,
        path.display(),
        result.line,
        got.effect
    );
}

fn print_coverage(policies: &LoadedPolicies, exercised: &BTreeSet<String>) {
    let ids = policies.ids_in_order();
    let missing: Vec<&str> = ids.iter().copied().filter(|id| !exercised.contains(*id)).collect();
    println!("coverage of {}: {} of {} policies exercised", policies.source, ids.len() - missing.len(), ids.len());
    for id in missing {
        if let Some(meta) = policies.meta.get(id) {
            println!("  not exercised: {id} ({}:{}:{})", meta.file, meta.line, meta.col);
        }
    }
}

fn replay_cmd(audit: &Path, decide: &DecideArgs, examples: usize, json: bool) -> anyhow::Result<ExitCode> {
    let draft = decide.load()?;
    let source = draft.source.clone();
    let authz = Authorizer::new(draft, DEFAULT_CACHE_SIZE);
    let report = replay(audit, &authz, examples)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_replay(audit, &source, &report);
    }
    Ok(if report.changed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn print_replay(audit: &Path, source: &str, report: &ReplayReport) {
    println!(
        "replayed {} decisions from {} against {source}: {} would change ({} other records skipped)",
        report.decisions,
        audit.display(),
        report.changed,
        report.skipped
    );
    for (action, transitions) in &report.transitions {
        println!("{action}");
        for (transition, count) in transitions {
            println!("  {transition:<28} {count:>8}");
        }
    }
    if !report.examples.is_empty() {
        println!("examples:");
    }
    for change in &report.examples {
        let by = if change.policies.is_empty() { "default".to_string() } else { change.policies.join(", ") };
        let reason = change.reason.as_deref().unwrap_or("");
        println!(
            "  seq {}  {}  {}  {} -> {}  [{by}] {reason}",
            change.seq, change.action, change.resource, change.from, change.to
        );
    }
}
