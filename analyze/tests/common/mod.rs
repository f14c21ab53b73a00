//! Shared by the output tests: running `analyze` on the fixtures, real
//! Prometheus and Pushgateway processes on free ports, and an independent
//! count of what the exchange file says (plain Rust over arrow, not polars),
//! to hold the metrics against.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use arrow_array::{
    cast::AsArray,
    types::{Int32Type, Int64Type, TimestampNanosecondType, UInt16Type},
    Array,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

/// A series' labels.
pub type Labels = BTreeMap<String, String>;
/// An instant query's result.
pub type Vector = Vec<(Labels, f64)>;
/// A range query's result.
pub type Matrix = Vec<(Labels, Vec<(f64, f64)>)>;

pub const ANALYZE: &str = env!("CARGO_BIN_EXE_analyze");

pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every fixture's capture.
pub fn all_fixtures() -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(testdata())
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path().join("capture.parquet");
            p.exists().then(|| p.display().to_string())
        })
        .collect();
    out.sort();
    out
}

pub fn analyze(args: &[&str]) -> Output {
    let out = Command::new(ANALYZE).args(args).env_remove("PUSHGATEWAY_URL").output().unwrap();
    assert!(
        out.status.code().is_some(),
        "analyze was killed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A process that is killed when the test ends.
pub struct Peer {
    child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_ready(url: &str, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = reqwest::blocking::Client::new();
    loop {
        if let Ok(r) = client.get(format!("{url}/-/ready")).send() {
            if r.status().is_success() {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{url} exited ({status}): {}", fs::read_to_string(log).unwrap_or_default());
        }
        assert!(
            Instant::now() < deadline,
            "{url} not ready: {}",
            fs::read_to_string(log).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn spawn(program: &str, args: &[String], dir: tempfile::TempDir, url: String) -> Peer {
    let log = dir.path().join("log");
    let mut child = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program} (scripts/setup.sh installs it): {e}"));
    wait_ready(&url, &mut child, &log);
    Peer { child, url, dir }
}

/// A Pushgateway on a free port, starting empty: Debian's build keeps the
/// groups pushed to every instance in one file unless told otherwise.
pub fn pushgateway() -> Peer {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let args =
        vec![format!("--web.listen-address=127.0.0.1:{port}"), "--persistence.file=".to_string()];
    spawn("prometheus-pushgateway", &args, tempfile::tempdir().unwrap(), url)
}

/// A Prometheus on a free port with `config` (YAML), over `data` (a fresh
/// directory when None), with the remote-write receiver on.
pub fn prometheus(config: &str, data: Option<&Path>) -> Peer {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let config_path = dir.path().join("prometheus.yml");
    fs::write(&config_path, config).unwrap();
    let data = data.map(Path::to_path_buf).unwrap_or_else(|| dir.path().join("data"));
    let args = vec![
        format!("--config.file={}", config_path.display()),
        format!("--storage.tsdb.path={}", data.display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--web.enable-remote-write-receiver".to_string(),
        "--storage.tsdb.retention.time=100y".to_string(),
    ];
    spawn("prometheus", &args, dir, url)
}

/// The shipped Prometheus configuration, scraping `gateway` every second.
pub fn shipped_config(gateway: &str) -> String {
    let text = fs::read_to_string(repo().join("scripts/prometheus/prometheus.yml")).unwrap();
    assert!(text.contains("honor_labels: true"), "the shipped config must honor pushed labels");
    let address = gateway.trim_start_matches("http://");
    text.replace("127.0.0.1:9091", address).replace("scrape_interval: 15s", "scrape_interval: 1s")
}

/// An instant query's result: (labels, value) per series.
pub fn query(prom: &str, expr: &str, time: Option<f64>) -> Result<Vector, String> {
    let mut params = vec![("query", expr.to_string())];
    if let Some(t) = time {
        params.push(("time", format!("{t:.3}")));
    }
    let v: Value = reqwest::blocking::Client::new()
        .get(format!("{prom}/api/v1/query"))
        .query(&params)
        .send()
        .map_err(|e| e.to_string())?
        .json()
        .map_err(|e| e.to_string())?;
    if v["status"] != "success" {
        return Err(format!("{expr}: {v}"));
    }
    let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
    Ok(result
        .iter()
        .map(|r| {
            let labels = r["metric"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let value = r["value"][1].as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
            (labels, value)
        })
        .collect())
}

/// A range query's samples: (labels, [(t, value)]) per series.
pub fn query_range(prom: &str, expr: &str, start: f64, end: f64, step: f64) -> Matrix {
    let v: Value = reqwest::blocking::Client::new()
        .get(format!("{prom}/api/v1/query_range"))
        .query(&[
            ("query", expr.to_string()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", format!("{step}")),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["status"], "success", "{expr}: {v}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let labels = r["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            let values = r["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_f64().unwrap(), p[1].as_str().unwrap().parse().unwrap()))
                .collect();
            (labels, values)
        })
        .collect()
}

/// Polls `expr` until it has a result.
pub fn wait_for(prom: &str, expr: &str) -> Vector {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match query(prom, expr, None) {
            Ok(r) if !r.is_empty() => return r,
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < deadline, "no result for {expr}");
        thread::sleep(Duration::from_millis(250));
    }
}

/// One exchange, as the tests need it.
#[derive(Clone, Debug)]
pub struct X {
    pub protocol: String,
    pub target: String,
    pub start_ns: i64,
    pub duration_ns: Option<i64>,
    pub status: Option<u16>,
    pub grpc_status: Option<i32>,
    pub method: Option<String>,
    pub path: Option<String>,
}

impl X {
    pub fn grpc(&self) -> bool {
        self.protocol == "grpc"
    }

    /// Counted in RED: duration and status (gRPC: grpc-status) known.
    pub fn counted(&self) -> bool {
        self.duration_ns.is_some()
            && if self.grpc() { self.grpc_status.is_some() } else { self.status.is_some() }
    }

    pub fn code(&self) -> String {
        if self.grpc() {
            self.grpc_status.map(|c| c.to_string()).unwrap_or_default()
        } else {
            self.status.map(|c| c.to_string()).unwrap_or_default()
        }
    }

    pub fn error(&self) -> bool {
        if self.grpc() {
            self.grpc_status.is_some_and(|c| c != 0)
        } else {
            self.status.is_some_and(|c| c >= 500)
        }
    }
}

/// Reads an exchange file in its row order.
pub fn exchanges(path: &Path) -> Vec<X> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let b = batch.unwrap();
        let s = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
        let (protocol, pod, process, method, path) =
            (s("protocol"), s("pod"), s("process"), s("method"), s("path"));
        let start =
            b.column_by_name("start").unwrap().as_primitive::<TimestampNanosecondType>().clone();
        let duration = b.column_by_name("duration_ns").unwrap().as_primitive::<Int64Type>().clone();
        let status = b.column_by_name("status").unwrap().as_primitive::<UInt16Type>().clone();
        let grpc = b.column_by_name("grpc_status").unwrap().as_primitive::<Int32Type>().clone();
        let opt_s =
            |a: &arrow_array::StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
        for i in 0..b.num_rows() {
            out.push(X {
                protocol: protocol.value(i).to_string(),
                target: opt_s(&pod, i).or_else(|| opt_s(&process, i)).unwrap_or_default(),
                start_ns: start.value(i),
                duration_ns: duration.is_valid(i).then(|| duration.value(i)),
                status: status.is_valid(i).then(|| status.value(i)),
                grpc_status: grpc.is_valid(i).then(|| grpc.value(i)),
                method: opt_s(&method, i),
                path: opt_s(&path, i),
            });
        }
    }
    out
}
