//! Command line: clap parses flags into [`Args`], [`Args::validate`] checks
//! them into a [`Config`].

use std::{path::PathBuf, time::Duration};

use analyze::metrics::Names;
use clap::Parser;

/// Decode the HTTP/1 and HTTP/2 (gRPC) exchanges of podtap capture files and
/// turn them into RED metrics, Prometheus series and an xlsx report.
///
/// FILE may be a capture file, the segment directory of a capture that did
/// not finish (run.parquet.d), a directory of captures, or a glob. Several are
/// analysed as one run. Needs neither root nor the eBPF toolchain.
#[derive(Debug, Parser)]
#[command(name = "analyze", version, about, long_about = None)]
#[command(after_help = "Exit codes: 0 ok, 1 analysis or an output failed (the other outputs are \
                        still written), 2 bad usage or unreadable input.")]
pub struct Args {
    /// Capture files, segment directories, directories or globs.
    #[arg(value_name = "FILE", required = true)]
    pub inputs: Vec<String>,

    /// Write every exchange to this Parquet file (SPEC §4 columns).
    #[arg(long, value_name = "PATH")]
    pub exchanges: Option<PathBuf>,

    /// Write the xlsx report (Summary, HTTP and gRPC sheets).
    #[arg(long, value_name = "PATH")]
    pub xlsx: Option<PathBuf>,

    /// Push the run's totals to a Pushgateway.
    #[arg(long)]
    pub push: bool,

    /// The Pushgateway for --push.
    #[arg(
        long,
        value_name = "URL",
        env = "PUSHGATEWAY_URL",
        default_value = "http://127.0.0.1:9091"
    )]
    pub pushgateway: String,

    /// Write timestamped series (OpenMetrics text) for
    /// `promtool tsdb create-blocks-from openmetrics`.
    #[arg(long, value_name = "PATH")]
    pub openmetrics: Option<PathBuf>,

    /// Send timestamped series to a Prometheus remote-write receiver
    /// (e.g. http://127.0.0.1:9090/api/v1/write).
    #[arg(long, value_name = "URL")]
    pub remote_write: Option<String>,

    /// Metric names: OpenTelemetry conventions, the original tool's, or both.
    #[arg(long, value_enum, value_name = "NAMES", default_value = "otel")]
    pub metric_names: Names,

    /// Time step of the series and of the report's requests-over-time chart
    /// (`10s`, `1m`).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub step: Duration,

    /// Response body bytes kept per exchange.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024)]
    pub body_bytes: usize,

    /// A header whose values are replaced by `[redacted]` in every output
    /// (repeatable; case-insensitive). `none` redacts nothing.
    #[arg(
        long,
        value_name = "NAME",
        default_values_t = analyze::exchange::DEFAULT_REDACTED.map(String::from),
    )]
    pub redact_header: Vec<String>,

    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

/// A checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub inputs: Vec<String>,
    pub exchanges: Option<PathBuf>,
    pub xlsx: Option<PathBuf>,
    /// The Pushgateway, when pushing.
    pub push: Option<String>,
    pub openmetrics: Option<PathBuf>,
    pub remote_write: Option<String>,
    pub names: Names,
    pub step_ns: i64,
    pub body_bytes: usize,
    /// Header names to redact, lowercase.
    pub redact: Vec<String>,
    pub quiet: bool,
}

/// A usage error (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn check_output(flag: &str, path: &Option<PathBuf>) -> Result<(), UsageError> {
    let Some(path) = path else { return Ok(()) };
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent.filter(|p| !p.is_dir()) {
        return Err(UsageError(format!("{flag}: directory `{}` does not exist", parent.display())));
    }
    if path.is_dir() {
        return Err(UsageError(format!("{flag}: `{}` is a directory", path.display())));
    }
    Ok(())
}

fn check_url(flag: &str, url: &str) -> Result<String, UsageError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            Ok(url.to_string())
        }
        Ok(_) => Err(UsageError(format!("{flag}: `{url}` is not an http(s) URL"))),
        Err(e) => Err(UsageError(format!("{flag}: `{url}` is not a URL ({e})"))),
    }
}

impl Args {
    pub fn validate(self) -> Result<Config, UsageError> {
        check_output("--exchanges", &self.exchanges)?;
        check_output("--xlsx", &self.xlsx)?;
        check_output("--openmetrics", &self.openmetrics)?;
        let push =
            if self.push { Some(check_url("--pushgateway", &self.pushgateway)?) } else { None };
        let remote_write =
            self.remote_write.as_deref().map(|u| check_url("--remote-write", u)).transpose()?;
        let step_ns = i64::try_from(self.step.as_nanos()).unwrap_or(i64::MAX);
        if step_ns < 1_000_000_000 {
            return Err(UsageError(format!(
                "--step must be at least 1s, got {}",
                humantime::format_duration(self.step)
            )));
        }
        Ok(Config {
            inputs: self.inputs,
            exchanges: self.exchanges,
            xlsx: self.xlsx,
            push,
            openmetrics: self.openmetrics,
            remote_write,
            names: self.metric_names,
            step_ns,
            body_bytes: self.body_bytes,
            redact: self
                .redact_header
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty() && h != "none")
                .collect(),
            quiet: self.quiet,
        })
    }
}
