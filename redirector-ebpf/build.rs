//! Compiles the eBPF programs (C, clang `-target bpf`) into `OUT_DIR` and
//! measures the layout of every struct in `bridle.h` with the host C compiler
//! (`OUT_DIR/layout.txt`) so `abi.rs` can prove its mirror still matches.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

const INSTALL: &str = "apt-get install clang libbpf-dev linux-libc-dev";
const PROGRAMS: &[&str] = &["redirect"];

fn main() -> Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let bpf_dir = manifest.join("src/bpf");
    println!("cargo:rerun-if-changed=src/bpf");
    println!("cargo:rerun-if-env-changed=BRIDLE_CLANG");

    check_headers()?;
    let (target_arch, multiarch) = arch()?;
    let clang = env::var("BRIDLE_CLANG").unwrap_or_else(|_| "clang".to_owned());
    for name in PROGRAMS {
        let src = bpf_dir.join(format!("{name}.bpf.c"));
        let obj = out.join(format!("{name}.bpf.o"));
        compile_bpf(&clang, &src, &obj, &bpf_dir, target_arch, multiarch)?;
    }
    layout_probe(&bpf_dir, &out)
}

/// The BPF headers come from Debian packages; say which when they are absent.
fn check_headers() -> Result<()> {
    for header in ["/usr/include/bpf/bpf_helpers.h", "/usr/include/linux/bpf.h"] {
        if !Path::new(header).exists() {
            bail!("{header} not found: the eBPF programs need it; run `{INSTALL}`");
        }
    }
    Ok(())
}

/// `-D__TARGET_ARCH_*` value and the Debian multiarch include dir (where
/// `asm/types.h` lives; clang -target bpf does not search it by itself).
fn arch() -> Result<(&'static str, &'static str)> {
    match env::var("CARGO_CFG_TARGET_ARCH")?.as_str() {
        "x86_64" => Ok(("x86", "x86_64-linux-gnu")),
        "aarch64" => Ok(("arm64", "aarch64-linux-gnu")),
        other => bail!("redirector-ebpf: unsupported target arch {other}"),
    }
}

fn compile_bpf(clang: &str, src: &Path, obj: &Path, include: &Path, target_arch: &str, multiarch: &str) -> Result<()> {
    let output = Command::new(clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-D__TARGET_ARCH_{target_arch}"))
        .arg(format!("-I{}", include.display()))
        .arg(format!("-I/usr/include/{multiarch}"))
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(obj)
        .output()
        .with_context(|| format!("run `{clang}` to build {}: is clang installed? run `{INSTALL}`", src.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("file not found") {
            format!(" (a header is missing: run `{INSTALL}`)")
        } else {
            String::new()
        };
        bail!("clang failed on {}{hint}:\n{stderr}", src.display());
    }
    Ok(())
}

/// Compile and run a tiny host C program that prints the size, alignment and
/// field offsets of every struct in bridle.h.
fn layout_probe(bpf_dir: &Path, out: &Path) -> Result<()> {
    let probe_src = bpf_dir.join("layout_probe.c");
    let probe_bin = out.join("layout_probe");
    let cc = env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let status = Command::new(&cc)
        .arg(format!("-I{}", bpf_dir.display()))
        .arg(&probe_src)
        .arg("-o")
        .arg(&probe_bin)
        .status()
        .with_context(|| format!("run host compiler `{cc}` on {}", probe_src.display()))?;
    if !status.success() {
        bail!("host compiler `{cc}` failed on {}", probe_src.display());
    }
    let output = Command::new(&probe_bin).output().with_context(|| format!("run {}", probe_bin.display()))?;
    if !output.status.success() {
        bail!("{} failed", probe_bin.display());
    }
    std::fs::write(out.join("layout.txt"), output.stdout).context("write layout.txt")?;
    Ok(())
}
