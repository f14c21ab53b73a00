//! `analyze`: decodes exchanges from podtap captures (SPEC §4).
//!
//! Exit codes: 0 ok, 1 the analysis failed, 2 bad usage or unreadable input.

mod cli;

use std::process::ExitCode;

use analyze::{
    engine::Engine,
    input::{self, InputError},
    output::ExchangeWriter,
    rows,
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
        Ok(stats) => {
            print!("{}", stats.summary());
            ExitCode::SUCCESS
        }
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
    if let Ok(style) = ProgressStyle::with_template("{spinner:.green} {elapsed_precise} [{bar:30.cyan/blue}] {human_pos}/{human_len} rows {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn run(config: &Config) -> Result<Stats> {
    let captures = input::discover(&config.inputs)?;
    let total_rows: u64 = captures.iter().map(|c| c.rows).sum();
    let bar = progress(config, total_rows);
    let mut writer = config.exchanges.as_deref().map(ExchangeWriter::create).transpose()?;
    let mut write_error = None;
    let mut stats = Stats::default();
    for capture in &captures {
        bar.set_message(capture.name.clone());
        let mut sink = |x: analyze::exchange::Exchange| {
            if let (Some(w), None) = (writer.as_mut(), write_error.as_ref()) {
                if let Err(e) = w.push(&x) {
                    write_error = Some(e);
                }
            }
        };
        let mut engine = Engine::new(&mut sink, config.body_bytes);
        for part in &capture.parts {
            for batch in input::batches(part)? {
                let batch = batch?;
                rows::for_each(&batch, |row| engine.row(row));
                bar.inc(batch.num_rows() as u64);
            }
        }
        let mut capture_stats = engine.finish();
        if capture_stats.lost_events == 0 {
            capture_stats.lost_events = capture.lost_events().unwrap_or(0);
        }
        stats.merge(capture_stats);
    }
    bar.finish_and_clear();
    if let Some(e) = write_error {
        return Err(e);
    }
    if let Some(writer) = writer {
        writer.close().context("failed to write the exchange file")?;
    }
    Ok(stats)
}
