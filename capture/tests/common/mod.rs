//! Helpers for end-to-end tests: real peers (the Python HTTP/1.1 server and
//! client in `scripts/peers/`), the real `capture` binary with real eBPF, and
//! a reader for the Parquet files it writes.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    fs,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio},
    sync::mpsc::{channel, Receiver},
    time::{Duration, Instant},
};

use arrow_array::{
    cast::AsArray,
    types::{Int32Type, TimestampNanosecondType, UInt32Type, UInt64Type},
    Array, RecordBatch,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub mod go;
pub mod web;

pub const CAPTURE: &str = env!("CARGO_BIN_EXE_capture");

/// Where builds of test peers are kept, outside the clone: `$PODTAP_CACHE`,
/// else `/var/cache/podtap` (what `scripts/setup.sh` uses).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("PODTAP_CACHE").map_or_else(|| "/var/cache/podtap".into(), PathBuf::from)
}

/// Fails the test unless it runs as root: these tests load real eBPF programs.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "end-to-end capture tests load eBPF programs and must run as root (CI does)"
    );
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A running Python peer from `scripts/peers/http1.py`.
pub struct Peer {
    pub child: Child,
    stdout: BufReader<ChildStdout>,
    stdin: Option<ChildStdin>,
}

impl Peer {
    fn spawn(args: &[&str]) -> Peer {
        Peer::spawn_script("http1.py", args)
    }

    /// Runs `scripts/peers/SCRIPT ARGS`.
    pub fn spawn_script(script: &str, args: &[&str]) -> Peer {
        let script = repo_root().join("scripts/peers").join(script);
        let mut child = Command::new("python3")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let stdin = child.stdin.take();
        Peer { child, stdout, stdin }
    }

    /// Starts an HTTP/1.1 server; returns it and its port.
    pub fn server(args: &[&str]) -> (Peer, u16) {
        let mut all = vec!["server"];
        all.extend_from_slice(args);
        let mut peer = Peer::spawn(&all);
        let port = peer.expect_number("port ");
        (peer, port)
    }

    /// Starts the framed echo server of `syscalls.py`; returns it and its port.
    pub fn syscalls_server() -> (Peer, u16) {
        let mut peer = Peer::spawn_script("syscalls.py", &["server"]);
        let port = peer.expect_number("port ");
        (peer, port)
    }

    /// Runs the `syscalls.py` client to the end; returns its local port.
    pub fn syscalls_client(port: u16, log: &Path, specs: &[&str]) -> u16 {
        let port = port.to_string();
        let mut args = vec!["client", "--port", &port, "--log", log.to_str().unwrap()];
        args.extend_from_slice(specs);
        let mut client = Peer::spawn_script("syscalls.py", &args);
        let local = client.expect_number("local ");
        client.finish();
        local
    }

    /// Reads stdout until a line `PREFIX NUMBER` and returns the number.
    pub fn expect_number(&mut self, prefix: &str) -> u16 {
        let line = self.expect_line(prefix);
        line.trim_start_matches(prefix)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("bad line {line:?}"))
    }

    /// Starts a client that waits for [`Peer::resume`] before connecting.
    pub fn waiting_client(port: u16, args: &[&str]) -> Peer {
        let port = port.to_string();
        let mut all = vec!["client", "--wait", "--port", &port];
        all.extend_from_slice(args);
        let mut peer = Peer::spawn(&all);
        peer.expect_line("ready");
        peer
    }

    /// Starts a client; returns it and its local port (the connection is open).
    pub fn client(port: u16, args: &[&str]) -> (Peer, u16) {
        let port = port.to_string();
        let mut all = vec!["client", "--port", &port];
        all.extend_from_slice(args);
        let mut peer = Peer::spawn(&all);
        let local = peer.expect_number("local ");
        (peer, local)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads stdout until a line starting with `prefix`.
    pub fn expect_line(&mut self, prefix: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "peer exited before printing `{prefix}`");
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// Sends a line to the peer's stdin (to resume a paused client).
    pub fn resume(&mut self) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for a client to finish successfully.
    pub fn finish(mut self) {
        self.expect_line("done");
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "client failed: {status}");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `capture`.
pub struct Capture {
    child: Child,
    stderr: Receiver<String>,
    lines: Vec<String>,
}

/// How a capture ended.
pub struct Finished {
    pub status: ExitStatus,
    pub stderr: String,
}

impl Capture {
    /// Spawns `capture ARGS` without waiting.
    pub fn spawn(args: &[&str]) -> Capture {
        let mut child = Command::new(CAPTURE)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("capture runs");
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in stderr.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Capture { child, stderr: rx, lines: Vec::new() }
    }

    /// Spawns `capture ARGS` and waits until it records.
    pub fn start(args: &[&str]) -> Capture {
        let mut cap = Capture::spawn(args);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match cap.stderr.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    let ready = line.contains("capturing");
                    cap.lines.push(line);
                    if ready {
                        return cap;
                    }
                }
                Err(_) => {
                    if let Ok(Some(status)) = cap.child.try_wait() {
                        panic!("capture exited ({status}) before recording:\n{}", cap.drain());
                    }
                    assert!(Instant::now() < deadline, "capture did not start:\n{}", cap.drain());
                }
            }
        }
    }

    /// Waits (up to 30 s) for a line of stderr containing `text`.
    pub fn wait_for_line(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(100)) {
                let found = line.contains(text);
                self.lines.push(line);
                if found {
                    return;
                }
            }
        }
        panic!("capture never said `{text}`:\n{}", self.drain());
    }

    fn drain(&mut self) -> String {
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(200)) {
            self.lines.push(line);
        }
        self.lines.join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` and waits for the capture to end.
    pub fn stop_with(self, signal: nix::sys::signal::Signal) -> Finished {
        // Let events of the last syscalls reach the ring buffer.
        std::thread::sleep(Duration::from_millis(300));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
        self.wait()
    }

    /// Ctrl-C.
    pub fn stop(self) -> Finished {
        self.stop_with(nix::sys::signal::Signal::SIGINT)
    }

    pub fn wait(mut self) -> Finished {
        let status = self.child.wait().unwrap();
        let stderr = self.drain();
        Finished { status, stderr }
    }
}

/// One row of a capture file.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub ts: i64,
    pub kind: String,
    pub pid: Option<u32>,
    pub tid: Option<u32>,
    pub comm: Option<String>,
    pub fd: Option<i32>,
    pub conn_id: Option<u64>,
    pub direction: Option<String>,
    pub seq: Option<u64>,
    pub size: u64,
    pub payload: Option<Vec<u8>>,
    pub local_addr: Option<String>,
    pub remote_addr: Option<String>,
    pub k8s: [Option<String>; 6],
    pub flags: u32,
    pub cpu: Option<u32>,
}

/// A capture file read back.
pub struct CaptureFile {
    pub rows: Vec<Row>,
    pub meta: HashMap<String, String>,
}

fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let col = batch.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
    let arr = col.as_string::<i32>();
    (0..arr.len()).map(|i| (!arr.is_null(i)).then(|| arr.value(i).to_string())).collect()
}

fn opt<T: arrow_array::ArrowPrimitiveType>(
    batch: &RecordBatch,
    name: &str,
) -> Vec<Option<T::Native>> {
    let arr = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_primitive::<T>();
    (0..arr.len()).map(|i| (!arr.is_null(i)).then(|| arr.value(i))).collect()
}

/// Reads a capture file (or one segment).
pub fn read_capture(path: &Path) -> CaptureFile {
    let file = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let meta = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter().map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default())).collect()
        })
        .unwrap_or_default();
    let mut rows = Vec::new();
    for batch in builder.build().unwrap() {
        let batch = batch.unwrap();
        let ts = opt::<TimestampNanosecondType>(&batch, "ts");
        let kind = batch.column_by_name("kind").unwrap().as_dictionary::<Int32Type>();
        let kind_values = kind.values().as_string::<i32>();
        let pid = opt::<UInt32Type>(&batch, "pid");
        let tid = opt::<UInt32Type>(&batch, "tid");
        let comm = strings(&batch, "comm");
        let fd = opt::<Int32Type>(&batch, "fd");
        let conn = opt::<UInt64Type>(&batch, "conn_id");
        let dir = strings(&batch, "direction");
        let seq = opt::<UInt64Type>(&batch, "seq");
        let size = opt::<UInt64Type>(&batch, "size");
        let payload = batch.column_by_name("payload").unwrap().as_binary::<i32>();
        let local = strings(&batch, "local_addr");
        let remote = strings(&batch, "remote_addr");
        let k8s: Vec<Vec<Option<String>>> =
            ["namespace", "pod", "pod_uid", "container", "container_id", "node"]
                .iter()
                .map(|c| strings(&batch, c))
                .collect();
        let flags = opt::<UInt32Type>(&batch, "flags");
        let cpu = opt::<UInt32Type>(&batch, "cpu");
        for i in 0..batch.num_rows() {
            rows.push(Row {
                ts: ts[i].unwrap(),
                kind: kind_values.value(kind.keys().value(i) as usize).to_string(),
                pid: pid[i],
                tid: tid[i],
                comm: comm[i].clone(),
                fd: fd[i],
                conn_id: conn[i],
                direction: dir[i].clone(),
                seq: seq[i],
                size: size[i].unwrap(),
                payload: (!payload.is_null(i)).then(|| payload.value(i).to_vec()),
                local_addr: local[i].clone(),
                remote_addr: remote[i].clone(),
                k8s: std::array::from_fn(|k| k8s[k][i].clone()),
                flags: flags[i].unwrap(),
                cpu: cpu[i],
            });
        }
    }
    CaptureFile { rows, meta }
}

impl CaptureFile {
    pub fn data(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.kind == "data")
    }

    /// The connection whose remote (or local) address ends with `:port`.
    pub fn conn_with_port(&self, port: u16) -> Option<u64> {
        let suffix = format!(":{port}");
        self.rows
            .iter()
            .find(|r| {
                r.conn_id.is_some()
                    && (r.remote_addr.as_deref().is_some_and(|a| a.ends_with(&suffix))
                        || r.local_addr.as_deref().is_some_and(|a| a.ends_with(&suffix)))
            })
            .and_then(|r| r.conn_id)
    }

    /// The data rows of one direction of a connection, ordered by `seq`.
    pub fn chunks(&self, conn: u64, direction: &str) -> Vec<&Row> {
        self.chunks_of("data", conn, direction)
    }

    /// The rows of `kind` (`data`, `tls_data`) of one direction of a
    /// connection, ordered by `seq`.
    pub fn chunks_of(&self, kind: &str, conn: u64, direction: &str) -> Vec<&Row> {
        let mut rows: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.kind == kind)
            .filter(|r| r.conn_id == Some(conn) && r.direction.as_deref() == Some(direction))
            .collect();
        rows.sort_by_key(|r| r.seq);
        rows
    }

    /// The byte stream of one direction, with the holes in it (offset, length).
    pub fn stream(&self, conn: u64, direction: &str) -> (Vec<u8>, Vec<(u64, u64)>) {
        self.stream_of("data", conn, direction)
    }

    /// [`Self::stream`] of the rows of `kind`.
    pub fn stream_of(&self, kind: &str, conn: u64, direction: &str) -> (Vec<u8>, Vec<(u64, u64)>) {
        let mut bytes = Vec::new();
        let mut holes = Vec::new();
        let mut pos = 0u64;
        for r in self.chunks_of(kind, conn, direction) {
            let seq = r.seq.unwrap();
            if seq > pos {
                holes.push((pos, seq - pos));
            }
            assert!(seq >= pos, "overlapping chunks at {seq} (stream at {pos})");
            let payload = r.payload.as_deref().unwrap_or_default();
            bytes.extend_from_slice(payload);
            if (payload.len() as u64) < r.size {
                holes.push((seq + payload.len() as u64, r.size - payload.len() as u64));
            }
            pos = seq + r.size;
        }
        (bytes, holes)
    }

    pub fn lost_total(&self) -> u64 {
        self.rows.iter().filter(|r| r.kind == "lost").map(|r| r.size).sum()
    }
}

/// A fresh directory for one test's files.
pub fn workdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("podtap-test-").tempdir().unwrap()
}

/// One test's files: the capture file and the client's byte logs.
pub struct Run {
    pub dir: tempfile::TempDir,
    pub out: PathBuf,
    pub log: PathBuf,
}

impl Run {
    pub fn new() -> Run {
        let dir = workdir();
        let out = dir.path().join("run.parquet");
        let log = dir.path().join("client");
        Run { dir, out, log }
    }

    pub fn log_arg(&self) -> &str {
        self.log.to_str().unwrap()
    }

    /// Starts `capture --pid PID EXTRA... -o OUT` and waits until it records.
    pub fn capture(&self, pid: u32, extra: &[&str]) -> Capture {
        let pid = pid.to_string();
        let mut args = vec!["--pid", pid.as_str()];
        args.extend_from_slice(extra);
        self.capture_args(&args)
    }

    /// Starts `capture ARGS... -o OUT` and waits until it records.
    pub fn capture_args(&self, args: &[&str]) -> Capture {
        let mut args = args.to_vec();
        args.extend_from_slice(&["-o", self.out.to_str().unwrap()]);
        Capture::start(&args)
    }

    /// Ctrl-C to a capture, which must succeed; returns its stderr.
    pub fn stop(&self, cap: Capture) -> String {
        let done = cap.stop();
        assert!(done.status.success(), "capture failed: {}", done.stderr);
        done.stderr
    }

    pub fn read(&self) -> CaptureFile {
        read_capture(&self.out)
    }
}

/// Asserts that every chunk of one direction holds the bytes `truth` has at
/// that chunk's offset (for captures with holes or cut payloads).
pub fn assert_chunks_match(file: &CaptureFile, conn: u64, direction: &str, truth: &[u8]) {
    for r in file.chunks(conn, direction) {
        let seq = r.seq.unwrap() as usize;
        let payload = r.payload.as_ref().unwrap();
        assert!(seq + payload.len() <= truth.len(), "{direction} chunk at {seq} runs past the end");
        assert_eq!(payload.as_slice(), &truth[seq..seq + payload.len()], "{direction} at {seq}");
    }
}

/// Reads the byte logs a client wrote with `--log`: what it sent, what it
/// received, and its marks (`marks.json`, null when the client writes none).
pub fn client_log(dir: &Path) -> (Vec<u8>, Vec<u8>, serde_json::Value) {
    let sent = fs::read(dir.join("sent.bin")).unwrap();
    let recv = fs::read(dir.join("recv.bin")).unwrap();
    let marks = fs::read_to_string(dir.join("marks.json"))
        .map(|text| serde_json::from_str(&text).unwrap())
        .unwrap_or(serde_json::Value::Null);
    (sent, recv, marks)
}

/// Mount point of a hierarchy from /proc/mounts: `cgroup2`, or the v1
/// hierarchy carrying `option`.
pub fn mount_of(fstype: &str, option: Option<&str>) -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    mounts.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let ok = f.get(2) == Some(&fstype)
            && option.is_none_or(|o| f.get(3).is_some_and(|opts| opts.split(',').any(|x| x == o)));
        ok.then(|| PathBuf::from(f[1]))
    })
}

/// A v1 hierarchy to create cgroups in: the pids controller if mounted, else
/// a named hierarchy mounted for the tests.
pub fn v1_hierarchy() -> PathBuf {
    if let Some(path) = mount_of("cgroup", Some("pids")) {
        return path;
    }
    if let Some(path) = mount_of("cgroup", Some("name=podtaptest")) {
        return path;
    }
    let path = PathBuf::from("/run/podtap-test-cgroup-v1");
    fs::create_dir_all(&path).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "cgroup", "-o", "none,name=podtaptest", "cgroup"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success(), "mounting a named v1 hierarchy failed");
    path
}
