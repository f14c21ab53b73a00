//! The decoding pipeline for one capture: rows → per-connection reassembly →
//! protocol detection → HTTP/1 or HTTP/2 decoding → exchanges.
//!
//! Rows are consumed in file order and nothing is kept per connection beyond
//! what its parsers need, so memory follows the number of open connections,
//! not the size of the capture.

use std::{collections::HashMap, sync::Arc};

use formats::wire::{FLAG_H2_END_STREAM, FLAG_H2_FIELDS_TRUNCATED};

use crate::{
    exchange::{self, ConnInfo, Exchange},
    input::{self, Capture, InputError},
    protocol::{
        detect::{self, Verdict},
        http1::{self, Http1Conn},
        http2::{
            self,
            uprobe::{self, GoHeaders, Held},
            Http2Conn,
        },
        Dir, Header, Role,
    },
    reassembly::{Chunk, Piece, Reassembler},
    rows,
    stats::{Lost, Stats},
};

/// A capture row, as the engine needs it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Row<'a> {
    pub ts: i64,
    pub kind: &'a str,
    pub pid: Option<u32>,
    pub comm: Option<&'a str>,
    pub conn_id: Option<u64>,
    pub direction: Option<Dir>,
    pub seq: u64,
    pub size: u64,
    pub payload: &'a [u8],
    pub local_addr: Option<&'a str>,
    pub remote_addr: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub pod: Option<&'a str>,
    pub pod_uid: Option<&'a str>,
    pub container: Option<&'a str>,
    pub node: Option<&'a str>,
    /// The capture's `flags` column (`FLAG_*` of `formats::wire`).
    pub flags: u32,
    /// `h2_headers` rows: the stream and its header fields.
    pub stream_id: Option<u32>,
    pub headers: Option<&'a [Header]>,
}

/// A connection closed this long ago (capture time) without new data is
/// finished; a socket shared with a forked child outlives its parent's close.
const LINGER_NS: i64 = 5_000_000_000;
/// Rows between sweeps for finished connections.
const SWEEP_EVERY: u64 = 4096;
/// The plaintext of a TLS connection is decoded as a connection of its own,
/// under its `conn_id` with this bit set.
const TLS_KEY: u64 = 1 << 63;

enum Proto {
    /// Not classified yet: what arrived so far, in arrival order.
    Detecting {
        pieces: Vec<(Dir, Owned)>,
        heads: [Vec<u8>; 2],
        gapped: [bool; 2],
    },
    /// HTTP/1, possibly upgraded to HTTP/2 in one direction or both.
    Http1 {
        conn: Box<Http1Conn>,
        role: Role,
        h2: Option<Box<Http2Conn>>,
        switched: [bool; 2],
    },
    Http2(Box<Http2Conn>),
    /// TLS: bytes are counted as encrypted; the plaintext, if the uprobes
    /// read it, is decoded under the connection's TLS key.
    Encrypted,
    /// Not HTTP: bytes are counted, nothing decoded.
    Unknown,
}

#[derive(Clone, Debug)]
enum Owned {
    Data(Vec<u8>, i64),
    Gap(u64, i64, bool),
}

struct Conn {
    info: Arc<ConnInfo>,
    known_role: Option<Role>,
    streams: [Reassembler; 2],
    proto: Proto,
    closed_at: Option<i64>,
    /// Header blocks from the Go gRPC uprobes, and streams waiting for them.
    go: Option<Box<GoHeaders>>,
}

/// What the engine knows about the capture beyond its rows.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// Process names by pid (the capture's targets).
    pub processes: HashMap<u32, String>,
    /// The machine the capture ran on.
    pub host: Option<String>,
    /// Response body bytes kept per exchange.
    pub keep_body: usize,
    /// The capture kept no bodies (`capture --no-bodies`): a body cut short
    /// is what was asked for, not a flaw of the exchange.
    pub no_bodies: bool,
}

/// What the parsers say of a body that ended at a payload cut short.
const CUT_BODIES: [&str; 2] = ["body cut by --max-payload", "chunked body cut by --max-payload"];

impl Context {
    pub fn of(capture: &Capture, keep_body: usize) -> Self {
        Self {
            processes: capture.process_names(),
            host: capture.host().map(str::to_string),
            keep_body,
            no_bodies: capture.redaction().is_some_and(|r| r.no_bodies),
        }
    }
}

/// Decodes one capture.
pub struct Engine<'s> {
    conns: HashMap<u64, Conn>,
    sink: &'s mut dyn FnMut(Exchange),
    pub stats: Stats,
    rows: u64,
    keep_body: usize,
    no_bodies: bool,
    processes: HashMap<u32, String>,
    host: Option<String>,
}

/// Decodes every row of `capture` into `sink`; `progress` hears the rows of
/// each batch.
pub fn decode(
    capture: &Capture,
    context: Context,
    sink: &mut dyn FnMut(Exchange),
    progress: &mut dyn FnMut(u64),
) -> Result<Stats, InputError> {
    let mut engine = Engine::new(sink, context);
    for part in &capture.parts {
        for batch in input::batches(part)? {
            let batch = batch?;
            rows::for_each(&batch, |row| engine.row(row));
            progress(batch.num_rows() as u64);
        }
    }
    let mut stats = engine.finish();
    let (start, end) = capture.span();
    let (start, end) = (start.or(stats.first_ts), end.or(stats.last_ts));
    // Losses the metadata counts but no `lost` row dates: put them at the end.
    let recorded = capture.lost_events().unwrap_or(0);
    if recorded > stats.lost_events {
        stats.lost.push(Lost {
            host: capture.host().map(str::to_string),
            ts: end.unwrap_or(0),
            events: recorded - stats.lost_events,
        });
        stats.lost_events = recorded;
    }
    stats.uprobe.rejected = capture.rejected_header_blocks();
    stats.redaction = capture.redaction();
    stats.note_span(start, end);
    Ok(stats)
}

impl<'s> Engine<'s> {
    pub fn new(sink: &'s mut dyn FnMut(Exchange), context: Context) -> Self {
        Self {
            conns: HashMap::new(),
            sink,
            stats: Stats::default(),
            rows: 0,
            keep_body: context.keep_body,
            no_bodies: context.no_bodies,
            processes: context.processes,
            host: context.host,
        }
    }

    /// Handles one row.
    pub fn row(&mut self, row: &Row<'_>) {
        self.rows += 1;
        self.stats.rows += 1;
        self.stats.first_ts = Some(self.stats.first_ts.map_or(row.ts, |t| t.min(row.ts)));
        self.stats.last_ts = Some(self.stats.last_ts.map_or(row.ts, |t| t.max(row.ts)));
        match row.kind {
            "lost" => {
                self.stats.lost_events += row.size;
                self.stats.lost.push(Lost {
                    host: self.host.clone(),
                    ts: row.ts,
                    events: row.size,
                });
            }
            "data" => self.data(row, false),
            "tls_data" => self.data(row, true),
            "h2_headers" => self.h2_headers(row),
            "accept" | "connect" => {
                let role = if row.kind == "accept" { Role::Server } else { Role::Client };
                let conn = self.conn(row);
                conn.known_role = Some(role);
            }
            "close" => {
                if let Some(id) = row.conn_id {
                    for key in [id, id | TLS_KEY] {
                        if let Some(conn) = self.conns.get_mut(&key) {
                            conn.closed_at = Some(row.ts);
                        }
                    }
                }
            }
            _ => {}
        }
        if let Some(id) = row.conn_id {
            self.release(Some(id), row.ts);
        }
        if self.rows.is_multiple_of(SWEEP_EVERY) {
            self.release(None, row.ts);
            self.sweep(row.ts);
        }
    }

    /// Ends the capture: every connection's pending messages come out.
    pub fn finish(mut self) -> Stats {
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            self.end(id, false);
        }
        self.stats
    }

    fn conn(&mut self, row: &Row<'_>) -> &mut Conn {
        self.conn_keyed(row, false)
    }

    /// The connection of `row`, or with `tls` its plaintext.
    fn conn_keyed(&mut self, row: &Row<'_>, tls: bool) -> &mut Conn {
        let id = row.conn_id.unwrap_or(0);
        let key = if tls { id | TLS_KEY } else { id };
        let stats = &mut self.stats;
        let (processes, host) = (&self.processes, &self.host);
        self.conns.entry(key).or_insert_with(|| {
            if tls {
                stats.tls_plaintext_connections += 1;
            } else {
                stats.connections += 1;
            }
            let own = |s: Option<&str>| s.map(str::to_string);
            Conn {
                info: Arc::new(ConnInfo {
                    conn_id: id,
                    pid: row.pid,
                    process: row
                        .pid
                        .and_then(|pid| processes.get(&pid).cloned())
                        .or_else(|| own(row.comm)),
                    host: host.clone(),
                    comm: own(row.comm),
                    local_addr: own(row.local_addr),
                    remote_addr: own(row.remote_addr),
                    namespace: own(row.namespace),
                    pod: own(row.pod),
                    pod_uid: own(row.pod_uid),
                    container: own(row.container),
                    node: own(row.node),
                    tls,
                }),
                known_role: None,
                streams: [Reassembler::new(), Reassembler::new()],
                proto: Proto::Detecting {
                    pieces: Vec::new(),
                    heads: Default::default(),
                    gapped: [false; 2],
                },
                closed_at: None,
                go: None,
            }
        })
    }

    /// A header block read by the Go gRPC uprobes.
    fn h2_headers(&mut self, row: &Row<'_>) {
        let (Some(dir), Some(stream_id), Some(_)) = (row.direction, row.stream_id, row.conn_id)
        else {
            // grpc-go's connection did not lead to a socket podtap saw (or
            // the row is damaged): counted, never matched.
            self.stats.uprobe.blocks += 1;
            self.stats.uprobe.unmatched += 1;
            return;
        };
        let block = uprobe::Block {
            fields: row.headers.map(<[Header]>::to_vec).unwrap_or_default(),
            end_stream: row.flags & FLAG_H2_END_STREAM != 0,
            truncated: row.flags & FLAG_H2_FIELDS_TRUNCATED != 0,
        };
        let conn = self.conn(row);
        let info = conn.info.clone();
        let go = conn.go.get_or_insert_with(Box::default);
        if let Some(held) = go.add(stream_id, dir, block) {
            self.emit_held(held, &info);
        }
    }

    /// Streams held for uprobe blocks whose time is up at `now`, on one
    /// connection (or all when `id` is `None`).
    fn release(&mut self, id: Option<u64>, now: i64) {
        let mut out = Vec::new();
        let mut take = |conn: &mut Conn| {
            if let Some(go) = conn.go.as_mut() {
                for held in go.release(Some(now)) {
                    out.push((held, conn.info.clone()));
                }
            }
        };
        match id {
            Some(id) => {
                if let Some(conn) = self.conns.get_mut(&id) {
                    take(conn);
                }
            }
            None => self.conns.values_mut().for_each(take),
        }
        for (held, info) in out {
            self.emit_held(held, &info);
        }
    }

    fn emit_held(&mut self, held: Held, info: &Arc<ConnInfo>) {
        let mut x = held.into_exchange(info.clone());
        if self.no_bodies {
            x.issues.retain(|i| !CUT_BODIES.contains(&i.as_str()));
        }
        self.stats.add_exchange(&x);
        (self.sink)(x);
    }

    /// A `data` row, or with `tls` a `tls_data` row (plaintext).
    fn data(&mut self, row: &Row<'_>, tls: bool) {
        let Some(dir) = row.direction else { return };
        if tls {
            self.stats.tls_rows += 1;
            self.stats.tls_bytes += row.size;
            if row.conn_id.is_none() {
                // Plaintext of a connection no syscall was seen for: it
                // cannot be placed in a stream.
                self.stats.tls_unplaced_bytes += row.size;
                return;
            }
        } else {
            self.stats.data_rows += 1;
            self.stats.bytes += row.size;
        }
        let keep_body = self.keep_body;
        let id = row.conn_id.unwrap_or(0);
        let key = if tls { id | TLS_KEY } else { id };
        self.conn_keyed(row, tls);
        let Some(conn) = self.conns.get_mut(&key) else { return };
        // Bytes after a close: another process still holds the socket.
        conn.closed_at = None;
        let Conn { info, known_role, streams, proto, go, .. } = conn;
        let mut ctx = Feed {
            info,
            known_role: *known_role,
            sink: &mut *self.sink,
            stats: &mut self.stats,
            keep_body,
            no_bodies: self.no_bodies,
            go,
        };
        let chunk = Chunk { seq: row.seq, size: row.size, payload: row.payload, ts: row.ts };
        streams[dir as usize].push(chunk, &mut |piece| ctx.piece(proto, dir, piece));
    }

    fn sweep(&mut self, now: i64) {
        let done: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.closed_at.is_some_and(|t| now - t > LINGER_NS))
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            self.end(id, true);
        }
    }

    fn end(&mut self, id: u64, closed: bool) {
        let Some(mut conn) = self.conns.remove(&id) else { return };
        let closed = closed || conn.closed_at.is_some();
        let last_ts = conn.closed_at.unwrap_or(0);
        let Conn { info, known_role, streams, proto, go, .. } = &mut conn;
        let mut ctx = Feed {
            info,
            known_role: *known_role,
            sink: &mut *self.sink,
            stats: &mut self.stats,
            keep_body: self.keep_body,
            no_bodies: self.no_bodies,
            go,
        };
        for dir in [Dir::Ingress, Dir::Egress] {
            streams[dir as usize].flush(&mut |piece| ctx.piece(proto, dir, piece));
            ctx.stats.overlap_bytes += streams[dir as usize].overlaps;
        }
        ctx.classify(proto, true);
        ctx.finish(proto, last_ts, closed);
        if let Some(mut go) = conn.go.take() {
            for held in go.finish() {
                self.emit_held(held, &conn.info);
            }
            self.stats.uprobe.add(&go.counts);
        }
    }
}

/// What feeding pieces into a connection's decoder needs.
struct Feed<'a, 's> {
    info: &'a Arc<ConnInfo>,
    known_role: Option<Role>,
    sink: &'a mut (dyn FnMut(Exchange) + 's),
    stats: &'a mut Stats,
    keep_body: usize,
    no_bodies: bool,
    /// The connection's uprobe blocks, if it has any: its streams go
    /// through them.
    go: &'a mut Option<Box<GoHeaders>>,
}

impl Feed<'_, '_> {
    fn piece(&mut self, proto: &mut Proto, dir: Dir, piece: Piece<'_>) {
        if let Piece::Gap { len, .. } = piece {
            self.stats.gap_bytes += len;
        }
        if let Proto::Detecting { pieces, heads, gapped } = proto {
            match piece {
                Piece::Data { bytes, ts } => {
                    if !gapped[dir as usize] && heads[dir as usize].len() < detect::LIMIT {
                        heads[dir as usize].extend_from_slice(bytes);
                    }
                    pieces.push((dir, Owned::Data(bytes.to_vec(), ts)));
                }
                Piece::Gap { len, ts, cut } => {
                    gapped[dir as usize] = true;
                    pieces.push((dir, Owned::Gap(len, ts, cut)));
                }
            }
            self.classify(proto, false);
            return;
        }
        self.decode(proto, dir, piece);
    }

    /// Decides the protocol once the first bytes allow it, then replays them.
    fn classify(&mut self, proto: &mut Proto, done: bool) {
        let Proto::Detecting { pieces, heads, gapped } = proto else { return };
        if done && pieces.is_empty() {
            // Opened and closed without a byte: nothing to decode.
            self.stats.empty_connections += 1;
            *proto = Proto::Unknown;
            return;
        }
        let verdict = detect::classify(
            &heads[0],
            &heads[1],
            self.known_role,
            done || gapped.iter().all(|g| *g),
        );
        let keep_body = self.keep_body;
        let next = match verdict {
            Verdict::NeedMore => return,
            Verdict::Http1 { role, at_start } => {
                self.stats.http1_connections += 1;
                Proto::Http1 {
                    conn: Box::new(Http1Conn::new(role.request_dir(), at_start)),
                    role,
                    h2: None,
                    switched: [false; 2],
                }
            }
            Verdict::Http2 { role, preface } => {
                self.stats.http2_connections += 1;
                Proto::Http2(Box::new(Http2Conn::new(role.or(self.known_role), preface, keep_body)))
            }
            Verdict::Tls => {
                self.stats.tls_connections += 1;
                Proto::Encrypted
            }
            Verdict::Unknown => {
                self.stats.unknown_connections += 1;
                Proto::Unknown
            }
        };
        let pieces = std::mem::take(pieces);
        *proto = next;
        for (dir, piece) in pieces {
            match piece {
                Owned::Data(bytes, ts) => {
                    self.decode(proto, dir, Piece::Data { bytes: &bytes, ts })
                }
                Owned::Gap(len, ts, cut) => self.decode(proto, dir, Piece::Gap { len, ts, cut }),
            }
        }
    }

    fn decode(&mut self, proto: &mut Proto, dir: Dir, piece: Piece<'_>) {
        match proto {
            Proto::Detecting { .. } => {}
            Proto::Unknown => {
                if let Piece::Data { bytes, .. } = piece {
                    self.stats.undecoded_bytes += bytes.len() as u64;
                }
            }
            Proto::Encrypted => {
                if let Piece::Data { bytes, .. } = piece {
                    self.stats.encrypted_bytes += bytes.len() as u64;
                }
            }
            Proto::Http2(h2) => {
                let mut events = Vec::new();
                match piece {
                    Piece::Data { bytes, ts } => h2.data(dir, bytes, ts, &mut events),
                    Piece::Gap { len, ts, cut } => h2.gap(dir, len, ts, cut, &mut events),
                }
                self.http2_events(h2, events);
            }
            Proto::Http1 { conn, role, h2, switched } => {
                if switched[dir as usize] {
                    if let Some(h2) = h2 {
                        let mut events = Vec::new();
                        match piece {
                            Piece::Data { bytes, ts } => h2.data(dir, bytes, ts, &mut events),
                            Piece::Gap { len, ts, cut } => h2.gap(dir, len, ts, cut, &mut events),
                        }
                        self.http2_events(h2, events);
                    }
                    return;
                }
                let mut events = Vec::new();
                match piece {
                    Piece::Data { bytes, ts } => conn.data(dir, bytes, ts, &mut events),
                    Piece::Gap { len, ts, cut } => conn.gap(dir, len, ts, cut, &mut events),
                }
                for event in events {
                    match event {
                        http1::Event::Pair(pair) => {
                            self.emit(exchange::from_http1(pair, self.info.clone(), *role))
                        }
                        http1::Event::Skipped { bytes, .. } => self.stats.skipped_bytes += bytes,
                        http1::Event::Switched { dir: sdir, offset, replay, upgrade } => {
                            self.stats.upgrades += 1;
                            let keep_body = self.keep_body;
                            let h2 = h2.get_or_insert_with(|| {
                                Box::new(match upgrade {
                                    Some(request) => Http2Conn::upgraded(*role, request, keep_body),
                                    None => Http2Conn::new(Some(*role), true, keep_body),
                                })
                            });
                            switched[sdir as usize] = true;
                            let mut events = Vec::new();
                            if let Piece::Data { bytes, ts } = piece {
                                if !replay.is_empty() {
                                    h2.data(sdir, &replay, ts, &mut events);
                                }
                                if sdir == dir && offset < bytes.len() {
                                    h2.data(dir, &bytes[offset..], ts, &mut events);
                                }
                            }
                            self.http2_events(h2, events);
                        }
                    }
                }
            }
        }
    }

    fn http2_events(&mut self, h2: &mut Http2Conn, events: Vec<http2::Event>) {
        for event in events {
            match event {
                http2::Event::Stream(stream) => {
                    let role =
                        h2.role().or(self.known_role).unwrap_or_else(|| guess_role(self.info));
                    // One gRPC stream makes the connection a gRPC one.
                    if exchange::is_grpc(&stream) {
                        h2.grpc = true;
                    }
                    let grpc = h2.grpc;
                    match self.go.as_mut() {
                        Some(go) => {
                            if let Some(held) = go.stream(stream, role, grpc) {
                                self.emit(held.into_exchange(self.info.clone()));
                            }
                        }
                        None => {
                            self.emit(exchange::from_http2(*stream, self.info.clone(), role, grpc))
                        }
                    }
                }
                http2::Event::Skipped { bytes, .. } => self.stats.skipped_bytes += bytes,
                http2::Event::BadBlock { .. } => self.stats.bad_header_blocks += 1,
            }
        }
    }

    fn finish(&mut self, proto: &mut Proto, ts: i64, closed: bool) {
        match proto {
            Proto::Http1 { conn, role, h2, .. } => {
                let mut events = Vec::new();
                conn.finish(ts, closed, &mut events);
                for event in events {
                    if let http1::Event::Pair(pair) = event {
                        self.emit(exchange::from_http1(pair, self.info.clone(), *role));
                    }
                }
                if let Some(h2) = h2 {
                    let mut events = Vec::new();
                    h2.finish(&mut events);
                    self.stats.hpack_unknown_fields += h2.unknown_fields();
                    self.http2_events(h2, events);
                }
            }
            Proto::Http2(h2) => {
                let mut events = Vec::new();
                h2.finish(&mut events);
                self.stats.hpack_unknown_fields += h2.unknown_fields();
                self.http2_events(h2, events);
            }
            Proto::Detecting { .. } | Proto::Unknown | Proto::Encrypted => {}
        }
    }

    fn emit(&mut self, mut x: Exchange) {
        if self.no_bodies {
            x.issues.retain(|i| !CUT_BODIES.contains(&i.as_str()));
        }
        self.stats.add_exchange(&x);
        (self.sink)(x);
    }
}

/// Without any other hint, the side with the lower port is the server.
fn guess_role(info: &ConnInfo) -> Role {
    let port = |a: &Option<String>| {
        a.as_deref().and_then(|a| a.rsplit(':').next()).and_then(|p| p.parse::<u16>().ok())
    };
    match (port(&info.local_addr), port(&info.remote_addr)) {
        (Some(l), Some(r)) if l > r => Role::Client,
        _ => Role::Server,
    }
}
