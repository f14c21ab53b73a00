//! RED — rate, errors, duration — computed with polars over the exchange
//! file, so every number in every output comes from the same table a user
//! can query.
//!
//! The file is read in slices of 65,536 rows, so memory does not
//! grow with the capture; two lazy queries run over each slice and their
//! results are merged:
//! - per series and time step: the finest grain any output needs (the
//!   labels of both metric families, plus the step in which each exchange
//!   ended), with counts, errors, duration sums (integer nanoseconds, so the
//!   parts add up exactly) and cumulative bucket counts for both bucket
//!   sets. Totals are the sums over steps, so pushed totals, timestamped
//!   history and the report can never disagree.
//! - per table row (target × direction × protocol × method × route): errors
//!   and the durations themselves, from which the summary's and the
//!   report's quantiles are exact (8 bytes per exchange).
//!
//! An exchange is in RED when its duration and status are known (for gRPC,
//! `grpc-status`); the others are counted in [`Red::excluded`]. Errors are
//! HTTP statuses of 500 and up, and gRPC statuses other than 0.

use std::{collections::BTreeMap, path::Path};

use polars::prelude::*;

/// Upper bounds (seconds) of the otel duration histograms (SPEC §5).
pub const OTEL_BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];

/// Upper bounds (milliseconds) of the seed's `http_spend`/`grpc_spend`:
/// linear from 0, width 800, 20 buckets.
pub const SEED_BUCKETS_MS: [f64; 20] = {
    let mut b = [0.0; 20];
    let mut i = 0;
    while i < 20 {
        b[i] = (i * 800) as f64;
        i += 1;
    }
    b
};

/// Upper bounds (milliseconds) of the report's latency distribution: the otel
/// buckets with finer ones below 5 ms, where most in-cluster calls fall.
pub const CHART_BUCKETS_MS: [f64; 19] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0,
    2500.0, 5000.0, 7500.0, 10000.0,
];

/// What identifies a series: every label either metric family may use.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub host: Option<String>,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    pub process: Option<String>,
    /// `server` or `client`: the target's side of the exchange.
    pub role: String,
    /// `http1`, `http2` or `grpc`.
    pub protocol: String,
    pub method: Option<String>,
    pub route: Option<String>,
    pub rpc_service: Option<String>,
    pub rpc_method: Option<String>,
    /// HTTP status, or gRPC status for gRPC.
    pub code: String,
}

impl Key {
    pub fn is_grpc(&self) -> bool {
        self.protocol == "grpc"
    }

    /// The pod, or the process when the target is not in Kubernetes.
    pub fn target(&self) -> &str {
        self.pod.as_deref().or(self.process.as_deref()).unwrap_or("?")
    }
}

/// Counts of a series over some time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Agg {
    pub count: u64,
    pub errors: u64,
    /// Sum of durations, nanoseconds (an integer, so that sums of parts
    /// equal the sum of the whole).
    pub sum_ns: u64,
    /// Sum of durations in whole milliseconds (each truncated, as the seed did).
    pub sum_ms: f64,
    /// Cumulative counts per bound of [`OTEL_BUCKETS`].
    pub otel: [u64; OTEL_BUCKETS.len()],
    /// Cumulative counts per bound of [`SEED_BUCKETS_MS`].
    pub seed: [u64; SEED_BUCKETS_MS.len()],
}

impl Agg {
    /// Sum of durations, seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_ns as f64 / 1e9
    }

    pub fn add(&mut self, other: &Agg) {
        self.count += other.count;
        self.errors += other.errors;
        self.sum_ns += other.sum_ns;
        self.sum_ms += other.sum_ms;
        for (a, b) in self.otel.iter_mut().zip(other.otel) {
            *a += b;
        }
        for (a, b) in self.seed.iter_mut().zip(other.seed) {
            *a += b;
        }
    }
}

/// One row of the RED table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub target: String,
    pub role: String,
    pub protocol: String,
    pub method: Option<String>,
    pub route: Option<String>,
    pub requests: u64,
    /// Requests per second over the captured time.
    pub rate: f64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Requests by status code, most frequent first.
    pub statuses: Vec<(String, u64)>,
}

impl Row {
    pub fn error_ratio(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    /// `GET /users/{id}`, or the gRPC method's path.
    pub fn operation(&self) -> String {
        let route = self.route.as_deref().unwrap_or("?");
        match (self.protocol.as_str(), self.method.as_deref()) {
            ("grpc", _) | (_, None) => route.to_string(),
            (_, Some(method)) => format!("{method} {route}"),
        }
    }
}

/// RED of a run.
#[derive(Clone, Debug, Default)]
pub struct Red {
    /// Start of the first step (ns since the epoch) and the step length (ns).
    pub t0: i64,
    pub step_ns: i64,
    /// Number of steps covering the captured time.
    pub steps: usize,
    /// Seconds the captures covered.
    pub seconds: f64,
    /// Per series: its counts per step (step index, counts), in step order.
    pub series: BTreeMap<Key, Vec<(usize, Agg)>>,
    pub rows: Vec<Row>,
    /// Exchanges in RED per bucket of [`CHART_BUCKETS_MS`] (not cumulative),
    /// and past the last bound.
    pub latency: Vec<u64>,
    /// Exchanges in the file.
    pub total: u64,
    /// Exchanges left out: no response seen, or status unknown.
    pub excluded: u64,
}

impl Red {
    /// Each series' counts over the whole run.
    pub fn totals(&self) -> BTreeMap<&Key, Agg> {
        self.series
            .iter()
            .map(|(k, steps)| {
                let mut total = Agg::default();
                for (_, a) in steps {
                    total.add(a);
                }
                (k, total)
            })
            .collect()
    }

    /// Timestamp (ns) at which step `i`'s counts are reported: its end, or
    /// the end of the captured time for the last one.
    pub fn step_end(&self, i: usize) -> i64 {
        let end = self.t0 + (i as i64 + 1) * self.step_ns;
        let last = self.t0 + (self.seconds * 1e9) as i64;
        end.min(last.max(self.t0))
    }

    /// The step a timestamp (ns) falls in, clamped to the run.
    pub fn step_of(&self, ts: i64) -> usize {
        let step = (ts - self.t0).div_euclid(self.step_ns.max(1));
        step.clamp(0, self.steps.max(1) as i64 - 1) as usize
    }

    /// Exchanges in RED.
    pub fn requests(&self) -> u64 {
        self.total - self.excluded
    }
}

/// Errors from the polars queries.
#[derive(Debug, thiserror::Error)]
#[error("failed to compute RED from `{path}`: {source}")]
pub struct RedError {
    path: String,
    #[source]
    source: PolarsError,
}

/// Computes RED over the exchange file at `path` (`total` rows), for captures
/// that covered `span` (ns), in steps of `step_ns`.
pub fn compute(path: &Path, total: u64, span: (i64, i64), step_ns: i64) -> Result<Red, RedError> {
    compute_in_slices(path, total, span, step_ns, SLICE_ROWS)
}

fn compute_in_slices(
    path: &Path,
    total: u64,
    span: (i64, i64),
    step_ns: i64,
    slice_rows: u64,
) -> Result<Red, RedError> {
    let err = |source| RedError { path: path.display().to_string(), source };
    let (t0, end) = span;
    let step_ns = step_ns.max(1);
    let steps = usize::try_from(((end - t0).max(1) + step_ns - 1) / step_ns).unwrap_or(1).max(1);
    let mut red = Red {
        t0,
        step_ns,
        steps,
        seconds: ((end - t0) as f64 / 1e9).max(1e-3),
        total,
        ..Red::default()
    };
    if total == 0 {
        return Ok(red);
    }
    // The file is read in slices of rows, each read once, aggregated by
    // polars and merged here: memory follows the number of series and of
    // counted exchanges (one f64 each, for exact quantiles), not the file's
    // size.
    let mut series_acc: BTreeMap<Key, BTreeMap<usize, Agg>> = BTreeMap::new();
    let mut durations: BTreeMap<RowKey, Durations> = BTreeMap::new();
    let mut offset = 0u64;
    while offset < total {
        let slice = base(path, (offset, slice_rows), t0, step_ns, steps)
            .and_then(LazyFrame::collect)
            .map_err(err)?
            .lazy();
        series(slice.clone(), &mut series_acc).map_err(err)?;
        row_durations(slice, &mut durations).map_err(err)?;
        offset += slice_rows;
    }
    red.series =
        series_acc.into_iter().map(|(key, steps)| (key, steps.into_iter().collect())).collect();
    let counted: u64 = red.series.values().flatten().map(|(_, a)| a.count).sum();
    red.excluded = total.saturating_sub(counted);
    red.latency = latency(&durations);
    red.rows = rows(durations, &red);
    Ok(red)
}

const KEYS: [&str; 12] = [
    "host",
    "namespace",
    "pod",
    "container",
    "process",
    "role",
    "protocol",
    "method",
    "route",
    "rpc_service",
    "rpc_method",
    "code",
];

/// Rows of the exchange file aggregated at a time.
const SLICE_ROWS: u64 = 1 << 16;

/// The exchanges in RED among `rows` (offset, length) of the file, with the
/// derived columns both queries use.
fn base(
    path: &Path,
    rows: (u64, u64),
    t0: i64,
    step_ns: i64,
    steps: usize,
) -> PolarsResult<LazyFrame> {
    let path = PlRefPath::try_from_path(path)?;
    let grpc = col("protocol").eq(lit("grpc"));
    let end = col("start").cast(DataType::Int64) + col("duration_ns");
    // Float division and a truncating cast: `floor_div` needs a polars
    // feature this build leaves out. Steps before t0 are clamped below.
    let step =
        ((end - lit(t0)).cast(DataType::Float64) / lit(step_ns as f64)).cast(DataType::Int64);
    let last = steps as i64 - 1;
    let (offset, len) = rows;
    Ok(LazyFrame::scan_parquet(path, ScanArgsParquet::default())?
        .slice(offset as i64, len as IdxSize)
        .select([
            col("protocol"),
            col("start"),
            col("duration_ns"),
            col("host"),
            col("namespace"),
            col("pod"),
            col("container"),
            col("process"),
            col("role"),
            col("method"),
            col("route"),
            col("rpc_service"),
            col("rpc_method"),
            col("status"),
            col("grpc_status"),
        ])
        .with_columns([when(grpc.clone())
            .then(col("grpc_status").cast(DataType::String))
            .otherwise(col("status").cast(DataType::String))
            .alias("code")])
        .filter(col("duration_ns").is_not_null().and(col("code").is_not_null()))
        .with_columns([
            when(grpc)
                .then(col("grpc_status").neq(lit(0)))
                .otherwise(col("status").cast(DataType::Int32).gt_eq(lit(500)))
                .alias("error"),
            when(step.clone().lt(lit(0)))
                .then(lit(0i64))
                .when(step.clone().gt(lit(last)))
                .then(lit(last))
                .otherwise(step)
                .alias("step"),
            (col("duration_ns").cast(DataType::Float64) / lit(1e6)).alias("ms"),
            (col("duration_ns").cast(DataType::Float64) / lit(1e6))
                .cast(DataType::Int64)
                .alias("whole_ms"),
        ]))
}

/// Adds the series of `base`'s exchanges to `out` (per key, per step).
fn series(base: LazyFrame, out: &mut BTreeMap<Key, BTreeMap<usize, Agg>>) -> PolarsResult<()> {
    let mut aggs = vec![
        len().cast(DataType::UInt64).alias("count"),
        col("error").cast(DataType::UInt64).sum().alias("errors"),
        when(col("duration_ns").lt(lit(0i64)))
            .then(lit(0u64))
            .otherwise(col("duration_ns").cast(DataType::UInt64))
            .sum()
            .alias("sum_ns"),
        col("whole_ms").cast(DataType::Float64).sum().alias("sum_ms"),
    ];
    for (i, le) in OTEL_BUCKETS.iter().enumerate() {
        let le_ns = (le * 1e9).round() as i64;
        aggs.push(
            col("duration_ns")
                .lt_eq(lit(le_ns))
                .cast(DataType::UInt64)
                .sum()
                .alias(format!("o{i}")),
        );
    }
    for (i, le) in SEED_BUCKETS_MS.iter().enumerate() {
        let le = *le as i64;
        aggs.push(
            col("whole_ms").lt_eq(lit(le)).cast(DataType::UInt64).sum().alias(format!("s{i}")),
        );
    }
    let mut by: Vec<Expr> = KEYS.iter().map(|k| col(*k)).collect();
    by.push(col("step"));
    let df = base.group_by(by).agg(aggs).collect()?;

    let keys: Vec<Vec<Option<String>>> =
        KEYS.iter().map(|k| strings(&df, k)).collect::<Result<_, _>>()?;
    let step = u64s(&df, "step")?;
    let count = u64s(&df, "count")?;
    let errors = u64s(&df, "errors")?;
    let sum_ns = u64s(&df, "sum_ns")?;
    let sum_ms = f64s(&df, "sum_ms")?;
    let otel: Vec<Vec<u64>> =
        (0..OTEL_BUCKETS.len()).map(|i| u64s(&df, &format!("o{i}"))).collect::<Result<_, _>>()?;
    let seed: Vec<Vec<u64>> = (0..SEED_BUCKETS_MS.len())
        .map(|i| u64s(&df, &format!("s{i}")))
        .collect::<Result<_, _>>()?;

    for row in 0..df.height() {
        let k = |i: usize| keys[i][row].clone();
        let key = Key {
            host: k(0),
            namespace: k(1),
            pod: k(2),
            container: k(3),
            process: k(4),
            role: k(5).unwrap_or_default(),
            protocol: k(6).unwrap_or_default(),
            method: k(7),
            route: k(8),
            rpc_service: k(9),
            rpc_method: k(10),
            code: k(11).unwrap_or_default(),
        };
        let mut agg = Agg {
            count: count[row],
            errors: errors[row],
            sum_ns: sum_ns[row],
            sum_ms: sum_ms[row],
            ..Agg::default()
        };
        for (i, b) in agg.otel.iter_mut().enumerate() {
            *b = otel[i][row];
        }
        for (i, b) in agg.seed.iter_mut().enumerate() {
            *b = seed[i][row];
        }
        out.entry(key).or_default().entry(step[row] as usize).or_default().add(&agg);
    }
    Ok(())
}

fn strings(df: &DataFrame, name: &str) -> PolarsResult<Vec<Option<String>>> {
    let c = df.column(name)?.cast(&DataType::String)?;
    Ok(c.str()?.iter().map(|v| v.map(str::to_string)).collect())
}

fn u64s(df: &DataFrame, name: &str) -> PolarsResult<Vec<u64>> {
    let c = df.column(name)?.cast(&DataType::UInt64)?;
    Ok(c.u64()?.iter().map(|v| v.unwrap_or(0)).collect())
}

fn f64s(df: &DataFrame, name: &str) -> PolarsResult<Vec<f64>> {
    let c = df.column(name)?.cast(&DataType::Float64)?;
    Ok(c.f64()?.iter().map(|v| v.unwrap_or(0.0)).collect())
}

const ROW_KEYS: [&str; 5] = ["target", "role", "protocol", "method", "route"];

/// A row of the RED table: target, role, protocol, method, route.
type RowKey = (String, String, String, Option<String>, Option<String>);

/// The durations (ms) and error count of one row's exchanges.
#[derive(Default)]
struct Durations {
    ms: Vec<f64>,
    errors: u64,
}

/// Adds `base`'s durations to their rows of the table.
fn row_durations(base: LazyFrame, out: &mut BTreeMap<RowKey, Durations>) -> PolarsResult<()> {
    let df = base
        .with_columns([coalesce(&[col("pod"), col("process")]).alias("target")])
        .group_by(ROW_KEYS.iter().map(|k| col(*k)).collect::<Vec<_>>())
        .agg([col("ms"), col("error").cast(DataType::UInt64).sum().alias("errors")])
        .collect()?;
    let (target, role, protocol, method, route) = (
        strings(&df, "target")?,
        strings(&df, "role")?,
        strings(&df, "protocol")?,
        strings(&df, "method")?,
        strings(&df, "route")?,
    );
    let errors = u64s(&df, "errors")?;
    let lists = df.column("ms")?.list()?;
    for (i, list) in lists.amortized_iter().enumerate() {
        let key = (
            target[i].clone().unwrap_or_else(|| "?".into()),
            role[i].clone().unwrap_or_default(),
            protocol[i].clone().unwrap_or_default(),
            method[i].clone(),
            route[i].clone(),
        );
        let d = out.entry(key).or_default();
        if let Some(list) = list {
            d.ms.extend(list.as_ref().f64()?.into_no_null_iter());
        }
        d.errors += errors[i];
    }
    Ok(())
}

/// Quantile `p` of sorted `values`, interpolated linearly between the two
/// nearest ranks (polars' and numpy's default).
fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (sorted.len() - 1) as f64 * p;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// Counted exchanges per bucket of [`CHART_BUCKETS_MS`], and past the last.
fn latency(durations: &BTreeMap<RowKey, Durations>) -> Vec<u64> {
    let mut out = vec![0; CHART_BUCKETS_MS.len() + 1];
    for ms in durations.values().flat_map(|d| &d.ms) {
        out[CHART_BUCKETS_MS.partition_point(|le| le < ms)] += 1;
    }
    out
}

fn rows(durations: BTreeMap<RowKey, Durations>, red: &Red) -> Vec<Row> {
    // Status counts per row, from the series.
    let mut statuses: BTreeMap<RowKey, BTreeMap<String, u64>> = BTreeMap::new();
    for (key, steps) in &red.series {
        let row_key = (
            key.target().to_string(),
            key.role.clone(),
            key.protocol.clone(),
            key.method.clone(),
            key.route.clone(),
        );
        let n: u64 = steps.iter().map(|(_, a)| a.count).sum();
        *statuses.entry(row_key).or_default().entry(key.code.clone()).or_default() += n;
    }

    let mut out = Vec::with_capacity(durations.len());
    for (row_key, Durations { mut ms, errors }) in durations {
        ms.sort_unstable_by(f64::total_cmp);
        let mut codes: Vec<(String, u64)> =
            statuses.get(&row_key).map(|m| m.clone().into_iter().collect()).unwrap_or_default();
        codes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let requests = ms.len() as u64;
        out.push(Row {
            target: row_key.0,
            role: row_key.1,
            protocol: row_key.2,
            method: row_key.3,
            route: row_key.4,
            requests,
            rate: requests as f64 / red.seconds,
            errors,
            p50_ms: quantile(&ms, 0.5),
            p90_ms: quantile(&ms, 0.9),
            p99_ms: quantile(&ms, 0.99),
            max_ms: ms.last().copied().unwrap_or(0.0),
            statuses: codes,
        });
    }
    out.sort_by(|a, b| {
        (&a.target, &a.role, &a.protocol)
            .cmp(&(&b.target, &b.role, &b.protocol))
            .then(b.requests.cmp(&a.requests))
            .then(a.operation().cmp(&b.operation()))
    });
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        exchange::{ConnInfo, Exchange, GRPC, HTTP1},
        output::ExchangeWriter,
        protocol::Role,
    };

    const T0: i64 = 1_700_000_000_000_000_000;

    /// An exchange of `process` that ended `end_ms` after T0 and took `ms`.
    pub(crate) fn exchange(
        process: &str,
        protocol: &'static str,
        code: Option<u16>,
        ms: Option<i64>,
        end_ms: i64,
    ) -> Exchange {
        let conn = ConnInfo {
            process: Some(process.into()),
            host: Some("node-a".into()),
            ..Default::default()
        };
        let dur = ms.unwrap_or(0) * 1_000_000;
        let mut x =
            Exchange::empty(protocol, Arc::new(conn), Role::Server, T0 + end_ms * 1_000_000 - dur);
        x.end_ts = ms.map(|_| x.start_ts + dur);
        x.method = Some("GET".into());
        x.route = Some("/r".into());
        if protocol == GRPC {
            x.status = Some(200);
            x.grpc_status = code.map(i32::from);
            x.path = Some("/pkg.Svc/Call".into());
            x.rpc_service = Some("pkg.Svc".into());
            x.rpc_method = Some("Call".into());
            x.route = x.path.clone();
        } else {
            x.status = code;
        }
        x
    }

    pub(crate) fn red_of(xs: &[Exchange], seconds: i64, step_s: i64) -> Red {
        red_in_slices(xs, seconds, step_s, SLICE_ROWS)
    }

    fn red_in_slices(xs: &[Exchange], seconds: i64, step_s: i64, slice_rows: u64) -> Red {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        let mut w = ExchangeWriter::create(&path).unwrap();
        for x in xs {
            w.push(x).unwrap();
        }
        w.close().unwrap();
        let span = (T0, T0 + seconds * 1_000_000_000);
        compute_in_slices(&path, xs.len() as u64, span, step_s * 1_000_000_000, slice_rows).unwrap()
    }

    #[test]
    fn slices_of_the_file_add_up_to_the_whole() {
        let mut xs = Vec::new();
        for i in 0..50u32 {
            let status = if i % 7 == 0 { 503 } else { 200 };
            xs.push(exchange(
                "web",
                HTTP1,
                Some(status),
                Some(i64::from(i % 13) + 1),
                i64::from(i) * 400,
            ));
            xs.push(exchange(
                "rpc",
                GRPC,
                Some(u16::from(i % 3 == 0)),
                Some(2),
                i64::from(i) * 300,
            ));
        }
        let whole = red_in_slices(&xs, 30, 10, SLICE_ROWS);
        let sliced = red_in_slices(&xs, 30, 10, 7);
        assert_eq!(whole.series, sliced.series);
        assert_eq!(whole.rows, sliced.rows);
        assert_eq!(whole.latency, sliced.latency);
        assert_eq!(whole.requests(), 100);
        let web = whole.rows.iter().find(|r| r.target == "web").unwrap();
        // 1..=13 ms, 50 of them: the median is the 25th/26th value.
        let mut ms: Vec<f64> = (0..50).map(|i| f64::from(i % 13 + 1)).collect();
        ms.sort_by(f64::total_cmp);
        assert_eq!(web.p50_ms, (ms[24] + ms[25]) / 2.0);
    }

    #[test]
    fn buckets_errors_quantiles_and_exclusions() {
        let xs = vec![
            exchange("web", HTTP1, Some(200), Some(3), 1_000),
            exchange("web", HTTP1, Some(200), Some(20), 2_000),
            exchange("web", HTTP1, Some(503), Some(800), 3_000),
            exchange("web", HTTP1, Some(200), None, 4_000), // no response: excluded
            exchange("web", HTTP1, None, Some(5), 4_000),   // status unknown: excluded
            exchange("rpc", GRPC, Some(0), Some(1), 5_000),
            exchange("rpc", GRPC, Some(5), Some(2), 5_000),
            exchange("rpc", GRPC, None, Some(2), 5_000), // grpc-status unknown: excluded
        ];
        let red = red_of(&xs, 30, 10);
        assert_eq!((red.total, red.excluded, red.requests()), (8, 3, 5));
        assert_eq!(red.steps, 3);
        let totals = red.totals();
        let ok = totals
            .iter()
            .find(|(k, _)| k.process.as_deref() == Some("web") && k.code == "200")
            .unwrap()
            .1;
        assert_eq!(ok.count, 2);
        // 3 ms and 20 ms: under 5 ms one, under 25 ms both.
        assert_eq!(&ok.otel[..3], &[1, 1, 2]);
        assert_eq!(ok.sum_ns, 23_000_000);
        // Seed buckets count whole milliseconds: both are in bucket 800.
        assert_eq!((ok.seed[0], ok.seed[1]), (0, 2));
        let err = totals.iter().find(|(k, _)| k.code == "503").unwrap().1;
        assert_eq!((err.count, err.errors), (1, 1));
        let grpc_err = totals.iter().find(|(k, _)| k.is_grpc() && k.code == "5").unwrap();
        assert_eq!(grpc_err.1.errors, 1);
        assert_eq!(grpc_err.0.rpc_method.as_deref(), Some("Call"));

        let web = red.rows.iter().find(|r| r.target == "web").unwrap();
        assert_eq!((web.requests, web.errors), (3, 1));
        assert_eq!(web.operation(), "GET /r");
        assert_eq!(web.p50_ms, 20.0);
        assert_eq!(web.max_ms, 800.0);
        assert!((web.rate - 0.1).abs() < 1e-9);
        assert_eq!(web.statuses, vec![("200".to_string(), 2), ("503".to_string(), 1)]);
        let rpc = red.rows.iter().find(|r| r.target == "rpc").unwrap();
        assert_eq!(rpc.operation(), "/pkg.Svc/Call");

        // 1, 2, 3, 20 and 800 ms in the report's buckets (≤1, ≤2.5, ≤5, ≤25, ≤1000).
        let mut latency = vec![0; CHART_BUCKETS_MS.len() + 1];
        for i in [3, 4, 5, 7, 14] {
            latency[i] = 1;
        }
        assert_eq!(red.latency, latency);
    }

    #[test]
    fn exchanges_fall_in_the_step_they_ended_in() {
        let xs = vec![
            exchange("web", HTTP1, Some(200), Some(1), 9_999),
            exchange("web", HTTP1, Some(200), Some(1), 10_001),
            exchange("web", HTTP1, Some(200), Some(1), 25_000),
            // Ended after the capture's end: the last step.
            exchange("web", HTTP1, Some(200), Some(1), 31_000),
        ];
        let red = red_of(&xs, 30, 10);
        let steps = &red.series.values().next().unwrap();
        let counts: Vec<(usize, u64)> = steps.iter().map(|(s, a)| (*s, a.count)).collect();
        assert_eq!(counts, vec![(0, 1), (1, 1), (2, 2)]);
        assert_eq!(red.step_end(0), T0 + 10_000_000_000);
        assert_eq!(red.step_end(2), T0 + 30_000_000_000);
    }

    #[test]
    fn an_empty_run_has_no_series() {
        let red = red_of(&[], 5, 10);
        assert!(red.series.is_empty() && red.rows.is_empty());
        assert_eq!(red.steps, 1);
    }
}
