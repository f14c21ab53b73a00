//! File-level key/value metadata of capture files (keys in
//! [`formats::schema::meta`]).

use std::time::{Duration, UNIX_EPOCH};

use formats::{
    schema::{meta, Redaction, FILE_KIND_CAPTURE, SCHEMA_VERSION},
    wire::{KernelError, KERNEL_ERROR_SLOTS},
};
use parquet::file::metadata::KeyValue;
use serde_json::json;

use crate::{cli::Config, targets::Process};

/// What is known about a capture when it starts.
#[derive(Clone, Debug)]
pub struct CaptureInfo {
    pub host: String,
    pub kernel: String,
    pub start_unix_ns: i64,
    pub options: serde_json::Value,
    pub targets_asked: serde_json::Value,
    /// The selected pods seen (`--ns`), with their containers; null without.
    pub pods: serde_json::Value,
    /// The programs of target processes looked at for uprobes, and what was
    /// attached to them.
    pub binaries: serde_json::Value,
}

impl CaptureInfo {
    pub fn new(config: &Config, start_unix_ns: i64) -> Self {
        let uname = nix::sys::utsname::uname().ok();
        let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
            uname.as_ref().map(|u| f(u).to_string_lossy().into_owned()).unwrap_or_default()
        };
        Self {
            host: field(|u| u.nodename()),
            kernel: field(|u| u.release()),
            start_unix_ns,
            options: json!({
                "duration_s": config.duration.map(|d| d.as_secs_f64()),
                "max_payload": config.max_payload,
                "ring_buffer_size": config.ring_buffer_size,
                "uprobes": config.uprobes,
                "grpc_go_version": config.grpc_go_version,
                "redact_headers": config.redaction.names(),
                "no_bodies": config.redaction.no_bodies,
            }),
            targets_asked: json!({
                "pids": config.targets.pids,
                "cgroups": config.targets.cgroups,
                "kubernetes": config.targets.pods.as_ref().map(|s| json!({
                    "namespace": s.namespace,
                    "pods": s.pods,
                    "selector": s.selector,
                    "containers": s.containers,
                    "node": s.node,
                })),
            }),
            pods: serde_json::Value::Null,
            binaries: serde_json::Value::Array(Vec::new()),
        }
    }
}

/// Counters known at the end (or so far).
#[derive(Clone, Debug, Default)]
pub struct Totals {
    pub lost_events: u64,
    /// Ring buffer records `capture` could not parse (a podtap bug if ever
    /// non-zero).
    pub malformed_records: u64,
    /// Header blocks from the Go probes that failed the checks and were dropped.
    pub rejected_header_blocks: u64,
    /// The kernel's counters, indexed by [`KernelError`].
    pub kernel_errors: [u64; KERNEL_ERROR_SLOTS as usize],
    /// What was masked before writing.
    pub redaction: Redaction,
}

/// RFC 3339 with nanoseconds, UTC.
pub fn rfc3339(unix_ns: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_nanos(unix_ns.max(0) as u64);
    humantime::format_rfc3339_nanos(t).to_string()
}

fn kernel_errors_json(counts: &[u64; KERNEL_ERROR_SLOTS as usize]) -> serde_json::Value {
    KernelError::ALL.iter().map(|e| (e.name().to_string(), json!(counts[*e as usize]))).collect()
}

fn kv(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue::new(key.to_string(), value.into())
}

/// Metadata of a segment written while the capture runs. `processes` are the
/// targets found since the previous segment (the complete file lists all).
pub fn segment(
    info: &CaptureInfo,
    number: u32,
    processes: &[Process],
    totals: &Totals,
) -> Vec<KeyValue> {
    let mut out = common(info, processes, totals);
    out.push(kv(meta::STATE, "segment"));
    out.push(kv(meta::SEGMENT, number.to_string()));
    out
}

/// Metadata of the finished capture file.
pub fn complete(
    info: &CaptureInfo,
    end_unix_ns: i64,
    processes: &[Process],
    totals: &Totals,
) -> Vec<KeyValue> {
    let mut out = common(info, processes, totals);
    out.push(kv(meta::STATE, "complete"));
    out.push(kv(meta::END, rfc3339(end_unix_ns)));
    out
}

fn common(info: &CaptureInfo, processes: &[Process], totals: &Totals) -> Vec<KeyValue> {
    let mut targets_json = info.targets_asked.clone();
    targets_json["processes"] = json!(processes);
    if !info.pods.is_null() {
        targets_json["pods"] = info.pods.clone();
    }
    vec![
        kv(meta::FILE_KIND, FILE_KIND_CAPTURE),
        kv(meta::SCHEMA_VERSION, SCHEMA_VERSION.to_string()),
        kv(meta::PODTAP_VERSION, env!("CARGO_PKG_VERSION")),
        kv(meta::HOST, info.host.clone()),
        kv(meta::KERNEL, info.kernel.clone()),
        kv(meta::START, rfc3339(info.start_unix_ns)),
        kv(meta::TARGETS, targets_json.to_string()),
        kv(meta::OPTIONS, info.options.to_string()),
        kv(meta::LOST_EVENTS, totals.lost_events.to_string()),
        kv(meta::KERNEL_ERRORS, kernel_errors_json(&totals.kernel_errors).to_string()),
        kv(meta::MALFORMED_RECORDS, totals.malformed_records.to_string()),
        kv(meta::REJECTED_HEADER_BLOCKS, totals.rejected_header_blocks.to_string()),
        kv(meta::BINARIES, info.binaries.to_string()),
        kv(meta::REDACTION, serde_json::to_string(&totals.redaction).unwrap_or_default()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_keeps_nanoseconds() {
        assert_eq!(rfc3339(1_700_000_000_123_456_789), "2023-11-14T22:13:20.123456789Z");
    }
}
