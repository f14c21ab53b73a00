//! `--push`: each series' last point (the run's totals) to a Pushgateway,
//! one `PUT /metrics/job/<job>/<label>/<value>…` per grouping key, so a new
//! run of the same captures replaces its predecessor's numbers instead of
//! adding to them. The body is Prometheus text format 0.0.4, written by the
//! `prometheus` crate's encoder: the format the Pushgateway parses, and one
//! without timestamps, which it would reject.
//!
//! The Pushgateway stamps what it holds with the time Prometheus scrapes it:
//! pushed numbers are "as of now". History at the capture's own time comes
//! from [`super::openmetrics`] and [`super::remote_write`].

use std::{collections::BTreeMap, time::Duration};

use base64::Engine as _;
use prometheus::{
    proto::{self, MetricFamily, MetricType},
    Encoder as _, TextEncoder,
};

use super::{Family, Group, Kind, Value};

/// Why a push failed; the message names the URL and what the gateway said.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("cannot reach the Pushgateway at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the Pushgateway at {url} refused the push: HTTP {status}{body}")]
    Refused { url: String, status: String, body: String },
    #[error("failed to encode metrics for the Pushgateway: {0}")]
    Encode(String),
}

/// What was pushed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    pub groups: usize,
    pub series: usize,
}

/// Pushes the last point of every series in `families` to the gateway at
/// `base` (e.g. `http://127.0.0.1:9091`).
pub fn push(base: &str, families: &[Family]) -> Result<Pushed, PushError> {
    let base = base.trim_end_matches('/');
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| PushError::Unreachable { url: base.to_string(), reason: e.to_string() })?;
    let mut pushed = Pushed::default();
    for (group, body) in bodies(families)? {
        let url = format!("{base}{}", path(&group));
        let response = client
            .put(&url)
            .header("Content-Type", "text/plain; version=0.0.4")
            .body(body)
            .send()
            .map_err(|e| PushError::Unreachable { url: base.to_string(), reason: reason(&e) })?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().unwrap_or_default();
            let first = text.lines().next().unwrap_or_default().trim();
            return Err(PushError::Refused {
                url: url.clone(),
                status: status.to_string(),
                body: if first.is_empty() { String::new() } else { format!(": {first}") },
            });
        }
        pushed.groups += 1;
    }
    pushed.series = families.iter().map(|f| f.series.len()).sum();
    Ok(pushed)
}

/// The innermost cause, which says what actually went wrong (connection
/// refused, no such host, timeout).
fn reason(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    if e.is_timeout() {
        format!("timed out ({source})")
    } else {
        source.to_string()
    }
}

/// `/metrics/job/<job>/<label>/<value>…`, base64url-encoding values the
/// path cannot carry as they are.
pub fn path(group: &Group) -> String {
    let mut p = String::from("/metrics");
    for (name, value) in
        std::iter::once(&("job".to_string(), group.job.clone())).chain(&group.labels)
    {
        if value.is_empty() || value.contains('/') || value.contains('%') {
            let encoded = base64::engine::general_purpose::URL_SAFE.encode(value.as_bytes());
            let encoded = if encoded.is_empty() { "=".to_string() } else { encoded };
            p.push_str(&format!("/{name}@base64/{encoded}"));
        } else {
            p.push_str(&format!("/{name}/{}", urlencoding(value)));
        }
    }
    p
}

/// Percent-encodes what a path segment cannot hold.
fn urlencoding(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text body of each group.
pub fn bodies(families: &[Family]) -> Result<BTreeMap<Group, Vec<u8>>, PushError> {
    let mut groups: BTreeMap<Group, Vec<MetricFamily>> = BTreeMap::new();
    for family in families {
        for series in &family.series {
            let Some(point) = series.points.last() else { continue };
            let mut metric = proto::Metric::from_label(
                series
                    .labels
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| {
                        let mut l = proto::LabelPair::default();
                        l.set_name(k.clone());
                        l.set_value(v.clone());
                        l
                    })
                    .collect(),
            );
            match (&point.value, family.kind) {
                (Value::Histogram { buckets, count, sum }, _) => {
                    let mut h = proto::Histogram::default();
                    h.set_sample_count(*count);
                    h.set_sample_sum(*sum);
                    h.set_bucket(
                        buckets
                            .iter()
                            .map(|(le, n)| {
                                let mut b = proto::Bucket::default();
                                b.set_upper_bound(*le);
                                b.set_cumulative_count(*n);
                                b
                            })
                            .collect(),
                    );
                    metric.set_histogram(h);
                }
                (Value::Scalar(v), Kind::Counter) => {
                    let mut c = proto::Counter::default();
                    c.set_value(*v);
                    metric.set_counter(c);
                }
                (Value::Scalar(v), _) => {
                    let mut g = proto::Gauge::default();
                    g.set_value(*v);
                    metric.set_gauge(g);
                }
            }
            let list = groups.entry(series.group.clone()).or_default();
            let mf = match list.iter_mut().position(|mf| mf.name() == family.name) {
                Some(i) => &mut list[i],
                None => {
                    let mut mf = MetricFamily::default();
                    mf.set_name(family.name.clone());
                    mf.set_help(family.help.clone());
                    mf.set_field_type(match family.kind {
                        Kind::Histogram => MetricType::HISTOGRAM,
                        Kind::Counter => MetricType::COUNTER,
                        Kind::Gauge => MetricType::GAUGE,
                    });
                    list.push(mf);
                    list.last_mut().expect("just pushed")
                }
            };
            mf.mut_metric().push(metric);
        }
    }
    let encoder = TextEncoder::new();
    groups
        .into_iter()
        .map(|(group, mfs)| {
            let mut body = Vec::new();
            encoder.encode(&mfs, &mut body).map_err(|e| PushError::Encode(e.to_string()))?;
            Ok((group, body))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Point, Series};

    #[test]
    fn grouping_paths_encode_what_a_path_cannot_hold() {
        let g = |labels: &[(&str, &str)]| Group {
            job: "HTTPStatus".into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        assert_eq!(
            path(&g(&[("podname", "web-1"), ("StatusCode", "200")])),
            "/metrics/job/HTTPStatus/podname/web-1/StatusCode/200"
        );
        assert_eq!(path(&g(&[("podname", "a/b")])), "/metrics/job/HTTPStatus/podname@base64/YS9i");
        assert_eq!(path(&g(&[("podname", "")])), "/metrics/job/HTTPStatus/podname@base64/=");
        assert_eq!(path(&g(&[("podname", "x y")])), "/metrics/job/HTTPStatus/podname/x%20y");
    }

    #[test]
    fn bodies_hold_the_last_point_without_timestamps() {
        let group = Group { job: "podtap".into(), labels: vec![("instance".into(), "vm".into())] };
        let families = vec![Family {
            name: "http_server_request_duration_seconds".into(),
            help: "h".into(),
            kind: Kind::Histogram,
            series: vec![Series {
                group: group.clone(),
                labels: vec![
                    ("http_route".into(), "/a".into()),
                    ("k8s_pod_name".into(), String::new()),
                ],
                points: vec![
                    Point {
                        ts_ms: 1,
                        value: Value::Histogram { buckets: vec![(0.1, 1)], count: 1, sum: 0.05 },
                    },
                    Point {
                        ts_ms: 2,
                        value: Value::Histogram { buckets: vec![(0.1, 2)], count: 3, sum: 0.5 },
                    },
                ],
            }],
        }];
        let bodies = bodies(&families).unwrap();
        let text = String::from_utf8(bodies[&group].clone()).unwrap();
        assert!(text.contains("# TYPE http_server_request_duration_seconds histogram"), "{text}");
        assert!(
            text.contains(
                "http_server_request_duration_seconds_bucket{http_route=\"/a\",le=\"0.1\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "http_server_request_duration_seconds_bucket{http_route=\"/a\",le=\"+Inf\"} 3"
            ),
            "{text}"
        );
        assert!(
            text.contains("http_server_request_duration_seconds_count{http_route=\"/a\"} 3"),
            "{text}"
        );
        // Empty labels are left out.
        assert!(!text.contains("k8s_pod_name"), "{text}");
    }
}
