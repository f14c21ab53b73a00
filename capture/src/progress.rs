//! The progress line on stderr (through tracing-indicatif, so log lines and the
//! bar do not overwrite each other) and the summary printed at the end.

use std::time::Duration;

use indicatif::ProgressStyle;
use tracing::Span;
use tracing_indicatif::span_ext::IndicatifSpanExt;

use crate::recorder::Stats;

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1536` → `1.5 KiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The live progress line; does nothing when quiet.
pub struct Progress {
    span: Option<Span>,
}

impl Progress {
    pub fn start(quiet: bool, duration: Option<Duration>) -> Self {
        if quiet {
            return Self { span: None };
        }
        let span = tracing::info_span!("capture");
        let template = match duration {
            Some(_) => "{spinner:.green} {elapsed_precise} [{bar:20.cyan/blue}] {msg}",
            None => "{spinner:.green} {elapsed_precise} {msg}",
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            span.pb_set_style(&style.progress_chars("=> "));
        }
        if let Some(d) = duration {
            span.pb_set_length(d.as_secs().max(1));
        }
        span.pb_start();
        Self { span: Some(span) }
    }

    pub fn update(&self, elapsed: Duration, targets: usize, stats: &Stats) {
        let Some(span) = &self.span else { return };
        span.pb_set_position(elapsed.as_secs());
        span.pb_set_message(&format!(
            "targets {targets}  events {}  bytes {}  lost {}",
            thousands(stats.events),
            bytes(stats.bytes_moved),
            thousands(stats.lost)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_counts_and_sizes() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(bytes(10), "10 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
    }
}
