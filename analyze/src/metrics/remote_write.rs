//! `--remote-write URL`: every series with one sample per step, at the
//! capture's own time, sent with the Prometheus remote-write protocol
//! (1.0: a snappy-compressed protobuf `WriteRequest` per POST) to a receiver
//! such as Prometheus started with `--web.enable-remote-write-receiver`.
//!
//! A receiver takes samples older than its newest data only within its
//! out-of-order window, so this suits recent captures; old ones go through
//! [`super::openmetrics`] and `promtool`.

use std::time::Duration;

use super::{Family, Kind, Labels, Value};

/// The remote-write 1.0 messages (prometheus/prompb `types.proto`,
/// `remote.proto`), the fields a writer sets.
mod prompb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }
}

use prompb::{Label, Sample, TimeSeries, WriteRequest};

/// Series per request: keeps each POST to a few megabytes.
const SERIES_PER_REQUEST: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteError {
    #[error("cannot reach the remote-write receiver at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the remote-write receiver at {url} refused the samples: HTTP {status}{body}")]
    Refused { url: String, status: String, body: String },
}

/// What was sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub series: usize,
    pub samples: usize,
    pub requests: usize,
}

/// Flattens families into remote-write series: a histogram becomes its
/// `_bucket` (one per bound and `+Inf`), `_count` and `_sum` series.
fn timeseries(families: &[Family]) -> Vec<TimeSeries> {
    let mut out = Vec::new();
    for family in families {
        for series in &family.series {
            let labels = series.full_labels();
            match series.points.first().map(|p| &p.value) {
                Some(Value::Histogram { buckets, .. }) => {
                    let bounds: Vec<String> = buckets
                        .iter()
                        .map(|(le, _)| super::number(*le))
                        .chain(std::iter::once("+Inf".to_string()))
                        .collect();
                    for (i, le) in bounds.iter().enumerate() {
                        let samples = series.points.iter().filter_map(|p| match &p.value {
                            Value::Histogram { buckets, count, .. } => {
                                let n = buckets.get(i).map_or(*count, |(_, n)| *n);
                                Some((p.ts_ms, n as f64))
                            }
                            Value::Scalar(_) => None,
                        });
                        out.push(one(
                            &format!("{}_bucket", family.name),
                            &labels,
                            Some(le),
                            samples,
                        ));
                    }
                    let pick = |f: fn(u64, f64) -> f64| {
                        series.points.iter().filter_map(move |p| match &p.value {
                            Value::Histogram { count, sum, .. } => Some((p.ts_ms, f(*count, *sum))),
                            Value::Scalar(_) => None,
                        })
                    };
                    out.push(one(
                        &format!("{}_count", family.name),
                        &labels,
                        None,
                        pick(|c, _| c as f64),
                    ));
                    out.push(one(&format!("{}_sum", family.name), &labels, None, pick(|_, s| s)));
                }
                Some(Value::Scalar(_)) => {
                    let samples = series.points.iter().filter_map(|p| match p.value {
                        Value::Scalar(v) => Some((p.ts_ms, v)),
                        Value::Histogram { .. } => None,
                    });
                    debug_assert!(family.kind != Kind::Histogram);
                    out.push(one(&family.name, &labels, None, samples));
                }
                None => {}
            }
        }
    }
    out
}

fn one(
    name: &str,
    labels: &Labels,
    le: Option<&str>,
    samples: impl Iterator<Item = (i64, f64)>,
) -> TimeSeries {
    let mut labels: Vec<Label> = std::iter::once(("__name__", name))
        .chain(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .chain(le.map(|le| ("le", le)))
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| Label { name: k.to_string(), value: v.to_string() })
        .collect();
    // Receivers require labels sorted by name.
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    let mut samples: Vec<Sample> =
        samples.map(|(timestamp, value)| Sample { value, timestamp }).collect();
    samples.sort_by_key(|s| s.timestamp);
    TimeSeries { labels, samples }
}

/// Sends every point of `families` to `url`.
pub fn send(url: &str, families: &[Family]) -> Result<Written, RemoteWriteError> {
    let client =
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().map_err(
            |e| RemoteWriteError::Unreachable { url: url.to_string(), reason: e.to_string() },
        )?;
    let all = timeseries(families);
    let mut written = Written::default();
    for chunk in all.chunks(SERIES_PER_REQUEST) {
        let request = WriteRequest { timeseries: chunk.to_vec() };
        let bytes = prost::Message::encode_to_vec(&request);
        let body = snap::raw::Encoder::new().compress_vec(&bytes).map_err(|e| {
            RemoteWriteError::Unreachable { url: url.to_string(), reason: e.to_string() }
        })?;
        let response = client
            .post(url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body)
            .send()
            .map_err(|e| RemoteWriteError::Unreachable {
                url: url.to_string(),
                reason: innermost(&e),
            })?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().unwrap_or_default();
            let first = text.lines().next().unwrap_or_default().trim();
            return Err(RemoteWriteError::Refused {
                url: url.to_string(),
                status: status.to_string(),
                body: if first.is_empty() { String::new() } else { format!(": {first}") },
            });
        }
        written.requests += 1;
        written.series += chunk.len();
        written.samples += chunk.iter().map(|s| s.samples.len()).sum::<usize>();
    }
    Ok(written)
}

fn innermost(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Group, Point, Series};

    #[test]
    fn a_histogram_becomes_bucket_count_and_sum_series_with_sorted_labels() {
        let families = vec![Family {
            name: "http_server_request_duration_seconds".into(),
            help: String::new(),
            kind: Kind::Histogram,
            series: vec![Series {
                group: Group {
                    job: "podtap".into(),
                    labels: vec![("instance".into(), "vm".into())],
                },
                labels: vec![
                    ("k8s_pod_name".into(), String::new()),
                    ("http_route".into(), "/".into()),
                ],
                points: vec![
                    Point {
                        ts_ms: 2000,
                        value: Value::Histogram { buckets: vec![(0.5, 1)], count: 1, sum: 0.2 },
                    },
                    Point {
                        ts_ms: 3000,
                        value: Value::Histogram { buckets: vec![(0.5, 1)], count: 2, sum: 1.2 },
                    },
                ],
            }],
        }];
        let ts = timeseries(&families);
        assert_eq!(ts.len(), 4);
        let names: Vec<Vec<&str>> =
            ts.iter().map(|t| t.labels.iter().map(|l| l.name.as_str()).collect()).collect();
        assert_eq!(names[0], ["__name__", "http_route", "instance", "job", "le"]);
        assert_eq!(names[2], ["__name__", "http_route", "instance", "job"]);
        let inf = &ts[1];
        assert_eq!(inf.labels.iter().find(|l| l.name == "le").unwrap().value, "+Inf");
        assert_eq!(
            inf.samples,
            vec![Sample { value: 1.0, timestamp: 2000 }, Sample { value: 2.0, timestamp: 3000 }]
        );
        assert_eq!(ts[3].samples[1].value, 1.2);
    }
}
