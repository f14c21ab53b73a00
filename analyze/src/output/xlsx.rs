//! `--xlsx PATH`: the report of SPEC §6, with the original tool's columns.
//!
//! - `Summary`: what was captured and how much of it decoded, the RED table,
//!   and three charts (latency distribution, status codes, requests over
//!   time) over small data tables below the RED table.
//! - `HTTP`: one row per HTTP/1 exchange.
//! - `gRPC`: one row per HTTP/2 stream (gRPC or not).
//!
//! The two row sheets are streamed from the exchange file in constant-memory
//! mode, so a large capture costs disk, not memory. Excel holds at most
//! 1,048,575 rows under a header; past that a sheet stops and the Summary
//! says how many rows it left out (the exchange file has them all).

use std::path::Path;

use anyhow::{Context as _, Result};
use arrow_array::{
    cast::AsArray,
    types::{Int32Type, Int64Type, TimestampNanosecondType, UInt16Type, UInt32Type, UInt64Type},
    Array, ArrayRef, ListArray, RecordBatch, StructArray,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rust_xlsxwriter::{Chart, ChartType, Format, FormatAlign, Workbook, Worksheet, XlsxError};

use crate::{
    red::{Red, CHART_BUCKETS_MS},
    stats::Stats,
};

/// Rows a sheet holds under its header.
pub const MAX_ROWS: u32 = 1_048_575;
/// Characters a cell holds.
const MAX_CELL: usize = 32_767;

/// What the Summary states about the run besides RED.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub captures: Vec<String>,
    pub hosts: Vec<String>,
    pub stats: Stats,
}

/// How many rows went to each row sheet, and how many did not fit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub http_rows: u64,
    pub grpc_rows: u64,
    pub http_left_out: u64,
    pub grpc_left_out: u64,
}

const HTTP_COLUMNS: [(&str, f64); 9] = [
    ("time", 24.0),
    ("pod", 18.0),
    ("method", 9.0),
    ("path", 40.0),
    ("statuscode", 11.0),
    ("contentlength", 14.0),
    ("content-type", 26.0),
    ("body", 60.0),
    ("latency_ms", 12.0),
];

const GRPC_COLUMNS: [(&str, f64); 17] = [
    ("time", 24.0),
    ("pod", 18.0),
    ("streamID", 10.0),
    ("method", 9.0),
    ("scheme", 8.0),
    ("path", 40.0),
    ("authority", 22.0),
    ("content-type", 22.0),
    ("user-agent", 28.0),
    ("te", 10.0),
    ("grpc-timeout", 13.0),
    ("weight", 8.0),
    ("status", 8.0),
    ("content-type", 22.0),
    ("grpc-status", 12.0),
    ("grpc-message", 30.0),
    ("latency_ms", 12.0),
];

/// Writes the report for the exchange file at `exchanges`.
pub fn write(path: &Path, exchanges: &Path, red: &Red, facts: &Facts) -> Result<Written> {
    let mut workbook = Workbook::new();
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Constant-memory sheets spill to temporary files next to the report.
        workbook
            .set_tempdir(dir)
            .context("cannot use the report's directory for temporary files")?;
    }
    let header =
        Format::new().set_bold().set_background_color("#DDEBF7").set_align(FormatAlign::Center);
    let time = Format::new().set_num_format("yyyy-mm-dd hh:mm:ss.000");
    let ms = Format::new().set_num_format("0.000");

    let summary = workbook.add_worksheet();
    summary.set_name("Summary")?;
    let http = workbook.add_worksheet_with_constant_memory()?;
    http.set_name("HTTP")?;
    start_sheet(http, &HTTP_COLUMNS, &header)?;
    let grpc = workbook.add_worksheet_with_constant_memory()?;
    grpc.set_name("gRPC")?;
    start_sheet(grpc, &GRPC_COLUMNS, &header)?;

    let written = rows(&mut workbook, exchanges, &time, &ms)?;
    for (index, columns, n) in
        [(1, HTTP_COLUMNS.len(), written.http_rows), (2, GRPC_COLUMNS.len(), written.grpc_rows)]
    {
        let sheet = workbook.worksheet_from_index(index)?;
        sheet.autofilter(0, 0, n.max(1) as u32, (columns - 1) as u16)?;
    }
    let summary = workbook.worksheet_from_index(0)?;
    write_summary(summary, red, facts, &written, &header, &ms)?;
    let file = super::create_private(path)
        .with_context(|| format!("failed to create `{}`", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    workbook
        .save_to_writer(&mut out)
        .with_context(|| format!("failed to write `{}`", path.display()))?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all().with_context(|| format!("failed to write `{}`", path.display()))?;
    Ok(written)
}

fn start_sheet(
    sheet: &mut Worksheet,
    columns: &[(&str, f64)],
    header: &Format,
) -> Result<(), XlsxError> {
    for (i, (name, width)) in columns.iter().enumerate() {
        sheet.set_column_width(i as u16, *width)?;
        sheet.write_string_with_format(0, i as u16, *name, header)?;
    }
    sheet.set_freeze_panes(1, 0)?;
    Ok(())
}

/// Excel's serial date (days since 1899-12-30) of a Unix time in ns.
fn excel_time(ns: i64) -> f64 {
    ns as f64 / 86_400e9 + 25_569.0
}

/// A response body as cell text: UTF-8 text as it is, anything else as hex.
fn body_text(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(text) if !text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) => {
            text.chars().take(MAX_CELL).collect()
        }
        _ => {
            let hex: String =
                body.iter().take((MAX_CELL - 32) / 2).map(|b| format!("{b:02x}")).collect();
            format!("binary, {} bytes: {hex}", body.len())
        }
    }
}

fn cell(s: &str) -> String {
    s.chars().take(MAX_CELL).collect()
}

/// Typed access to the exchange file's columns of one batch.
struct Cols<'a> {
    batch: &'a RecordBatch,
}

impl<'a> Cols<'a> {
    fn col(&self, name: &str) -> Option<&'a ArrayRef> {
        self.batch.column_by_name(name)
    }

    fn str(&self, name: &str, i: usize) -> Option<&'a str> {
        let a = self.col(name)?.as_string_opt::<i32>()?;
        a.is_valid(i).then(|| a.value(i))
    }

    fn u64(&self, name: &str, i: usize) -> Option<u64> {
        let a = self.col(name)?.as_primitive_opt::<UInt64Type>()?;
        a.is_valid(i).then(|| a.value(i))
    }

    fn u32(&self, name: &str, i: usize) -> Option<u32> {
        let a = self.col(name)?.as_primitive_opt::<UInt32Type>()?;
        a.is_valid(i).then(|| a.value(i))
    }

    fn u16(&self, name: &str, i: usize) -> Option<u16> {
        let a = self.col(name)?.as_primitive_opt::<UInt16Type>()?;
        a.is_valid(i).then(|| a.value(i))
    }

    fn i32(&self, name: &str, i: usize) -> Option<i32> {
        let a = self.col(name)?.as_primitive_opt::<Int32Type>()?;
        a.is_valid(i).then(|| a.value(i))
    }

    fn i64(&self, name: &str, i: usize) -> Option<i64> {
        let a = self.col(name)?.as_primitive_opt::<Int64Type>()?;
        a.is_valid(i).then(|| a.value(i))
    }

    fn ts(&self, name: &str, i: usize) -> Option<i64> {
        let a = self.col(name)?.as_primitive_opt::<TimestampNanosecondType>()?;
        a.is_valid(i).then(|| a.value(i))
    }

    fn binary(&self, name: &str, i: usize) -> Option<&'a [u8]> {
        let a = self.col(name)?.as_binary_opt::<i32>()?;
        a.is_valid(i).then(|| a.value(i))
    }

    /// The first value of header `name` in a headers column.
    fn header(&self, column: &str, i: usize, name: &str) -> Option<String> {
        let list: &ListArray = self.col(column)?.as_list_opt::<i32>()?;
        if !list.is_valid(i) {
            return None;
        }
        let items = list.value(i);
        let items: &StructArray = items.as_struct_opt()?;
        let names = items.column(0).as_string_opt::<i32>()?;
        let values = items.column(1).as_string_opt::<i32>()?;
        (0..items.len())
            .find(|&j| names.value(j).eq_ignore_ascii_case(name))
            .and_then(|j| values.is_valid(j).then(|| values.value(j).to_string()))
    }
}

/// Streams the exchange file into the HTTP and gRPC sheets.
fn rows(workbook: &mut Workbook, exchanges: &Path, time: &Format, ms: &Format) -> Result<Written> {
    let file = std::fs::File::open(exchanges)
        .with_context(|| format!("failed to open `{}`", exchanges.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(4096).build())
        .with_context(|| format!("failed to read `{}`", exchanges.display()))?;
    let mut w = Written::default();
    for batch in reader {
        let batch = batch.with_context(|| format!("failed to read `{}`", exchanges.display()))?;
        let c = Cols { batch: &batch };
        for i in 0..batch.num_rows() {
            let protocol = c.str("protocol", i).unwrap_or_default();
            let target = c.str("pod", i).or(c.str("process", i)).unwrap_or_default();
            let start = c.ts("start", i).unwrap_or(0);
            let latency = c.i64("duration_ns", i).map(|d| d as f64 / 1e6);
            if protocol == "http1" {
                if w.http_rows >= u64::from(MAX_ROWS) {
                    w.http_left_out += 1;
                    continue;
                }
                w.http_rows += 1;
                let row = w.http_rows as u32;
                let sheet = workbook.worksheet_from_index(1)?;
                sheet.write_number_with_format(row, 0, excel_time(start), time)?;
                sheet.write_string(row, 1, cell(target))?;
                write_opt_str(sheet, row, 2, c.str("method", i))?;
                write_opt_str(sheet, row, 3, c.str("path", i))?;
                write_opt_num(sheet, row, 4, c.u16("status", i).map(f64::from), None)?;
                write_opt_num(
                    sheet,
                    row,
                    5,
                    c.u64("response_body_size", i).map(|n| n as f64),
                    None,
                )?;
                write_opt_str(sheet, row, 6, c.str("content_type", i))?;
                if let Some(body) = c.binary("response_body", i).filter(|b| !b.is_empty()) {
                    sheet.write_string(row, 7, body_text(body))?;
                }
                write_opt_num(sheet, row, 8, latency, Some(ms))?;
            } else {
                if w.grpc_rows >= u64::from(MAX_ROWS) {
                    w.grpc_left_out += 1;
                    continue;
                }
                w.grpc_rows += 1;
                let row = w.grpc_rows as u32;
                let sheet = workbook.worksheet_from_index(2)?;
                sheet.write_number_with_format(row, 0, excel_time(start), time)?;
                sheet.write_string(row, 1, cell(target))?;
                write_opt_num(sheet, row, 2, c.u32("stream_id", i).map(f64::from), None)?;
                write_opt_str(sheet, row, 3, c.str("method", i))?;
                write_opt_str(sheet, row, 4, c.header("request_headers", i, ":scheme").as_deref())?;
                write_opt_str(sheet, row, 5, c.str("path", i))?;
                write_opt_str(sheet, row, 6, c.str("authority", i))?;
                write_opt_str(
                    sheet,
                    row,
                    7,
                    c.header("request_headers", i, "content-type").as_deref(),
                )?;
                write_opt_str(
                    sheet,
                    row,
                    8,
                    c.header("request_headers", i, "user-agent").as_deref(),
                )?;
                write_opt_str(sheet, row, 9, c.header("request_headers", i, "te").as_deref())?;
                write_opt_str(
                    sheet,
                    row,
                    10,
                    c.header("request_headers", i, "grpc-timeout").as_deref(),
                )?;
                write_opt_num(sheet, row, 11, c.u16("request_weight", i).map(f64::from), None)?;
                write_opt_num(sheet, row, 12, c.u16("status", i).map(f64::from), None)?;
                write_opt_str(sheet, row, 13, c.str("content_type", i))?;
                write_opt_num(sheet, row, 14, c.i32("grpc_status", i).map(f64::from), None)?;
                write_opt_str(sheet, row, 15, c.str("grpc_message", i))?;
                write_opt_num(sheet, row, 16, latency, Some(ms))?;
            }
        }
    }
    Ok(w)
}

fn write_opt_str(
    sheet: &mut Worksheet,
    row: u32,
    col: u16,
    v: Option<&str>,
) -> Result<(), XlsxError> {
    if let Some(v) = v {
        sheet.write_string(row, col, cell(v))?;
    }
    Ok(())
}

fn write_opt_num(
    sheet: &mut Worksheet,
    row: u32,
    col: u16,
    v: Option<f64>,
    format: Option<&Format>,
) -> Result<(), XlsxError> {
    match (v, format) {
        (Some(v), Some(f)) => sheet.write_number_with_format(row, col, v, f).map(|_| ()),
        (Some(v), None) => sheet.write_number(row, col, v).map(|_| ()),
        (None, _) => Ok(()),
    }
}

/// `2026-11-25 23:29:29.381 UTC` for a Unix time in ns.
fn utc(ns: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns.max(0) as u64);
    let text = humantime::format_rfc3339_millis(t).to_string();
    format!("{} UTC", text.trim_end_matches('Z').replace('T', " "))
}

fn write_summary(
    sheet: &mut Worksheet,
    red: &Red,
    facts: &Facts,
    written: &Written,
    header: &Format,
    ms: &Format,
) -> Result<()> {
    let bold = Format::new().set_bold();
    let title = Format::new().set_bold().set_font_size(14);
    let percent = Format::new().set_num_format("0.0%");
    let rate = Format::new().set_num_format("0.00");
    let time = Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    let stats = &facts.stats;

    sheet.set_column_width(0, 26)?;
    sheet.set_column_width(1, 34)?;
    for col in 2..12 {
        sheet.set_column_width(col, 12)?;
    }
    sheet.set_column_width(12, 30)?;
    // Printed (or exported to PDF) one page wide.
    sheet.set_landscape();
    sheet.set_print_fit_to_pages(1, 0);
    sheet.write_string_with_format(0, 0, "podtap report", &title)?;
    let (start, end) = stats.span.unwrap_or((0, 0));
    let mut facts_rows: Vec<(&str, String)> = vec![
        ("captures", facts.captures.join(", ")),
        ("hosts", facts.hosts.join(", ")),
        ("from", utc(start)),
        ("to", utc(end)),
        ("duration", format!("{:.1} s", red.seconds)),
        ("events", stats.rows.to_string()),
        ("bytes moved", stats.bytes.to_string()),
        ("lost events", stats.lost_events.to_string()),
        (
            "connections",
            format!(
                "{} ({} HTTP/1, {} HTTP/2, {} not HTTP, {} without data)",
                stats.connections,
                stats.http1_connections,
                stats.http2_connections,
                stats.unknown_connections,
                stats.empty_connections
            ),
        ),
        ("exchanges", stats.exchanges.to_string()),
        (
            "complete exchanges",
            format!(
                "{} ({:.1}%)",
                stats.complete,
                if stats.exchanges == 0 {
                    100.0
                } else {
                    stats.complete as f64 * 100.0 / stats.exchanges as f64
                }
            ),
        ),
        (
            "in RED",
            format!("{} ({} without a response or a known status)", red.requests(), red.excluded),
        ),
        ("bytes never seen", stats.gap_bytes.to_string()),
        ("bytes skipped", stats.skipped_bytes.to_string()),
        ("HPACK fields unknown", stats.hpack_unknown_fields.to_string()),
        ("time step", format!("{} s", red.step_ns as f64 / 1e9)),
    ];
    let u = &stats.uprobe;
    if u.blocks > 0 {
        facts_rows.push((
            "gRPC headers by uprobes",
            format!(
                "{} block(s): {} filled what the wire lacked, {} confirmed it, {} differed, {} without a decoded stream",
                u.blocks, u.filled, u.agreed, u.disagreed, u.unmatched
            ),
        ));
    }
    if written.http_left_out > 0 || written.grpc_left_out > 0 {
        facts_rows.push((
            "rows left out",
            format!(
                "HTTP sheet: {}, gRPC sheet: {} (Excel's row limit; every exchange is in the exchange file)",
                written.http_left_out, written.grpc_left_out
            ),
        ));
    }
    let mut row = 2u32;
    for (name, value) in &facts_rows {
        sheet.write_string_with_format(row, 0, *name, &bold)?;
        sheet.write_string(row, 1, value.as_str())?;
        row += 1;
    }

    // RED table.
    row += 1;
    sheet.write_string_with_format(row, 0, "RED per target and operation", &title)?;
    row += 1;
    let red_header = row;
    let columns = [
        "target",
        "direction",
        "protocol",
        "operation",
        "requests",
        "rate/s",
        "errors",
        "error %",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "statuses",
    ];
    for (i, name) in columns.iter().enumerate() {
        sheet.write_string_with_format(row, i as u16, *name, header)?;
    }
    for r in &red.rows {
        row += 1;
        sheet.write_string(row, 0, cell(&r.target))?;
        sheet.write_string(row, 1, if r.role == "client" { "out" } else { "in" })?;
        sheet.write_string(row, 2, r.protocol.as_str())?;
        sheet.write_string(row, 3, cell(&r.operation()))?;
        sheet.write_number(row, 4, r.requests as f64)?;
        sheet.write_number_with_format(row, 5, r.rate, &rate)?;
        sheet.write_number(row, 6, r.errors as f64)?;
        sheet.write_number_with_format(row, 7, r.error_ratio(), &percent)?;
        for (i, v) in [r.p50_ms, r.p90_ms, r.p99_ms, r.max_ms].into_iter().enumerate() {
            sheet.write_number_with_format(row, 8 + i as u16, v, ms)?;
        }
        let statuses: Vec<String> = r.statuses.iter().map(|(c, n)| format!("{c}: {n}")).collect();
        sheet.write_string(row, 12, statuses.join(", "))?;
    }
    sheet.autofilter(red_header, 0, row.max(red_header + 1), (columns.len() - 1) as u16)?;

    // Chart data.
    let totals = red.totals();
    row += 2;
    sheet.write_string_with_format(row, 0, "latency", header)?;
    sheet.write_string_with_format(row, 1, "requests", header)?;
    let latency_first = row + 1;
    for i in 0..=CHART_BUCKETS_MS.len() {
        row += 1;
        let label = match CHART_BUCKETS_MS.get(i) {
            Some(le) => format!("≤ {le} ms"),
            None => format!("> {} ms", CHART_BUCKETS_MS[i - 1]),
        };
        sheet.write_string(row, 0, label)?;
        sheet.write_number(row, 1, red.latency.get(i).copied().unwrap_or(0) as f64)?;
    }
    let latency_last = row;

    row += 2;
    sheet.write_string_with_format(row, 0, "status", header)?;
    sheet.write_string_with_format(row, 1, "responses", header)?;
    let mut by_status: std::collections::BTreeMap<String, u64> = Default::default();
    for (key, agg) in &totals {
        let name =
            if key.is_grpc() { format!("gRPC {}", key.code) } else { format!("HTTP {}", key.code) };
        *by_status.entry(name).or_default() += agg.count;
    }
    let status_first = row + 1;
    for (name, n) in &by_status {
        row += 1;
        sheet.write_string(row, 0, name.as_str())?;
        sheet.write_number(row, 1, *n as f64)?;
    }
    let status_last = row.max(status_first);

    row += 2;
    sheet.write_string_with_format(row, 0, "time", header)?;
    sheet.write_string_with_format(row, 1, "HTTP requests", header)?;
    sheet.write_string_with_format(row, 2, "gRPC calls", header)?;
    let mut per_step = vec![[0u64; 2]; red.steps];
    for (key, steps) in &red.series {
        for (step, agg) in steps {
            if let Some(s) = per_step.get_mut(*step) {
                s[usize::from(key.is_grpc())] += agg.count;
            }
        }
    }
    let time_first = row + 1;
    for (i, counts) in per_step.iter().enumerate() {
        row += 1;
        sheet.write_number_with_format(
            row,
            0,
            excel_time(red.t0 + i as i64 * red.step_ns),
            &time,
        )?;
        sheet.write_number(row, 1, counts[0] as f64)?;
        sheet.write_number(row, 2, counts[1] as f64)?;
    }
    let time_last = row.max(time_first);

    // Two charts to the right of the facts, the third beside its data.
    let mut latency = Chart::new(ChartType::Column);
    latency
        .add_series()
        .set_categories(("Summary", latency_first, 0, latency_last, 0))
        .set_values(("Summary", latency_first, 1, latency_last, 1))
        .set_name("requests");
    latency.title().set_name("Latency distribution");
    latency.legend().set_hidden();
    sheet.insert_chart(1, 3, &latency)?;

    let mut pie = Chart::new(ChartType::Pie);
    pie.add_series()
        .set_categories(("Summary", status_first, 0, status_last, 0))
        .set_values(("Summary", status_first, 1, status_last, 1))
        .set_name("responses");
    pie.title().set_name("Status codes");
    sheet.insert_chart(1, 9, &pie)?;

    let mut over_time = Chart::new(ChartType::Line);
    for (col, name) in [(1u16, "HTTP requests"), (2, "gRPC calls")] {
        over_time
            .add_series()
            .set_categories(("Summary", time_first, 0, time_last, 0))
            .set_values(("Summary", time_first, col, time_last, col))
            .set_name(name);
    }
    over_time.title().set_name(&format!("Requests per {} s", red.step_ns as f64 / 1e9));
    over_time.x_axis().set_text_axis(true).set_num_format("hh:mm:ss");
    over_time.set_width(720);
    sheet.insert_chart(latency_first - 1, 3, &over_time)?;
    Ok(())
}
