//! Random streams cut at random points: the masked bytes are exactly the
//! values a reference (the generator, which knows where it put them) says,
//! and every other byte is untouched.

use proptest::prelude::*;
use redact::{hpack::Decoder, http2::PREFACE, BodyRanges, Policy, Redactor, StreamKey};

fn policy(no_bodies: bool) -> Policy {
    let mut names = Policy::default_names();
    names.push("x-api-key".into());
    Policy::new(names, no_bodies)
}

/// A stream under construction, with the ranges a reference says are
/// masked and the ranges that are body.
#[derive(Default)]
struct Built {
    bytes: Vec<u8>,
    masked: Vec<(usize, usize)>,
    bodies: Vec<(usize, usize)>,
}

impl Built {
    fn put(&mut self, b: &[u8]) {
        self.bytes.extend_from_slice(b);
    }
    fn secret(&mut self, b: &[u8]) {
        let at = self.bytes.len();
        self.put(b);
        self.masked.push((at, self.bytes.len()));
    }
    fn body(&mut self, b: &[u8]) {
        let at = self.bytes.len();
        self.put(b);
        if !b.is_empty() {
            self.bodies.push((at, self.bytes.len()));
        }
    }
}

/// Feeds `bytes` to one stream in pieces ending at `cuts`; returns the
/// masked bytes and the body ranges reported (stream offsets, merged).
fn feed(
    r: &mut Redactor,
    key: StreamKey,
    dir: usize,
    bytes: &[u8],
    seq: &mut u64,
    cuts: &[usize],
) -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut out = Vec::new();
    let mut bodies = BodyRanges::default();
    let mut all: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|&c| c % (bytes.len() + 1)).collect();
    ends.push(bytes.len());
    ends.sort_unstable();
    for end in ends {
        if end <= start {
            continue;
        }
        let mut piece = bytes[start..end].to_vec();
        r.data(key, dir, *seq, piece.len() as u64, &mut piece, &mut bodies);
        for &(a, b) in bodies.ranges() {
            let (a, b) = (*seq as usize + a, *seq as usize + b);
            match all.last_mut() {
                Some(last) if last.1 == a => last.1 = b,
                _ => all.push((a, b)),
            }
        }
        *seq += piece.len() as u64;
        out.extend_from_slice(&piece);
        start = end;
    }
    (out, all)
}

fn header_name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "Host",
        "Authorization",
        "cookie",
        "X-API-Key",
        "user-agent",
        "Set-Cookie",
        "x-api-keys",
        "content-type",
        "proxy-authorization",
        "authorization2",
    ])
}

fn secretish() -> impl Strategy<Value = String> {
    "[a-z0-9=;. /+-]{0,40}"
}

fn redacted(name: &str) -> bool {
    policy(false).redacts(name.as_bytes())
}

#[derive(Clone, Debug)]
struct Exchange {
    method: &'static str,
    request_headers: Vec<(&'static str, String)>,
    request_body: Vec<u8>,
    chunked_request: bool,
    status: u16,
    response_headers: Vec<(&'static str, String)>,
    response_body: Vec<u8>,
    chunked_response: bool,
}

fn exchange() -> impl Strategy<Value = Exchange> {
    let headers = || prop::collection::vec((header_name(), secretish()), 0..6);
    (
        prop::sample::select(vec!["GET", "POST", "HEAD", "PUT"]),
        headers(),
        // Bodies that look like heads: framing, not looks, decides.
        prop::collection::vec(
            prop::sample::select(b"ab\r\nAuthorization: cookie: x".to_vec()),
            0..60,
        ),
        any::<bool>(),
        prop::sample::select(vec![200u16, 204, 304, 404, 100]),
        headers(),
        prop::collection::vec(
            prop::sample::select(b"HTTP/1.1 200 OK\r\nSet-Cookie: y\r\n".to_vec()),
            0..80,
        ),
        any::<bool>(),
    )
        .prop_map(|(method, rq, rb, rc, status, sh, sb, sc)| Exchange {
            method,
            request_headers: rq,
            request_body: rb,
            chunked_request: rc,
            status,
            response_headers: sh,
            response_body: sb,
            chunked_response: sc,
        })
}

fn head(b: &mut Built, start: &str, headers: &[(&str, String)]) {
    b.put(start.as_bytes());
    b.put(b"\r\n");
    for (name, value) in headers {
        b.put(name.as_bytes());
        b.put(b":");
        let value = format!(" {value}");
        if redacted(name) {
            b.secret(value.as_bytes());
        } else {
            b.put(value.as_bytes());
        }
        b.put(b"\r\n");
    }
}

/// A body, chunked (in chunks of up to 7 bytes, with a redacted trailer)
/// or with a length.
fn body(b: &mut Built, headers: &[(&str, String)], body: &[u8], chunked: bool, sent: bool) {
    if chunked {
        head_end(b, headers, "Transfer-Encoding: chunked");
        if !sent {
            return;
        }
        for chunk in body.chunks(7) {
            b.put(format!("{:x}\r\n", chunk.len()).as_bytes());
            b.body(chunk);
            b.put(b"\r\n");
        }
        b.put(b"0\r\nCookie:");
        b.secret(b" trailer=1");
        b.put(b"\r\n\r\n");
    } else {
        head_end(b, headers, &format!("Content-Length: {}", body.len()));
        if sent {
            b.body(body);
        }
    }
}

fn head_end(b: &mut Built, _headers: &[(&str, String)], framing: &str) {
    b.put(framing.as_bytes());
    b.put(b"\r\n\r\n");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn http1_values_are_masked_exactly_wherever_the_stream_is_cut(
        exchanges in prop::collection::vec(exchange(), 1..5),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
        no_bodies in any::<bool>(),
    ) {
        let mut r = Redactor::new(policy(no_bodies));
        let key = StreamKey { conn: 7, tls: false };
        r.opened(7);
        let (mut rseq, mut sseq) = (0, 0);
        for x in &exchanges {
            let mut rq = Built::default();
            head(&mut rq, &format!("{} /p HTTP/1.1", x.method), &x.request_headers);
            body(&mut rq, &[], &x.request_body, x.chunked_request, true);
            let base = rseq as usize;
            let (out, bodies) = feed(&mut r, key, 0, &rq.bytes, &mut rseq, &cuts);
            check(&rq, &out, &bodies, base);

            let mut rs = Built::default();
            if x.status == 100 {
                rs.put(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            let status = if x.status == 100 { 200 } else { x.status };
            head(&mut rs, &format!("HTTP/1.1 {status} X"), &x.response_headers);
            let sent = x.method != "HEAD" && status != 204 && status != 304;
            body(&mut rs, &[], &x.response_body, x.chunked_response, sent);
            let base = sseq as usize;
            let (out, bodies) = feed(&mut r, key, 1, &rs.bytes, &mut sseq, &cuts);
            check(&rs, &out, &bodies, base);
        }
        prop_assert_eq!(r.counts().uncertain, 0);
    }
}

fn check(built: &Built, out: &[u8], bodies: &[(usize, usize)], base: usize) {
    let mut want = built.bytes.clone();
    for &(a, b) in &built.masked {
        want[a..b].fill(b'*');
    }
    assert_eq!(
        String::from_utf8_lossy(out),
        String::from_utf8_lossy(&want),
        "from {}",
        String::from_utf8_lossy(&built.bytes)
    );
    let got: Vec<(usize, usize)> = bodies.iter().map(|(a, b)| (a - base, b - base)).collect();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for &(a, b) in &built.bodies {
        match merged.last_mut() {
            Some(last) if last.1 == a => last.1 = b,
            _ => merged.push((a, b)),
        }
    }
    assert_eq!(got, merged);
}

/// One HPACK representation, as the generator writes it.
#[derive(Clone, Debug)]
enum Rep {
    /// An indexed field: a static index, or the n-th newest dynamic entry.
    Indexed(usize),
    /// A literal: 0 with indexing, 1 without, 2 never indexed; the name by
    /// static index, dynamic entry (`static_or_dynamic`), or as a string.
    Literal { mode: u8, name: NameRef, value: String, huffman: bool, name_huffman: bool },
}

#[derive(Clone, Debug)]
enum NameRef {
    Static(usize),
    Dynamic(usize),
    Text(&'static str),
}

fn rep() -> impl Strategy<Value = Rep> {
    let name = prop_oneof![
        prop::sample::select(vec![1usize, 2, 4, 23, 32, 49, 55, 58, 31]).prop_map(NameRef::Static),
        (0usize..8).prop_map(NameRef::Dynamic),
        prop::sample::select(vec![
            "x-api-key",
            "authorization",
            "x-other",
            "grpc-timeout",
            "cookie"
        ])
        .prop_map(NameRef::Text),
    ];
    prop_oneof![
        prop::sample::select(vec![2usize, 4, 8, 62, 63, 64]).prop_map(Rep::Indexed),
        (0u8..3, name, "[a-z]{0,300}", any::<bool>(), any::<bool>()).prop_map(
            |(mode, name, value, huffman, name_huffman)| Rep::Literal {
                mode,
                name,
                value,
                huffman,
                name_huffman
            }
        ),
    ]
}

fn int(out: &mut Vec<u8>, first: u8, prefix: u8, mut v: usize) {
    let max = (1usize << prefix) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128 + 128) as u8);
        v /= 128;
    }
    out.push(v as u8);
}

/// Writes a string literal; returns where its bytes start and end.
fn string(out: &mut Vec<u8>, s: &str, huffman: bool) -> (usize, usize) {
    let bytes = if huffman {
        let mut code = Vec::new();
        httlib_huffman::encode(s.as_bytes(), &mut code).unwrap();
        code
    } else {
        s.as_bytes().to_vec()
    };
    int(out, if huffman { 0x80 } else { 0 }, 7, bytes.len());
    let at = out.len();
    out.extend_from_slice(&bytes);
    (at, out.len())
}

/// The generator's model of the dynamic table: names, newest first.
struct Table(Vec<(String, usize)>, usize);

impl Table {
    fn insert(&mut self, name: &str, value_len: usize) {
        let size = name.len() + value_len + 32;
        self.0.insert(0, (name.to_string(), size));
        self.1 += size;
        while self.1 > 4096 {
            let (_, s) = self.0.pop().unwrap();
            self.1 -= s;
        }
    }
}

const STATIC_NAMES: [&str; 61] = {
    let mut n = [""; 61];
    let mut i = 0;
    while i < 61 {
        n[i] = redact::hpack::STATIC_TABLE[i].0;
        i += 1;
    }
    n
};

/// Encodes one block; the masked ranges are offsets into it.
fn block(reps: &[Rep], table: &mut Table) -> (Vec<u8>, Vec<(usize, usize, bool)>) {
    let mut out = Vec::new();
    let mut masked = Vec::new();
    for rep in reps {
        match rep {
            Rep::Indexed(i) => {
                let i = if *i > 61 { 62 + (i - 62) % table.0.len().max(1) } else { *i };
                if i > 61 && table.0.is_empty() {
                    continue;
                }
                int(&mut out, 0x80, 7, i);
            }
            Rep::Literal { mode, name, value, huffman, name_huffman } => {
                let (first, prefix) = match mode {
                    0 => (0x40, 6),
                    1 => (0x00, 4),
                    _ => (0x10, 4),
                };
                let text = match name {
                    NameRef::Static(i) => {
                        int(&mut out, first, prefix, *i);
                        STATIC_NAMES[i - 1].to_string()
                    }
                    NameRef::Dynamic(n) if !table.0.is_empty() => {
                        let n = n % table.0.len();
                        int(&mut out, first, prefix, 62 + n);
                        table.0[n].0.clone()
                    }
                    NameRef::Dynamic(_) => {
                        int(&mut out, first, prefix, 0);
                        string(&mut out, "x-fallback", *name_huffman);
                        "x-fallback".to_string()
                    }
                    NameRef::Text(t) => {
                        int(&mut out, first, prefix, 0);
                        string(&mut out, t, *name_huffman);
                        t.to_string()
                    }
                };
                let (a, b) = string(&mut out, value, *huffman);
                if redacted(&text) {
                    masked.push((a, b, *huffman));
                }
                if *mode == 0 {
                    table.insert(&text, value.len());
                }
            }
        }
    }
    (out, masked)
}

fn frame(out: &mut Built, kind: u8, flags: u8, stream: u32, payload_len: usize) {
    let len = payload_len as u32;
    out.put(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.put(&stream.to_be_bytes());
}

/// Frames a block as HEADERS (padded and with priority as asked) and
/// CONTINUATIONs cut at `splits`.
fn headers_frames(
    out: &mut Built,
    stream: u32,
    block: &[u8],
    masked: &[(usize, usize, bool)],
    splits: &[usize],
    pad: Option<u8>,
    priority: bool,
) -> Vec<(usize, usize, bool)> {
    let mut cuts: Vec<usize> = splits.iter().map(|s| s % (block.len() + 1)).collect();
    cuts.push(block.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut start = 0;
    let mut placed = Vec::new();
    let mut first = true;
    for (n, &end) in cuts.iter().enumerate() {
        let last = n + 1 == cuts.len();
        let flags = if last { 0x4 } else { 0 };
        let (pre, post) = if first {
            let pre = pad.map_or(0, |_| 1) + if priority { 5 } else { 0 };
            (pre, pad.map_or(0, usize::from))
        } else {
            (0, 0)
        };
        if first {
            let f = flags | if pad.is_some() { 0x8 } else { 0 } | if priority { 0x20 } else { 0 };
            frame(out, 1, f, stream, pre + end - start + post);
            if let Some(p) = pad {
                out.put(&[p]);
            }
            if priority {
                out.put(&[0, 0, 0, 3, 15]);
            }
        } else {
            frame(out, 9, flags, stream, end - start);
        }
        let at = out.bytes.len();
        out.put(&block[start..end]);
        for &(a, b, h) in masked {
            let (a, b) = (a.max(start), b.min(end));
            if a < b {
                placed.push((at + a - start, at + b - start, h));
            }
        }
        out.put(&vec![0; post]);
        start = end;
        first = false;
        if last {
            break;
        }
    }
    placed
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn hpack_values_are_masked_exactly_wherever_the_stream_is_cut(
        blocks in prop::collection::vec(
            (prop::collection::vec(rep(), 1..8), prop::collection::vec(any::<usize>(), 0..3),
             prop::option::of(0u8..20), any::<bool>(), prop::collection::vec(any::<u8>(), 0..50)),
            1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..30),
        no_bodies in any::<bool>(),
    ) {
        let mut built = Built::default();
        built.put(PREFACE);
        frame(&mut built, 4, 0, 0, 6);
        built.put(&[0, 3, 0, 0, 0, 100]);
        let mut table = Table(Vec::new(), 0);
        let mut secrets: Vec<(usize, usize, bool)> = Vec::new();
        let mut originals = Vec::new();
        for (n, (reps, splits, pad, priority, data)) in blocks.iter().enumerate() {
            let stream = 1 + 2 * n as u32;
            let (block, masked) = block(reps, &mut table);
            originals.push(block.clone());
            secrets.extend(headers_frames(&mut built, stream, &block, &masked, splits, *pad, *priority));
            frame(&mut built, 0, 1, stream, data.len());
            built.body(data);
        }
        let mut r = Redactor::new(policy(no_bodies));
        r.opened(9);
        let key = StreamKey { conn: 9, tls: false };
        let mut seq = 0;
        let (out, bodies) = feed(&mut r, key, 0, &built.bytes, &mut seq, &cuts);
        // Untouched outside the values, changed inside them.
        let mut inside = vec![false; out.len()];
        for &(a, b, huffman) in &secrets {
            inside[a..b].iter_mut().for_each(|x| *x = true);
            if !huffman {
                prop_assert!(out[a..b].iter().all(|&c| c == b'*'));
            }
        }
        for i in 0..out.len() {
            if !inside[i] {
                prop_assert_eq!(out[i], built.bytes[i], "byte {} changed", i);
            }
        }
        prop_assert_eq!(r.counts().uncertain, 0);
        prop_assert_eq!(bodies, built.bodies.clone());
        // The masked blocks still decode, to the same fields but for the
        // values masked, which hold none of the original letters.
        let (mut plain, mut masked) = (Decoder::new(), Decoder::new());
        for (n, original) in originals.iter().enumerate() {
            let masked_block = masked_block(&out, &built.bytes, original, n);
            let (want, e1) = plain.decode(original);
            let (got, e2) = masked.decode(&masked_block);
            prop_assert_eq!(e1, None);
            prop_assert_eq!(e2, None);
            prop_assert_eq!(want.len(), got.len());
            for (w, g) in want.iter().zip(&got) {
                prop_assert_eq!(&w.name, &g.name);
                let name = w.name.as_deref().unwrap_or_default();
                if redacted(name) {
                    let v = g.value.as_deref().unwrap_or_default();
                    prop_assert!(!v.bytes().any(|c| c.is_ascii_lowercase()), "{:?}", v);
                } else {
                    prop_assert_eq!(&w.value, &g.value);
                }
            }
        }
    }
}

/// The `n`-th header block of the masked stream, found by locating the
/// original block's fragments in the original stream.
fn masked_block(out: &[u8], original_stream: &[u8], _original: &[u8], n: usize) -> Vec<u8> {
    // Walk the frames of the original stream; collect fragments of block n.
    let mut pos = PREFACE.len();
    let mut count = 0;
    let mut block = Vec::new();
    while pos + 9 <= original_stream.len() {
        let h = &original_stream[pos..pos + 9];
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
        let (kind, flags) = (h[3], h[4]);
        let payload = pos + 9..pos + 9 + len;
        if kind == 1 || kind == 9 {
            let mut from = payload.start;
            let mut to = payload.end;
            if kind == 1 && flags & 0x8 != 0 {
                to -= original_stream[from] as usize;
                from += 1;
            }
            if kind == 1 && flags & 0x20 != 0 {
                from += 5;
            }
            if count == n {
                block.extend_from_slice(&out[from..to]);
            }
            if flags & 0x4 != 0 {
                if count == n {
                    return block;
                }
                count += 1;
            }
        }
        pos = payload.end;
    }
    block
}
