//! `--openmetrics PATH`: every series with one point per step, timestamped
//! at the capture's own time, in the OpenMetrics text format that
//! `promtool tsdb create-blocks-from openmetrics PATH DIR` turns into
//! Prometheus blocks (history at the right time, however old the capture).
//!
//! What promtool needs: timestamps in seconds, a family's lines together,
//! each series' points in time order, and a final `# EOF`.

use std::{
    io::{self, BufWriter, Write},
    path::Path,
};

use super::{escape, number, Family, Kind, Labels, Value};

/// Writes `families` to `path` (mode 0600); returns the samples written.
pub fn write(path: &Path, families: &[Family]) -> io::Result<u64> {
    let file = crate::output::create_private(path)?;
    let mut out = BufWriter::new(file);
    let samples = write_to(&mut out, families)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(samples)
}

pub fn write_to(out: &mut impl Write, families: &[Family]) -> io::Result<u64> {
    let mut samples = 0;
    for family in families {
        // OpenMetrics names a counter family without its `_total`.
        let name = match family.kind {
            Kind::Counter => family.name.strip_suffix("_total").unwrap_or(&family.name),
            _ => &family.name,
        };
        let kind = match family.kind {
            Kind::Histogram => "histogram",
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        writeln!(out, "# TYPE {name} {kind}")?;
        writeln!(out, "# HELP {name} {}", family.help.replace('\\', "\\\\").replace('\n', "\\n"))?;
        for series in &family.series {
            let labels = series.full_labels();
            for point in &series.points {
                let ts = seconds(point.ts_ms);
                match &point.value {
                    Value::Histogram { buckets, count, sum } => {
                        for (le, n) in buckets {
                            line(
                                out,
                                &format!("{name}_bucket"),
                                &labels,
                                Some(&number(*le)),
                                *n as f64,
                                &ts,
                            )?;
                        }
                        line(
                            out,
                            &format!("{name}_bucket"),
                            &labels,
                            Some("+Inf"),
                            *count as f64,
                            &ts,
                        )?;
                        line(out, &format!("{name}_count"), &labels, None, *count as f64, &ts)?;
                        line(out, &format!("{name}_sum"), &labels, None, *sum, &ts)?;
                        samples += buckets.len() as u64 + 3;
                    }
                    Value::Scalar(v) => {
                        let sample = match family.kind {
                            Kind::Counter => format!("{name}_total"),
                            _ => name.to_string(),
                        };
                        line(out, &sample, &labels, None, *v, &ts)?;
                        samples += 1;
                    }
                }
            }
        }
    }
    writeln!(out, "# EOF")?;
    Ok(samples)
}

fn seconds(ts_ms: i64) -> String {
    format!("{}.{:03}", ts_ms.div_euclid(1000), ts_ms.rem_euclid(1000))
}

fn line(
    out: &mut impl Write,
    name: &str,
    labels: &Labels,
    le: Option<&str>,
    value: f64,
    ts: &str,
) -> io::Result<()> {
    write!(out, "{name}{{")?;
    let mut first = true;
    for (k, v) in
        labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain(le.map(|le| ("le", le)))
    {
        if !first {
            out.write_all(b",")?;
        }
        first = false;
        write!(out, "{k}=\"{}\"", escape(v))?;
    }
    writeln!(out, "}} {} {ts}", number(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Group, Point, Series};

    #[test]
    fn histograms_and_counters_in_openmetrics_text() {
        let group = Group { job: "podtap".into(), labels: vec![("instance".into(), "vm".into())] };
        let families = vec![
            Family {
                name: "rpc_server_duration_seconds".into(),
                help: "h".into(),
                kind: Kind::Histogram,
                series: vec![Series {
                    group: group.clone(),
                    labels: vec![("rpc_method".into(), "Say\"Hi\"".into())],
                    points: vec![Point {
                        ts_ms: 1_700_000_000_250,
                        value: Value::Histogram { buckets: vec![(0.005, 1)], count: 2, sum: 0.5 },
                    }],
                }],
            },
            Family {
                name: "podtap_capture_events_lost_total".into(),
                help: "lost".into(),
                kind: Kind::Counter,
                series: vec![Series {
                    group,
                    labels: vec![],
                    points: vec![Point { ts_ms: 1_700_000_010_000, value: Value::Scalar(3.0) }],
                }],
            },
        ];
        let mut out = Vec::new();
        assert_eq!(write_to(&mut out, &families).unwrap(), 5);
        let text = String::from_utf8(out).unwrap();
        let expect = "\
# TYPE rpc_server_duration_seconds histogram
# HELP rpc_server_duration_seconds h
rpc_server_duration_seconds_bucket{job=\"podtap\",instance=\"vm\",rpc_method=\"Say\\\"Hi\\\"\",le=\"0.005\"} 1 1700000000.250
rpc_server_duration_seconds_bucket{job=\"podtap\",instance=\"vm\",rpc_method=\"Say\\\"Hi\\\"\",le=\"+Inf\"} 2 1700000000.250
rpc_server_duration_seconds_count{job=\"podtap\",instance=\"vm\",rpc_method=\"Say\\\"Hi\\\"\"} 2 1700000000.250
rpc_server_duration_seconds_sum{job=\"podtap\",instance=\"vm\",rpc_method=\"Say\\\"Hi\\\"\"} 0.5 1700000000.250
# TYPE podtap_capture_events_lost counter
# HELP podtap_capture_events_lost lost
podtap_capture_events_lost_total{job=\"podtap\",instance=\"vm\"} 3 1700000010.000
# EOF
";
        assert_eq!(text, expect);
    }
}
