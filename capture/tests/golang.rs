//! End to end, as root: the Go gRPC header uprobes on real grpc-go programs
//! (Go 1.19, grpc-go 1.33.3 from Debian's packages, built by
//! `scripts/peers/grpc/build-go-all.sh`), with and without symbols and DWARF.
//!
//! Each test opens a connection and uses it many times before the capture
//! starts, so HPACK has indexed the request path, the response headers and
//! `grpc-status: 0` where the capture cannot see. The calls made during the
//! capture must all come out of `analyze` with the right path and status —
//! and the same capture with its `h2_headers` rows removed (syscalls alone)
//! must show the gap the uprobes close.

mod common;

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
};

use analyze::{exchange::Exchange, stats::Stats};
use common::{
    go::{
        assert_calls, binaries, binary_note, decode, go_peers, grpc_of, make, syscalls_only, Call,
        GoPeer, SAY_HELLO, SAY_HELLO_STREAM,
    },
    require_root, Capture,
};

/// The same exchanges decoded from the syscalls alone: the HPACK state from
/// before the capture hides what the warm-up indexed.
fn assert_gap(got: &[&Exchange], stats: &Stats, calls: &[Call], what: &str) {
    assert_eq!(got.len(), calls.len(), "{what}: the streams are decoded from the wire too");
    assert!(stats.hpack_unknown_fields > 0, "{what}: no HPACK gap");
    for (x, call) in got.iter().zip(calls) {
        assert_eq!(x.headers_source, Some("wire"));
        if call.path == SAY_HELLO {
            // Indexed during the warm-up: unknown without the uprobes.
            assert_eq!(x.path, None, "{what}: {x:?}");
            assert_eq!(x.grpc_status, None, "{what}: {x:?}");
            assert!(!x.complete(), "{what}");
        }
    }
}

#[test]
fn a_go_server_on_a_long_lived_connection_decodes_every_call() {
    require_root();
    for (server_binary, source, symbols) in
        [("grpc-server", "dwarf", "symtab"), ("grpc-server-stripped", "table", "pclntab")]
    {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run.parquet");
        let (server, port) = GoPeer::server(&go_peers().join(server_binary));
        let mut client = GoPeer::client(&go_peers().join("grpc-client"), &[port], 50);

        let pid = server.pid().to_string();
        let capture = Capture::start(&["--pid", &pid, "-o", out.to_str().unwrap()]);
        let calls = [
            ("unary 0 ada", Call::ok(SAY_HELLO)),
            ("stream 0 bo 3", Call::ok(SAY_HELLO_STREAM)),
            ("fail 0 cy", Call::not_found("cy")),
            ("unary 0 di", Call::ok(SAY_HELLO)),
            ("fail 0 ed", Call::not_found("ed")),
        ];
        for (command, call) in &calls {
            make(&mut client, command, call);
        }
        let finished = capture.stop();
        assert!(finished.status.success(), "{}", finished.stderr);
        assert!(
            finished.stderr.contains("reading gRPC headers from grpc-go 1.33.3"),
            "{}",
            finished.stderr
        );
        let calls: Vec<Call> = calls.into_iter().map(|(_, c)| c).collect();

        let (exchanges, stats) = decode(&out);
        let what = format!("{server_binary}, with uprobes");
        assert_calls(&grpc_of(&exchanges, server.pid()), &calls, &what);
        assert_eq!(stats.uprobe.disagreed, 0, "{what}");
        assert!(stats.uprobe.filled > 0, "{what}");

        let plain = dir.path().join("syscalls.parquet");
        // Headers and trailers of each call, but one block for a failure
        // (a trailers-only response).
        let blocks: usize = calls.iter().map(|c| if c.grpc_status == 0 { 3 } else { 2 }).sum();
        assert_eq!(syscalls_only(&out, &plain), blocks, "{server_binary}");
        let (exchanges, stats) = decode(&plain);
        assert_gap(&grpc_of(&exchanges, server.pid()), &stats, &calls, server_binary);

        let notes = binaries(&out);
        let note = binary_note(&notes, server_binary);
        assert_eq!(note["outcome"], "grpc_headers", "{note}");
        assert_eq!(note["go"]["grpc_version"], "1.33.3", "{note}");
        assert_eq!(note["go"]["offsets_source"], source, "{note}");
        assert_eq!(note["go"]["symbols_source"], symbols, "{note}");
        assert!(note["go"]["go_version"].as_str().unwrap().starts_with("go1.19"), "{note}");
        assert!(note["go"]["build_id"].as_str().is_some_and(|b| !b.is_empty()), "{note}");
    }
}

#[test]
fn a_go_client_keeps_its_two_connections_apart() {
    require_root();
    let (_server, port) = GoPeer::server(&go_peers().join("grpc-server"));
    for client_binary in ["grpc-client", "grpc-client-stripped", "grpc-client-vendored"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run.parquet");
        // Two connections to the same server: their stream ids coincide.
        let mut client = GoPeer::client(&go_peers().join(client_binary), &[port, port], 20);
        let pid = client.pid().to_string();
        let capture = Capture::start(&["--pid", &pid, "-o", out.to_str().unwrap()]);
        let first = [("unary 0 ann", Call::ok(SAY_HELLO)), ("unary 0 cat", Call::ok(SAY_HELLO))];
        let second = [
            ("fail 1 ben", Call::not_found("ben")),
            ("stream 1 dan 2", Call::ok(SAY_HELLO_STREAM)),
        ];
        for ((c1, call1), (c2, call2)) in first.iter().zip(&second) {
            make(&mut client, c1, call1);
            make(&mut client, c2, call2);
        }
        let finished = capture.stop();
        assert!(finished.status.success(), "{}", finished.stderr);

        let (exchanges, _) = decode(&out);
        let got = grpc_of(&exchanges, client.pid());
        let mut conns: Vec<u64> = got.iter().map(|x| x.conn.conn_id).collect();
        conns.dedup();
        assert_eq!(conns.len(), 2, "{client_binary}: {got:?}");
        let on = |conn: u64| -> Vec<&Exchange> {
            got.iter().copied().filter(|x| x.conn.conn_id == conn).collect()
        };
        // Either connection may have been numbered first.
        let (a, b) = match on(conns[0]).first().and_then(|x| x.path.as_deref()) {
            Some(SAY_HELLO) => (on(conns[0]), on(conns[1])),
            _ => (on(conns[1]), on(conns[0])),
        };
        let what = format!("{client_binary}, client side");
        assert_calls(&a, &first.map(|(_, c)| c), &what);
        assert_calls(&b, &second.map(|(_, c)| c), &what);
        assert!(a.iter().all(|x| x.role == analyze::protocol::Role::Client));

        let notes = binaries(&out);
        assert_eq!(binary_note(&notes, client_binary)["outcome"], "grpc_headers", "{notes:?}");
        if client_binary.ends_with("vendored") {
            let package = binary_note(&notes, client_binary)["go"]["grpc_package"].clone();
            assert_eq!(package, "podtap/peers/grpcclient/vendor/google.golang.org/grpc");
        }
    }
}

#[test]
fn programs_without_grpc_go_are_captured_by_syscalls_with_one_notice() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run.parquet");
    let (go_plain, go_port) = GoPeer::server(&go_peers().join("go-plain"));
    let (python, py_port) = common::Peer::server(&[]);
    let (gp, pp) = (go_plain.pid().to_string(), python.pid().to_string());
    let capture = Capture::start(&["--pid", &gp, "--pid", &pp, "-o", out.to_str().unwrap()]);
    for port in [go_port, py_port] {
        let status = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", &format!("http://127.0.0.1:{port}/hello")])
            .status()
            .unwrap();
        assert!(status.success() || port == py_port, "curl to {port}: {status}");
    }
    let finished = capture.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    let lines = |text: &str| finished.stderr.lines().filter(|l| l.contains(text)).count();
    assert_eq!(lines("a Go program (go1.19"), 1, "{}", finished.stderr);
    assert_eq!(lines("without grpc-go"), 1, "{}", finished.stderr);
    assert_eq!(lines("not a Go program"), 1, "{}", finished.stderr);
    // net/http links Go's own TLS, whose plaintext podtap does not read.
    assert_eq!(lines("uses Go's crypto/tls, which podtap does not read"), 1, "{}", finished.stderr);

    let (exchanges, stats) = decode(&out);
    assert_eq!(stats.uprobe.blocks, 0);
    let hello: Vec<&Exchange> =
        exchanges.iter().filter(|x| x.conn.pid == Some(go_plain.pid())).collect();
    assert_eq!(hello.len(), 1, "{exchanges:?}");
    assert_eq!((hello[0].path.as_deref(), hello[0].status), (Some("/hello"), Some(200)));
    assert!(exchanges.iter().any(|x| x.conn.pid == Some(python.pid())), "{exchanges:?}");

    let notes = binaries(&out);
    // The programs (Python also maps libssl, which has a note of its own).
    let programs = notes.iter().filter(|n| !n["outcome"].as_str().unwrap().starts_with("tls_"));
    let outcomes: Vec<&str> = programs.filter_map(|n| n["outcome"].as_str()).collect();
    assert_eq!(outcomes.len(), 2, "{notes:?}");
    assert!(outcomes.contains(&"no_grpc") && outcomes.contains(&"not_go"), "{notes:?}");
}

#[test]
fn a_go_binary_podtap_cannot_instrument_is_named_once_and_captured_by_syscalls() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run.parquet");
    // Built in GOPATH mode and stripped: no DWARF, and no grpc-go version
    // anywhere to look the offsets up by.
    let (server, port) = GoPeer::server(&go_peers().join("grpc-server-gopath-stripped"));
    let mut client = GoPeer::client(&go_peers().join("grpc-client"), &[port], 5);
    let pid = server.pid().to_string();
    let capture = Capture::start(&["--pid", &pid, "-o", out.to_str().unwrap()]);
    make(&mut client, "unary 0 gil", &Call::ok(SAY_HELLO));
    make(&mut client, "fail 0 hal", &Call::not_found("hal"));
    let finished = capture.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    let warned: Vec<&str> =
        finished.stderr.lines().filter(|l| l.contains("cannot read gRPC headers")).collect();
    assert_eq!(warned.len(), 1, "{}", finished.stderr);
    assert!(warned[0].contains("grpc-server-gopath-stripped"), "{}", warned[0]);
    assert!(warned[0].contains("grpc-go version is unknown"), "{}", warned[0]);

    let (exchanges, stats) = decode(&out);
    assert_eq!(stats.uprobe.blocks, 0);
    assert_eq!(grpc_of(&exchanges, server.pid()).len(), 2, "{exchanges:?}");
    let notes = binaries(&out);
    let note = binary_note(&notes, "grpc-server-gopath-stripped");
    assert_eq!(note["outcome"], "unsupported", "{note}");
    assert!(note["reason"].as_str().is_some_and(|r| r.contains("no DWARF")), "{note}");

    // Told which grpc-go it is, podtap reads its headers from the table.
    let out = dir.path().join("assumed.parquet");
    let args = ["--pid", &pid, "--grpc-go-version", "1.33.3", "-o", out.to_str().unwrap()];
    let capture = Capture::start(&args);
    let calls = [("unary 0 ian", Call::ok(SAY_HELLO)), ("fail 0 jan", Call::not_found("jan"))];
    for (command, call) in &calls {
        make(&mut client, command, call);
    }
    let finished = capture.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    let (exchanges, _) = decode(&out);
    let calls: Vec<Call> = calls.into_iter().map(|(_, c)| c).collect();
    assert_calls(&grpc_of(&exchanges, server.pid()), &calls, "an assumed grpc-go version");
    let notes = binaries(&out);
    let go = &binary_note(&notes, "grpc-server-gopath-stripped")["go"];
    assert_eq!(
        (&go["grpc_version_source"], &go["offsets_source"]),
        (&"assumed".into(), &"table".into())
    );
}

#[test]
fn one_binary_run_by_two_targets_is_attached_once_and_others_are_not_recorded() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run.parquet");
    let (a, port_a) = GoPeer::server(&go_peers().join("grpc-server"));
    let (b, port_b) = GoPeer::server(&go_peers().join("grpc-server"));
    // Runs the same program, but is no target.
    let (other, port_other) = GoPeer::server(&go_peers().join("grpc-server"));
    let mut client =
        GoPeer::client(&go_peers().join("grpc-client"), &[port_a, port_b, port_other], 10);
    let (pa, pb) = (a.pid().to_string(), b.pid().to_string());
    let capture = Capture::start(&["--pid", &pa, "--pid", &pb, "-o", out.to_str().unwrap()]);
    for conn in 0..3 {
        make(&mut client, &format!("unary {conn} ivy"), &Call::ok(SAY_HELLO));
        make(&mut client, &format!("fail {conn} jo"), &Call::not_found("jo"));
    }
    let finished = capture.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    let attached = finished.stderr.matches("reading gRPC headers").count();
    assert_eq!(attached, 1, "{}", finished.stderr);
    assert_eq!(binaries(&out).len(), 1);

    let (exchanges, stats) = decode(&out);
    let calls = [Call::ok(SAY_HELLO), Call::not_found("jo")];
    for server in [&a, &b] {
        assert_calls(&grpc_of(&exchanges, server.pid()), &calls, "a shared binary");
    }
    assert!(grpc_of(&exchanges, other.pid()).is_empty());
    // Two calls of 3 + 2 blocks on each target; none of the other's.
    assert_eq!(stats.uprobe.blocks, 10);
}

#[test]
fn a_target_that_execs_a_go_program_gets_the_probes_and_both_sources_agree() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run.parquet");
    // A shell that becomes the server once told to: the program is only
    // known after the capture started.
    let server = go_peers().join("grpc-server");
    let mut shell = Command::new("sh")
        .args(["-c", &format!("read line; exec {}", server.display())])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = shell.id().to_string();
    let mut capture = Capture::start(&["--pid", &pid, "-o", out.to_str().unwrap()]);
    writeln!(shell.stdin.as_mut().unwrap(), "go").unwrap();
    capture.wait_for_line("reading gRPC headers from grpc-go 1.33.3");
    let mut stdout = BufReader::new(shell.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let port: u16 = line.trim().strip_prefix("port ").unwrap().parse().unwrap();

    // A connection opened during the capture: the wire decodes all of it,
    // and the uprobes must say the same.
    let mut client = GoPeer::client(&go_peers().join("grpc-client"), &[port], 0);
    let calls = [
        ("unary 0 kim", Call::ok(SAY_HELLO)),
        ("stream 0 lu 2", Call::ok(SAY_HELLO_STREAM)),
        ("fail 0 mo", Call::not_found("mo")),
    ];
    for (command, call) in &calls {
        make(&mut client, command, call);
    }
    let finished = capture.stop();
    let _ = shell.kill();
    let _ = shell.wait();
    assert!(finished.status.success(), "{}", finished.stderr);

    let (exchanges, stats) = decode(&out);
    let got = grpc_of(&exchanges, shell.id());
    assert_eq!(got.len(), calls.len(), "{exchanges:?}");
    for (x, (_, call)) in got.iter().zip(&calls) {
        assert_eq!(x.path.as_deref(), Some(call.path));
        assert_eq!(x.grpc_status, Some(call.grpc_status));
        assert_eq!(x.headers_source, Some("both"), "{x:?}");
        assert!(x.complete(), "{:?}", x.issues);
    }
    assert_eq!(stats.uprobe.blocks, 8);
    assert_eq!((stats.uprobe.agreed, stats.uprobe.disagreed, stats.uprobe.filled), (8, 0, 0));
}

#[test]
fn no_uprobes_captures_by_syscalls_only() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run.parquet");
    let (server, port) = GoPeer::server(&go_peers().join("grpc-server"));
    let mut client = GoPeer::client(&go_peers().join("grpc-client"), &[port], 5);
    let pid = server.pid().to_string();
    let capture = Capture::start(&["--pid", &pid, "--no-uprobes", "-o", out.to_str().unwrap()]);
    make(&mut client, "unary 0 fay", &Call::ok(SAY_HELLO));
    let finished = capture.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    assert!(!finished.stderr.contains("gRPC headers"), "{}", finished.stderr);
    let (exchanges, stats) = decode(&out);
    assert_eq!(stats.uprobe.blocks, 0);
    assert_eq!(grpc_of(&exchanges, server.pid()).len(), 1);
    assert!(binaries(&out).is_empty());
}
