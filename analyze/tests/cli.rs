//! The `analyze` binary as a user runs it: inputs of every kind, clear errors
//! with documented exit codes, the exchange file, and garbage that must not
//! make it panic.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
};

use arrow_array::{
    builder::{
        BinaryBuilder, ListBuilder, StringBuilder, StringDictionaryBuilder, StructBuilder,
        TimestampNanosecondBuilder, UInt32Builder, UInt64Builder,
    },
    types::Int32Type,
    ArrayRef, RecordBatch,
};
use formats::schema::{capture_schema, meta};
use parquet::{
    arrow::{arrow_reader::ParquetRecordBatchReaderBuilder, ArrowWriter},
    file::{metadata::KeyValue, properties::WriterProperties},
};

const ANALYZE: &str = env!("CARGO_BIN_EXE_analyze");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata").join(name).join("capture.parquet")
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(ANALYZE).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Rewrites a capture with changed file metadata.
fn rewrite(from: &Path, to: &Path, change: impl Fn(&mut Vec<KeyValue>)) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(from).unwrap()).unwrap();
    let mut kv =
        builder.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
    kv.retain(|k| !k.key.starts_with("ARROW"));
    change(&mut kv);
    let schema = builder.schema().clone();
    let props = WriterProperties::builder().set_key_value_metadata(Some(kv)).build();
    let mut writer =
        ArrowWriter::try_new(fs::File::create(to).unwrap(), schema, Some(props)).unwrap();
    for batch in builder.build().unwrap() {
        writer.write(&batch.unwrap()).unwrap();
    }
    writer.close().unwrap();
}

#[test]
fn a_fixture_is_summarised_on_stdout() {
    let (code, stdout, stderr) = run(&[fixture("http1-keepalive").to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("10 exchange(s) on 1 connection(s): 1 HTTP/1"), "{stdout}");
    assert!(stdout.contains("complete exchanges     10 of 10"), "{stdout}");
}

#[test]
fn several_captures_and_globs_are_one_run() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["http1-keepalive", "grpc-go"] {
        fs::copy(fixture(name), dir.path().join(format!("{name}.parquet"))).unwrap();
    }
    let glob = format!("{}/*.parquet", dir.path().display());
    let (code, stdout, _) = run(&[&glob]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("17 exchange(s) on 2 connection(s)"), "{stdout}");
    let (code, stdout, _) = run(&[dir.path().to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("17 exchange(s)"), "a directory of captures: {stdout}");
}

#[test]
fn a_segment_directory_is_read_as_one_capture() {
    let dir = tempfile::tempdir().unwrap();
    let segments = dir.path().join("run.parquet.d");
    fs::create_dir(&segments).unwrap();
    fs::copy(fixture("h2c-curl"), segments.join("part-000001.parquet")).unwrap();
    let (code, stdout, stderr) = run(&[segments.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("5 exchange(s)"), "{stdout}");
}

#[test]
fn the_exchange_file_has_one_row_per_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.parquet");
    let (code, _, stderr) =
        run(&[fixture("grpc-python").to_str().unwrap(), "--exchanges", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let builder = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(&out).unwrap()).unwrap();
    assert_eq!(builder.schema().fields(), formats::schema::exchange_schema().fields());
    let kind = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .iter()
        .find(|k| k.key == meta::FILE_KIND)
        .cloned();
    assert_eq!(kind.and_then(|k| k.value), Some("exchanges".into()));
    let rows: usize = builder.build().unwrap().map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 7);
    // And it is refused as a capture, by name.
    let (code, _, stderr) = run(&[out.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr.trim(),
        format!("error: `{}` is a podtap exchanges file, not a capture", out.display())
    );
}

/// (name, value) of every request header in an exchange file.
fn request_headers(path: &Path) -> Vec<(String, String)> {
    use arrow_array::{cast::AsArray, Array};
    let reader = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let lists = batch.column_by_name("request_headers").unwrap().as_list::<i32>();
        for i in 0..lists.len() {
            if lists.is_null(i) {
                continue;
            }
            let fields = lists.value(i);
            let fields = fields.as_struct();
            let (names, values) =
                (fields.column(0).as_string::<i32>(), fields.column(1).as_string::<i32>());
            for j in 0..fields.len() {
                out.push((names.value(j).to_string(), values.value(j).to_string()));
            }
        }
    }
    out
}

#[test]
fn redacted_headers_never_reach_the_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.parquet");
    let redacted = dir.path().join("redacted.parquet");
    let capture = fixture("grpc-python");
    let (code, _, stderr) =
        run(&[capture.to_str().unwrap(), "--exchanges", plain.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run(&[
        capture.to_str().unwrap(),
        "--exchanges",
        redacted.to_str().unwrap(),
        "--redact-header",
        "User-Agent",
    ]);
    assert_eq!(code, 0, "{stderr}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&redacted).unwrap().permissions().mode() & 0o777, 0o600);
    let (plain, redacted) = (request_headers(&plain), request_headers(&redacted));
    assert_eq!(plain.len(), redacted.len());
    let agents = plain.iter().filter(|(n, _)| n == "user-agent").count();
    assert!(agents > 0, "the fixture's requests carry a user-agent");
    for ((name, before), (_, after)) in plain.iter().zip(&redacted) {
        if name == "user-agent" {
            assert_eq!(after, "[redacted]");
            assert!(before.contains("grpc"), "{before}");
        } else {
            assert_eq!(before, after, "{name}");
        }
    }
}

#[test]
fn unreadable_inputs_are_named_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(&["/nonexistent/run.parquet"]);
    assert_eq!(
        (code, stderr.trim()),
        (2, "error: no such file or directory: `/nonexistent/run.parquet`")
    );

    let text = dir.path().join("notes.parquet");
    fs::write(&text, "not parquet at all").unwrap();
    let (code, _, stderr) = run(&[text.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("is not a Parquet file, or it is truncated or damaged"), "{stderr}");

    let truncated = dir.path().join("cut.parquet");
    let bytes = fs::read(fixture("http1-keepalive")).unwrap();
    fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let (code, _, stderr) = run(&[truncated.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("truncated or damaged"), "{stderr}");

    let newer = dir.path().join("newer.parquet");
    rewrite(&fixture("http1-keepalive"), &newer, |kv| {
        for k in kv.iter_mut() {
            if k.key == meta::SCHEMA_VERSION {
                k.value = Some("99".into());
            }
        }
    });
    let (code, _, stderr) = run(&[newer.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("was written by a newer podtap (capture schema version 99"),
        "{stderr}"
    );

    let foreign = dir.path().join("foreign.parquet");
    rewrite(&fixture("http1-keepalive"), &foreign, |kv| kv.clear());
    let (code, _, stderr) = run(&[foreign.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("is a Parquet file but not a podtap capture"), "{stderr}");
}

#[test]
fn bad_usage_is_exit_code_2() {
    let (code, _, stderr) = run(&[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("required"), "{stderr}");
    let (code, _, stderr) = run(&[
        fixture("http1-keepalive").to_str().unwrap(),
        "--exchanges",
        "/nonexistent/x.parquet",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("does not exist"), "{stderr}");
}

/// A capture whose payloads are random bytes, with holes, overlaps and
/// connections that start mid-stream: decoded without a panic, reported as
/// not HTTP or as skipped bytes.
#[test]
fn garbage_payloads_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.parquet");
    let schema = capture_schema();
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let n = 3000;
    let mut ts = TimestampNanosecondBuilder::new().with_timezone("UTC");
    let mut kind = StringDictionaryBuilder::<Int32Type>::new();
    let mut u32s: Vec<UInt32Builder> = (0..2).map(|_| UInt32Builder::new()).collect();
    let mut strings: Vec<StringBuilder> = (0..10).map(|_| StringBuilder::new()).collect();
    let mut fd = arrow_array::builder::Int32Builder::new();
    let mut conn = UInt64Builder::new();
    let mut seq = UInt64Builder::new();
    let mut size = UInt64Builder::new();
    let mut payload = BinaryBuilder::new();
    let mut flags = UInt32Builder::new();
    let mut cpu = UInt32Builder::new();
    let mut stream_id = UInt32Builder::new();
    let arrow_schema::DataType::List(item) = formats::schema::headers_type() else { panic!() };
    let arrow_schema::DataType::Struct(pair) = item.data_type().clone() else { panic!() };
    let pairs = StructBuilder::new(
        pair,
        vec![Box::new(StringBuilder::new()), Box::new(StringBuilder::new())],
    );
    let mut headers = ListBuilder::new(pairs).with_field(item.clone());
    let mut pos = [[0u64; 2]; 8];
    for i in 0..n {
        let c = next() % 8;
        let d = (next() % 2) as usize;
        let len = next() % 300;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Some connections look like HTTP, broken.
        if c < 3 && next() % 4 == 0 {
            let starts: [&[u8]; 4] = [
                b"GET / HTTP/1.1\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999\r\n\r\n",
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                b"\x00\x00\x05\x01\x04\x00\x00\x00\x01\xbe\xbf",
            ];
            bytes = [starts[(next() % 4) as usize], &bytes].concat();
        }
        let hole = if next() % 10 == 0 { next() % 1000 } else { 0 };
        let s = pos[c as usize][d] + hole;
        let moved = bytes.len() as u64 + if next() % 5 == 0 { next() % 5000 } else { 0 };
        pos[c as usize][d] = s + moved;
        ts.append_value(1_800_000_000_000_000_000 + i as i64 * 1000);
        // Some rows claim to be header blocks from the Go uprobes, for any
        // stream, with any fields, or none.
        let h2 = next() % 10 == 0;
        kind.append_value(if h2 {
            "h2_headers"
        } else if next() % 50 == 0 {
            "close"
        } else {
            "data"
        });
        if h2 && next() % 5 != 0 {
            stream_id.append_value((next() % 64) as u32);
            let fields = headers.values();
            for _ in 0..next() % 4 {
                let names = [":path", ":status", "grpc-status", "grpc-message", "content-type"];
                let name = names[(next() % 5) as usize];
                let value: String =
                    (0..next() % 12).map(|_| (b'0' + (next() % 40) as u8) as char).collect();
                if let Some(b) = fields.field_builder::<StringBuilder>(0) {
                    b.append_value(name);
                }
                if let Some(b) = fields.field_builder::<StringBuilder>(1) {
                    b.append_value(value);
                }
                fields.append(true);
            }
            headers.append(true);
        } else {
            stream_id.append_null();
            headers.append(false);
        }
        for b in &mut u32s {
            b.append_value(7);
        }
        for (k, b) in strings.iter_mut().enumerate() {
            match k {
                0 => b.append_value("garbage"),
                1 => b.append_value(if d == 0 { "ingress" } else { "egress" }),
                2 => b.append_value("127.0.0.1:80"),
                3 => b.append_value(format!("127.0.0.1:{}", 40000 + c)),
                _ => b.append_null(),
            }
        }
        fd.append_value(3);
        conn.append_value(c);
        seq.append_value(s);
        size.append_value(moved);
        payload.append_value(&bytes);
        flags.append_value(0);
        cpu.append_null();
    }
    let s = |b: &mut StringBuilder| Arc::new(b.finish()) as ArrayRef;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ts.finish()),
        Arc::new(kind.finish()),
        Arc::new(u32s[0].finish()),
        Arc::new(u32s[1].finish()),
        s(&mut strings[0]),
        Arc::new(fd.finish()),
        Arc::new(conn.finish()),
        s(&mut strings[1]),
        Arc::new(seq.finish()),
        Arc::new(size.finish()),
        Arc::new(payload.finish()),
        s(&mut strings[2]),
        s(&mut strings[3]),
        s(&mut strings[4]),
        s(&mut strings[5]),
        s(&mut strings[6]),
        s(&mut strings[7]),
        s(&mut strings[8]),
        s(&mut strings[9]),
        Arc::new(flags.finish()),
        Arc::new(cpu.finish()),
    ];
    let mut columns = columns;
    columns.push(Arc::new(stream_id.finish()));
    columns.push(Arc::new(headers.finish()));
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let kv = vec![
        KeyValue::new(meta::FILE_KIND.into(), "capture".to_string()),
        KeyValue::new(meta::SCHEMA_VERSION.into(), "1".to_string()),
    ];
    let props = WriterProperties::builder().set_key_value_metadata(Some(kv)).build();
    let mut writer =
        ArrowWriter::try_new(fs::File::create(&path).unwrap(), schema, Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();

    let (code, stdout, stderr) = run(&[
        path.to_str().unwrap(),
        "--exchanges",
        dir.path().join("x.parquet").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("on 8 connection(s)"), "{stdout}");
    // Every header row is accounted for, matched or not.
    assert!(stdout.contains("gRPC uprobe headers"), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// analyze needs no privileges: a plain user decodes a copied capture.
#[test]
fn runs_without_root() {
    use std::os::unix::{fs::PermissionsExt, process::CommandExt};
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("analyze");
    fs::copy(ANALYZE, &bin).unwrap();
    let capture = dir.path().join("run.parquet");
    fs::copy(fixture("grpc-go"), &capture).unwrap();
    fs::set_permissions(&capture, fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = Command::new(&bin);
    cmd.arg(&capture);
    if is_root() {
        cmd.uid(65534).gid(65534);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("7 exchange(s)"));
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|v| v.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}
