//! Every way bytes reach a socket: each traced syscall (read, write, readv,
//! writev, recvmsg, sendmsg, recvfrom, sendto, with MSG_PEEK and MSG_TRUNC),
//! bytes that bypass them (sendfile), the client side of a connection
//! (connect, close, a non-blocking connect), and a half-closed socket read
//! after the peer is gone.

mod common;

use std::fs;

use common::*;
use formats::wire::{FLAG_PAYLOAD_DISCARDED, FLAG_SEQ_ESTIMATED};

#[test]
fn every_traced_syscall_is_recorded_byte_for_byte() {
    require_root();
    let run = Run::new();
    let (server, port) = Peer::syscalls_server();
    let cap = run.capture(server.pid(), &["--max-payload", "65536"]);
    // The server reads with recv after a recv(MSG_PEEK), read, readv, recvmsg
    // and recv_into in turn, and writes with write, writev, sendmsg and send.
    // Frames stay below the 64 KiB payload cap, so every byte is kept.
    let local = Peer::syscalls_client(
        port,
        &run.log,
        &[
            "E:100", "E:60000", "E:3", "E:20000", "E:1", "E:9000", "E:4000", "E:64", "E:12345",
            "E:7",
        ],
    );
    run.stop(cap);

    let file = run.read();
    let (sent, recv, _) = client_log(&run.log);
    let conn = file.conn_with_port(local).unwrap();
    // A recorded peek would overlap the read that follows it; `stream`
    // refuses overlaps.
    let (ingress, holes) = file.stream(conn, "ingress");
    assert!(holes.is_empty(), "{holes:?}");
    assert!(ingress == sent, "ingress: {} bytes, client sent {}", ingress.len(), sent.len());
    let (egress, holes) = file.stream(conn, "egress");
    assert!(holes.is_empty(), "{holes:?}");
    assert!(egress == recv, "egress: {} bytes, client got {}", egress.len(), recv.len());
    assert!(file.data().all(|r| r.flags & FLAG_SEQ_ESTIMATED == 0), "seq came from the kernel");
}

#[test]
fn sendfile_bytes_are_a_hole_and_msg_trunc_keeps_no_payload() {
    require_root();
    let run = Run::new();
    let (server, port) = Peer::syscalls_server();
    let cap = run.capture(server.pid(), &["--max-payload", "65536"]);
    let local =
        Peer::syscalls_client(port, &run.log, &["E:500", "F:30000", "E:200", "D:5000", "E:300"]);
    run.stop(cap);

    let file = run.read();
    let (_, recv, _) = client_log(&run.log);
    let files: Vec<(u64, u64)> =
        serde_json::from_str(&fs::read_to_string(run.log.join("files.json")).unwrap()).unwrap();
    let conn = file.conn_with_port(local).unwrap();

    // sendfile() is not traced: its bytes are a hole of exactly their size,
    // and everything after it still lines up.
    let (_, holes) = file.stream(conn, "egress");
    assert_eq!(holes, files, "egress holes");
    assert_chunks_match(&file, conn, "egress", &recv);

    // The 5000 bytes the server discarded with MSG_TRUNC: counted, flagged,
    // nothing kept.
    let chunks = file.chunks(conn, "ingress");
    let discarded: Vec<_> =
        chunks.iter().filter(|r| r.flags & FLAG_PAYLOAD_DISCARDED != 0).collect();
    assert_eq!(discarded.iter().map(|r| r.size).sum::<u64>(), 5000);
    assert!(discarded.iter().all(|r| r.payload.as_deref() == Some(&[][..])));
    let (_, holes) = file.stream(conn, "ingress");
    assert_eq!(
        holes.iter().map(|h| h.1).sum::<u64>(),
        5000,
        "the discarded bytes are the only gap"
    );
}

#[test]
fn the_client_side_records_connect_and_close() {
    require_root();
    let run = Run::new();
    let (_server, port) = Peer::server(&[]);
    let mut client = Peer::waiting_client(
        port,
        &[
            "--nonblocking-connect",
            "--log",
            run.log_arg(),
            "GET /bytes/40000",
            "POST /echo 3000",
            "GET /",
        ],
    );
    let cap = run.capture(client.pid(), &["--max-payload", "65536"]);
    client.resume();
    let local = client.expect_number("local ");
    let client_pid = client.pid();
    client.finish();
    run.stop(cap);

    let file = run.read();
    let (sent, recv, _) = client_log(&run.log);
    let conn = file.conn_with_port(port).expect("the client's connection was captured");
    let rows: Vec<_> = file.rows.iter().filter(|r| r.conn_id == Some(conn)).collect();
    let connects: Vec<_> = rows.iter().filter(|r| r.kind == "connect").collect();
    assert_eq!(connects.len(), 1, "one connection, even with a second connect() call");
    assert_eq!(connects[0].pid, Some(client_pid));
    assert_eq!(connects[0].remote_addr.as_deref(), Some(format!("127.0.0.1:{port}").as_str()));
    assert_eq!(connects[0].local_addr.as_deref(), Some(format!("127.0.0.1:{local}").as_str()));
    assert_eq!(rows.last().unwrap().kind, "close", "the client closed it last");
    // From the client's side: egress is what it sent, ingress what it got.
    let (egress, holes_out) = file.stream(conn, "egress");
    let (ingress, holes_in) = file.stream(conn, "ingress");
    assert!(holes_out.is_empty() && holes_in.is_empty(), "{holes_out:?} {holes_in:?}");
    assert!(egress == sent);
    assert!(ingress == recv);
}

#[test]
fn a_half_closed_socket_is_read_to_the_end_as_one_connection() {
    require_root();
    let run = Run::new();
    let (_server, port) = Peer::server(&[]);
    // The client sends, shuts down its side and reads only after the server
    // answered and closed: the socket has reached TCP_CLOSE by then, with the
    // responses still queued.
    let mut client = Peer::waiting_client(
        port,
        &["--half-close", "--log", run.log_arg(), "GET /bytes/30000", "GET /"],
    );
    let cap = run.capture(client.pid(), &[]);
    client.resume();
    client.finish();
    run.stop(cap);

    let file = run.read();
    let (_, recv, _) = client_log(&run.log);
    let conn = file.conn_with_port(port).unwrap();
    let conns: std::collections::BTreeSet<u64> =
        file.rows.iter().filter_map(|r| r.conn_id).collect();
    assert_eq!(conns.len(), 1, "everything on one connection id: {conns:?}");
    // The last read also consumed the server's FIN, which advances the TCP
    // sequence number by one more: the chunk must still start at 0.
    let chunks = file.chunks(conn, "ingress");
    assert_eq!(chunks[0].seq, Some(0));
    let end = chunks.last().map(|r| r.seq.unwrap() + r.size).unwrap();
    assert_eq!(end, recv.len() as u64, "every received byte is accounted for, at its offset");
    assert_chunks_match(&file, conn, "ingress", &recv);
}
