//! The RED table printed on stdout: one line per target, direction,
//! protocol and operation, with rate, errors, latency quantiles and the
//! status codes behind them.

use std::fmt::Write as _;

use crate::red::{Red, Row};

/// Widest operation shown; longer ones are cut with `…`.
const OPERATION_WIDTH: usize = 48;

fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(width - 1).collect();
        out.push('…');
        out
    }
}

fn statuses(row: &Row) -> String {
    let mut parts: Vec<String> =
        row.statuses.iter().take(4).map(|(c, n)| format!("{c}×{n}")).collect();
    if row.statuses.len() > 4 {
        parts.push("…".into());
    }
    parts.join(" ")
}

fn direction(role: &str) -> &'static str {
    if role == "client" {
        "out"
    } else {
        "in"
    }
}

/// The table, with a heading line.
pub fn render(red: &Red) -> String {
    let mut s = String::new();
    let step = red.step_ns as f64 / 1e9;
    let _ = writeln!(
        s,
        "RED over {:.1} s ({} step(s) of {} s): {} exchange(s) counted, {} not (no response seen, or status unknown)",
        red.seconds,
        red.steps,
        step,
        red.requests(),
        red.excluded
    );
    if red.rows.is_empty() {
        return s;
    }
    let ops: Vec<String> = red.rows.iter().map(|r| cut(&r.operation(), OPERATION_WIDTH)).collect();
    let targets: Vec<String> = red.rows.iter().map(|r| cut(&r.target, 32)).collect();
    let tw = targets.iter().map(|t| t.chars().count()).max().unwrap_or(0).max(6);
    let ow = ops.iter().map(|o| o.chars().count()).max().unwrap_or(0).max(9);
    let _ = writeln!(
        s,
        "\n  {:<tw$}  {:<3}  {:<8}  {:<ow$}  {:>9}  {:>8}  {:>7}  {:>6}  {:>8}  {:>8}  {:>8}  {:>8}  statuses",
        "target", "dir", "protocol", "operation", "requests", "rate/s", "errors", "err %", "p50 ms", "p90 ms",
        "p99 ms", "max ms"
    );
    for ((row, op), target) in red.rows.iter().zip(&ops).zip(&targets) {
        let _ = writeln!(
            s,
            "  {:<tw$}  {:<3}  {:<8}  {:<ow$}  {:>9}  {:>8.2}  {:>7}  {:>6.1}  {:>8.2}  {:>8.2}  {:>8.2}  {:>8.2}  {}",
            target,
            direction(&row.role),
            row.protocol,
            op,
            row.requests,
            row.rate,
            row.errors,
            row.error_ratio() * 100.0,
            row.p50_ms,
            row.p90_ms,
            row.p99_ms,
            row.max_ms,
            statuses(row)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_line_up_under_their_headings() {
        let row = Row {
            target: "web-1".into(),
            role: "server".into(),
            protocol: "http1".into(),
            method: Some("GET".into()),
            route: Some("/users/{id}".into()),
            requests: 40,
            rate: 4.0,
            errors: 2,
            p50_ms: 1.5,
            p90_ms: 3.0,
            p99_ms: 9.25,
            max_ms: 12.0,
            statuses: vec![("200".into(), 38), ("503".into(), 2)],
        };
        let red = Red {
            rows: vec![row],
            seconds: 10.0,
            steps: 1,
            step_ns: 10_000_000_000,
            total: 41,
            excluded: 1,
            ..Red::default()
        };
        let text = render(&red);
        assert!(
            text.starts_with("RED over 10.0 s (1 step(s) of 10 s): 40 exchange(s) counted, 1 not"),
            "{text}"
        );
        let lines: Vec<&str> = text.lines().collect();
        let head = lines[2];
        let line = lines[3];
        assert!(line.contains("GET /users/{id}") && line.contains("200×38 503×2"), "{line}");
        // Each number ends where its heading does.
        for (heading, value) in [("requests", "40"), ("err %", "5.0"), ("p99 ms", "9.25")] {
            let end = head.find(heading).unwrap() + heading.len();
            assert_eq!(&line[end - value.len()..end], value, "{heading}\n{head}\n{line}");
        }
    }
}
