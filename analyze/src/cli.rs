//! Command line: clap parses flags into [`Args`], [`Args::validate`] checks
//! them into a [`Config`].

use std::path::PathBuf;

use clap::Parser;

/// Decode the HTTP/1 and HTTP/2 (gRPC) exchanges of podtap capture files.
///
/// FILE may be a capture file, the segment directory of a capture that did
/// not finish (run.parquet.d), a directory of captures, or a glob. Several are
/// analysed as one run. Needs neither root nor the eBPF toolchain.
#[derive(Debug, Parser)]
#[command(name = "analyze", version, about, long_about = None)]
#[command(after_help = "Exit codes: 0 ok, 1 analysis failed, 2 bad usage or unreadable input.")]
pub struct Args {
    /// Capture files, segment directories, directories or globs.
    #[arg(value_name = "FILE", required = true)]
    pub inputs: Vec<String>,

    /// Write every exchange to this Parquet file (SPEC §4 columns).
    #[arg(long, value_name = "PATH")]
    pub exchanges: Option<PathBuf>,

    /// Response body bytes kept per exchange.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024)]
    pub body_bytes: usize,

    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

/// A checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub inputs: Vec<String>,
    pub exchanges: Option<PathBuf>,
    pub body_bytes: usize,
    pub quiet: bool,
}

/// A usage error (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl Args {
    pub fn validate(self) -> Result<Config, UsageError> {
        if let Some(path) = &self.exchanges {
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
            if parent.is_some_and(|p| !p.is_dir()) {
                return Err(UsageError(format!(
                    "--exchanges: directory `{}` does not exist",
                    parent.unwrap_or(path).display()
                )));
            }
        }
        Ok(Config {
            inputs: self.inputs,
            exchanges: self.exchanges,
            body_bytes: self.body_bytes,
            quiet: self.quiet,
        })
    }
}
