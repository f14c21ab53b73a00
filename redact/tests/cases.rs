//! Named cases: what is masked when a stream is joined late, loses bytes,
//! switches protocol, or refers to HPACK state from before the capture.

use redact::{
    hpack::Decoder,
    http2::{BLOCK_FILLER, PREFACE},
    BodyRanges, Policy, Redactor, StreamKey,
};

const KEY: StreamKey = StreamKey { conn: 1, tls: false };

fn redactor() -> Redactor {
    let mut names = Policy::default_names();
    names.push("x-api-key".into());
    Redactor::new(Policy::new(names, false))
}

/// Feeds `pieces` (stream offset, bytes) in direction `dir`; returns them masked.
fn run(r: &mut Redactor, dir: usize, pieces: &[(u64, &[u8])]) -> Vec<Vec<u8>> {
    let mut bodies = BodyRanges::default();
    pieces
        .iter()
        .map(|(seq, bytes)| {
            let mut b = bytes.to_vec();
            r.data(KEY, dir, *seq, b.len() as u64, &mut b, &mut bodies);
            b
        })
        .collect()
}

fn text(b: &[Vec<u8>]) -> Vec<String> {
    b.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect()
}

#[test]
fn a_header_split_across_writes_is_masked_in_every_piece() {
    let mut r = redactor();
    r.opened(1);
    let out = run(
        &mut r,
        0,
        &[
            (0, b"GET / HTTP/1.1\r\nAuthor"),
            (22, b"ization: Bearer s3"),
            (40, b"cret\r\nX-Api-Key: k\r\n\r\n"),
        ],
    );
    assert_eq!(
        text(&out),
        ["GET / HTTP/1.1\r\nAuthor", "ization:**********", "****\r\nX-Api-Key:**\r\n\r\n"]
    );
    assert_eq!(r.counts().values, 2);
}

#[test]
fn a_connection_joined_inside_a_head_is_masked_until_a_message_starts() {
    let mut r = redactor();
    // No `opened`: the connection was there before the capture.
    let out = run(
        &mut r,
        0,
        &[
            (500, b"okie: id=secret\r\n\r\n"),
            (519, b"GET /next HTTP/1.1\r\nCookie: id=secret\r\nHost: a\r\n\r\n"),
        ],
    );
    assert_eq!(out[0], b"***************\r\n\r\n");
    assert_eq!(
        String::from_utf8_lossy(&out[1]),
        "GET /next HTTP/1.1\r\nCookie:**********\r\nHost: a\r\n\r\n"
    );
    assert_eq!(r.counts().uncertain, 1);
}

#[test]
fn lost_bytes_inside_a_head_mask_the_rest_and_lost_body_bytes_do_not() {
    let mut r = redactor();
    r.opened(1);
    // A body of 10 bytes, 4 of them never captured, then the next request.
    let out = run(
        &mut r,
        0,
        &[
            (0, b"POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"),
            (47, b"def"),
            (50, b"GET /b HTTP/1.1\r\nHost: x\r\nCook"),
            // Bytes 80..93 lost: the rest of that head is not placed.
            (93, b"ie-ish: x\r\n\r\n"),
            (106, b"GET /c HTTP/1.1\r\nCookie: c\r\n\r\n"),
        ],
    );
    assert_eq!(out[2], b"GET /b HTTP/1.1\r\nHost: x\r\nCook");
    assert_eq!(out[3], b"*********\r\n\r\n");
    assert_eq!(out[4], b"GET /c HTTP/1.1\r\nCookie:**\r\n\r\n");
}

#[test]
fn a_head_response_has_no_body_even_with_a_length() {
    let mut r = redactor();
    r.opened(1);
    run(&mut r, 0, &[(0, b"HEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")]);
    let out = run(
        &mut r,
        1,
        &[(
            0,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: a=1\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: b=2\r\n\r\nhello",
        )],
    );
    assert_eq!(
        String::from_utf8_lossy(&out[0]),
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie:****\r\n\r\n\
         HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie:****\r\n\r\nhello"
    );
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn huffman(s: &str) -> Vec<u8> {
    let mut code = Vec::new();
    httlib_huffman::encode(s.as_bytes(), &mut code).unwrap();
    let mut out = vec![0x80 | code.len() as u8];
    out.extend(code);
    out
}

#[test]
fn an_h2c_upgrade_switches_both_directions_to_frames() {
    let mut r = redactor();
    r.opened(1);
    let request =
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\
                    Connection: Upgrade, HTTP2-Settings\r\n\r\n";
    // authorization (static 23) with indexing, Huffman-coded value.
    let mut block = vec![0x40 | 23];
    block.extend(huffman("Bearer topsecret"));
    block.push(0xbe); // index 62: the entry just inserted
    let client = [&request[..], PREFACE, &frame(4, 0, 0, b""), &frame(1, 5, 3, &block)].concat();
    let out = run(&mut r, 0, &[(0, &client)]);
    let masked = &out[0][client.len() - block.len()..];
    let mut d = Decoder::new();
    let (fields, e) = d.decode(masked);
    assert_eq!(e, None);
    assert_eq!(fields.len(), 2);
    let value = fields[0].value.clone().unwrap();
    assert_eq!(value.len(), "Bearer topsecret".len(), "{value}");
    assert!(!value.contains("topsecret"));
    assert_eq!(fields[1].value, fields[0].value, "the indexed reference gets the filler");

    let response = [
        &b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"[..],
        &frame(4, 0, 0, b""),
        &frame(1, 4, 1, &[&[0x0f, 40][..], b"\x03a=b"].concat()),
    ]
    .concat();
    let out = run(&mut r, 1, &[(0, &response)]);
    // set-cookie is static 55: 0x0f, 55 - 15 = 40.
    assert!(out[0].ends_with(b"\x03***"), "{:?}", out[0]);
    assert_eq!(r.counts().uncertain, 0);
}

#[test]
fn a_name_from_a_dynamic_entry_inserted_before_the_capture_has_its_value_masked() {
    let mut r = redactor();
    // Joined late: frames found again at a payload's start.
    let block = [&[0x82u8, 0x0f, 0x2f, 0x03][..], b"abc", &[0x84]].concat();
    let bytes = frame(1, 4, 5, &block);
    let out = run(&mut r, 0, &[(1000, &bytes)]);
    let payload = &out[0][9..];
    // Its name may be a redacted one; every other name is known, so the
    // rest of the block is kept and still decodes.
    assert_eq!(payload, [&[0x82u8, 0x0f, 0x2f, 0x03][..], b"***", &[0x84]].concat());
    assert_eq!((r.counts().uncertain, r.counts().values), (1, 0));
    let (fields, e) = Decoder::joining().decode(payload);
    assert_eq!((fields.len(), e), (3, None));
    assert_eq!(fields[2].value.as_deref(), Some("/"));
    // The next block, whose names are known, is masked only where due.
    let next = frame(1, 4, 7, &[&[0x82u8, 0x0f, 40, 0x02][..], b"zz"].concat());
    let out = run(&mut r, 0, &[(1000 + bytes.len() as u64, &next)]);
    assert_eq!(&out[0][9..], &[0x82, 0x0f, 40, 0x02, b'*', b'*']);
}

#[test]
fn lost_bytes_inside_a_header_block_mask_the_rest_of_it() {
    let mut r = redactor();
    r.opened(1);
    let mut block = vec![0x82, 0x0f, 40, 0x05];
    block.extend_from_slice(b"a=bcd");
    block.extend_from_slice(&[0x04, 0x02]);
    block.extend_from_slice(b"/x");
    let bytes = [PREFACE, &frame(1, 4, 1, &block)].concat();
    let (first, rest) = bytes.split_at(PREFACE.len() + 9 + 2);
    // Two bytes of the block are lost between the pieces.
    let out = run(&mut r, 0, &[(0, first), (first.len() as u64 + 2, &rest[2..])]);
    assert!(out[1].iter().all(|&b| b == BLOCK_FILLER));
    // The stream goes on at the next frame.
    let next = frame(1, 4, 3, &[0x0f, 40, 0x01, b'q']);
    let out = run(&mut r, 0, &[(bytes.len() as u64, &next)]);
    assert_eq!(&out[0][9..], &[0x0f, 40, 0x01, b'*']);
}

#[test]
fn no_bodies_reports_data_payloads_and_http1_bodies() {
    let mut r = Redactor::new(Policy::new(Policy::default_names(), true));
    r.opened(1);
    let mut bodies = BodyRanges::default();
    let mut b =
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec();
    r.data(KEY, 0, 0, b.len() as u64, &mut b, &mut bodies);
    let at = b.windows(3).position(|w| w == b"abc").unwrap();
    assert_eq!(bodies.ranges(), &[(at, at + 3)]);
    let mut h2 = [&frame(4, 0, 0, b"")[..], &frame(0, 1, 1, b"payload")].concat();
    r.data(KEY, 1, 0, h2.len() as u64, &mut h2, &mut bodies);
    assert_eq!(bodies.ranges(), &[(18, 25)]);
    assert_eq!(r.counts().body_bytes, 10);
}

#[test]
fn a_payload_of_no_connection_is_placed_on_its_own() {
    let mut r = redactor();
    let mut bodies = BodyRanges::default();
    let mut b = b"GET / HTTP/1.1\r\nCookie: a\r\n\r\n".to_vec();
    r.standalone(&mut b, &mut bodies);
    assert_eq!(b, b"GET / HTTP/1.1\r\nCookie:**\r\n\r\n");
    let mut b = b"ie: a\r\n\r\n".to_vec();
    r.standalone(&mut b, &mut bodies);
    assert_eq!(b, b"*****\r\n\r\n");
}

#[test]
fn a_connection_seen_from_its_start_that_is_not_http_is_left_alone() {
    let mut r = redactor();
    r.opened(1);
    // A framed binary protocol whose first byte happens to be a capital.
    let frame = [&b"E\x00\x00\x00\x05"[..], b"Cookie: x\r\n\r\n"].concat();
    let out =
        run(&mut r, 0, &[(0, &frame), (frame.len() as u64, b"GET / HTTP/1.1\r\nCookie: y\r\n")]);
    assert_eq!(out[0], frame);
    assert_eq!(out[1], b"GET / HTTP/1.1\r\nCookie: y\r\n");
    assert_eq!(r.counts(), redact::Counts::default());
}
