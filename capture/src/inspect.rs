//! `capture --inspect`: what a capture would do with executables, without
//! capturing. For each file, one JSON line on stdout: whether it is a Go
//! program with grpc-go, its Go and grpc-go versions, where the header
//! probes would go and the struct offsets and argument registers they would
//! read (and whether those came from the binary's DWARF or from podtap's
//! table), or why it would not be probed; and how long the look took. This
//! is the same inspection a capture makes of every program a target runs
//! (see `golang`), so a user can ask before a capture, and the offset
//! table's generator (`scripts/peers/grpc/gen-offsets.py`) reads DWARF
//! through it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::golang::{self, GoBinary, InspectOptions, Inspection};

/// One line of `--inspect`'s output.
#[derive(Debug, Serialize)]
struct Line<'a> {
    path: &'a Path,
    /// `grpc_headers` (the probes would be attached), `not_go`, `no_grpc`,
    /// `unsupported`, or `error` (the file could not be read or parsed).
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    go_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    go: Option<GoBinary>,
    /// Reading and inspecting the file, in milliseconds.
    inspect_ms: f64,
}

/// Inspects `files` and prints a line for each; false if one could not be
/// read or parsed.
pub fn run(files: &[PathBuf], grpc_go_version: Option<String>) -> bool {
    let options = InspectOptions { fallback_grpc_version: grpc_go_version };
    let mut all_read = true;
    for path in files {
        let started = Instant::now();
        let result = golang::read_file(path).and_then(|d| golang::inspect_bytes(&d, &options));
        let inspect_ms = started.elapsed().as_secs_f64() * 1e3;
        let mut line = Line {
            path,
            outcome: "error",
            reason: None,
            go_version: None,
            grpc_version: None,
            go: None,
            inspect_ms,
        };
        match result {
            Err(e) => {
                all_read = false;
                line.reason = Some(e.to_string());
            }
            Ok(Inspection::NotGo) => line.outcome = "not_go",
            Ok(Inspection::NoGrpc { go_version }) => {
                line.outcome = "no_grpc";
                line.go_version = Some(go_version);
            }
            Ok(Inspection::Unsupported { go_version, grpc_version, reason }) => {
                line.outcome = "unsupported";
                (line.go_version, line.grpc_version) = (go_version, grpc_version);
                line.reason = Some(reason);
            }
            Ok(Inspection::Instrumentable(binary)) => {
                line.outcome = "grpc_headers";
                line.go_version = Some(binary.go_version.clone());
                line.grpc_version = binary.grpc_version.clone();
                line.go = Some(binary);
            }
        }
        match serde_json::to_string(&line) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                all_read = false;
            }
        }
    }
    all_read
}
