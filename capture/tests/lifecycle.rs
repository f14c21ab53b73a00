//! The capture process itself: clear errors before anything is attached,
//! clean ends on signals, and segments that survive a kill.

mod common;

use std::{
    fs,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    process::Command,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use common::*;
use nix::sys::signal::Signal;

fn run_capture(args: &[&str]) -> (i32, String) {
    let out = Command::new(CAPTURE).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_missing_pid_is_one_line_and_exit_code_2() {
    require_root();
    let dir = workdir();
    let out = dir.path().join("run.parquet");
    let (code, stderr) = run_capture(&["--pid", "4000000", "-o", out.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert_eq!(stderr.trim(), "error: no such process: pid 4000000");
    assert!(!out.exists() && !dir.path().join("run.parquet.d").exists(), "nothing is written");
}

#[test]
fn bad_flags_are_usage_errors() {
    let (code, stderr) = run_capture(&["--pid", "1", "-o", "/tmp/x.parquet", "--frobnicate"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("unexpected argument '--frobnicate'"), "{stderr}");
    let (code, stderr) = run_capture(&["-o", "/tmp/x.parquet"]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr.trim(),
        "error: no target given: use --ns NAMESPACE, --pid PID or --cgroup PATH"
    );
    let (code, stderr) = run_capture(&["--pid", "1", "-o", "/nonexistent/x.parquet"]);
    assert_eq!(code, 2);
    assert_eq!(stderr.trim(), "error: output directory `/nonexistent` does not exist");
    let (code, stderr) = run_capture(&["--cgroup", "/tmp", "-o", "/tmp/x.parquet"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not a cgroup directory: `/tmp`"), "{stderr}");
}

#[test]
fn without_privileges_it_says_what_it_needs() {
    require_root();
    // Run a copy of the binary as `nobody` (the build directory may not be
    // reachable for that user).
    let dir = workdir();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("capture");
    fs::copy(CAPTURE, &bin).unwrap();
    let out = Command::new(&bin)
        .args(["--pid", &std::process::id().to_string(), "-o", "/tmp/podtap-nobody.parquet"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "error: capture must run as root (or with CAP_BPF and CAP_PERFMON) to load eBPF programs"
    );
}

#[test]
fn sigterm_ends_the_capture_with_a_complete_file() {
    require_root();
    let run = Run::new();
    let (server, port) = Peer::server(&[]);
    let cap = run.capture(server.pid(), &[]);
    let (client, _) = Peer::client(port, &["GET /", "GET /bytes/100"]);
    client.finish();
    let done = cap.stop_with(Signal::SIGTERM);
    assert!(done.status.success(), "{}", done.stderr);
    let file = run.read();
    assert_eq!(file.meta["podtap.state"], "complete");
    // Two requests in, two responses (head and body written apart) out.
    assert_eq!(file.data().filter(|r| r.direction.as_deref() == Some("ingress")).count(), 2);
    assert_eq!(file.data().filter(|r| r.direction.as_deref() == Some("egress")).count(), 4);
    assert!(!run.dir.path().join("run.parquet.d").exists());
}

#[test]
fn the_duration_ends_the_capture() {
    require_root();
    let run = Run::new();
    let (server, _) = Peer::server(&[]);
    let cap = run.capture(server.pid(), &["--duration", "2s"]);
    let done = cap.wait();
    assert!(done.status.success(), "{}", done.stderr);
    assert!(done.stderr.contains("captured 2.0s"), "{}", done.stderr);
    let file = run.read();
    assert_eq!(file.meta["podtap.state"], "complete");
    assert!(file.meta["podtap.options"].contains("\"duration_s\":2.0"));
}

#[test]
fn segments_written_before_a_sigkill_are_readable() {
    require_root();
    let run = Run::new();
    let (server, port) = Peer::server(&[]);
    let cap = run.capture(server.pid(), &[]);
    // Traffic for about three seconds.
    let (client, _) = Peer::client(port, &["--repeat", "3000", "GET /bytes/100"]);
    std::thread::sleep(Duration::from_secs(3));
    let killed_at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64;
    let done = cap.stop_with(Signal::SIGKILL);
    assert!(!done.status.success());
    drop(client);

    let segdir = run.dir.path().join("run.parquet.d");
    let mut parts: Vec<_> = fs::read_dir(&segdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("part-"))
        .collect();
    parts.sort();
    assert!(parts.len() >= 2, "segments: {parts:?}");
    let mut last_ts = 0;
    let mut data = 0;
    for (i, part) in parts.iter().enumerate() {
        let seg = read_capture(part);
        assert_eq!(seg.meta["podtap.state"], "segment");
        assert_eq!(seg.meta["podtap.segment"], (i + 1).to_string());
        assert_eq!(fs::metadata(part).unwrap().permissions().mode() & 0o777, 0o600);
        data += seg.data().count();
        last_ts = last_ts.max(seg.rows.iter().map(|r| r.ts).max().unwrap_or(0));
    }
    assert!(data > 100, "{data} data rows");
    // At most about the last second (plus the 300 ms the helper waits) is lost.
    let gap = Duration::from_nanos((killed_at - last_ts).max(0) as u64);
    assert!(gap < Duration::from_millis(1800), "newest saved event is {gap:?} older than the kill");
    // A new capture refuses to overwrite them.
    let (code, stderr) =
        run_capture(&["--pid", &server.pid().to_string(), "-o", run.out.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("did not finish"), "{stderr}");
}
