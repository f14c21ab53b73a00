//! End-to-end: real eBPF programs attached to real HTTP/1.1 servers and
//! clients, the capture file read back and compared, byte for byte, with
//! what the client itself logged.

mod common;

use std::{fs, os::unix::fs::PermissionsExt, time::Duration};

use common::*;

/// Requests on one keep-alive connection, including bodies that span many
/// events in both directions (16 KiB writes; a 300 kB response, a 50 kB upload).
const REQUESTS: &[&str] = &[
    "GET /",
    "GET /bytes/300000",
    "POST /echo 50000",
    "GET /chunked/40000",
    "GET /status/503",
    "GET /bytes/10",
];

#[test]
fn keep_alive_streams_are_recorded_byte_for_byte() {
    require_root();
    let run = Run::new();
    let (server, port) = Peer::server(&[]);
    let cap = run.capture(server.pid(), &["--max-payload", "65536"]);

    let mut args = vec!["--log", run.log_arg()];
    args.extend_from_slice(REQUESTS);
    let (client, local_port) = Peer::client(port, &args);
    client.finish();
    let stderr = run.stop(cap);
    assert!(stderr.contains("wrote"), "no summary: {}", stderr);

    let file = run.read();
    let (sent, recv, _) = client_log(&run.log);
    let conn = file.conn_with_port(local_port).expect("the client's connection was captured");

    let (ingress, holes_in) = file.stream(conn, "ingress");
    let (egress, holes_out) = file.stream(conn, "egress");
    assert!(holes_in.is_empty() && holes_out.is_empty(), "holes: {holes_in:?} {holes_out:?}");
    assert_eq!(ingress.len(), sent.len());
    assert!(ingress == sent, "ingress differs from what the client sent");
    assert_eq!(egress.len(), recv.len());
    assert!(egress == recv, "egress differs from what the client received");

    // Large bodies really were spread over several events.
    let egress_events = file.chunks(conn, "egress").len();
    let ingress_events = file.chunks(conn, "ingress").len();
    assert!(egress_events > 20, "{egress_events} egress events");
    assert!(ingress_events > 1, "{ingress_events} ingress events");
    for r in file.chunks(conn, "egress") {
        assert_eq!(r.payload.as_ref().unwrap().len() as u64, r.size, "payload kept in full");
        assert_eq!(r.pid, Some(server.pid()));
        assert_eq!(r.comm.as_deref(), Some("python3"));
        assert_eq!(r.local_addr.as_deref(), Some(format!("127.0.0.1:{port}").as_str()));
        assert_eq!(r.remote_addr.as_deref(), Some(format!("127.0.0.1:{local_port}").as_str()));
        assert!(r.k8s.iter().all(Option::is_none), "kubernetes columns are null for local targets");
    }
    // The server accepted this connection during the capture.
    assert!(file.rows.iter().any(|r| r.kind == "accept" && r.conn_id == Some(conn)));

    // Wall-clock timestamps, inside the capture window of the metadata.
    let start = file.meta["podtap.start"].clone();
    let end = file.meta["podtap.end"].clone();
    let start =
        humantime::parse_rfc3339(&start).unwrap().duration_since(std::time::UNIX_EPOCH).unwrap();
    let end =
        humantime::parse_rfc3339(&end).unwrap().duration_since(std::time::UNIX_EPOCH).unwrap();
    for r in &file.rows {
        let ts = Duration::from_nanos(r.ts as u64);
        assert!(ts >= start && ts <= end, "ts {ts:?} outside {start:?}..{end:?}");
    }

    // Metadata of SPEC §3.
    for key in [
        "podtap.schema_version",
        "podtap.version",
        "podtap.host",
        "podtap.kernel",
        "podtap.targets",
        "podtap.options",
    ] {
        assert!(file.meta.contains_key(key), "metadata lacks {key}");
    }
    assert_eq!(file.meta["podtap.file_kind"], "capture");
    assert_eq!(file.meta["podtap.state"], "complete");
    assert_eq!(file.meta["podtap.lost_events"], "0");
    assert!(file.meta["podtap.targets"].contains(&format!("\"pid\":{}", server.pid())));

    // Private file, segments merged and gone.
    let mode = fs::metadata(&run.out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!run.dir.path().join("run.parquet.d").exists());
}

#[test]
fn a_connection_opened_before_the_capture_is_captured_from_then_on() {
    require_root();
    let run = Run::new();
    let (server, port) = Peer::server(&[]);
    // Two requests before the capture, three after; the server's handler
    // thread sits blocked in read() on this connection when the capture starts.
    let (mut client, local_port) = Peer::client(
        port,
        &[
            "--log",
            run.log_arg(),
            "--pause-after",
            "2",
            "--repeat",
            "1",
            "GET /bytes/1000",
            "GET /",
            "GET /bytes/70000",
            "POST /echo 3000",
            "GET /",
        ],
    );
    client.expect_line("paused");
    std::thread::sleep(Duration::from_millis(200));
    let cap = run.capture(server.pid(), &["--max-payload", "65536"]);
    client.resume();
    client.finish();
    run.stop(cap);

    let file = run.read();
    let (sent, recv, marks) = client_log(&run.log);
    let sent_after = &sent[marks["sent_before_pause"].as_u64().unwrap() as usize..];
    let recv_after = &recv[marks["recv_before_pause"].as_u64().unwrap() as usize..];
    let conn = file.conn_with_port(local_port).expect("the pre-existing connection was captured");
    assert!(
        !file
            .rows
            .iter()
            .any(|r| r.conn_id == Some(conn) && (r.kind == "accept" || r.kind == "connect")),
        "a connection opened before the capture has no accept row"
    );
    let (ingress, holes_in) = file.stream(conn, "ingress");
    let (egress, holes_out) = file.stream(conn, "egress");
    assert!(holes_in.is_empty() && holes_out.is_empty(), "holes: {holes_in:?} {holes_out:?}");
    assert!(
        ingress == sent_after,
        "ingress: {} bytes, client sent {} after the start",
        ingress.len(),
        sent_after.len()
    );
    assert!(
        egress == recv_after,
        "egress: {} bytes, client got {} after the start",
        egress.len(),
        recv_after.len()
    );
    assert!(ingress.starts_with(b"GET /bytes/70000 HTTP/1.1\r\n"));
}

#[test]
fn children_forked_after_the_start_are_captured_and_other_processes_are_not() {
    require_root();
    let run = Run::new();
    let (forking, port) = Peer::server(&["--mode", "forking"]);
    let (bystander, other_port) = Peer::server(&[]);
    let cap = run.capture(forking.pid(), &[]);

    let (client, local_port) = Peer::client(port, &["GET /bytes/2000", "GET /"]);
    client.finish();
    let (client, other_local) = Peer::client(other_port, &["GET /bytes/2000", "GET /"]);
    client.finish();
    run.stop(cap);

    let file = run.read();
    let conn = file.conn_with_port(local_port).expect("the forked child's connection was captured");
    let handlers: Vec<u32> = file.chunks(conn, "egress").iter().filter_map(|r| r.pid).collect();
    assert!(!handlers.is_empty());
    assert!(handlers.iter().all(|&pid| pid != forking.pid()), "responses come from a forked child");
    let (egress, holes) = file.stream(conn, "egress");
    assert!(holes.is_empty());
    assert!(egress.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(
        file.meta["podtap.targets"].contains("\"via\":\"fork\""),
        "{}",
        file.meta["podtap.targets"]
    );

    assert_eq!(file.conn_with_port(other_port), None, "the bystander server was captured");
    assert_eq!(file.conn_with_port(other_local), None);
    assert!(file.rows.iter().all(|r| r.pid != Some(bystander.pid())));
}

#[test]
fn max_payload_keeps_the_true_size_and_the_first_bytes() {
    require_root();
    let run = Run::new();
    let (server, port) = Peer::server(&[]);
    // Byte-exact payloads: no masking (a head cut at 64 bytes leaves the
    // rest of it unplaced, which redaction masks).
    let cap = run.capture(server.pid(), &["--max-payload", "64", "--no-redact"]);
    let (client, local_port) =
        Peer::client(port, &["--log", run.log_arg(), "GET /bytes/50000", "POST /echo 20000"]);
    client.finish();
    run.stop(cap);

    let file = run.read();
    let (sent, recv, _) = client_log(&run.log);
    let conn = file.conn_with_port(local_port).unwrap();
    for (direction, truth) in [("egress", &recv), ("ingress", &sent)] {
        let chunks = file.chunks(conn, direction);
        assert!(
            chunks.iter().any(|r| r.size > 64),
            "{direction}: some event is larger than 64 bytes"
        );
        for r in &chunks {
            assert_eq!(
                r.payload.as_ref().unwrap().len() as u64,
                r.size.min(64),
                "{direction} at {:?}",
                r.seq
            );
        }
        assert_chunks_match(&file, conn, direction, truth);
        let total: u64 = chunks.iter().map(|r| r.size).sum();
        assert_eq!(total, truth.len() as u64, "{direction}: sizes add up to the true length");
    }
}

#[test]
fn moderate_load_loses_nothing() {
    require_root();
    let run = Run::new();
    let (server, port) = Peer::server(&[]);
    let cap = run.capture(server.pid(), &[]);
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(Peer::client(port, &["--repeat", "300", "GET /bytes/3000", "POST /echo 500"]));
    }
    let ports: Vec<u16> = clients.iter().map(|(_, p)| *p).collect();
    for (client, _) in clients {
        client.finish();
    }
    run.stop(cap);

    let file = run.read();
    assert_eq!(file.lost_total(), 0);
    assert_eq!(file.meta["podtap.lost_events"], "0");
    for port in ports {
        let conn = file.conn_with_port(port).unwrap();
        let (ingress, holes) = file.stream(conn, "ingress");
        assert!(holes.is_empty(), "holes {holes:?}");
        // 600 requests: 300 GETs and 300 POSTs with 500-byte bodies.
        assert_eq!(ingress.windows(4).filter(|w| w == b"GET ").count(), 300);
        assert_eq!(ingress.windows(5).filter(|w| w == b"POST ").count(), 300);
        let (egress, holes) = file.stream(conn, "egress");
        assert!(holes.is_empty(), "holes {holes:?}");
        assert_eq!(egress.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count(), 600);
    }
}

#[test]
fn a_tiny_ring_buffer_loses_events_and_says_so() {
    require_root();
    let run = Run::new();
    let (server, port) = Peer::server(&[]);
    // One page of ring buffer cannot hold a 16 KiB event.
    let cap = run.capture(server.pid(), &["--ring-buffer-size", "4096", "--max-payload", "16384"]);
    let (client, local_port) = Peer::client(
        port,
        &["--log", run.log_arg(), "--repeat", "20", "GET /bytes/100000", "GET /"],
    );
    client.finish();
    let stderr = run.stop(cap);

    let file = run.read();
    let lost = file.lost_total();
    assert!(lost > 0, "no lost rows");
    assert_eq!(file.meta["podtap.lost_events"], lost.to_string());
    assert!(file
        .rows
        .iter()
        .filter(|r| r.kind == "lost")
        .all(|r| r.cpu.is_some() && r.conn_id.is_none()));
    assert!(stderr.contains(&format!("{lost} lost")), "summary: {}", stderr);

    // What was kept is still right, and what was lost is a visible hole.
    let (_, recv, _) = client_log(&run.log);
    let conn = file.conn_with_port(local_port).unwrap();
    let (_, holes) = file.stream(conn, "egress");
    assert!(!holes.is_empty(), "lost events show up as holes in seq");
    assert_chunks_match(&file, conn, "egress", &recv);
}

#[test]
fn only_tcp_is_recorded_over_ipv6_too() {
    require_root();
    let run = Run::new();
    // Every request also makes the server send UDP, use a unix socket pair
    // and write a file: none of it may appear.
    let (server, port) = Peer::server(&["--host", "::1", "--noise"]);
    let cap = run.capture(server.pid(), &[]);
    let (client, local_port) = Peer::client(
        port,
        &["--host", "::1", "--log", run.log_arg(), "GET /", "POST /echo 2000", "GET /bytes/3000"],
    );
    client.finish();
    run.stop(cap);

    let file = run.read();
    let (sent, recv, _) = client_log(&run.log);
    let conn = file.conn_with_port(local_port).expect("the IPv6 connection was captured");
    let row = file.chunks(conn, "egress")[0];
    assert_eq!(row.local_addr.as_deref(), Some(format!("[::1]:{port}").as_str()));
    assert_eq!(row.remote_addr.as_deref(), Some(format!("[::1]:{local_port}").as_str()));
    assert!(file.stream(conn, "ingress").0 == sent);
    assert!(file.stream(conn, "egress").0 == recv);
    let others: Vec<_> = file.data().filter(|r| r.conn_id != Some(conn)).collect();
    assert!(others.is_empty(), "non-TCP traffic was recorded: {others:?}");
}
