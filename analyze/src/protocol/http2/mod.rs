//! HTTP/2 on one connection: frames per direction ([`frame`]), header blocks
//! with HPACK state per direction ([`hpack`]), and streams, each of which
//! becomes an exchange when both sides end (or it is reset, or the
//! connection ends).
//!
//! gRPC needs nothing special at this level: it is HTTP/2 with trailers;
//! [`crate::exchange`] reads its status from them.

pub mod frame;
pub use redact::hpack;
pub mod uprobe;

use std::collections::BTreeMap;

use self::frame::{Frame, FrameHeader, Output as FrameOutput, Reader};
use super::{Dir, Header, Role};
use crate::protocol::http1;

/// Largest header block (HEADERS plus CONTINUATIONs) accepted.
const MAX_BLOCK: usize = 1 << 20;
/// Streams open at once before the oldest are given up.
const MAX_OPEN_STREAMS: usize = 10_000;

/// What one side (direction) of a stream sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Side {
    /// The first (non-informational) header block, pseudo-headers included.
    pub headers: Option<Vec<Header>>,
    /// A header block after DATA, or after the first block.
    pub trailers: Option<Vec<Header>>,
    /// DATA bytes, padding excluded; some may be unseen (`data_unseen`).
    pub data_len: u64,
    pub data_unseen: u64,
    /// The first DATA bytes seen.
    pub body: Vec<u8>,
    pub start_ts: Option<i64>,
    pub end_ts: i64,
    /// END_STREAM seen.
    pub ended: bool,
    /// Header fields whose name or value was unknown (HPACK).
    pub unknown_fields: u32,
    /// The weight its HEADERS gave the stream, if it had priority fields.
    pub weight: Option<u16>,
    /// Why part of this side is missing.
    pub issues: Vec<&'static str>,
    /// The connection's count of skips in this direction when the side
    /// started, and when it ended: a skip in between may have eaten its frames.
    skips_at_start: u64,
    skips_at_end: Option<u64>,
}

impl Side {
    fn touch(&mut self, start: i64, end: i64, skips: u64) {
        if self.start_ts.is_none() {
            self.start_ts = Some(start);
            self.skips_at_start = skips;
        }
        self.end_ts = self.end_ts.max(end);
    }

    fn end(&mut self, skips: u64) {
        self.ended = true;
        self.skips_at_end.get_or_insert(skips);
    }

    /// Notes lost frames if the direction skipped bytes while this side was open.
    fn check_skips(&mut self, skips_now: u64) {
        if self.start_ts.is_some() && self.skips_at_end.unwrap_or(skips_now) > self.skips_at_start {
            self.note("bytes of the stream unseen");
        }
    }

    fn note(&mut self, issue: &'static str) {
        if !self.issues.contains(&issue) {
            self.issues.push(issue);
        }
    }
}

/// A finished (or abandoned) stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    pub id: u32,
    /// Indexed by [`Dir`].
    pub sides: [Side; 2],
    /// RST_STREAM error code, and who sent it.
    pub reset: Option<(Dir, u32)>,
    /// For stream 1 after an h2c upgrade: the HTTP/1 request that opened it.
    pub upgrade: Option<http1::parse::Message>,
    /// The stream ended because the connection or the capture did.
    pub abandoned: bool,
    /// Where its headers came from, once merged with uprobe blocks
    /// ([`uprobe::source`]); `None`: from the wire only.
    pub headers_source: Option<&'static str>,
}

impl Stream {
    fn new(id: u32) -> Self {
        Self {
            id,
            sides: Default::default(),
            reset: None,
            upgrade: None,
            abandoned: false,
            headers_source: None,
        }
    }

    fn done(&self) -> bool {
        self.reset.is_some() || self.sides.iter().all(|s| s.ended)
    }
}

/// What the connection produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Stream(Box<Stream>),
    Skipped {
        dir: Dir,
        bytes: u64,
    },
    /// Header blocks that failed to decode.
    BadBlock {
        dir: Dir,
    },
}

struct Block {
    stream: u32,
    /// PUSH_PROMISE: the promised stream.
    promised: Option<u32>,
    end_stream: bool,
    bytes: Vec<u8>,
    start_ts: i64,
    weight: Option<u16>,
}

/// HTTP/2 on one connection.
pub struct Http2Conn {
    /// The target's role, once known.
    role: Option<Role>,
    readers: [Reader; 2],
    hpack: [hpack::Decoder; 2],
    blocks: [Option<Block>; 2],
    /// Open streams, boxed: they are large and move in and out of the map.
    streams: BTreeMap<u32, Box<Stream>>,
    /// The highest stream id seen, client-initiated (odd) and server (even):
    /// a stream below it that is not open is closed (RFC 9113 §5.1.1).
    highest: [u32; 2],
    scratch: Vec<FrameOutput>,
    /// A stream of this connection was seen to be gRPC.
    pub grpc: bool,
    /// Times each direction skipped bytes to find frames again.
    skips: [u64; 2],
}

impl Http2Conn {
    /// `preface`: the client's preface will be the first bytes of its
    /// direction (the connection is seen from its start). Without it the
    /// connection is joined in progress: frame alignment and HPACK state are
    /// unknown until found.
    pub fn new(role: Option<Role>, preface: bool, keep_body: usize) -> Self {
        let reader = |dir: Dir| match (preface, role) {
            (true, Some(r)) if r.request_dir() == dir => Reader::new(true, keep_body),
            (true, _) => Reader::new(false, keep_body),
            (false, _) => Reader::lost(keep_body),
        };
        let decoder = || if preface { hpack::Decoder::new() } else { hpack::Decoder::joining() };
        Self {
            role,
            readers: [reader(Dir::Ingress), reader(Dir::Egress)],
            hpack: [decoder(), decoder()],
            blocks: [None, None],
            streams: BTreeMap::new(),
            highest: [0; 2],
            scratch: Vec::new(),
            grpc: false,
            skips: [0; 2],
        }
    }

    /// After an h2c upgrade: stream 1 answers the HTTP/1 request.
    pub fn upgraded(role: Role, request: http1::parse::Message, keep_body: usize) -> Self {
        let mut conn = Self::new(Some(role), true, keep_body);
        // The server side starts with its own SETTINGS, no preface.
        let mut stream = Stream::new(1);
        let req = &mut stream.sides[role.request_dir() as usize];
        req.touch(request.start_ts, request.end_ts, 0);
        req.end(0);
        stream.upgrade = Some(request);
        conn.streams.insert(1, Box::new(stream));
        conn.highest[1] = 1;
        conn
    }

    pub fn role(&self) -> Option<Role> {
        self.role
    }

    /// Fields that referred to unknown HPACK state, in both directions.
    pub fn unknown_fields(&self) -> u64 {
        self.hpack.iter().map(|d| d.unknown_fields).sum()
    }

    pub fn data(&mut self, dir: Dir, bytes: &[u8], ts: i64, out: &mut Vec<Event>) {
        let mut frames = std::mem::take(&mut self.scratch);
        self.readers[dir as usize].data(bytes, ts, &mut frames);
        self.handle(dir, &mut frames, out);
        self.scratch = frames;
    }

    pub fn gap(&mut self, dir: Dir, len: u64, ts: i64, cut: bool, out: &mut Vec<Event>) {
        let mut frames = std::mem::take(&mut self.scratch);
        self.readers[dir as usize].gap(len, ts, cut, &mut frames);
        self.handle(dir, &mut frames, out);
        self.scratch = frames;
    }

    /// The connection or the capture ended: every open stream comes out.
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        for (_, stream) in std::mem::take(&mut self.streams) {
            self.emit(stream, out);
        }
    }

    fn emit(&self, mut stream: Box<Stream>, out: &mut Vec<Event>) {
        stream.abandoned = !stream.done();
        for (d, side) in stream.sides.iter_mut().enumerate() {
            side.check_skips(self.skips[d]);
        }
        out.push(Event::Stream(stream));
    }

    fn handle(&mut self, dir: Dir, frames: &mut Vec<FrameOutput>, out: &mut Vec<Event>) {
        for output in frames.drain(..) {
            match output {
                FrameOutput::Frame(frame) => self.frame(dir, frame, out),
                FrameOutput::Skipped { bytes } => {
                    // Header blocks may have been in the skipped bytes.
                    self.hpack[dir as usize].lost_block();
                    self.blocks[dir as usize] = None;
                    self.skips[dir as usize] += 1;
                    out.push(Event::Skipped { dir, bytes });
                }
            }
        }
    }

    fn stream(&mut self, id: u32) -> &mut Stream {
        let highest = &mut self.highest[(id & 1) as usize];
        *highest = (*highest).max(id);
        self.streams.entry(id).or_insert_with(|| Box::new(Stream::new(id)))
    }

    /// Keeps open streams bounded: streams whose ends were lost would pile up
    /// otherwise. The oldest come out as abandoned.
    fn bound(&mut self, out: &mut Vec<Event>) {
        while self.streams.len() > MAX_OPEN_STREAMS {
            match self.streams.pop_first() {
                Some((_, stream)) => self.emit(stream, out),
                None => break,
            }
        }
    }

    fn frame(&mut self, dir: Dir, frame: Frame, out: &mut Vec<Event>) {
        let FrameHeader { kind, flags, stream: id, .. } = frame.header;
        let d = dir as usize;
        // A header block must be continued by CONTINUATION frames only.
        if kind != frame::CONTINUATION && self.blocks[d].is_some() {
            self.blocks[d] = None;
            self.hpack[d].lost_block();
            out.push(Event::BadBlock { dir });
        }
        match kind {
            frame::DATA => {
                let skips = self.skips[d];
                let side = &mut self.stream(id).sides[d];
                side.touch(frame.start_ts, frame.end_ts, skips);
                side.data_len += frame.data_len;
                side.data_unseen += frame.data_unseen;
                if frame.data_unseen > 0 {
                    side.note(if frame.data_lost {
                        "body partly lost"
                    } else {
                        "body cut by --max-payload"
                    });
                }
                let room = http1::parse::BODY_PREFIX.saturating_sub(side.body.len());
                side.body.extend_from_slice(&frame.payload[..room.min(frame.payload.len())]);
                if flags & frame::FLAG_END_STREAM != 0 {
                    side.end(skips);
                }
                self.maybe_done(id, out);
            }
            frame::HEADERS | frame::PUSH_PROMISE => {
                let (promised, fragment) = if kind == frame::PUSH_PROMISE {
                    let Some(p) = frame.payload.get(..4) else { return };
                    (
                        Some(u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff),
                        frame.payload[4..].to_vec(),
                    )
                } else {
                    (None, frame.payload)
                };
                let block = Block {
                    stream: id,
                    promised,
                    end_stream: kind == frame::HEADERS && flags & frame::FLAG_END_STREAM != 0,
                    bytes: fragment,
                    start_ts: frame.start_ts,
                    weight: frame.weight,
                };
                if flags & frame::FLAG_END_HEADERS != 0 {
                    self.block(dir, block, frame.end_ts, out);
                } else {
                    self.blocks[d] = Some(block);
                }
            }
            frame::CONTINUATION => match self.blocks[d].take() {
                Some(mut block)
                    if block.stream == id
                        && block.bytes.len() + frame.payload.len() <= MAX_BLOCK =>
                {
                    block.bytes.extend_from_slice(&frame.payload);
                    if flags & frame::FLAG_END_HEADERS != 0 {
                        self.block(dir, block, frame.end_ts, out);
                    } else {
                        self.blocks[d] = Some(block);
                    }
                }
                _ => {
                    // Its HEADERS was not seen (or the block is absurd).
                    self.hpack[d].lost_block();
                    out.push(Event::BadBlock { dir });
                }
            },
            frame::RST_STREAM => {
                if !self.streams.contains_key(&id) && id <= self.highest[(id & 1) as usize] {
                    // A closed stream's reset (curl sends one after an h2c
                    // upgrade's stream 1 ends): nothing to report.
                    return;
                }
                let code = frame
                    .payload
                    .get(..4)
                    .map_or(0, |p| u32::from_be_bytes([p[0], p[1], p[2], p[3]]));
                let skips = self.skips[d];
                let stream = self.stream(id);
                stream.sides[d].touch(frame.start_ts, frame.end_ts, skips);
                stream.reset = Some((dir, code));
                self.maybe_done(id, out);
            }
            // SETTINGS, PING, GOAWAY, WINDOW_UPDATE, PRIORITY and unknown
            // types carry nothing an exchange needs. A table size change is
            // announced in the header blocks themselves.
            _ => {}
        }
    }

    /// Decodes a complete header block and files it under its stream.
    fn block(&mut self, dir: Dir, block: Block, end_ts: i64, out: &mut Vec<Event>) {
        let d = dir as usize;
        let (fields, error) = self.hpack[d].decode(&block.bytes);
        if error.is_some() {
            out.push(Event::BadBlock { dir });
        }
        let unknown =
            fields.iter().filter(|f| f.name.is_none() || f.value.is_none()).count() as u32;
        let headers: Vec<Header> = fields
            .into_iter()
            .map(|f| Header { name: f.name.unwrap_or_else(|| "?".into()), value: f.value })
            .collect();
        self.learn_role(dir, &headers);
        if let Some(promised) = block.promised {
            // A pushed response: the promise is its request, sent by the server.
            if let Some(role) = self.role {
                let skips = self.skips[d];
                let stream = self.stream(promised);
                let req = &mut stream.sides[role.request_dir() as usize];
                req.touch(block.start_ts, end_ts, skips);
                req.headers = Some(headers);
                req.unknown_fields += unknown;
                req.end(skips);
            }
            return;
        }
        let id = block.stream;
        let skips = self.skips[d];
        let side = &mut self.stream(id).sides[d];
        side.touch(block.start_ts, end_ts, skips);
        side.unknown_fields += unknown;
        side.weight = side.weight.or(block.weight);
        if error.is_some() {
            side.note("header block could not be decoded");
        }
        let informational = super::header(&headers, ":status")
            .and_then(|s| s.parse::<u16>().ok())
            .is_some_and(|s| (100..200).contains(&s));
        if side.headers.is_none() {
            if !informational {
                side.headers = Some(headers);
            }
        } else {
            side.trailers = Some(headers);
        }
        if block.end_stream {
            side.end(skips);
        }
        self.maybe_done(id, out);
    }

    /// Learns which side is the client from pseudo-headers: requests carry
    /// `:method`, responses `:status`.
    fn learn_role(&mut self, dir: Dir, headers: &[Header]) {
        if self.role.is_some() {
            return;
        }
        let has = |n: &str| headers.iter().any(|h| h.name == n);
        let requests_in = if has(":method") || has(":path") {
            Some(dir)
        } else if has(":status") {
            Some(dir.other())
        } else {
            None
        };
        self.role =
            requests_in.map(|d| if d == Dir::Ingress { Role::Server } else { Role::Client });
    }

    fn maybe_done(&mut self, id: u32, out: &mut Vec<Event>) {
        if self.streams.get(&id).is_some_and(|s| s.done()) {
            if let Some(stream) = self.streams.remove(&id) {
                self.emit(stream, out);
            }
        } else {
            self.bound(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use loona_hpack::Encoder;

    use super::{frame::*, *};

    fn frame_bytes(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn streams(events: &[Event]) -> Vec<&Stream> {
        events
            .iter()
            .filter_map(|e| if let Event::Stream(s) = e { Some(s.as_ref()) } else { None })
            .collect()
    }

    fn value<'a>(headers: &'a Option<Vec<Header>>, name: &str) -> Option<&'a str> {
        super::super::header(headers.as_deref()?, name)
    }

    /// A unary gRPC call, client to server and back, with CONTINUATION and
    /// trailers.
    #[test]
    fn a_unary_call_becomes_one_stream_with_trailers() {
        let mut client = Encoder::new();
        let mut server = Encoder::new();
        let req = client.encode(vec![
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", b"/helloworld.Greeter/SayHello"),
            (b":authority", b"localhost"),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ]);
        let (a, b) = req.split_at(10);
        let ingress = [
            detect_preface(),
            frame_bytes(SETTINGS, 0, 0, &[]),
            frame_bytes(HEADERS, 0, 1, a),
            frame_bytes(CONTINUATION, FLAG_END_HEADERS, 1, b),
            frame_bytes(DATA, FLAG_END_STREAM, 1, &[0, 0, 0, 0, 2, 10, 0]),
        ]
        .concat();
        let resp = server
            .encode(vec![(&b":status"[..], &b"200"[..]), (b"content-type", b"application/grpc")]);
        let trailers =
            server.encode(vec![(&b"grpc-status"[..], &b"0"[..]), (b"grpc-message", b"")]);
        let egress = [
            frame_bytes(SETTINGS, 0, 0, &[]),
            frame_bytes(HEADERS, FLAG_END_HEADERS, 1, &resp),
            frame_bytes(DATA, 0, 1, &[0, 0, 0, 0, 3, 10, 1, 65]),
            frame_bytes(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, &trailers),
        ]
        .concat();
        let mut conn = Http2Conn::new(Some(Role::Server), true, 1024);
        let mut out = Vec::new();
        conn.data(Dir::Ingress, &ingress, 1, &mut out);
        conn.data(Dir::Egress, &egress, 2, &mut out);
        let s = streams(&out);
        assert_eq!(s.len(), 1);
        let (req, resp) = (&s[0].sides[0], &s[0].sides[1]);
        assert_eq!(value(&req.headers, ":path"), Some("/helloworld.Greeter/SayHello"));
        assert_eq!(value(&resp.headers, ":status"), Some("200"));
        assert_eq!(value(&resp.trailers, "grpc-status"), Some("0"));
        assert_eq!((req.data_len, resp.data_len), (7, 8));
        assert_eq!(resp.body, vec![0, 0, 0, 0, 3, 10, 1, 65]);
    }

    fn detect_preface() -> Vec<u8> {
        crate::protocol::detect::PREFACE.to_vec()
    }

    #[test]
    fn a_joined_connection_learns_the_role_and_reports_unknown_fields() {
        // The client indexed its :path before the capture began: index 62.
        let block = [0x83, 0x86, 0xbe];
        let ingress = frame_bytes(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 7, &block);
        let mut enc = Encoder::new();
        let egress = frame_bytes(
            HEADERS,
            FLAG_END_HEADERS | FLAG_END_STREAM,
            7,
            &enc.encode(vec![(&b":status"[..], &b"204"[..])]),
        );
        let mut conn = Http2Conn::new(None, false, 0);
        let mut out = Vec::new();
        conn.data(Dir::Ingress, &ingress, 1, &mut out);
        conn.data(Dir::Egress, &egress, 2, &mut out);
        assert_eq!(conn.role(), Some(Role::Server));
        let s = streams(&out);
        assert_eq!(s.len(), 1);
        assert_eq!(value(&s[0].sides[0].headers, ":method"), Some("POST"));
        assert_eq!(s[0].sides[0].unknown_fields, 1);
        assert_eq!(conn.unknown_fields(), 1);
    }

    #[test]
    fn a_reset_ends_a_stream() {
        let mut enc = Encoder::new();
        let req = enc.encode(vec![(&b":method"[..], &b"GET"[..]), (b":path", b"/slow")]);
        let ingress = [
            frame_bytes(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3, &req),
            frame_bytes(RST_STREAM, 0, 3, &8u32.to_be_bytes()),
        ]
        .concat();
        let mut conn = Http2Conn::new(Some(Role::Server), false, 0);
        let mut out = Vec::new();
        conn.data(Dir::Ingress, &ingress, 1, &mut out);
        let s = streams(&out);
        assert_eq!(s[0].reset, Some((Dir::Ingress, 8)));
    }

    #[test]
    fn open_streams_come_out_at_the_end() {
        let mut enc = Encoder::new();
        let req = enc.encode(vec![(&b":method"[..], &b"GET"[..]), (b":path", b"/stream")]);
        let mut conn = Http2Conn::new(Some(Role::Server), false, 0);
        let mut out = Vec::new();
        conn.data(Dir::Ingress, &frame_bytes(HEADERS, FLAG_END_HEADERS, 5, &req), 1, &mut out);
        assert!(streams(&out).is_empty());
        conn.finish(&mut out);
        let s = streams(&out);
        assert!(s[0].abandoned);
    }

    #[test]
    fn only_sides_open_across_a_skip_are_marked_unseen() {
        let mut enc = Encoder::new();
        let req = enc.encode(vec![(&b":method"[..], &b"GET"[..]), (b":path", b"/")]);
        let ingress = [
            frame_bytes(HEADERS, FLAG_END_HEADERS, 1, &req),
            frame_bytes(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3, &req),
        ]
        .concat();
        let mut conn = Http2Conn::new(Some(Role::Server), false, 0);
        let mut out = Vec::new();
        conn.data(Dir::Ingress, &ingress, 1, &mut out);
        conn.gap(Dir::Ingress, 100, 2, false, &mut out);
        conn.finish(&mut out);
        let s = streams(&out);
        let issues = |id: u32| &s.iter().find(|s| s.id == id).unwrap().sides[0].issues;
        assert_eq!(issues(1), &vec!["bytes of the stream unseen"]);
        assert!(issues(3).is_empty());
    }

    #[test]
    fn streams_that_never_end_are_bounded() {
        let mut enc = Encoder::new();
        let req = enc.encode(vec![(&b":method"[..], &b"GET"[..]), (b":path", b"/")]);
        let mut conn = Http2Conn::new(Some(Role::Server), false, 0);
        let mut out = Vec::new();
        for id in 0..MAX_OPEN_STREAMS as u32 + 10 {
            let frame = frame_bytes(HEADERS, FLAG_END_HEADERS, 2 * id + 1, &req);
            conn.data(Dir::Ingress, &frame, 1, &mut out);
        }
        let s = streams(&out);
        assert_eq!(s.len(), 10);
        assert!(s.iter().all(|s| s.abandoned));
        assert_eq!(s[0].id, 1);
        assert_eq!(conn.streams.len(), MAX_OPEN_STREAMS);
    }
}
