//! Metrics against the real components they feed: a Pushgateway scraped by
//! Prometheus (with the shipped configuration), `promtool` backfill, and a
//! Prometheus remote-write receiver. What Prometheus answers is held against
//! an independent count over the exchange file.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    process::Command,
};

use common::*;
use parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::Value;

const OTEL_BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];

fn code_of(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `label values → value` of a query result, keyed by the listed labels.
fn by(result: &[(BTreeMap<String, String>, f64)], labels: &[&str]) -> BTreeMap<Vec<String>, f64> {
    result
        .iter()
        .map(|(m, v)| (labels.iter().map(|l| m.get(*l).cloned().unwrap_or_default()).collect(), *v))
        .collect()
}

fn count_by(xs: &[&X], key: impl Fn(&X) -> Vec<String>) -> BTreeMap<Vec<String>, f64> {
    let mut out = BTreeMap::new();
    for x in xs {
        *out.entry(key(x)).or_insert(0.0) += 1.0;
    }
    out
}

/// Events the fixtures' captures lost, from their metadata.
fn lost_in_fixtures(paths: &[String]) -> f64 {
    paths
        .iter()
        .map(|p| {
            let reader = SerializedFileReader::new(fs::File::open(p).unwrap()).unwrap();
            let kv =
                reader.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
            kv.iter()
                .find(|k| k.key == "podtap.lost_events")
                .and_then(|k| k.value.as_deref()?.parse::<f64>().ok())
                .unwrap_or(0.0)
        })
        .sum()
}

/// Pushes every fixture's metrics in both families and returns the gateway,
/// a Prometheus scraping it with the shipped configuration, and the
/// exchanges analyze wrote.
fn push_fixtures() -> (Peer, Peer, Vec<X>, tempfile::TempDir) {
    let gateway = pushgateway();
    let prom = prometheus(&shipped_config(&gateway.url), None);
    let dir = tempfile::tempdir().unwrap();
    let xfile = dir.path().join("x.parquet");
    let fixtures = all_fixtures();
    let mut args: Vec<&str> = fixtures.iter().map(String::as_str).collect();
    let x = xfile.to_str().unwrap();
    args.extend([
        "-q",
        "--push",
        "--pushgateway",
        &gateway.url,
        "--metric-names",
        "both",
        "--exchanges",
        x,
    ]);
    let out = analyze(&args);
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("group(s) to {}", gateway.url)), "{}", stderr(&out));
    (gateway, prom, exchanges(&xfile), dir)
}

#[test]
fn pushed_totals_in_prometheus_equal_the_exchanges() {
    let (_gateway, prom, xs, _dir) = push_fixtures();
    let counted: Vec<&X> = xs.iter().filter(|x| x.counted()).collect();
    let http: Vec<&X> = counted.iter().copied().filter(|x| !x.grpc()).collect();
    let grpc: Vec<&X> = counted.iter().copied().filter(|x| x.grpc()).collect();
    assert!(
        http.len() > 50 && grpc.len() > 10,
        "fixtures changed: {} HTTP, {} gRPC",
        http.len(),
        grpc.len()
    );
    // Exchanges whose status never showed are not counted, and say so.
    assert!(xs.len() > counted.len());

    // otel: requests by target and status.
    let got = wait_for(
        &prom.url,
        "sum by (process_executable_name, http_response_status_code) (http_server_request_duration_seconds_count)",
    );
    let expect = count_by(&http, |x| vec![x.target.clone(), x.code()]);
    assert_eq!(by(&got, &["process_executable_name", "http_response_status_code"]), expect);

    // Errors: 5xx.
    let errors = http.iter().filter(|x| x.error()).count() as f64;
    assert!(errors > 0.0);
    let got = wait_for(
        &prom.url,
        r#"sum(http_server_request_duration_seconds_count{http_response_status_code=~"5.."})"#,
    );
    assert_eq!(got[0].1, errors);

    // Buckets, cumulative, by bound.
    let got = wait_for(&prom.url, "sum by (le) (http_server_request_duration_seconds_bucket)");
    let got: BTreeMap<String, f64> = got.iter().map(|(m, v)| (m["le"].clone(), *v)).collect();
    assert_eq!(got.len(), OTEL_BUCKETS.len() + 1);
    for le in OTEL_BUCKETS {
        let want =
            http.iter().filter(|x| x.duration_ns.unwrap() <= (le * 1e9).round() as i64).count()
                as f64;
        let have = got.iter().find(|(k, _)| k.parse::<f64>().unwrap() == le).map(|(_, v)| *v);
        assert_eq!(have, Some(want), "le={le}");
    }
    assert_eq!(got["+Inf"], http.len() as f64);

    // The labels of SPEC §5, with the grouping key's job and instance.
    let series = wait_for(
        &prom.url,
        r#"http_server_request_duration_seconds_count{http_route="/status/{id}"}"#,
    );
    for (labels, _) in &series {
        let names: BTreeSet<&str> = labels.keys().map(String::as_str).collect();
        for want in
            ["http_request_method", "http_response_status_code", "http_route", "job", "instance"]
        {
            assert!(names.contains(want), "{labels:?}");
        }
        assert_eq!(labels["job"], "podtap");
        assert_eq!(labels["instance"], "vm");
        assert_eq!(labels["http_request_method"], "GET");
    }

    // gRPC: calls by target, method and status; errors are statuses other than 0.
    let got = wait_for(
        &prom.url,
        r#"sum by (process_executable_name, rpc_grpc_status_code) (rpc_server_duration_seconds_count{rpc_system="grpc"})"#,
    );
    assert_eq!(
        by(&got, &["process_executable_name", "rpc_grpc_status_code"]),
        count_by(&grpc, |x| vec![x.target.clone(), x.code()])
    );
    let got =
        wait_for(&prom.url, "sum by (rpc_service, rpc_method) (rpc_server_duration_seconds_count)");
    let methods = by(&got, &["rpc_service", "rpc_method"]);
    let expect = count_by(&grpc, |x| {
        let p = x.path.clone().unwrap_or_default();
        let (service, method) = p.trim_start_matches('/').split_once('/').unwrap_or_default();
        vec![service.to_string(), method.to_string()]
    });
    assert_eq!(methods, expect);

    // Seed names: histogram per pod in ms, status gauges per code, their jobs and grouping.
    let got = wait_for(&prom.url, r#"http_spend_count{job="HTTPSpend",instance="spendtime"}"#);
    assert_eq!(by(&got, &["podname"]), count_by(&http, |x| vec![x.target.clone()]));
    let got = wait_for(&prom.url, r#"sum by (le) (http_spend_bucket{job="HTTPSpend"})"#);
    let zero = got.iter().find(|(m, _)| m["le"] == "0").map(|(_, v)| *v);
    let under_1ms = http.iter().filter(|x| x.duration_ns.unwrap() < 1_000_000).count() as f64;
    assert_eq!(zero, Some(under_1ms), "bucket 0 holds responses under a whole millisecond");
    for (code, n) in count_by(&http, |x| vec![x.code()]) {
        let expr = format!(
            r#"sum(http_status_code_{c}{{job="HTTPStatus",instance="statuscode",StatusCode="{c}"}})"#,
            c = code[0]
        );
        assert_eq!(wait_for(&prom.url, &expr)[0].1, n, "{expr}");
    }
    for (code, n) in count_by(&grpc, |x| vec![x.code()]) {
        let expr =
            format!(r#"sum(gRPC_status_{c}{{job="GRPCStatus",StatusCode="{c}"}})"#, c = code[0]);
        assert_eq!(wait_for(&prom.url, &expr)[0].1, n, "{expr}");
    }
    let got = wait_for(&prom.url, r#"grpc_spend_count{job="GRPCSpend",instance="spendtime"}"#);
    assert_eq!(by(&got, &["podname"]), count_by(&grpc, |x| vec![x.target.clone()]));

    // Loss accounting.
    let lost = lost_in_fixtures(&all_fixtures());
    assert!(lost > 0.0);
    let got =
        wait_for(&prom.url, r#"podtap_capture_events_lost_total{job="podtap",instance="vm"}"#);
    assert_eq!(got[0].1, lost);
}

/// Every panel query of the shipped dashboard, with Grafana's variables
/// filled in, returns data from Prometheus after a push.
#[test]
fn every_dashboard_panel_returns_data_after_a_push() {
    let text = fs::read_to_string(repo().join("scripts/grafana/dashboards/podtap.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).unwrap();
    let panels: Vec<&Value> =
        dash["panels"].as_array().unwrap().iter().filter(|p| p["type"] != "row").collect();

    // Structure: unique ids, the datasource variable everywhere, the seed's seven panels.
    let ids: BTreeSet<u64> =
        dash["panels"].as_array().unwrap().iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), dash["panels"].as_array().unwrap().len());
    let vars: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(vars.contains(&"datasource"));
    let titles: BTreeSet<&str> = panels.iter().map(|p| p["title"].as_str().unwrap()).collect();
    for seed in [
        "HTTP Delay Distribution",
        "HTTP Request Count",
        "HTTP Request Delay",
        "HTTP StatusCode",
        "gRPC Request Count",
        "gRPC Request Delay",
        "gRPC StatusCode",
    ] {
        assert!(titles.contains(seed), "missing seed panel {seed}");
    }
    let mut exprs = Vec::new();
    for p in &panels {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}");
            exprs.push((
                p["title"].as_str().unwrap().to_string(),
                t["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    assert!(exprs.iter().any(|(_, e)| e.contains("http_server_request_duration_seconds")));
    assert!(exprs.iter().any(|(_, e)| e.contains("rpc_server_duration_seconds")));

    let (_gateway, prom, _xs, _dir) = push_fixtures();
    // Rates need two scrapes of the pushed totals.
    wait_for(&prom.url, "count_over_time(http_spend_count[1m]) >= 2");
    for (title, expr) in exprs {
        let expr = expr.replace("$__rate_interval", "1m").replace("$pod", ".*");
        let result = wait_for(&prom.url, &expr);
        assert!(!result.is_empty(), "panel {title}: {expr}");
    }
}

fn minimal_prometheus() -> String {
    "global:\n  scrape_interval: 1s\n".to_string()
}

/// The span of the exchanges: first start, last end (s).
fn span(xs: &[X]) -> (f64, f64) {
    let start = xs.iter().map(|x| x.start_ns).min().unwrap() as f64 / 1e9;
    let end =
        xs.iter().filter_map(|x| Some(x.start_ns + x.duration_ns?)).max().unwrap() as f64 / 1e9;
    (start, end)
}

/// History lands at the capture's own time: the samples' timestamps are in
/// the capture's span (plus at most one step), the last one holds the
/// totals, and nothing is there "now".
fn assert_history_at_capture_time(prom: &str, xs: &[X], what: &str) {
    let http: Vec<&X> = xs.iter().filter(|x| x.counted() && !x.grpc()).collect();
    let (start, end) = span(xs);
    let series = query_range(
        prom,
        "sum(http_server_request_duration_seconds_count)",
        start - 120.0,
        end + 120.0,
        1.0,
    );
    assert_eq!(series.len(), 1, "{what}: no history");
    let samples = &series[0].1;
    let first = samples.first().unwrap().0;
    assert!(
        first >= start - 1.0 && first <= end + 11.0,
        "{what}: first sample at {first}, capture {start}..{end}"
    );
    let last = samples.last().unwrap();
    assert_eq!(last.1, http.len() as f64, "{what}: totals");
    // "Now" has nothing (once the capture is older than the 5-minute lookback).
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    if now - end > 400.0 {
        let at_now = query(prom, "http_server_request_duration_seconds_count", None).unwrap();
        assert!(at_now.is_empty(), "{what}: samples at push time");
    }
}

#[test]
fn openmetrics_backfilled_with_promtool_lands_at_capture_time() {
    let dir = tempfile::tempdir().unwrap();
    let om = dir.path().join("run.om");
    let xfile = dir.path().join("x.parquet");
    let fixtures = all_fixtures();
    let mut args: Vec<&str> = fixtures.iter().map(String::as_str).collect();
    args.extend([
        "-q",
        "--openmetrics",
        om.to_str().unwrap(),
        "--exchanges",
        xfile.to_str().unwrap(),
        "--metric-names",
        "both",
    ]);
    let out = analyze(&args);
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    let text = fs::read_to_string(&om).unwrap();
    assert!(text.ends_with("# EOF\n"));

    let data = dir.path().join("data");
    let backfill = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&data)
        .output()
        .expect("promtool (scripts/setup.sh installs prometheus)");
    assert!(backfill.status.success(), "{}", String::from_utf8_lossy(&backfill.stderr));
    let prom = prometheus(&minimal_prometheus(), Some(&data));
    let xs = exchanges(&xfile);
    assert_history_at_capture_time(&prom.url, &xs, "openmetrics");
    // The seed names come along.
    let (start, end) = span(&xs);
    assert!(!query_range(&prom.url, "http_spend_count", start - 60.0, end + 60.0, 1.0).is_empty());
}

#[test]
fn remote_write_lands_at_capture_time() {
    let prom = prometheus(&minimal_prometheus(), None);
    let dir = tempfile::tempdir().unwrap();
    let xfile = dir.path().join("x.parquet");
    let url = format!("{}/api/v1/write", prom.url);
    let fixtures = all_fixtures();
    let mut args: Vec<&str> = fixtures.iter().map(String::as_str).collect();
    args.extend(["-q", "--remote-write", &url, "--exchanges", xfile.to_str().unwrap()]);
    let out = analyze(&args);
    assert_eq!(code_of(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("remote-wrote"), "{}", stderr(&out));
    assert_history_at_capture_time(&prom.url, &exchanges(&xfile), "remote write");
}

#[test]
fn a_refused_push_names_the_url_and_the_other_outputs_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.xlsx");
    let om = dir.path().join("m.om");
    let closed = format!("http://127.0.0.1:{}", free_port());
    let fixture = testdata().join("http1-keepalive/capture.parquet");
    let out = analyze(&[
        fixture.to_str().unwrap(),
        "-q",
        "--push",
        "--pushgateway",
        &closed,
        "--xlsx",
        report.to_str().unwrap(),
        "--openmetrics",
        om.to_str().unwrap(),
    ]);
    assert_eq!(code_of(&out), 1);
    let err = stderr(&out);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains(&closed) && errors[0].contains("refused"), "{err}");
    assert!(fs::metadata(&report).unwrap().len() > 0);
    assert!(fs::read_to_string(&om).unwrap().ends_with("# EOF\n"));

    // A gateway that answers with an error status: the status is in the line.
    let gateway = pushgateway();
    let wrong = format!("{}/not-here", gateway.url);
    let out = analyze(&[fixture.to_str().unwrap(), "-q", "--push", "--pushgateway", &wrong]);
    assert_eq!(code_of(&out), 1);
    let err = stderr(&out);
    assert!(err.contains("HTTP 404") && err.contains(&wrong), "{err}");

    // A bad URL is a usage error, before any work.
    let out = analyze(&[fixture.to_str().unwrap(), "--push", "--pushgateway", "localhost:9091"]);
    assert_eq!(code_of(&out), 2);
    assert!(stderr(&out).contains("--pushgateway"), "{}", stderr(&out));
    // A missing input: exit 2, named.
    let out = analyze(&["/nonexistent/run.parquet", "--push", "--pushgateway", &gateway.url]);
    assert_eq!(code_of(&out), 2);
    assert!(stderr(&out).contains("/nonexistent/run.parquet"), "{}", stderr(&out));
}
