//! What a run decoded, and how much of it: the summary on stdout.

use std::{collections::BTreeMap, fmt::Write as _};

use formats::schema::Redaction;
use indicatif::BinaryBytes;

use crate::{exchange::Exchange, protocol::http2::uprobe};

/// Events the kernel could not hand over, on one machine, in one second.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    pub host: Option<String>,
    pub ts: i64,
    pub events: u64,
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Counters of one or more captures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub rows: u64,
    pub data_rows: u64,
    /// Timestamps (ns) of the first and last rows.
    pub first_ts: Option<i64>,
    pub last_ts: Option<i64>,
    /// The time the captures covered (ns): from the earliest start to the
    /// latest end, from their metadata (or their rows).
    pub span: Option<(i64, i64)>,
    /// Bytes the targets' syscalls moved.
    pub bytes: u64,
    pub lost_events: u64,
    /// Where and when events were lost.
    pub lost: Vec<Lost>,
    pub connections: u64,
    pub http1_connections: u64,
    pub http2_connections: u64,
    pub unknown_connections: u64,
    /// Connections that carried no bytes.
    pub empty_connections: u64,
    pub upgrades: u64,
    /// Bytes of streams never seen (lost events, cut payloads, untraced syscalls).
    pub gap_bytes: u64,
    /// Bytes seen but skipped by a parser to find its footing again.
    pub skipped_bytes: u64,
    /// Bytes of connections that are not HTTP.
    pub undecoded_bytes: u64,
    /// Bytes that arrived twice.
    pub overlap_bytes: u64,
    pub bad_header_blocks: u64,
    /// Header fields that referred to HPACK state from before the capture.
    pub hpack_unknown_fields: u64,
    /// Header blocks from the Go gRPC uprobes, and how they merged.
    pub uprobe: uprobe::Counts,
    /// What capture masked before writing, summed over the captures that
    /// say; the names are every capture's, once each.
    pub redaction: Option<Redaction>,
    /// Connections whose bytes are TLS records.
    pub tls_connections: u64,
    /// Bytes of TLS connections, not decoded (their plaintext is, when the
    /// uprobes read it).
    pub encrypted_bytes: u64,
    /// TLS connections whose plaintext the uprobes read (`tls_data` rows).
    pub tls_plaintext_connections: u64,
    pub tls_rows: u64,
    /// Plaintext bytes the TLS library moved.
    pub tls_bytes: u64,
    /// Plaintext bytes of rows without a connection (no syscall of theirs seen).
    pub tls_unplaced_bytes: u64,
    pub exchanges: u64,
    pub complete: u64,
    /// Exchanges by (protocol, status) — gRPC by grpc-status.
    pub by_status: BTreeMap<(String, String), u64>,
    /// Why exchanges are incomplete, counts by reason.
    pub issues: BTreeMap<String, u64>,
}

impl Stats {
    pub fn add_exchange(&mut self, x: &Exchange) {
        self.exchanges += 1;
        if x.complete() {
            self.complete += 1;
        }
        let status = match (x.protocol, x.grpc_status, x.status) {
            ("grpc", Some(code), _) => format!("grpc-status {code}"),
            (_, _, Some(status)) => status.to_string(),
            _ => "unknown".to_string(),
        };
        *self.by_status.entry((x.protocol.to_string(), status)).or_default() += 1;
        for issue in &x.issues {
            // Counts inside a reason ("3 header fields…") would split it.
            let reason: String =
                issue.chars().map(|c| if c.is_ascii_digit() { 'N' } else { c }).collect();
            *self.issues.entry(reason).or_default() += 1;
        }
    }

    /// Widens the covered time to include `start..end`.
    pub fn note_span(&mut self, start: Option<i64>, end: Option<i64>) {
        let (Some(start), Some(end)) = (start, end) else { return };
        let end = end.max(start);
        self.span = Some(match self.span {
            Some((s, e)) => (s.min(start), e.max(end)),
            None => (start, end),
        });
    }

    /// Seconds the captures covered (at least a millisecond, for rates).
    pub fn seconds(&self) -> f64 {
        self.span.map_or(0.0, |(s, e)| (e - s) as f64 / 1e9).max(1e-3)
    }

    /// Adds another capture's counters.
    pub fn merge(&mut self, other: Stats) {
        self.rows += other.rows;
        self.first_ts = min_opt(self.first_ts, other.first_ts);
        self.last_ts = self.last_ts.max(other.last_ts);
        if let Some((s, e)) = other.span {
            self.note_span(Some(s), Some(e));
        }
        self.data_rows += other.data_rows;
        self.bytes += other.bytes;
        self.lost_events += other.lost_events;
        self.lost.extend(other.lost);
        self.connections += other.connections;
        self.http1_connections += other.http1_connections;
        self.http2_connections += other.http2_connections;
        self.unknown_connections += other.unknown_connections;
        self.empty_connections += other.empty_connections;
        self.upgrades += other.upgrades;
        self.gap_bytes += other.gap_bytes;
        self.skipped_bytes += other.skipped_bytes;
        self.undecoded_bytes += other.undecoded_bytes;
        self.overlap_bytes += other.overlap_bytes;
        self.bad_header_blocks += other.bad_header_blocks;
        self.hpack_unknown_fields += other.hpack_unknown_fields;
        self.uprobe.add(&other.uprobe);
        if let Some(theirs) = other.redaction {
            let ours = self.redaction.get_or_insert_with(Redaction::default);
            for name in theirs.headers {
                if !ours.headers.contains(&name) {
                    ours.headers.push(name);
                }
            }
            ours.no_bodies |= theirs.no_bodies;
            ours.masked_values += theirs.masked_values;
            ours.uncertain += theirs.uncertain;
            ours.uncertain_bytes += theirs.uncertain_bytes;
            ours.body_bytes_dropped += theirs.body_bytes_dropped;
        }
        self.tls_connections += other.tls_connections;
        self.encrypted_bytes += other.encrypted_bytes;
        self.tls_plaintext_connections += other.tls_plaintext_connections;
        self.tls_rows += other.tls_rows;
        self.tls_bytes += other.tls_bytes;
        self.tls_unplaced_bytes += other.tls_unplaced_bytes;
        self.exchanges += other.exchanges;
        self.complete += other.complete;
        for (k, v) in other.by_status {
            *self.by_status.entry(k).or_default() += v;
        }
        for (k, v) in other.issues {
            *self.issues.entry(k).or_default() += v;
        }
    }

    /// The human summary printed on stdout.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "{} exchange(s) on {} connection(s): {} HTTP/1, {} HTTP/2, {} not HTTP, {} without data",
            self.exchanges,
            self.connections,
            self.http1_connections,
            self.http2_connections,
            self.unknown_connections,
            self.empty_connections
        );
        if self.tls_connections > 0 {
            let _ = write!(s, ", {} TLS", self.tls_connections);
        }
        let _ = writeln!(s);
        if !self.by_status.is_empty() {
            let _ = writeln!(s, "\n  {:<8} {:<16} {:>10}", "protocol", "status", "exchanges");
            for ((protocol, status), n) in &self.by_status {
                let _ = writeln!(s, "  {protocol:<8} {status:<16} {n:>10}");
            }
        }
        let _ = writeln!(s, "\ndecode coverage");
        let pct = |n: u64, of: u64| if of == 0 { 100.0 } else { n as f64 * 100.0 / of as f64 };
        let _ = writeln!(
            s,
            "  complete exchanges     {} of {} ({:.1}%)",
            self.complete,
            self.exchanges,
            pct(self.complete, self.exchanges)
        );
        let _ =
            writeln!(s, "  bytes moved            {} ({})", self.bytes, BinaryBytes(self.bytes));
        let _ = writeln!(
            s,
            "  bytes never seen       {} ({}; lost events, cut payloads, untraced syscalls)",
            self.gap_bytes,
            BinaryBytes(self.gap_bytes)
        );
        let _ = writeln!(
            s,
            "  bytes skipped          {} ({}; to find message or frame boundaries again)",
            self.skipped_bytes,
            BinaryBytes(self.skipped_bytes)
        );
        if self.tls_connections > 0 || self.tls_rows > 0 {
            let _ = writeln!(
                s,
                "  TLS                    {} connection(s), {} decoded from plaintext the uprobes read ({}); {} encrypted, not decoded",
                self.tls_connections,
                self.tls_plaintext_connections,
                BinaryBytes(self.tls_bytes),
                BinaryBytes(self.encrypted_bytes),
            );
        }
        if self.tls_unplaced_bytes > 0 {
            let _ = writeln!(
                s,
                "  TLS plaintext          {} ({}) without a connection (no syscall of theirs seen)",
                self.tls_unplaced_bytes,
                BinaryBytes(self.tls_unplaced_bytes)
            );
        }
        if self.undecoded_bytes > 0 {
            let _ = writeln!(
                s,
                "  bytes not HTTP         {} ({})",
                self.undecoded_bytes,
                BinaryBytes(self.undecoded_bytes)
            );
        }
        if self.overlap_bytes > 0 {
            let _ = writeln!(s, "  bytes seen twice       {} (dropped)", self.overlap_bytes);
        }
        if self.lost_events > 0 {
            let _ = writeln!(s, "  events lost in kernel  {}", self.lost_events);
        }
        if self.hpack_unknown_fields > 0 || self.bad_header_blocks > 0 {
            let _ = writeln!(
                s,
                "  HPACK                  {} field(s) from before the capture, {} block(s) undecodable",
                self.hpack_unknown_fields, self.bad_header_blocks
            );
        }
        let u = &self.uprobe;
        if u.blocks > 0 {
            let _ = writeln!(
                s,
                "  gRPC uprobe headers    {} block(s): {} filled what the wire lacked, {} confirmed it, {} without a decoded stream",
                u.blocks, u.filled, u.agreed, u.unmatched
            );
        }
        if u.rejected > 0 {
            let _ = writeln!(
                s,
                "  rejected header blocks {} block(s) the Go probes read were dropped by capture's checks (never a wrong header)",
                u.rejected
            );
        }
        if u.disagreed > 0 {
            let _ = writeln!(
                s,
                "  header disagreements   {} block(s) differ between the wire and the uprobes (a podtap bug: please report it)",
                u.disagreed
            );
        }
        if let Some(r) = &self.redaction {
            let names = if r.headers.is_empty() {
                "nothing (--no-redact)".to_string()
            } else {
                r.headers.join(", ")
            };
            let _ = writeln!(
                s,
                "  redacted by capture    values of {names}: {} masked in place",
                r.masked_values
            );
            if r.uncertain > 0 {
                let _ = writeln!(
                    s,
                    "                         {} more time(s), {} byte(s) masked where capture could not place them",
                    r.uncertain, r.uncertain_bytes
                );
            }
            if r.no_bodies {
                let _ = writeln!(
                    s,
                    "  bodies not kept        {} byte(s) (--no-bodies): lengths only",
                    r.body_bytes_dropped
                );
            }
        }
        if !self.issues.is_empty() {
            let _ = writeln!(s, "\nincomplete exchanges, by reason");
            let mut issues: Vec<_> = self.issues.iter().collect();
            issues.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (reason, n) in issues {
                let _ = writeln!(s, "  {n:>8}  {reason}");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_what_capture_redacted() {
        let mut stats = Stats::default();
        assert!(!stats.summary().contains("redacted by capture"));
        let other = Stats {
            redaction: Some(Redaction {
                headers: vec!["authorization".into(), "x-api-key".into()],
                masked_values: 4,
                uncertain: 1,
                uncertain_bytes: 17,
                ..Redaction::default()
            }),
            ..Stats::default()
        };
        stats.merge(other);
        let summary = stats.summary();
        assert!(
            summary.contains("redacted by capture    values of authorization, x-api-key: 4 masked"),
            "{summary}"
        );
        assert!(summary.contains("1 more time(s), 17 byte(s) masked"), "{summary}");
    }

    #[test]
    fn the_summary_names_header_blocks_capture_rejected() {
        let mut stats = Stats::default();
        assert!(!stats.summary().contains("rejected header blocks"));
        stats.uprobe.rejected = 3;
        assert!(
            stats.summary().contains("rejected header blocks 3 block(s)"),
            "{}",
            stats.summary()
        );
    }
}
