//! `capture`: records the TCP traffic of chosen processes with eBPF into a
//! Parquet capture file (SPEC §2, §3).
//!
//! Exit codes: 0 ok, 1 the capture failed, 2 bad usage (flags or targets).

mod cli;
mod golang;
mod inspect;
mod instrument;
mod kernel;
mod output;
mod probes;
mod progress;
mod recorder;
mod session;
mod targets;
mod tls;
mod writer;

use std::process::ExitCode;

use clap::Parser;
use tracing_indicatif::IndicatifLayer;
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, EnvFilter};

use crate::{
    cli::{Args, Command},
    progress::{bytes, thousands},
    session::Summary,
    targets::{k8s::api::K8sError, local::TargetError},
};

fn init_tracing(quiet: bool) {
    // kube's client logs failed requests itself; podtap reports them once,
    // in its own words.
    let default = if quiet { "warn,kube_client=off" } else { "info,kube_client=off" };
    let filter = EnvFilter::try_from_env("PODTAP_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let indicatif = IndicatifLayer::new();
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(indicatif.get_stderr_writer())
                .with_target(false)
                .without_time(),
        )
        .with(indicatif)
        .init();
}

fn print_summary(s: &Summary) {
    let st = &s.stats;
    eprintln!(
        "captured {:.1}s: {} process(es), {} events, {} connection(s), {} moved ({} kept), {} lost",
        s.elapsed.as_secs_f64(),
        s.processes,
        thousands(st.events),
        thousands(st.connections),
        bytes(st.bytes_moved),
        bytes(st.bytes_kept),
        thousands(st.lost),
    );
    if st.h2_headers > 0 {
        eprintln!("gRPC header blocks read by uprobes: {}", thousands(st.h2_headers));
    }
    if st.h2_rejected > 0 {
        eprintln!(
            "gRPC header blocks dropped by the checks on what the probes read: {}",
            thousands(st.h2_rejected)
        );
    }
    if !s.kernel_errors.is_empty() {
        let list: Vec<String> = s.kernel_errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
        eprintln!("not fully recorded: {}", list.join(", "));
    }
    if st.malformed > 0 {
        eprintln!("malformed ring buffer records dropped: {}", thousands(st.malformed));
    }
    eprintln!("wrote {} ({})", s.output.display(), bytes(s.size));
}

fn main() -> ExitCode {
    let args = Args::parse();
    let quiet = args.quiet;
    init_tracing(quiet);
    let config = match args.validate() {
        Ok(Command::Capture(config)) => *config,
        Ok(Command::Inspect { files, grpc_go_version }) => {
            return if inspect::run(&files, grpc_go_version) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let signals = session::Signals::watch()?;
        session::run(config, signals).await
    });
    match result {
        Ok(summary) => {
            if !quiet {
                print_summary(&summary);
            }
            match &summary.stopped_early {
                Some(e) => {
                    eprintln!(
                        "error: capture stopped early: {e:#}; {} holds what was recorded until then",
                        summary.output.display()
                    );
                    ExitCode::from(1)
                }
                None => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            // A target that does not exist is a usage error.
            let missing = |c: &(dyn std::error::Error + 'static)| {
                c.downcast_ref::<TargetError>().is_some()
                    || c.downcast_ref::<K8sError>().is_some_and(K8sError::is_missing_target)
            };
            if e.chain().any(missing) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
