//! `bridle ca export | rotate | path`: Bridle's certificate authority, the
//! one that signs the certificates guarded processes see for intercepted
//! hosts. Its directory is the config's `[tls] ca_dir`.
//!
//! Must never: print or log the private key; `export` prints the
//! certificate only.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use bridle_engine::config::Config;
use bridle_proxy::tls::ca::CERT_FILE;
use bridle_proxy::tls::{CertificateAuthority, TlsError};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum CaCmd {
    /// Print the CA certificate (PEM) to stdout, to trust it elsewhere
    /// (`bridle ca export > bridle-ca.pem`). Creates the CA if there is none
    /// yet, which needs root for the default directory.
    Export(CaArgs),
    /// Replace the CA with a new key and certificate. The previous pair is
    /// kept as ca.pem.old / ca.key.old; running Bridles keep using the old
    /// CA until restarted, and whatever trusted it must trust the new one.
    Rotate(CaArgs),
    /// Print the CA directory (the config's [tls] ca_dir).
    Path(CaArgs),
}

/// Options of every `bridle ca` command.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CaArgs {
    /// Project config. Default: ./bridle.toml if present.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl CaArgs {
    fn ca_dir(&self) -> anyhow::Result<PathBuf> {
        let config = Config::discover(self.config.as_deref())?.map(|(_, config)| config).unwrap_or_default();
        Ok(config.tls.ca_dir)
    }
}

pub fn run(cmd: CaCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        CaCmd::Export(args) => export(&args.ca_dir()?),
        CaCmd::Rotate(args) => rotate(&args.ca_dir()?),
        CaCmd::Path(args) => {
            println!("{}", args.ca_dir()?.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn export(dir: &Path) -> anyhow::Result<ExitCode> {
    let pem = match CertificateAuthority::load_or_create(dir) {
        Ok(ca) => ca.cert_pem().to_owned(),
        // Without root the key (0600) cannot be opened, but the certificate
        // is public: print it as long as it exists.
        Err(error) if denied(&error) && dir.join(CERT_FILE).exists() => CertificateAuthority::read_cert_pem(dir)?,
        Err(error) => return Err(explain(error, dir)),
    };
    io::stdout().write_all(pem.as_bytes()).context("writing the certificate to stdout")?;
    Ok(ExitCode::SUCCESS)
}

fn rotate(dir: &Path) -> anyhow::Result<ExitCode> {
    let ca = CertificateAuthority::rotate(dir).map_err(|error| explain(error, dir))?;
    println!(
        "rotated the CA in {}: new certificate {}; the previous pair is kept as ca.pem.old / ca.key.old",
        dir.display(),
        ca.name()
    );
    println!("trust the new certificate wherever the old one was trusted (bridle ca export); restart running Bridles");
    Ok(ExitCode::SUCCESS)
}

fn denied(error: &TlsError) -> bool {
    error.io_kind() == Some(io::ErrorKind::PermissionDenied)
}

/// Turns "permission denied" into what to do about it.
fn explain(error: TlsError, dir: &Path) -> anyhow::Error {
    if !denied(&error) {
        return error.into();
    }
    let hint = format!(
        "Bridle's CA in {} needs root to create or change: run this with sudo, or set [tls] ca_dir to a \
         directory you own",
        dir.display()
    );
    anyhow::Error::new(error).context(hint)
}
