//! The driver: per connection and direction, which protocol the bytes
//! follow, where the stream is in it, and what to do when bytes are lost.
//!
//! A stream seen from its connection's start is placed by its first bytes:
//! an HTTP/1 start line, the HTTP/2 preface or frames, else another
//! protocol that is left alone. A stream joined late is masked whole until
//! a payload starts where it can be placed again (a start line, frames that
//! chain plausibly, a TLS record), since its first bytes may be the middle
//! of a header block.

use std::collections::HashMap;

use crate::{
    http1::{self, Ctx, Desync, Http1, Shared, Switch},
    http2::{self, Http2, Lost},
    Counts, Policy, MASK,
};

/// Which stream bytes belong to: a connection (the capture's id for it),
/// and whether they are its TLS plaintext rather than its socket bytes.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct StreamKey {
    pub conn: u64,
    pub tls: bool,
}

/// Body byte ranges of one payload (`--no-bodies`), sorted, merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BodyRanges(Vec<(usize, usize)>);

impl BodyRanges {
    pub(crate) fn push(&mut self, from: usize, to: usize) {
        if from >= to {
            return;
        }
        match self.0.last_mut() {
            Some(last) if last.1 == from => last.1 = to,
            _ => self.0.push((from, to)),
        }
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ranges, as `(from, to)` offsets into the payload.
    pub fn ranges(&self) -> &[(usize, usize)] {
        &self.0
    }

    /// Bytes in all ranges.
    pub fn len(&self) -> usize {
        self.0.iter().map(|(a, b)| b - a).sum()
    }
}

#[derive(Debug)]
enum Proto {
    /// Seen from the connection's start; nothing read yet.
    Fresh,
    /// Joined late or lost: masked until it can be placed.
    Unplaced,
    Http1(Http1),
    Http2(Http2),
    /// Not HTTP (or no longer): left as it is.
    Other,
}

#[derive(Debug)]
struct Stream {
    proto: Proto,
    /// The stream offset the next payload should start at.
    next: Option<u64>,
}

#[derive(Debug)]
struct Conn {
    streams: [Stream; 2],
    shared: Shared,
}

impl Conn {
    fn new(fresh: bool) -> Self {
        let stream = || Stream {
            proto: if fresh { Proto::Fresh } else { Proto::Unplaced },
            next: fresh.then_some(0),
        };
        Conn { streams: [stream(), stream()], shared: Shared::default() }
    }
}

/// Masks the streams of every connection.
#[derive(Debug)]
pub struct Redactor {
    policy: Policy,
    conns: HashMap<StreamKey, Conn, foldhash::fast::RandomState>,
    counts: Counts,
}

/// Whether `buf` starts with a TLS record header (RFC 8446 §5.1): such a
/// stream is encrypted, not HTTP.
fn tls_record(buf: &[u8]) -> bool {
    buf.len() >= 5 && (20..=23).contains(&buf[0]) && buf[1] == 3 && buf[2] <= 4
}

/// Masks bytes whose place is unknown, keeping line ends (no value holds
/// one), so that line structure survives; nothing when no name is redacted.
fn mask_unplaced(buf: &mut [u8], policy: &Policy, counts: &mut Counts) {
    if buf.is_empty() || policy.names.is_empty() {
        return;
    }
    counts.uncertain += 1;
    counts.uncertain_bytes += buf.len() as u64;
    for b in buf.iter_mut().filter(|b| !matches!(b, b'\r' | b'\n')) {
        *b = MASK;
    }
}

impl Redactor {
    pub fn new(policy: Policy) -> Self {
        Self { policy, conns: HashMap::default(), counts: Counts::default() }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Counts `n` values masked outside the streams (header lists read from
    /// a process, masked with [`crate::mask_fields`]).
    pub fn count_fields(&mut self, n: u64) {
        self.counts.values += n;
    }

    /// Connections followed now.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// A connection was opened (connect or accept) while watched: its
    /// streams will be seen from their start.
    pub fn opened(&mut self, conn: u64) {
        for tls in [false, true] {
            self.conns.insert(StreamKey { conn, tls }, Conn::new(true));
        }
    }

    /// The connection is gone: its state is dropped.
    pub fn ended(&mut self, conn: u64) {
        for tls in [false, true] {
            self.conns.remove(&StreamKey { conn, tls });
        }
    }

    /// Masks one payload of `key`'s stream in direction `dir` (0 or 1) in
    /// place: `seq` is its stream offset, `size` the bytes the call moved
    /// (`payload` may hold fewer). Body ranges go to `bodies`.
    pub fn data(
        &mut self,
        key: StreamKey,
        dir: usize,
        seq: u64,
        size: u64,
        payload: &mut [u8],
        bodies: &mut BodyRanges,
    ) {
        bodies.clear();
        let conn = self.conns.entry(key).or_insert_with(|| Conn::new(false));
        let other_h2 = matches!(conn.streams[(dir & 1) ^ 1].proto, Proto::Http2(_));
        let stream = &mut conn.streams[dir & 1];
        match stream.next {
            Some(next) if seq > next => stream.gap(seq - next, &mut self.counts),
            Some(next) if seq < next => {
                // Bytes seen before, or out of order: not placed.
                mask_unplaced(payload, &self.policy, &mut self.counts);
                return;
            }
            Some(_) => {}
            None if matches!(stream.proto, Proto::Fresh) => stream.proto = Proto::Unplaced,
            None => {}
        }
        stream.next = Some(seq.saturating_add(size));
        stream.feed(payload, other_h2, &self.policy, &mut conn.shared, &mut self.counts, bodies);
        let kept = payload.len() as u64;
        if size > kept {
            stream.gap(size - kept, &mut self.counts);
        }
        if self.policy.no_bodies {
            self.counts.body_bytes += bodies.len() as u64;
        }
    }

    /// Masks a payload that belongs to no known connection: placed on its
    /// own, from its first byte, with nothing carried over.
    pub fn standalone(&mut self, payload: &mut [u8], bodies: &mut BodyRanges) {
        bodies.clear();
        let mut conn = Conn::new(false);
        conn.streams[0].feed(
            payload,
            false,
            &self.policy,
            &mut conn.shared,
            &mut self.counts,
            bodies,
        );
        if self.policy.no_bodies {
            self.counts.body_bytes += bodies.len() as u64;
        }
    }
}

impl Stream {
    fn gap(&mut self, n: u64, counts: &mut Counts) {
        match &mut self.proto {
            Proto::Fresh => self.proto = Proto::Unplaced,
            Proto::Http1(h) => {
                if !h.gap(n) {
                    self.proto = Proto::Unplaced;
                }
            }
            Proto::Http2(h) => h.gap(n, counts),
            Proto::Unplaced | Proto::Other => {}
        }
    }

    fn feed(
        &mut self,
        buf: &mut [u8],
        other_h2: bool,
        policy: &Policy,
        shared: &mut Shared,
        counts: &mut Counts,
        bodies: &mut BodyRanges,
    ) {
        let redacting = !policy.names.is_empty();
        let mut at = 0;
        while at < buf.len() {
            let rest = &mut buf[at..];
            match &mut self.proto {
                Proto::Fresh => {
                    self.proto = if rest[0].is_ascii_uppercase() {
                        Proto::Http1(Http1::new(false))
                    } else if other_h2 || http2::plausible_frames(rest) {
                        Proto::Http2(Http2::new(0, true, redacting))
                    } else {
                        Proto::Other
                    };
                }
                Proto::Unplaced => {
                    if at == 0 && http1::starts_message(rest) {
                        self.proto = Proto::Http1(Http1::new(true));
                    } else if at == 0 && http2::plausible_frames(rest) {
                        self.proto = Proto::Http2(Http2::new(0, false, redacting));
                    } else if at == 0 && tls_record(rest) {
                        self.proto = Proto::Other;
                    } else {
                        mask_unplaced(rest, policy, counts);
                        return;
                    }
                }
                Proto::Http1(h) => {
                    let mut ctx = Ctx { policy, shared, counts, bodies, base: at };
                    match h.feed(rest, &mut ctx) {
                        Ok(None) => return,
                        Ok(Some((n, Switch::Http2 { skip }))) => {
                            self.proto = Proto::Http2(Http2::new(skip, true, redacting));
                            at += n;
                        }
                        Ok(Some((n, Switch::Opaque))) => {
                            self.proto = Proto::Other;
                            at += n;
                        }
                        Err(Desync(n)) => {
                            self.proto = Proto::Unplaced;
                            mask_unplaced(&mut rest[n..], policy, counts);
                            return;
                        }
                    }
                }
                Proto::Http2(h) => {
                    if h.is_lost() && at == 0 && http2::plausible_frames(rest) {
                        h.resync();
                    }
                    match h.feed(rest, at, policy, counts, bodies) {
                        Ok(()) => return,
                        Err(Lost(n)) => {
                            mask_unplaced(&mut rest[n..], policy, counts);
                            return;
                        }
                    }
                }
                Proto::Other => {
                    if policy.no_bodies {
                        bodies.push(at, buf.len());
                    }
                    return;
                }
            }
        }
    }
}
