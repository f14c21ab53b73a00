//! The xlsx report read back (calamine) and held against the exchange file:
//! sheets, headers, one row per exchange, values, charts.

mod common;

use std::{fs, io::Read, os::unix::fs::PermissionsExt};

use calamine::{open_workbook, Data, Reader, Xlsx};
use common::*;

fn text(d: &Data) -> String {
    match d {
        Data::String(s) => s.clone(),
        Data::Float(f) => f.to_string(),
        Data::Int(i) => i.to_string(),
        Data::Empty => String::new(),
        other => other.to_string(),
    }
}

fn number(d: &Data) -> Option<f64> {
    match d {
        Data::Float(f) => Some(*f),
        Data::Int(i) => Some(*i as f64),
        Data::DateTime(t) => Some(t.as_f64()),
        _ => None,
    }
}

fn excel_time(ns: i64) -> f64 {
    ns as f64 / 86_400e9 + 25_569.0
}

#[test]
fn the_report_reads_back_with_one_row_per_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.xlsx");
    let xfile = dir.path().join("x.parquet");
    let fixtures = all_fixtures();
    let mut args: Vec<&str> = fixtures.iter().map(String::as_str).collect();
    args.extend(["-q", "--xlsx", report.to_str().unwrap(), "--exchanges", xfile.to_str().unwrap()]);
    let out = analyze(&args);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::metadata(&report).unwrap().permissions().mode() & 0o777, 0o600);
    let xs = exchanges(&xfile);

    let mut wb: Xlsx<_> = open_workbook(&report).unwrap();
    assert_eq!(wb.sheet_names(), ["Summary", "HTTP", "gRPC"]);

    // HTTP: the seed's columns, one row per HTTP/1 exchange, in file order.
    let http = wb.worksheet_range("HTTP").unwrap();
    let rows: Vec<&[Data]> = http.rows().collect();
    let header: Vec<String> = rows[0].iter().map(text).collect();
    assert_eq!(
        header,
        [
            "time",
            "pod",
            "method",
            "path",
            "statuscode",
            "contentlength",
            "content-type",
            "body",
            "latency_ms"
        ]
    );
    let http_x: Vec<&X> = xs.iter().filter(|x| x.protocol == "http1").collect();
    assert!(http_x.len() > 50);
    assert_eq!(rows.len() - 1, http_x.len());
    for (row, x) in rows[1..].iter().zip(&http_x) {
        assert!((number(&row[0]).unwrap() - excel_time(x.start_ns)).abs() < 1e-8, "time");
        assert_eq!(text(&row[1]), x.target);
        assert_eq!(text(&row[2]), x.method.clone().unwrap_or_default());
        assert_eq!(text(&row[3]), x.path.clone().unwrap_or_default());
        assert_eq!(number(&row[4]), x.status.map(f64::from));
        match x.duration_ns {
            Some(d) => assert!((number(&row[8]).unwrap() - d as f64 / 1e6).abs() < 1e-6),
            None => assert_eq!(row.get(8).map(text).unwrap_or_default(), ""),
        }
    }
    // A text body is there as text.
    assert!(rows[1..].iter().any(|r| text(&r[6]).starts_with("text/") && !text(&r[7]).is_empty()));

    // gRPC: one row per HTTP/2 stream.
    let grpc = wb.worksheet_range("gRPC").unwrap();
    let rows: Vec<&[Data]> = grpc.rows().collect();
    let header: Vec<String> = rows[0].iter().map(text).collect();
    assert_eq!(
        header,
        [
            "time",
            "pod",
            "streamID",
            "method",
            "scheme",
            "path",
            "authority",
            "content-type",
            "user-agent",
            "te",
            "grpc-timeout",
            "weight",
            "status",
            "content-type",
            "grpc-status",
            "grpc-message",
            "latency_ms"
        ]
    );
    let h2: Vec<&X> = xs.iter().filter(|x| x.protocol != "http1").collect();
    assert_eq!(rows.len() - 1, h2.len());
    for (row, x) in rows[1..].iter().zip(&h2) {
        assert_eq!(text(&row[5]), x.path.clone().unwrap_or_default());
        assert_eq!(number(&row[12]), x.status.map(f64::from));
        assert_eq!(number(&row[14]), x.grpc_status.map(f64::from));
    }
    let grpc_rows: Vec<&&[Data]> =
        rows[1..].iter().filter(|r| text(&r[7]) == "application/grpc").collect();
    assert!(!grpc_rows.is_empty());
    assert!(grpc_rows.iter().all(|r| text(&r[4]) == "http" && text(&r[9]) == "trailers"));
    assert!(
        rows[1..].iter().any(|r| text(&r[15]).contains("100% gone")),
        "grpc-message of the error calls"
    );

    // Summary: the facts and a RED table whose requests add up to the counted exchanges.
    let summary = wb.worksheet_range("Summary").unwrap();
    let rows: Vec<&[Data]> = summary.rows().collect();
    let fact = |name: &str| {
        rows.iter()
            .find(|r| text(&r[0]) == name)
            .map(|r| text(&r[1]))
            .unwrap_or_else(|| panic!("no fact {name}"))
    };
    assert_eq!(fact("exchanges"), xs.len().to_string());
    assert_eq!(fact("lost events"), "75");
    let head = rows
        .iter()
        .position(|r| text(&r[0]) == "target" && text(&r[4]) == "requests")
        .expect("RED table");
    let mut requests = 0.0;
    for r in &rows[head + 1..] {
        if text(&r[0]).is_empty() {
            break;
        }
        requests += number(&r[4]).unwrap();
    }
    assert_eq!(requests, xs.iter().filter(|x| x.counted()).count() as f64);

    // The latency distribution's data: each counted exchange in its bucket.
    let head = rows.iter().position(|r| text(&r[0]) == "latency").expect("latency data");
    let bounds_ms = [
        0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0,
        2500.0, 5000.0, 7500.0, 10000.0,
    ];
    let mut expected = vec![0.0; bounds_ms.len() + 1];
    for x in xs.iter().filter(|x| x.counted()) {
        let ms = x.duration_ns.unwrap() as f64 / 1e6;
        expected[bounds_ms.iter().position(|le| ms <= *le).unwrap_or(bounds_ms.len())] += 1.0;
    }
    let got: Vec<f64> =
        rows[head + 1..=head + expected.len()].iter().map(|r| number(&r[1]).unwrap()).collect();
    assert_eq!(got, expected);
    assert_eq!(text(&rows[head + 1][0]), "≤ 0.1 ms");
    assert_eq!(text(&rows[head + expected.len()][0]), "> 10000 ms");

    // Three charts: latency distribution, status codes, requests over time.
    let mut zip = zip::ZipArchive::new(fs::File::open(&report).unwrap()).unwrap();
    let mut kinds = Vec::new();
    for i in 1..=3 {
        let mut xml = String::new();
        zip.by_name(&format!("xl/charts/chart{i}.xml")).unwrap().read_to_string(&mut xml).unwrap();
        kinds.push(
            ["barChart", "pieChart", "lineChart"]
                .into_iter()
                .find(|k| xml.contains(k))
                .unwrap_or("?"),
        );
    }
    assert_eq!(kinds, ["barChart", "pieChart", "lineChart"]);
}
