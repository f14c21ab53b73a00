//! `analyze`: decodes exchanges from podtap captures (SPEC §4), computes RED
//! and writes the outputs asked for (SPEC §5–6).
//!
//! Exit codes: 0 ok, 1 the analysis or an output failed (the other outputs
//! are still written), 2 bad usage or unreadable input.

mod cli;

use std::{path::PathBuf, process::ExitCode};

use analyze::{
    engine::{self, Context},
    exchange::Exchange,
    input::{self, InputError},
    metrics::{self, openmetrics, push, remote_write},
    output::{table, xlsx, ExchangeWriter},
    red,
    route::Routes,
    stats::Stats,
};
use anyhow::{Context as _, Result};
use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::{Args, Config};

fn main() -> ExitCode {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).without_time().init();
    let config = match Args::parse().validate() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&config) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.chain().any(|c| c.downcast_ref::<InputError>().is_some()) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn progress(config: &Config, rows: u64) -> ProgressBar {
    if config.quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(rows), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner:.green} {elapsed_precise} [{bar:30.cyan/blue}] {human_pos}/{human_len} rows {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Where the exchanges go: the file asked for, or a temporary one that RED
/// and the report read (next to the report, where there is room for it).
fn exchange_file(config: &Config) -> Result<(PathBuf, Option<tempfile::TempPath>)> {
    if let Some(path) = &config.exchanges {
        return Ok((path.clone(), None));
    }
    let dir = config
        .xlsx
        .as_deref()
        .and_then(|p| p.parent())
        .filter(|p| !p.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let temp = tempfile::Builder::new()
        .prefix(".podtap-exchanges-")
        .suffix(".parquet")
        .tempfile_in(&dir)
        .with_context(|| {
            format!("failed to create a temporary exchange file in `{}`", dir.display())
        })?
        .into_temp_path();
    Ok((temp.to_path_buf(), Some(temp)))
}

/// Runs the analysis; returns how many outputs failed.
fn run(config: &Config) -> Result<usize> {
    let captures = input::discover(&config.inputs)?;
    let total_rows: u64 = captures.iter().map(|c| c.rows).sum();
    let bar = progress(config, total_rows);
    let (path, _temp) = exchange_file(config)?;
    let mut writer = ExchangeWriter::create(&path)?;
    // Headers and bodies only matter to the report and to a user's own
    // exchange file.
    writer.keep_details(config.exchanges.is_some() || config.xlsx.is_some());
    let mut write_error = None;
    let mut routes = Routes::default();
    let mut stats = Stats::default();
    for capture in &captures {
        bar.set_message(capture.name.clone());
        // What capture masked is shown as redacted too, whatever analyze's
        // own list says.
        let mut redact = config.redact.clone();
        for name in capture.redaction().map(|r| r.headers).unwrap_or_default() {
            if !redact.contains(&name) {
                redact.push(name);
            }
        }
        let mut sink = |mut x: Exchange| {
            x.route = routes.route(&x);
            x.redact(&redact);
            if write_error.is_none() {
                if let Err(e) = writer.push(&x) {
                    write_error = Some(e);
                }
            }
        };
        let context = Context::of(capture, config.body_bytes);
        stats.merge(engine::decode(capture, context, &mut sink, &mut |n| bar.inc(n))?);
    }
    bar.finish_and_clear();
    if let Some(e) = write_error {
        return Err(e);
    }
    writer.close().context("failed to write the exchange file")?;

    let red = red::compute(&path, stats.exchanges, stats.span.unwrap_or_default(), config.step_ns)?;
    print!("{}", stats.summary());
    if routes.capped > 0 {
        println!(
            "  {} exchange(s) counted under route `{}` (more than {} routes per target)",
            routes.capped,
            analyze::route::OTHER,
            analyze::route::MAX_ROUTES
        );
    }
    println!();
    print!("{}", table::render(&red));

    let mut failed = 0;
    let mut fail = |e: anyhow::Error| {
        eprintln!("error: {e:#}");
        failed += 1;
    };
    if let Some(report) = &config.xlsx {
        let facts = xlsx::Facts {
            captures: captures.iter().map(|c| c.name.clone()).collect(),
            hosts: hosts(&captures),
            stats: stats.clone(),
        };
        match xlsx::write(report, &path, &red, &facts) {
            Ok(w) => {
                eprintln!(
                    "wrote {} ({} HTTP rows, {} gRPC rows)",
                    report.display(),
                    w.http_rows,
                    w.grpc_rows
                );
                if w.http_left_out + w.grpc_left_out > 0 {
                    eprintln!(
                        "warning: {} row(s) did not fit in the report (Excel's row limit); every exchange is in the exchange file",
                        w.http_left_out + w.grpc_left_out
                    );
                }
            }
            Err(e) => fail(e.context(format!("failed to write the report `{}`", report.display()))),
        }
    }
    if config.openmetrics.is_none() && config.remote_write.is_none() && config.push.is_none() {
        return Ok(failed);
    }
    let families = metrics::build(&red, &stats, config.names);
    if let Some(out) = &config.openmetrics {
        match openmetrics::write(out, &families) {
            Ok(n) => eprintln!("wrote {} ({n} samples)", out.display()),
            Err(e) => {
                fail(anyhow::Error::new(e).context(format!("failed to write `{}`", out.display())))
            }
        }
    }
    if let Some(url) = &config.remote_write {
        match remote_write::send(url, &families) {
            Ok(w) => eprintln!("remote-wrote {} series, {} samples to {url}", w.series, w.samples),
            Err(e) => fail(e.into()),
        }
    }
    if let Some(url) = &config.push {
        match push::push(url, &families) {
            Ok(p) => eprintln!("pushed {} series in {} group(s) to {url}", p.series, p.groups),
            Err(e) => fail(e.into()),
        }
    }
    Ok(failed)
}

fn hosts(captures: &[input::Capture]) -> Vec<String> {
    let mut hosts: Vec<String> =
        captures.iter().filter_map(|c| c.host().map(str::to_string)).collect();
    hosts.sort();
    hosts.dedup();
    hosts
}
