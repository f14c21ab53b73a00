//! Helpers for the end-to-end tests of the Go header probes: the Go peers
//! of `scripts/peers/grpc/go/` (a Greeter server, and a client scripted over
//! stdin), the calls they make, and what `analyze` decodes of a capture.

use std::{
    fs,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::OnceLock,
};

use analyze::{
    engine::{self, Context},
    exchange::Exchange,
    input,
    stats::Stats,
};
use arrow_array::{cast::AsArray, types::Int32Type, BooleanArray};
use parquet::{
    arrow::{arrow_reader::ParquetRecordBatchReaderBuilder, ArrowWriter},
    file::properties::WriterProperties,
};

/// Debian's Go 1.19 + grpc-go 1.33.3 peers (`build-go-all.sh`), built once
/// per test run into the build cache outside the clone.
pub fn go_peers() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = super::cache_dir().join("go-peers/debian");
        let script = super::repo_root().join("scripts/peers/grpc/build-go-all.sh");
        let status = Command::new(script)
            .arg(&dir)
            .env("GOCACHE", super::cache_dir().join("go/build-1.19"))
            .status()
            .expect("build-go-all.sh runs");
        assert!(status.success(), "building the Go peers failed: {status}");
        dir
    })
}

/// One build of the version matrix (`scripts/peers/grpc/matrix.sh`).
#[derive(Clone, Debug)]
pub struct MatrixEntry {
    /// `go1.26.8`.
    pub toolchain: String,
    /// `1.60.1`.
    pub grpc: String,
    /// `plain`, `stripped` or `pie`.
    pub form: String,
    pub dir: PathBuf,
}

/// The version matrix, built once per test run (quick when the cache is warm).
pub fn matrix() -> &'static [MatrixEntry] {
    static ENTRIES: OnceLock<Vec<MatrixEntry>> = OnceLock::new();
    ENTRIES.get_or_init(|| {
        let dir = super::cache_dir().join("go-peers/matrix");
        let script = super::repo_root().join("scripts/peers/grpc/matrix.sh");
        let status = Command::new(script).arg("build").arg(&dir).status().expect("matrix.sh runs");
        assert!(status.success(), "building the version matrix failed: {status}");
        let manifest = fs::read_to_string(dir.join("manifest.tsv")).expect("manifest.tsv");
        manifest
            .lines()
            .map(|line| {
                let f: Vec<&str> = line.split('\t').collect();
                assert_eq!(f.len(), 4, "{line}");
                MatrixEntry {
                    toolchain: f[0].into(),
                    grpc: f[1].into(),
                    form: f[2].into(),
                    dir: f[3].into(),
                }
            })
            .collect()
    })
}

pub const SAY_HELLO: &str = "/helloworld.Greeter/SayHello";
pub const SAY_HELLO_STREAM: &str = "/helloworld.Greeter/SayHelloStream";
pub const SAY_HELLO_ERROR: &str = "/helloworld.Greeter/SayHelloError";

/// A running Go peer, scripted over stdin and stdout.
pub struct GoPeer {
    child: Child,
    stdout: BufReader<ChildStdout>,
    stdin: ChildStdin,
}

impl GoPeer {
    pub fn spawn(binary: &Path, args: &[String]) -> GoPeer {
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{} runs: {e}", binary.display()));
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let stdin = child.stdin.take().unwrap();
        GoPeer { child, stdout, stdin }
    }

    pub fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).unwrap();
        assert!(n > 0, "the Go peer exited");
        line.trim_end().to_string()
    }

    /// A server listening on a free port; returns it and the port.
    pub fn server(binary: &Path) -> (GoPeer, u16) {
        let mut peer = GoPeer::spawn(binary, &[]);
        let line = peer.line();
        let port = line.strip_prefix("port ").and_then(|p| p.parse().ok());
        (peer, port.unwrap_or_else(|| panic!("bad line {line:?}")))
    }

    /// A client with one connection per port, each used `warmup` times.
    pub fn client(binary: &Path, ports: &[u16], warmup: u32) -> GoPeer {
        let mut args: Vec<String> =
            ports.iter().flat_map(|p| ["-addr".into(), format!("127.0.0.1:{p}")]).collect();
        args.extend(["-warmup".into(), warmup.to_string()]);
        let mut peer = GoPeer::spawn(binary, &args);
        assert_eq!(peer.line(), "ready");
        peer
    }

    /// Runs one scripted call; returns the client's answer.
    pub fn call(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        let answer = self.line();
        assert!(answer.starts_with("ok "), "{command}: {answer}");
        answer
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for GoPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A call as the client made it: path, grpc-status and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub path: &'static str,
    pub grpc_status: i32,
    pub message: Option<String>,
}

impl Call {
    pub fn ok(path: &'static str) -> Call {
        Call { path, grpc_status: 0, message: None }
    }

    pub fn not_found(name: &str) -> Call {
        Call {
            path: SAY_HELLO_ERROR,
            grpc_status: 5,
            message: Some(format!("no greeting for {name}: 100% gone")),
        }
    }
}

/// Makes `command` and checks the client's own account of it against `call`.
pub fn make(client: &mut GoPeer, command: &str, call: &Call) {
    let answer = client.call(command);
    assert!(answer.contains(call.path), "{answer}");
    assert!(answer.contains(&format!("code={}", call.grpc_status)), "{answer}");
    if let Some(m) = &call.message {
        assert!(answer.ends_with(&format!("message={m}")), "{answer}");
    }
}

/// The exchanges of a capture, decoded in process by `analyze`.
pub fn decode(path: &Path) -> (Vec<Exchange>, Stats) {
    let captures = input::discover(&[path.display().to_string()]).expect("a capture");
    let mut out = Vec::new();
    let mut stats = Stats::default();
    for capture in &captures {
        // What `analyze` keeps by default (`--body-bytes`).
        let context = Context::of(capture, 16 * 1024);
        stats.merge(engine::decode(capture, context, &mut |x| out.push(x), &mut |_| {}).unwrap());
    }
    (out, stats)
}

/// A copy of a capture without its `h2_headers` rows: what the syscalls
/// alone recorded.
pub fn syscalls_only(src: &Path, dst: &Path) -> usize {
    let builder = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(src).unwrap()).unwrap();
    let meta = builder.metadata().file_metadata().key_value_metadata().cloned();
    let schema = builder.schema().clone();
    let props = WriterProperties::builder().set_key_value_metadata(meta).build();
    let mut writer = ArrowWriter::try_new(fs::File::create(dst).unwrap(), schema, Some(props))
        .expect("a writer");
    let mut removed = 0;
    for batch in builder.build().unwrap() {
        let batch = batch.unwrap();
        let kinds = batch.column_by_name("kind").unwrap().as_dictionary::<Int32Type>();
        let names = kinds.values().as_string::<i32>();
        let keep: BooleanArray = (0..batch.num_rows())
            .map(|i| Some(names.value(kinds.keys().value(i) as usize) != "h2_headers"))
            .collect();
        removed += keep.iter().filter(|k| *k == Some(false)).count();
        writer.write(&arrow_select::filter::filter_record_batch(&batch, &keep).unwrap()).unwrap();
    }
    writer.close().unwrap();
    removed
}

/// The capture's `podtap.binaries` metadata.
pub fn binaries(path: &Path) -> Vec<serde_json::Value> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(path).unwrap()).unwrap();
    let kv = builder.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
    let value = kv.iter().find(|kv| kv.key == "podtap.binaries").and_then(|kv| kv.value.clone());
    serde_json::from_str(&value.expect("podtap.binaries is recorded")).unwrap()
}

/// The gRPC exchanges of one target process, in stream order.
pub fn grpc_of(exchanges: &[Exchange], pid: u32) -> Vec<&Exchange> {
    let mut out: Vec<&Exchange> =
        exchanges.iter().filter(|x| x.conn.pid == Some(pid) && x.protocol == "grpc").collect();
    out.sort_by_key(|x| (x.conn.conn_id, x.stream_id));
    out
}

pub fn assert_calls(got: &[&Exchange], calls: &[Call], what: &str) {
    let seen: Vec<Call> = got
        .iter()
        .map(|x| Call {
            path: [SAY_HELLO, SAY_HELLO_STREAM, SAY_HELLO_ERROR]
                .into_iter()
                .find(|p| x.path.as_deref() == Some(*p))
                .unwrap_or("?"),
            grpc_status: x.grpc_status.unwrap_or(-1),
            message: x.grpc_message.clone(),
        })
        .collect();
    assert_eq!(seen, calls, "{what}");
    for x in got {
        assert_eq!(x.status, Some(200), "{what}: {x:?}");
        assert!(x.complete(), "{what}: incomplete: {:?}", x.issues);
        assert_eq!(x.headers_source, Some("uprobe"), "{what}");
    }
}

pub fn binary_note<'a>(notes: &'a [serde_json::Value], binary: &str) -> &'a serde_json::Value {
    notes
        .iter()
        .find(|n| n["path"].as_str().is_some_and(|p| p.ends_with(&format!("/{binary}"))))
        .unwrap_or_else(|| panic!("no note for {binary} in {notes:?}"))
}
