//! End to end, as root: credentials sent by real clients never reach a
//! capture file, whatever carries them (HTTP/1 written whole or a byte at
//! a time, HTTP/2 in the clear or upgraded, gRPC metadata on the wire and
//! read by the Go probes, TLS plaintext from OpenSSL), and the exchanges
//! still decode with the right method, path, status and sizes.

mod common;

use std::{fs, path::Path};

use analyze::exchange::Exchange;
use common::{
    go::{decode, go_peers, GoPeer, SAY_HELLO},
    read_capture, require_root,
    web::{certificate, curl, every_string, find, Hypercorn, Nghttpd},
    Capture, Peer,
};
use formats::schema::{meta, Redaction};

const TOKEN: &str = "Bearer s3cr3t-t0ken-AAAA";
const COOKIE: &str = "session=c00kie-BBBB";
const API_KEY: &str = "k3y-CCCC-0123";

/// The secrets as they may appear: as sent, and Huffman-coded as HPACK
/// sends them.
fn secret_forms() -> Vec<Vec<u8>> {
    let mut forms = Vec::new();
    for s in [TOKEN, COOKIE, API_KEY, "s3cr3t-t0ken", "c00kie-BBBB"] {
        forms.push(s.as_bytes().to_vec());
        let mut code = Vec::new();
        httlib_huffman::encode(s.as_bytes(), &mut code).unwrap();
        forms.push(code);
    }
    forms
}

fn curl_headers() -> Vec<String> {
    vec![
        "-H".into(),
        format!("Authorization: {TOKEN}"),
        "-H".into(),
        format!("Cookie: {COOKIE}"),
        "-H".into(),
        format!("X-Api-Key: {API_KEY}"),
    ]
}

/// Asserts no secret byte string is anywhere in `path` (every column, every
/// row kind, the metadata).
fn assert_no_secret(path: &Path) {
    let all = every_string(path);
    assert!(!all.is_empty());
    for form in secret_forms() {
        assert!(
            !find(&all, &form),
            "{:?} is in {}",
            String::from_utf8_lossy(&form),
            path.display()
        );
    }
}

/// The header values of an exchange with a secret's name: each must be
/// there, masked to its length.
fn assert_masked_headers(x: &Exchange) {
    let lists = [&x.request_headers, &x.response_headers, &x.response_trailers];
    let mut seen = 0;
    for header in lists.into_iter().flatten().flatten() {
        let name = header.name.to_ascii_lowercase();
        if ["authorization", "cookie", "x-api-key", "set-cookie"].contains(&name.as_str()) {
            let value = header.value.as_deref().unwrap_or_default();
            assert!(!value.contains("s3cr3t") && !value.contains("c00kie"), "{name}: {value}");
            assert!(!value.contains("CCCC"), "{name}: {value}");
            seen += 1;
        }
    }
    if x.request_headers.is_some() {
        assert!(seen >= 3, "{:?}: {:?}", x.path, x.request_headers);
    }
}

fn redaction_of(path: &Path) -> Redaction {
    let file = read_capture(path);
    serde_json::from_str(&file.meta[meta::REDACTION]).expect("a redaction note")
}

/// (method, path, status, request body, response body) of each exchange, sorted.
fn summary(exchanges: &[Exchange]) -> Vec<(String, String, u16, u64, u64)> {
    let mut seen: Vec<_> = exchanges
        .iter()
        .map(|x| {
            (
                x.method.clone().unwrap_or_default(),
                x.path.clone().unwrap_or_default(),
                x.status.unwrap_or(0),
                x.request_body_size.unwrap_or(0),
                x.response_body_size.unwrap_or(0),
            )
        })
        .collect();
    seen.sort();
    seen
}

fn owned(list: &[(&str, &str, u16, u64, u64)]) -> Vec<(String, String, u16, u64, u64)> {
    list.iter().map(|&(m, p, s, a, b)| (m.into(), p.into(), s, a, b)).collect()
}

#[test]
fn http1_from_curl_and_from_a_byte_by_byte_writer_leaves_no_secret_in_the_file_or_its_segments() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = Peer::server(&[]);
    // Every header split across as many writes as it has bytes: the
    // client is a target too, so each write is a row.
    let (a, b, c) = (
        format!("Authorization: {TOKEN}"),
        format!("Cookie: {COOKIE}"),
        format!("X-Api-Key: {API_KEY}"),
    );
    let mut client = Peer::waiting_client(
        port,
        &[
            "--byte-by-byte",
            "--header",
            &a,
            "--header",
            &b,
            "--header",
            &c,
            "GET /b",
            "GET /status/204",
        ],
    );
    let out = dir.path().join("run.parquet");
    let (pid, client_pid) = (server.pid().to_string(), client.pid().to_string());
    let capture = Capture::start(&[
        "--pid",
        &pid,
        "--pid",
        &client_pid,
        "--redact-header",
        "x-api-key",
        "-o",
        out.to_str().unwrap(),
    ]);
    let base = format!("http://127.0.0.1:{port}");
    // Keep-alive: two requests on one connection.
    let mut args = curl_headers();
    args.extend([format!("{base}/a"), format!("{base}/chunked/3000")]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(&args);
    let mut post = curl_headers();
    post.extend(["--data-binary".into(), "x".repeat(500), format!("{base}/echo")]);
    let post: Vec<&str> = post.iter().map(String::as_str).collect();
    assert_eq!(curl(&post).len(), 500);
    client.resume();
    client.finish();
    // Let a segment be cut, then end the capture the hard way: the
    // segments are all there is.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let finished = capture.stop_with(nix::sys::signal::Signal::SIGKILL);
    assert!(!finished.status.success());
    assert!(!out.exists());
    let segments: Vec<_> = fs::read_dir(dir.path().join("run.parquet.d"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert!(!segments.is_empty());
    for segment in &segments {
        assert_no_secret(segment);
    }
    // The byte-by-byte requests really were one row per byte.
    let rows: usize = segments
        .iter()
        .map(|s| {
            read_capture(s)
                .data()
                .filter(|r| r.size == 1 && r.direction.as_deref() == Some("egress"))
                .count()
        })
        .sum();
    assert!(rows > 200, "{rows} one-byte rows");

    let (exchanges, _) = decode(&dir.path().join("run.parquet.d"));
    assert_eq!(
        summary(&exchanges),
        owned(&[
            ("GET", "/a", 200, 0, 6),
            // The byte-by-byte client's, seen by the server and by itself.
            ("GET", "/b", 200, 0, 6),
            ("GET", "/b", 200, 0, 6),
            ("GET", "/chunked/3000", 200, 0, 3000),
            ("GET", "/status/204", 204, 0, 0),
            ("GET", "/status/204", 204, 0, 0),
            ("POST", "/echo", 200, 500, 500),
        ])
    );
    for x in &exchanges {
        assert!(x.complete(), "{x:?}");
        assert_masked_headers(x);
        if x.path.as_deref() == Some("/chunked/3000") {
            continue; // a route that sets no cookie
        }
        let set_cookie = x.response_headers.iter().flatten().find(|h| h.name == "Set-Cookie");
        assert_eq!(
            set_cookie.and_then(|h| h.value.as_deref()),
            Some(&"*".repeat(COOKIE.len() + 1)[..]),
            "{x:#?}"
        );
    }
    let meta = read_capture(&segments[segments.len() - 1]).meta;
    let r: Redaction = serde_json::from_str(&meta[meta::REDACTION]).unwrap();
    assert!(r.headers.contains(&"x-api-key".to_string()) && r.headers.contains(&"cookie".into()));
    // Three request headers each, and a Set-Cookie on all but the chunked.
    assert!(r.masked_values >= 7 * 3 + 6, "{r:?}");
}

#[test]
fn h2c_by_upgrade_and_by_prior_knowledge_leaves_no_secret() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    // hypercorn takes h2c by HTTP/1.1 Upgrade, nghttpd by prior knowledge.
    let upgrade = Hypercorn::start();
    let www = dir.path().join("www");
    fs::create_dir(&www).unwrap();
    fs::write(www.join("index.html"), b"hello over h2c\n").unwrap();
    fs::write(www.join("two.html"), b"hello over h2c\n").unwrap();
    let prior = Nghttpd::start(&www, None);
    let out = dir.path().join("run.parquet");
    let (a, b) = (upgrade.pid().to_string(), prior.pid().to_string());
    let capture = Capture::start(&[
        "--pid",
        &a,
        "--pid",
        &b,
        "--redact-header",
        "X-API-KEY",
        "-o",
        out.to_str().unwrap(),
    ]);
    // Two requests on each connection: the second refers to the first's
    // HPACK entries.
    let url = format!("http://127.0.0.1:{}/index.html", upgrade.port);
    let mut args = curl_headers();
    args.extend(["--http2".into(), url.clone(), url]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(curl(&args), b"hello\nhello\n");
    // curl 7.88 cannot reuse a prior-knowledge connection; nghttp can.
    let url = |file: &str| format!("http://127.0.0.1:{}/{file}", prior.port);
    let out_of = std::process::Command::new("nghttp")
        .args(["-H", &format!("authorization: {TOKEN}"), "-H", &format!("cookie: {COOKIE}")])
        .args(["-H", &format!("x-api-key: {API_KEY}"), &url("index.html"), &url("two.html")])
        .output()
        .expect("nghttp runs (scripts/setup.sh installs nghttp2-client)");
    assert!(out_of.status.success(), "{}", String::from_utf8_lossy(&out_of.stderr));
    assert_eq!(out_of.stdout, b"hello over h2c\nhello over h2c\n");
    let finished = capture.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    assert_no_secret(&out);
    let (exchanges, _) = decode(&out);
    assert_eq!(
        summary(&exchanges),
        owned(&[
            ("GET", "/index.html", 200, 0, 6),
            ("GET", "/index.html", 200, 0, 6),
            ("GET", "/index.html", 200, 0, 15),
            ("GET", "/two.html", 200, 0, 15),
        ]),
        "{exchanges:#?}"
    );
    for x in &exchanges {
        assert_masked_headers(x);
    }
    // The upgrade's own request is answered on HTTP/2's stream 1.
    assert!(exchanges.iter().all(|x| x.protocol == "http2"), "{exchanges:#?}");
    assert!(exchanges.iter().all(|x| x.complete()), "{exchanges:#?}");
    let r = redaction_of(&out);
    // Repeated fields may be sent as indexes into the dynamic table.
    assert!(r.masked_values >= 8, "{r:?}");
    assert_eq!(r.uncertain, 0, "{r:?}");
}

#[test]
fn grpc_metadata_on_the_wire_and_from_the_go_probes_leaves_no_secret() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let peers = go_peers();
    let (server, port) = GoPeer::server(&peers.join("grpc-server"));
    // A connection that made calls before the capture: its HPACK state is
    // unknown, so what cannot be placed is masked.
    let metadata = [
        format!("authorization={TOKEN}"),
        format!("cookie={COOKIE}"),
        format!("x-api-key={API_KEY}"),
    ];
    let mut args = vec!["-addr".to_string(), format!("127.0.0.1:{port}")];
    args.extend(["-addr".into(), format!("127.0.0.1:{port}"), "-warmup".into(), "0".into()]);
    for m in &metadata {
        args.extend(["-metadata".into(), m.clone()]);
    }
    let mut old = GoPeer::spawn(&peers.join("grpc-client"), &args);
    assert_eq!(old.line(), "ready");
    assert!(old.call("unary 0 before").starts_with("ok "));
    let out = dir.path().join("run.parquet");
    let (spid, cpid) = (server.pid().to_string(), old.pid().to_string());
    let capture = Capture::start(&[
        "--pid",
        &spid,
        "--pid",
        &cpid,
        "--redact-header",
        "x-api-key",
        "-o",
        out.to_str().unwrap(),
    ]);
    // A new connection, seen from its start, and the old one.
    let mut fresh = GoPeer::spawn(&peers.join("grpc-client"), &args);
    assert_eq!(fresh.line(), "ready");
    for n in 0..3 {
        assert!(fresh.call(&format!("unary {} new{n}", n % 2)).starts_with("ok "));
        assert!(old.call(&format!("unary 0 old{n}")).starts_with("ok "));
    }
    let finished = capture.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    drop(fresh);
    drop(old);
    drop(server);

    assert!(finished.stderr.contains("reading gRPC headers from grpc-go"), "{}", finished.stderr);
    assert_no_secret(&out);
    let file = read_capture(&out);
    assert!(file.rows.iter().any(|r| r.kind == "h2_headers"), "the Go probes read headers");
    let (exchanges, _) = decode(&out);
    let calls: Vec<&Exchange> =
        exchanges.iter().filter(|x| x.path.as_deref() == Some(SAY_HELLO)).collect();
    // 6 calls of the Go client, seen from both ends.
    assert!(calls.len() >= 6, "{exchanges:#?}");
    for x in &calls {
        assert_eq!((x.status, x.grpc_status), (Some(200), Some(0)), "{x:?}");
        if x.request_headers.is_some() {
            assert_masked_headers(x);
        }
    }
    let r = redaction_of(&out);
    assert!(r.masked_values >= 3 * 6, "{r:?}");
}

#[test]
fn tls_plaintext_from_openssl_leaves_no_secret() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let mut https = Peer::spawn_script("https.py", &[&cert, &key]);
    let port = https.expect_number("port ");
    let www = dir.path().join("www");
    fs::create_dir(&www).unwrap();
    fs::write(www.join("index.html"), b"hello over h2\n").unwrap();
    let h2 = Nghttpd::start(&www, Some((&cert, &key)));
    let out = dir.path().join("run.parquet");
    let (a, b) = (https.pid().to_string(), h2.pid().to_string());
    let capture = Capture::start(&[
        "--pid",
        &a,
        "--pid",
        &b,
        "--redact-header",
        "x-api-key",
        "-o",
        out.to_str().unwrap(),
    ]);
    let mut args = curl_headers();
    args.extend([
        "--http1.1".into(),
        format!("https://127.0.0.1:{port}/one"),
        format!("https://127.0.0.1:{port}/two"),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(curl(&args), b"hello /one\nhello /two\n");
    let mut args = curl_headers();
    args.extend(["--http2".into(), format!("https://127.0.0.1:{}/index.html", h2.port)]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(curl(&args), b"hello over h2\n");
    let finished = capture.stop();
    assert!(finished.status.success(), "{}", finished.stderr);

    assert_no_secret(&out);
    let file = read_capture(&out);
    assert!(file.rows.iter().any(|r| r.kind == "tls_data"));
    let (exchanges, _) = decode(&out);
    assert_eq!(
        summary(&exchanges),
        owned(&[
            ("GET", "/index.html", 200, 0, 14),
            ("GET", "/one", 200, 0, 11),
            ("GET", "/two", 200, 0, 11),
        ])
    );
    for x in &exchanges {
        assert!(x.complete() && x.conn.tls, "{x:?}");
        assert_masked_headers(x);
    }
}

#[test]
fn no_redact_keeps_the_values() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = Peer::server(&[]);
    let out = dir.path().join("run.parquet");
    let pid = server.pid().to_string();
    let capture = Capture::start(&["--pid", &pid, "--no-redact", "-o", out.to_str().unwrap()]);
    let mut args = curl_headers();
    args.push(format!("http://127.0.0.1:{port}/a"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(&args);
    let finished = capture.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    let all = every_string(&out);
    for s in [TOKEN, COOKIE, API_KEY] {
        assert!(find(&all, s.as_bytes()), "{s} was kept");
    }
    let (exchanges, _) = decode(&out);
    assert_eq!(exchanges.len(), 1);
    let auth = exchanges[0].request_headers.iter().flatten().find(|h| h.name == "Authorization");
    assert_eq!(auth.and_then(|h| h.value.as_deref()), Some(TOKEN));
    let r = redaction_of(&out);
    assert_eq!((r.headers.len(), r.masked_values), (0, 0));
}

#[test]
fn no_bodies_keeps_heads_and_lengths_only() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = Peer::server(&[]);
    let www = dir.path().join("www");
    fs::create_dir(&www).unwrap();
    let big: Vec<u8> = (0..40_000u32).map(|i| b"BODYBYTES"[i as usize % 9]).collect();
    fs::write(www.join("big.txt"), &big).unwrap();
    let h2 = Nghttpd::start(&www, None);
    let out = dir.path().join("run.parquet");
    let (a, b) = (server.pid().to_string(), h2.pid().to_string());
    // Payloads kept whole, so that frame headers between DATA payloads
    // are seen (with the default 4096, bytes past it are not).
    let capture = Capture::start(&[
        "--pid",
        &a,
        "--pid",
        &b,
        "--no-bodies",
        "--max-payload",
        "65536",
        "-o",
        out.to_str().unwrap(),
    ]);
    let body = "BODYBYTES".repeat(100);
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(curl(&["--data-binary", &body, &format!("{base}/echo")]).len(), body.len());
    assert_eq!(curl(&[&format!("{base}/chunked/2000")]).len(), 2000);
    let got = curl(&["--http2-prior-knowledge", &format!("http://127.0.0.1:{}/big.txt", h2.port)]);
    assert_eq!(got, big);
    let finished = capture.stop();
    assert!(finished.status.success(), "{}", finished.stderr);

    let all = every_string(&out);
    assert!(!find(&all, b"BODYBYTESBODY"), "a body was kept");
    let (exchanges, _) = decode(&out);
    assert_eq!(
        summary(&exchanges),
        owned(&[
            ("GET", "/big.txt", 200, 0, big.len() as u64),
            ("GET", "/chunked/2000", 200, 0, 2000),
            ("POST", "/echo", 200, body.len() as u64, body.len() as u64),
        ])
    );
    for x in &exchanges {
        assert!(x.response_body.as_deref().unwrap_or_default().is_empty(), "{x:?}");
    }
    let r = redaction_of(&out);
    assert!(r.no_bodies);
    assert!(r.body_bytes_dropped >= (2 * body.len() + 2000 + big.len()) as u64, "{r:?}");
}
