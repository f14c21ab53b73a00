//! Regression tests on recorded captures (`testdata/`): decoding each must
//! reproduce its golden exchanges, which were made from the clients' own logs
//! or from tshark, never from podtap's decoders. `testdata/README.md` says
//! how each fixture was recorded and what its comparison rule means.

use std::{collections::BTreeMap, fs, path::PathBuf};

use analyze::{
    engine::{self, Context},
    exchange::Exchange,
    input,
    stats::Stats,
};
use serde_json::{json, Map, Value};

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

/// Decodes a fixture's capture.
fn decode(name: &str) -> (Vec<Exchange>, Stats) {
    let path = testdata().join(name).join("capture.parquet");
    let captures = input::discover(&[path.display().to_string()]).expect("fixture opens");
    let mut exchanges = Vec::new();
    let mut sink = |x: Exchange| exchanges.push(x);
    let context = Context::of(&captures[0], 16 * 1024);
    let stats = engine::decode(&captures[0], context, &mut sink, &mut |_| {}).expect("decodes");
    (exchanges, stats)
}

/// The fields a golden file may state, as JSON.
fn project(x: &Exchange) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("protocol".into(), json!(x.protocol));
    m.insert("method".into(), json!(x.method));
    m.insert("path".into(), json!(x.path));
    m.insert("status".into(), json!(x.status));
    m.insert("grpc_status".into(), json!(x.grpc_status));
    m.insert("grpc_message".into(), json!(x.grpc_message));
    m.insert("stream_id".into(), json!(x.stream_id));
    m.insert("request_body_size".into(), json!(x.request_body_size));
    m.insert("response_body_size".into(), json!(x.response_body_size));
    m.insert("complete".into(), json!(x.complete()));
    m
}

/// A decoded exchange restricted to the keys the golden one states.
fn restrict(decoded: &Map<String, Value>, golden: &Map<String, Value>) -> Map<String, Value> {
    golden.keys().filter_map(|k| decoded.get(k).map(|v| (k.clone(), v.clone()))).collect()
}

fn golden(name: &str) -> (String, Vec<Map<String, Value>>) {
    let text =
        fs::read_to_string(testdata().join(name).join("expected.json")).expect("expected.json");
    let v: Value = serde_json::from_str(&text).unwrap();
    let rule = v["match"].as_str().unwrap().to_string();
    let mut exchanges: Vec<Map<String, Value>> =
        v["exchanges"].as_array().unwrap().iter().map(|x| x.as_object().unwrap().clone()).collect();
    // Golden exchanges are complete unless they say otherwise.
    for x in &mut exchanges {
        x.entry("complete").or_insert(json!(true));
    }
    (rule, exchanges)
}

fn key(m: &Map<String, Value>) -> String {
    serde_json::to_string(m).unwrap()
}

/// Multiset of restricted, serialised exchanges.
fn counts<'a>(items: impl Iterator<Item = &'a Map<String, Value>>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for m in items {
        *out.entry(key(m)).or_default() += 1;
    }
    out
}

/// `exact`: the decoded exchanges are exactly the golden ones (in any order),
/// every one complete.
fn check_exact(name: &str) -> Stats {
    let (rule, golden) = golden(name);
    assert_eq!(rule, "exact", "{name}");
    let (decoded, stats) = decode(name);
    let decoded: Vec<_> = decoded.iter().map(project).collect();
    let restricted: Vec<_> = decoded.iter().map(|d| restrict(d, &golden[0])).collect();
    assert_eq!(
        counts(restricted.iter()),
        counts(golden.iter()),
        "{name}: decoded exchanges differ from the golden ones"
    );
    stats
}

#[test]
fn http1_keepalive() {
    let stats = check_exact("http1-keepalive");
    assert_eq!(stats.gap_bytes, 0);
    assert_eq!(stats.skipped_bytes, 0);
}

#[test]
fn http1_pipelined() {
    check_exact("http1-pipelined");
}

/// `subset`: events were lost. Every decoded exchange is a real one: its
/// fields are the true ones or unknown, a complete one matches a golden
/// exchange exactly, and none is invented.
#[test]
fn http1_lost_events() {
    let name = "http1-lost-events";
    let (rule, golden) = golden(name);
    assert_eq!(rule, "subset");
    let (decoded, stats) = decode(name);
    assert!(stats.lost_events > 0, "the fixture lost events");
    assert!(stats.gap_bytes > 0);
    let truth: Vec<Map<String, Value>> = golden
        .iter()
        .map(|g| {
            let mut g = g.clone();
            g.remove("complete");
            g
        })
        .collect();
    let mut incomplete = 0;
    for x in &decoded {
        let d = project(x);
        if x.complete() {
            assert!(
                truth.iter().any(|t| restrict(&d, t) == *t),
                "a complete exchange that never happened: {d:?}"
            );
        } else {
            incomplete += 1;
            // Known fields of an incomplete exchange must still be true, but
            // sizes may be partial.
            let mut d_no_sizes = d.clone();
            d_no_sizes.remove("request_body_size");
            d_no_sizes.remove("response_body_size");
            let fits_partial = |t: &Map<String, Value>| {
                t.iter()
                    .filter(|(k, _)| !k.ends_with("body_size"))
                    .all(|(k, v)| d_no_sizes.get(k).is_none_or(|dv| dv.is_null() || dv == v))
            };
            assert!(
                truth.iter().any(fits_partial),
                "an incomplete exchange with false fields: {d:?}"
            );
        }
    }
    assert!(incomplete > 0, "losses show as incomplete exchanges");
    assert!(
        decoded.len() <= golden.len(),
        "no invented exchanges: {} decoded, {} real",
        decoded.len(),
        golden.len()
    );
    assert!(
        decoded.iter().filter(|x| x.complete()).count() >= golden.len() / 3,
        "most of what survived decodes"
    );
}

#[test]
fn h2c_prior_knowledge_with_curl() {
    let stats = check_exact("h2c-curl");
    assert_eq!(stats.http2_connections, 5);
}

#[test]
fn h2c_upgrade_with_curl() {
    let stats = check_exact("h2c-upgrade");
    assert_eq!(stats.upgrades, 4, "both directions of both connections switched");
}

#[test]
fn h2_concurrent_streams_with_nghttp() {
    let stats = check_exact("h2-concurrent");
    assert_eq!((stats.http2_connections, stats.exchanges), (1, 20));
}

#[test]
fn grpc_python_unary_streaming_and_errors() {
    let stats = check_exact("grpc-python");
    assert_eq!(stats.skipped_bytes, 0, "the preface is expected, not skipped");
}

#[test]
fn grpc_go_unary_streaming_and_errors() {
    check_exact("grpc-go");
}

/// `known-or-null`: the capture joined a connection after 50 calls. Every
/// call made during the capture comes out; each field is its true value or
/// unknown, never a wrong one; fields indexed before the capture are unknown
/// and counted; entries indexed during the capture resolve exactly.
#[test]
fn grpc_long_lived_connection_joined_late() {
    let name = "grpc-longlived";
    let (rule, golden) = golden(name);
    assert_eq!(rule, "known-or-null");
    let (decoded, stats) = decode(name);
    assert_eq!(decoded.len(), golden.len(), "every call made during the capture");
    let mut decoded: Vec<_> = decoded.iter().collect();
    decoded.sort_by_key(|x| x.stream_id);
    // The client made its calls one after another: stream order is call order.
    for (x, truth) in decoded.iter().zip(&golden) {
        let d = project(x);
        for (k, v) in truth {
            if k == "complete" {
                continue;
            }
            let got = d.get(k).unwrap_or(&Value::Null);
            assert!(got.is_null() || got == v, "{k}: decoded {got}, truly {v} ({d:?})");
        }
        assert_eq!(x.protocol, "grpc", "recognised as gRPC from its framing: {d:?}");
        assert!(!x.complete(), "fields from before the capture are reported");
    }
    assert!(stats.hpack_unknown_fields > 0);
    // SayHello's path was indexed before the capture: unknown, not guessed.
    let paths: Vec<Option<&str>> = decoded.iter().map(|x| x.path.as_deref()).collect();
    assert!(paths.iter().any(Option::is_none), "{paths:?}");
    // SayHelloError's path was first sent during the capture: known, and so
    // are later references to it.
    let errors = golden.iter().filter(|g| g["path"] == "/helloworld.Greeter/SayHelloError").count();
    assert_eq!(
        paths.iter().filter(|p| **p == Some("/helloworld.Greeter/SayHelloError")).count(),
        errors
    );
}
