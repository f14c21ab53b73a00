//! End to end, as root: the OpenSSL plaintext probes on a real HTTPS server
//! (Python's ssl module on the system's libssl) with curl as its client.
//! The plaintext must be recorded byte-exact as `tls_data` rows on the same
//! connection as the encrypted syscall bytes, which stay encrypted.

mod common;

use std::{path::Path, process::Command};

use analyze::{
    engine::{self, Context},
    exchange::Exchange,
    input,
    stats::Stats,
};
use common::{
    read_capture, require_root,
    web::{certificate, curl, find},
    Capture, CaptureFile, Peer,
};

/// The exchanges of a capture, decoded in process by `analyze`.
fn decode(path: &Path) -> (Vec<Exchange>, Stats) {
    let captures = input::discover(&[path.display().to_string()]).expect("a capture");
    let mut out = Vec::new();
    let mut stats = Stats::default();
    for capture in &captures {
        let context = Context::of(capture, 64 * 1024);
        stats.merge(engine::decode(capture, context, &mut |x| out.push(x), &mut |_| {}).unwrap());
    }
    (out, stats)
}

/// The connections that have rows of `kind`.
fn conns_with(file: &CaptureFile, kind: &str) -> Vec<u64> {
    let mut ids: Vec<u64> =
        file.rows.iter().filter(|r| r.kind == kind).filter_map(|r| r.conn_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[test]
fn openssl_plaintext_is_recorded_byte_exact_beside_the_ciphertext() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let mut server = Peer::spawn_script("https.py", &[&cert, &key, "--plain"]);
    let port = server.expect_number("port ");
    let plain_port = server.expect_number("plain ");
    let out = dir.path().join("run.parquet");
    let pid = server.pid().to_string();
    let capture =
        Capture::start(&["--pid", &pid, "--max-payload", "65536", "-o", out.to_str().unwrap()]);

    // Two requests on one TLS connection, a POST on another, and one in
    // the clear to the same process.
    let base = format!("https://127.0.0.1:{port}");
    let got = curl(&["--http1.1", &format!("{base}/one"), &format!("{base}/two")]);
    assert_eq!(got, b"hello /one\nhello /two\n");
    let body = "a body that only TLS carries".repeat(50);
    assert_eq!(
        curl(&["--http1.1", "--data-binary", &body, &format!("{base}/echo")]),
        body.as_bytes()
    );
    assert_eq!(curl(&[&format!("http://127.0.0.1:{plain_port}/plain")]), b"hello /plain\n");
    let finished = capture.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    assert!(finished.stderr.contains("reading TLS plaintext from"), "{}", finished.stderr);

    let file = read_capture(&out);
    let tls = conns_with(&file, "tls_data");
    assert_eq!(tls.len(), 2, "two TLS connections: {tls:?}");
    let mut requests = Vec::new();
    for &conn in &tls {
        // The plaintext of each direction, whole and in order.
        let (ingress, holes_in) = file.stream_of("tls_data", conn, "ingress");
        let (egress, holes_out) = file.stream_of("tls_data", conn, "egress");
        assert!(holes_in.is_empty() && holes_out.is_empty(), "{holes_in:?} {holes_out:?}");
        requests.push(String::from_utf8_lossy(&ingress).into_owned());
        assert!(egress.starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", String::from_utf8_lossy(&egress));
        // The ciphertext of the same connection: a TLS handshake, and none
        // of the plaintext.
        let (cipher_in, _) = file.stream(conn, "ingress");
        let (cipher_out, _) = file.stream(conn, "egress");
        assert_eq!(&cipher_in[..2], &[0x16, 0x03], "a ClientHello starts the connection");
        assert!(!find(&cipher_in, b"HTTP/1.1") && !find(&cipher_out, b"HTTP/1.1"));
        if find(&ingress, b"POST /echo") {
            // The body went through whole, as curl sent it and got it back.
            assert!(ingress.ends_with(body.as_bytes()));
            assert!(egress.ends_with(body.as_bytes()));
        } else {
            assert!(ingress.starts_with(b"GET /one HTTP/1.1\r\n"));
            assert!(find(&ingress, b"GET /two HTTP/1.1\r\n"));
            assert!(find(&egress, b"\r\n\r\nhello /one\n"));
            assert!(egress.ends_with(b"\r\n\r\nhello /two\n"));
        }
        // Rows of the TLS library carry the process and its socket.
        let row = file.rows.iter().find(|r| r.kind == "tls_data" && r.conn_id == Some(conn));
        let row = row.unwrap();
        assert_eq!(row.pid, Some(server.pid()));
        assert!(row.remote_addr.is_some() && row.fd.is_some());
    }
    assert!(requests.iter().any(|r| r.starts_with("POST /echo HTTP/1.1\r\n")), "{requests:?}");

    // The plain connection: bytes in the clear, no plaintext rows.
    let plain = file.conn_with_port(plain_port).expect("the plain connection");
    assert!(!tls.contains(&plain));
    let (clear, _) = file.stream(plain, "ingress");
    assert!(clear.starts_with(b"GET /plain HTTP/1.1\r\n"));

    let notes: Vec<serde_json::Value> =
        serde_json::from_str(&file.meta["podtap.binaries"]).unwrap();
    let lib = notes.iter().find(|n| n["outcome"] == "tls_plaintext").expect("a libssl note");
    assert!(lib["path"].as_str().unwrap().contains("libssl.so"), "{lib}");
    assert!(lib["tls"]["functions"]["ssl_write"].is_u64(), "{lib}");
    assert_eq!(lib["tls"]["socket_from"], "syscall", "{lib}");

    // analyze decodes the plaintext like a plain connection, and never the
    // ciphertext.
    let (exchanges, stats) = decode(&out);
    let mut seen: Vec<(String, String, u16, u64, u64, bool)> = exchanges
        .iter()
        .map(|x| {
            (
                x.method.clone().unwrap_or_default(),
                x.path.clone().unwrap_or_default(),
                x.status.unwrap_or(0),
                x.request_body_size.unwrap_or(0),
                x.response_body_size.unwrap_or(0),
                x.conn.tls,
            )
        })
        .collect();
    seen.sort();
    let n = body.len() as u64;
    assert_eq!(
        seen,
        vec![
            ("GET".into(), "/one".into(), 200, 0, 11, true),
            ("GET".into(), "/plain".into(), 200, 0, 13, false),
            ("GET".into(), "/two".into(), 200, 0, 11, true),
            ("POST".into(), "/echo".into(), 200, n, n, true),
        ]
    );
    assert!(exchanges.iter().all(|x| x.complete()), "{exchanges:?}");
    let echo = exchanges.iter().find(|x| x.path.as_deref() == Some("/echo")).unwrap();
    assert_eq!(echo.response_body.as_deref(), Some(body.as_bytes()));
    assert_eq!((stats.tls_connections, stats.tls_plaintext_connections), (2, 2));
    assert!(stats.encrypted_bytes > 0 && stats.tls_unplaced_bytes == 0);
    assert_eq!(stats.unknown_connections, 0, "ciphertext is TLS, not 'not HTTP'");
}

#[test]
fn http2_over_tls_decodes_from_the_plaintext() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.html"), b"hello over h2\n").unwrap();
    let big: Vec<u8> = (0..40_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(www.join("big.txt"), &big).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // nghttpd: HTTP/2 over TLS (ALPN h2) on the system's libssl.
    let mut nghttpd = Command::new("nghttpd")
        .args(["-d", www.to_str().unwrap(), &port.to_string(), &key, &cert])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("nghttpd runs (scripts/setup.sh installs nghttp2-server)");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "nghttpd did not listen");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = dir.path().join("run.parquet");
    let pid = nghttpd.id().to_string();
    let capture =
        Capture::start(&["--pid", &pid, "--max-payload", "65536", "-o", out.to_str().unwrap()]);
    let base = format!("https://127.0.0.1:{port}");
    let got = curl(&["--http2", &format!("{base}/index.html"), &format!("{base}/big.txt")]);
    assert_eq!(got, [&b"hello over h2\n"[..], &big].concat());
    let finished = capture.stop();
    let _ = nghttpd.kill();
    let _ = nghttpd.wait();
    assert!(finished.status.success(), "{}", finished.stderr);

    let (exchanges, stats) = decode(&out);
    let mut seen: Vec<(&str, String, u16, u64)> = exchanges
        .iter()
        .map(|x| {
            (
                x.protocol,
                x.path.clone().unwrap_or_default(),
                x.status.unwrap_or(0),
                x.response_body_size.unwrap_or(0),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("http2", "/big.txt".into(), 200, big.len() as u64),
            ("http2", "/index.html".into(), 200, 14)
        ]
    );
    assert!(exchanges.iter().all(|x| x.complete() && x.conn.tls), "{exchanges:?}");
    // The bodies, byte for byte as curl got them (as much as an exchange
    // keeps of them).
    for x in &exchanges {
        let want: &[u8] =
            if x.path.as_deref() == Some("/big.txt") { &big } else { b"hello over h2\n" };
        let kept = x.response_body.as_deref().unwrap_or_default();
        assert!(!kept.is_empty() && want.starts_with(kept), "{:?}: {} kept", x.path, kept.len());
        assert_eq!(x.method.as_deref(), Some("GET"));
    }
    assert_eq!((stats.tls_connections, stats.tls_plaintext_connections), (1, 1));
}

#[test]
fn without_uprobes_tls_traffic_stays_encrypted() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let mut server = Peer::spawn_script("https.py", &[&cert, &key]);
    let port = server.expect_number("port ");
    let out = dir.path().join("run.parquet");
    let pid = server.pid().to_string();
    let capture = Capture::start(&["--pid", &pid, "--no-uprobes", "-o", out.to_str().unwrap()]);
    assert_eq!(curl(&[&format!("https://127.0.0.1:{port}/secret")]), b"hello /secret\n");
    let finished = capture.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    let file = read_capture(&out);
    assert!(conns_with(&file, "tls_data").is_empty());
    let conn = file.conn_with_port(port).expect("the TLS connection");
    let (cipher, _) = file.stream(conn, "ingress");
    assert!(!cipher.is_empty() && !find(&cipher, b"/secret"));
    // analyze sees a TLS connection it cannot decode, and says so.
    let (exchanges, stats) = decode(&out);
    assert!(exchanges.is_empty(), "{exchanges:?}");
    assert_eq!((stats.tls_connections, stats.tls_plaintext_connections), (1, 0));
    assert!(stats.encrypted_bytes > 0);
    assert!(stats.summary().contains("encrypted, not decoded"));
}

#[test]
fn node_with_its_built_in_openssl_decrypting_from_memory() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let script = common::repo_root().join("scripts/peers/https.js");
    let mut node = Command::new("node")
        .arg(&script)
        .args([&cert, &key])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node runs (scripts/setup.sh installs nodejs)");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(node.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let port: u16 = line.trim().strip_prefix("port ").unwrap().parse().unwrap();
    let out = dir.path().join("run.parquet");
    let pid = node.id().to_string();
    let capture = Capture::start(&["--pid", &pid, "-o", out.to_str().unwrap()]);
    let base = format!("https://127.0.0.1:{port}");
    let got = curl(&["--http1.1", &format!("{base}/one"), &format!("{base}/two")]);
    assert_eq!(got, b"hello /one\nhello /two\n");
    assert_eq!(
        curl(&["--data-binary", "from node's memory BIO", &format!("{base}/echo")]),
        b"from node's memory BIO"
    );
    let finished = capture.stop();
    let _ = node.kill();
    let _ = node.wait();
    assert!(finished.status.success(), "{}", finished.stderr);
    assert!(finished.stderr.contains("reading TLS plaintext from"), "{}", finished.stderr);

    // Node feeds the socket's bytes to OpenSSL through memory, so no SSL
    // call makes a syscall: the socket comes from the thread's last read,
    // then stays with the SSL object.
    let (exchanges, stats) = decode(&out);
    let mut seen: Vec<(String, String, u16)> = exchanges
        .iter()
        .map(|x| {
            (
                x.method.clone().unwrap_or_default(),
                x.path.clone().unwrap_or_default(),
                x.status.unwrap_or(0),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("GET".into(), "/one".into(), 200),
            ("GET".into(), "/two".into(), 200),
            ("POST".into(), "/echo".into(), 200),
        ]
    );
    assert!(exchanges.iter().all(|x| x.complete() && x.conn.tls), "{exchanges:?}");
    let echo = exchanges.iter().find(|x| x.path.as_deref() == Some("/echo")).unwrap();
    assert_eq!(echo.response_body.as_deref(), Some(&b"from node's memory BIO"[..]));
    assert_eq!(stats.tls_unplaced_bytes, 0);
    assert_eq!((stats.tls_connections, stats.tls_plaintext_connections), (2, 2));
}

#[test]
fn a_library_loaded_after_the_capture_started_is_probed_too() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    // Python that maps libssl only once told to go (its ssl module is
    // imported then).
    let script = common::repo_root().join("scripts/peers/https.py");
    let late = format!(
        "import runpy, sys; print('waiting', flush=True); sys.stdin.readline(); \
         sys.argv = ['https.py', {cert:?}, {key:?}]; runpy.run_path({:?}, run_name='__main__')",
        script.display().to_string()
    );
    let mut server = Command::new("python3")
        .args(["-c", &late])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line.trim(), "waiting");
    let out = dir.path().join("run.parquet");
    let pid = server.id().to_string();
    let mut capture = Capture::start(&["--pid", &pid, "-o", out.to_str().unwrap()]);
    std::io::Write::write_all(server.stdin.as_mut().unwrap(), b"go\n").unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let port: u16 = line.trim().strip_prefix("port ").unwrap().parse().unwrap();
    capture.wait_for_line("reading TLS plaintext from");
    assert_eq!(curl(&[&format!("https://127.0.0.1:{port}/late")]), b"hello /late\n");
    let finished = capture.stop();
    let _ = server.kill();
    let _ = server.wait();
    assert!(finished.status.success(), "{}", finished.stderr);
    let (exchanges, _) = decode(&out);
    assert_eq!(exchanges.len(), 1, "{exchanges:?}");
    assert_eq!(exchanges[0].path.as_deref(), Some("/late"));
    assert!(exchanges[0].complete() && exchanges[0].conn.tls);
}
