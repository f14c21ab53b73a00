//! Prometheus series from RED (SPEC §5), in the two naming families, and the
//! three ways they leave: [`push`] (a Pushgateway, totals as of now),
//! [`openmetrics`] (timestamped text for `promtool` backfill) and
//! [`remote_write`] (timestamped samples to a Prometheus receiver).
//!
//! Every series carries one point per time step, cumulative from the start
//! of the captures, stamped at the step's end; a push sends the last point.
//! A series also knows its Pushgateway grouping key (job and grouping
//! labels); the timestamped outputs attach those as labels, so a dashboard
//! query finds the same series whichever way they came in.

pub mod openmetrics;
pub mod push;
pub mod remote_write;

use std::collections::BTreeMap;

use crate::{
    red::{Agg, Key, Red, OTEL_BUCKETS, SEED_BUCKETS_MS},
    stats::Stats,
};

/// Which metric names to produce (`--metric-names`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Names {
    /// OpenTelemetry semantic conventions, Prometheus spelling.
    Otel,
    /// The original tool's names, jobs and grouping.
    Seed,
    Both,
}

impl Names {
    fn otel(self) -> bool {
        matches!(self, Names::Otel | Names::Both)
    }

    fn seed(self) -> bool {
        matches!(self, Names::Seed | Names::Both)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Histogram,
    Counter,
    Gauge,
}

/// A value at one time.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Cumulative bucket counts by upper bound (`+Inf` is `count`).
    Histogram {
        buckets: Vec<(f64, u64)>,
        count: u64,
        sum: f64,
    },
    Scalar(f64),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Milliseconds since the epoch.
    pub ts_ms: i64,
    pub value: Value,
}

/// The Pushgateway group a series is pushed in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Group {
    pub job: String,
    pub labels: Vec<(String, String)>,
}

pub type Labels = Vec<(String, String)>;

#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub group: Group,
    pub labels: Labels,
    pub points: Vec<Point>,
}

impl Series {
    /// Its labels with the grouping key's (job first) added, as the
    /// Pushgateway would show them to Prometheus.
    pub fn full_labels(&self) -> Labels {
        let mut all = vec![("job".to_string(), self.group.job.clone())];
        all.extend(self.group.labels.iter().cloned());
        all.extend(self.labels.iter().filter(|(_, v)| !v.is_empty()).cloned());
        all
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub series: Vec<Series>,
}

/// The job of podtap's own (otel) series.
pub const JOB: &str = "podtap";
pub const LOST_EVENTS: &str = "podtap_capture_events_lost_total";

/// HTTP methods kept as label values; others become `_OTHER` (otel).
const METHODS: [&str; 9] =
    ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

fn method_label(method: Option<&str>) -> String {
    match method {
        Some(m) if METHODS.contains(&m) => m.to_string(),
        _ => "_OTHER".to_string(),
    }
}

fn host_group(key_host: Option<&str>) -> Group {
    Group {
        job: JOB.to_string(),
        labels: vec![("instance".to_string(), key_host.unwrap_or("unknown").to_string())],
    }
}

/// What one series accumulates before it becomes points.
struct Building {
    kind: Kind,
    help: &'static str,
    /// Histograms: the bounds; milliseconds or seconds.
    seed_buckets: bool,
    /// Counts per step (sparse).
    steps: BTreeMap<usize, Agg>,
    /// Gauges/counters: a scalar per step, summed.
    scalar: BTreeMap<usize, f64>,
}

type SeriesId = (String, Group, Labels);

/// Builds the families `names` asks for from `red`, plus the lost-events
/// counter.
pub fn build(red: &Red, stats: &Stats, names: Names) -> Vec<Family> {
    let mut all: BTreeMap<SeriesId, Building> = BTreeMap::new();
    let mut add = |id: SeriesId, kind, help, seed_buckets, steps: &[(usize, Agg)], scalar: bool| {
        let b = all.entry(id).or_insert_with(|| Building {
            kind,
            help,
            seed_buckets,
            steps: BTreeMap::new(),
            scalar: BTreeMap::new(),
        });
        for (step, agg) in steps {
            if scalar {
                *b.scalar.entry(*step).or_default() += agg.count as f64;
            } else {
                b.steps.entry(*step).or_default().add(agg);
            }
        }
    };
    for (key, steps) in &red.series {
        if names.otel() {
            let (name, help, labels) = otel_series(key);
            add(
                (name, host_group(key.host.as_deref()), labels),
                Kind::Histogram,
                help,
                false,
                steps,
                false,
            );
        }
        if names.seed() {
            for (id, kind, help, seed_buckets, scalar) in seed_series(key) {
                add(id, kind, help, seed_buckets, steps, scalar);
            }
        }
    }
    // Lost events, by machine and step; every machine of the run gets the
    // counter, at zero when nothing was lost.
    let mut lost: BTreeMap<Option<String>, BTreeMap<usize, f64>> = BTreeMap::new();
    for key in red.series.keys() {
        lost.entry(key.host.clone()).or_default();
    }
    for l in &stats.lost {
        let step = red.step_of(l.ts);
        *lost.entry(l.host.clone()).or_default().entry(step).or_default() += l.events as f64;
    }
    for (host, steps) in lost {
        let b = all
            .entry((LOST_EVENTS.to_string(), host_group(host.as_deref()), Vec::new()))
            .or_insert_with(|| Building {
                kind: Kind::Counter,
                help: "Events the kernel could not hand over to podtap capture (ring buffer full).",
                seed_buckets: false,
                steps: BTreeMap::new(),
                scalar: BTreeMap::new(),
            });
        b.scalar.entry(0).or_default();
        for (step, n) in steps {
            *b.scalar.entry(step).or_default() += n;
        }
    }

    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for ((name, group, labels), b) in all {
        let points = points(red, &b);
        let family = families.entry(name.clone()).or_insert_with(|| Family {
            name,
            help: b.help.to_string(),
            kind: b.kind,
            series: Vec::new(),
        });
        family.series.push(Series { group, labels, points });
    }
    families.into_values().collect()
}

/// Cumulative points from a series' first step to the last step of the run.
fn points(red: &Red, b: &Building) -> Vec<Point> {
    let first = match b.kind {
        Kind::Histogram => b.steps.keys().next(),
        _ => b.scalar.keys().next(),
    };
    let Some(&first) = first else { return Vec::new() };
    let mut total = Agg::default();
    let mut scalar = 0.0;
    (first..red.steps.max(first + 1))
        .map(|step| {
            let ts_ms = red.step_end(step) / 1_000_000;
            let value = match b.kind {
                Kind::Histogram => {
                    if let Some(a) = b.steps.get(&step) {
                        total.add(a);
                    }
                    let buckets = if b.seed_buckets {
                        SEED_BUCKETS_MS.iter().copied().zip(total.seed).collect()
                    } else {
                        OTEL_BUCKETS.iter().copied().zip(total.otel).collect()
                    };
                    let sum = if b.seed_buckets { total.sum_ms } else { total.sum_seconds() };
                    Value::Histogram { buckets, count: total.count, sum }
                }
                _ => {
                    scalar += b.scalar.get(&step).copied().unwrap_or(0.0);
                    Value::Scalar(scalar)
                }
            };
            Point { ts_ms, value }
        })
        .collect()
}

fn s(v: Option<&str>) -> String {
    v.unwrap_or_default().to_string()
}

/// The otel histogram a key's exchanges go to: name, help, labels.
fn otel_series(key: &Key) -> (String, &'static str, Labels) {
    let side = if key.role == "client" { "client" } else { "server" };
    let k8s = [
        ("k8s_namespace_name", s(key.namespace.as_deref())),
        ("k8s_pod_name", s(key.pod.as_deref())),
        ("k8s_container_name", s(key.container.as_deref())),
        ("process_executable_name", s(key.process.as_deref())),
    ];
    let mut labels: Vec<(&str, String)> = if key.is_grpc() {
        vec![
            ("rpc_system", "grpc".to_string()),
            ("rpc_service", s(key.rpc_service.as_deref())),
            ("rpc_method", s(key.rpc_method.as_deref())),
            ("rpc_grpc_status_code", key.code.clone()),
        ]
    } else {
        vec![
            ("http_request_method", method_label(key.method.as_deref())),
            ("http_response_status_code", key.code.clone()),
            ("http_route", s(key.route.as_deref())),
            (
                "network_protocol_version",
                (if key.protocol == "http2" { "2" } else { "1.1" }).into(),
            ),
        ]
    };
    labels.extend(k8s);
    let labels = labels.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    if key.is_grpc() {
        let help = if side == "client" {
            "Duration of gRPC calls the target made, first request byte to last response byte."
        } else {
            "Duration of gRPC calls the target served, first request byte to last response byte."
        };
        (format!("rpc_{side}_duration_seconds"), help, labels)
    } else {
        let help = if side == "client" {
            "Duration of HTTP requests the target made, first request byte to last response byte."
        } else {
            "Duration of HTTP requests the target served, first request byte to last response byte."
        };
        (format!("http_{side}_request_duration_seconds"), help, labels)
    }
}

/// The seed's series for a key: its spend histogram and its status gauge.
fn seed_series(key: &Key) -> Vec<(SeriesId, Kind, &'static str, bool, bool)> {
    let pod = key.target().to_string();
    let (spend, spend_job, status_prefix, status_job) = if key.is_grpc() {
        ("grpc_spend", "GRPCSpend", "gRPC_status_", "GRPCStatus")
    } else {
        ("http_spend", "HTTPSpend", "http_status_code_", "HTTPStatus")
    };
    let spend_group = Group {
        job: spend_job.to_string(),
        labels: vec![("podname".into(), pod.clone()), ("instance".into(), "spendtime".into())],
    };
    let status_group = Group {
        job: status_job.to_string(),
        labels: vec![
            ("podname".into(), pod),
            ("instance".into(), "statuscode".into()),
            ("StatusCode".into(), key.code.clone()),
        ],
    };
    vec![
        (
            (spend.to_string(), spend_group, Vec::new()),
            Kind::Histogram,
            "Response time in milliseconds (whole milliseconds, as the original tool observed).",
            true,
            false,
        ),
        (
            (format!("{status_prefix}{}", key.code), status_group, Vec::new()),
            Kind::Gauge,
            "Responses with this status code.",
            false,
            true,
        ),
    ]
}

/// Escapes a label value for the text formats.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A float as the text formats write it.
pub fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        exchange::{GRPC, HTTP1},
        red::tests::{exchange, red_of},
        stats::Lost,
    };

    fn family<'a>(families: &'a [Family], name: &str) -> &'a Family {
        families.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no {name}"))
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn otel_series_carry_spec_labels_and_cumulative_points() {
        let xs = vec![
            exchange("web", HTTP1, Some(200), Some(3), 1_000),
            exchange("web", HTTP1, Some(200), Some(3), 21_000),
            exchange("rpc", GRPC, Some(5), Some(2), 5_000),
        ];
        let red = red_of(&xs, 30, 10);
        let families = build(&red, &Stats::default(), Names::Otel);
        let http = family(&families, "http_server_request_duration_seconds");
        assert_eq!(http.kind, Kind::Histogram);
        let s = &http.series[0];
        assert_eq!(
            s.group,
            Group { job: "podtap".into(), labels: labels(&[("instance", "node-a")]) }
        );
        assert_eq!(
            s.labels,
            labels(&[
                ("http_request_method", "GET"),
                ("http_response_status_code", "200"),
                ("http_route", "/r"),
                ("network_protocol_version", "1.1"),
                ("k8s_namespace_name", ""),
                ("k8s_pod_name", ""),
                ("k8s_container_name", ""),
                ("process_executable_name", "web"),
            ])
        );
        // One point per step from the first, cumulative; step 1 had nothing.
        let counts: Vec<u64> = s
            .points
            .iter()
            .map(|p| match &p.value {
                Value::Histogram { count, .. } => *count,
                Value::Scalar(_) => unreachable!(),
            })
            .collect();
        assert_eq!(counts, vec![1, 1, 2]);
        assert_eq!(s.points[0].ts_ms, red.step_end(0) / 1_000_000);

        let rpc = family(&families, "rpc_server_duration_seconds");
        let l = &rpc.series[0].labels;
        assert!(l.contains(&("rpc_system".into(), "grpc".into())));
        assert!(l.contains(&("rpc_grpc_status_code".into(), "5".into())));
        assert!(l.contains(&("rpc_service".into(), "pkg.Svc".into())));
        // Seed names are not asked for.
        assert!(families.iter().all(|f| !f.name.contains("spend")));
        // The lost-events counter exists at zero for the machine.
        let lost = family(&families, LOST_EVENTS);
        assert_eq!(lost.series[0].points.last().unwrap().value, Value::Scalar(0.0));
    }

    #[test]
    fn seed_series_use_the_original_jobs_and_grouping() {
        let xs = vec![
            exchange("web", HTTP1, Some(200), Some(900), 1_000),
            exchange("web", HTTP1, Some(503), Some(3), 2_000),
            exchange("rpc", GRPC, Some(0), Some(2), 5_000),
        ];
        let red = red_of(&xs, 10, 10);
        let families = build(&red, &Stats::default(), Names::Seed);
        let spend = family(&families, "http_spend");
        assert_eq!(spend.series.len(), 1);
        assert_eq!(
            spend.series[0].group,
            Group {
                job: "HTTPSpend".into(),
                labels: labels(&[("podname", "web"), ("instance", "spendtime")])
            }
        );
        match &spend.series[0].points[0].value {
            Value::Histogram { buckets, count, sum } => {
                assert_eq!(
                    (buckets[0], buckets[1], buckets[2]),
                    ((0.0, 0), (800.0, 1), (1600.0, 2))
                );
                assert_eq!((*count, *sum), (2, 903.0));
            }
            Value::Scalar(_) => panic!("not a histogram"),
        }
        let status = family(&families, "http_status_code_503");
        assert_eq!(status.kind, Kind::Gauge);
        assert_eq!(
            status.series[0].group,
            Group {
                job: "HTTPStatus".into(),
                labels: labels(&[
                    ("podname", "web"),
                    ("instance", "statuscode"),
                    ("StatusCode", "503")
                ])
            }
        );
        assert_eq!(status.series[0].points[0].value, Value::Scalar(1.0));
        assert_eq!(family(&families, "grpc_spend").series[0].group.job, "GRPCSpend");
        assert_eq!(family(&families, "gRPC_status_0").series[0].group.job, "GRPCStatus");
        assert!(families.iter().all(|f| !f.name.starts_with("http_server")));
    }

    #[test]
    fn lost_events_count_in_the_step_they_were_lost() {
        let xs = vec![exchange("web", HTTP1, Some(200), Some(1), 1_000)];
        let red = red_of(&xs, 30, 10);
        let stats = Stats {
            lost: vec![
                Lost { host: Some("node-a".into()), ts: red.t0 + 15_000_000_000, events: 7 },
                Lost { host: Some("node-a".into()), ts: red.t0 + 25_000_000_000, events: 3 },
            ],
            ..Stats::default()
        };
        let families = build(&red, &stats, Names::Both);
        let lost = family(&families, LOST_EVENTS);
        assert_eq!(lost.kind, Kind::Counter);
        let values: Vec<Value> = lost.series[0].points.iter().map(|p| p.value.clone()).collect();
        assert_eq!(values, vec![Value::Scalar(0.0), Value::Scalar(7.0), Value::Scalar(10.0)]);
    }
}
