//! End to end, as root: the Go gRPC header probes on every build of the
//! version matrix (`scripts/peers/grpc/matrix.sh`: grpc-go 1.40 to the newest
//! at every change in what the probes read, by Go 1.26 and 1.27, plain,
//! stripped and PIE) and on Debian's Go 1.19 + grpc-go 1.33 builds.
//!
//! For every build, a server and a client of that build talk over one
//! connection that made 30 calls before the capture starts, so HPACK has
//! indexed the paths and statuses where the capture cannot see. Both are
//! targets. The calls made during the capture (unary calls, a NOT_FOUND with
//! a message, a server-streaming call) must all come out of `analyze` on
//! both sides with the right `:path`, `grpc-status` and `grpc-message`, no
//! exchange may have a path that was not sent, and the wire and the probes
//! must never disagree.

mod common;

use std::path::{Path, PathBuf};

use common::{
    go::{
        assert_calls, binaries, binary_note, decode, go_peers, grpc_of, make, matrix, Call, GoPeer,
        MatrixEntry, SAY_HELLO, SAY_HELLO_STREAM,
    },
    require_root, Capture,
};

/// The calls made during each capture.
fn calls(name: &str) -> Vec<(String, Call)> {
    vec![
        (format!("unary 0 {name}"), Call::ok(SAY_HELLO)),
        (format!("fail 0 {name}"), Call::not_found(name)),
        (format!("stream 0 {name} 3"), Call::ok(SAY_HELLO_STREAM)),
        (format!("unary 0 {name}2"), Call::ok(SAY_HELLO)),
    ]
}

/// One server and client pair of one build.
struct Pair {
    label: String,
    server_path: PathBuf,
    client_path: PathBuf,
    /// What the capture's notes must say: grpc-go version, offsets source,
    /// symbols source.
    expect: (String, &'static str, &'static str),
    go_prefix: String,
}

/// Runs every pair at once under one capture and checks each side's calls.
fn run_pairs(pairs: &[Pair]) {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run.parquet");
    let mut running = Vec::new();
    for (i, pair) in pairs.iter().enumerate() {
        let (server, port) = GoPeer::server(&pair.server_path);
        let client = GoPeer::client(&pair.client_path, &[port], 30);
        running.push((i, server, client));
    }
    let mut args: Vec<String> = Vec::new();
    for (_, server, client) in &running {
        args.extend(["--pid".into(), server.pid().to_string()]);
        args.extend(["--pid".into(), client.pid().to_string()]);
    }
    args.extend(["-o".into(), out.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let capture = Capture::start(&args);
    for (i, _, client) in &mut running {
        for (command, call) in calls(&format!("p{i}")) {
            make(client, &command, &call);
        }
    }
    let finished = capture.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    assert!(!finished.stderr.contains("dropped a header block"), "{}", finished.stderr);

    let (exchanges, stats) = decode(&out);
    let notes = binaries(&out);
    let mut failures = Vec::new();
    for (i, server, client) in &running {
        let pair = &pairs[*i];
        let expected: Vec<Call> = calls(&format!("p{i}")).into_iter().map(|(_, c)| c).collect();
        for (side, pid, path) in [
            ("server", server.pid(), &pair.server_path),
            ("client", client.pid(), &pair.client_path),
        ] {
            let what = format!("{} {side}", pair.label);
            let got = grpc_of(&exchanges, pid);
            // assert_calls panics with the difference; gather them all.
            let result = std::panic::catch_unwind(|| assert_calls(&got, &expected, &what));
            if result.is_err() {
                failures.push(format!("{what}: {got:#?}"));
            }
            let note = note_of(&notes, path);
            let go = &note["go"];
            let (grpc, offsets, symbols) = &pair.expect;
            if note["outcome"] != "grpc_headers"
                || go["grpc_version"] != grpc.as_str()
                || go["offsets_source"] != *offsets
                || go["symbols_source"] != *symbols
                || !go["go_version"].as_str().is_some_and(|v| v.starts_with(&pair.go_prefix))
            {
                failures.push(format!("{what}: note {note}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} failure(s):\n{}", failures.len(), failures.join("\n"));
    assert_eq!(stats.uprobe.disagreed, 0, "the wire and the probes disagreed: {stats:?}");
    assert!(stats.uprobe.filled > 0, "{stats:?}");
}

/// The note of the binary at `path` (notes name the program as the process
/// sees it, `/proc/PID/exe`'s target).
fn note_of<'a>(notes: &'a [serde_json::Value], path: &Path) -> &'a serde_json::Value {
    let path = path.display().to_string();
    notes
        .iter()
        .find(|n| n["path"].as_str() == Some(path.as_str()))
        .unwrap_or_else(|| panic!("no note for {path} in {notes:#?}"))
}

/// The pairs of one toolchain and form, every grpc-go version of the matrix.
fn matrix_pairs(toolchain: &str, form: &str) -> Vec<Pair> {
    let entries: Vec<&MatrixEntry> =
        matrix().iter().filter(|e| e.toolchain == toolchain && e.form == form).collect();
    assert!(entries.len() >= 12, "{toolchain} {form}: {} builds", entries.len());
    let (offsets, symbols) = match form {
        "stripped" => ("table", "pclntab"),
        _ => ("dwarf", "symtab"),
    };
    entries
        .into_iter()
        .map(|e| Pair {
            label: format!("{toolchain} grpc-go {} {form}", e.grpc),
            server_path: e.dir.join("grpc-server"),
            client_path: e.dir.join("grpc-client"),
            expect: (e.grpc.clone(), offsets, symbols),
            go_prefix: toolchain.to_owned(),
        })
        .collect()
}

#[test]
fn go_1_26_plain() {
    run_pairs(&matrix_pairs("go1.26.8", "plain"));
}

#[test]
fn go_1_26_stripped() {
    run_pairs(&matrix_pairs("go1.26.8", "stripped"));
}

#[test]
fn go_1_26_pie() {
    run_pairs(&matrix_pairs("go1.26.8", "pie"));
}

#[test]
fn go_1_27_plain() {
    run_pairs(&matrix_pairs("go1.27.3", "plain"));
}

#[test]
fn go_1_27_stripped() {
    run_pairs(&matrix_pairs("go1.27.3", "stripped"));
}

#[test]
fn go_1_27_pie() {
    run_pairs(&matrix_pairs("go1.27.3", "pie"));
}

#[test]
fn go_1_19_debian() {
    let dir = go_peers();
    let pair = |form: &str, suffix: &str, offsets, symbols| Pair {
        label: format!("go1.19 grpc-go 1.33.3 {form}"),
        server_path: dir.join(format!("grpc-server{suffix}")),
        client_path: dir.join(format!("grpc-client{suffix}")),
        expect: ("1.33.3".to_owned(), offsets, symbols),
        go_prefix: "go1.19".to_owned(),
    };
    run_pairs(&[
        pair("plain", "", "dwarf", "symtab"),
        pair("stripped", "-stripped", "table", "pclntab"),
        pair("pie", "-pie", "dwarf", "symtab"),
    ]);
}

/// The committed offset table is what the generator makes of a fresh build
/// of a few matrix versions (both ends, and the newest).
#[test]
fn the_offset_table_is_what_the_generator_reads_from_dwarf() {
    let script = common::repo_root().join("scripts/peers/grpc/gen-offsets.py");
    let out = std::process::Command::new(script)
        .args(["--check", "--capture", common::CAPTURE])
        .args(["--out", &common::cache_dir().join("go-peers/offsets").display().to_string()])
        .args(["1.40.1", "1.59.0", "1.60.1", "1.85.0"])
        .output()
        .expect("gen-offsets.py runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("builds agree with capture/src/golang/offsets.json"), "{stdout}");
}

/// A binary whose grpc-go the table does not know is said to be
/// unsupported once, naming how far the table goes, and captured by
/// syscalls.
#[test]
fn an_unknown_grpc_go_version_is_unsupported_and_says_how_far_the_table_goes() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run.parquet");
    // Stripped and built in GOPATH mode: only --grpc-go-version names it.
    let (server, port) = GoPeer::server(&go_peers().join("grpc-server-gopath-stripped"));
    let mut client = GoPeer::client(&go_peers().join("grpc-client"), &[port], 3);
    let pid = server.pid().to_string();
    let args = ["--pid", &pid, "--grpc-go-version", "1.99.0", "-o", out.to_str().unwrap()];
    let capture = Capture::start(&args);
    make(&mut client, "unary 0 zed", &Call::ok(SAY_HELLO));
    let finished = capture.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    let warned: Vec<&str> =
        finished.stderr.lines().filter(|l| l.contains("cannot read gRPC headers")).collect();
    assert_eq!(warned.len(), 1, "{}", finished.stderr);
    assert!(warned[0].contains("grpc-go 1.99.0 is not in podtap's offset table (known up to 1.85"));
    let (exchanges, stats) = decode(&out);
    assert_eq!(stats.uprobe.blocks, 0);
    assert_eq!(grpc_of(&exchanges, server.pid()).len(), 1, "{exchanges:?}");
    let note = binary_note(&binaries(&out), "grpc-server-gopath-stripped").clone();
    assert_eq!(note["outcome"], "unsupported", "{note}");
}
