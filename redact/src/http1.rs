//! HTTP/1.x: masks header values in one direction of a connection.
//!
//! A byte-at-a-time state machine over heads (so a header split across any
//! number of payloads is masked like a whole one) and a skip over bodies,
//! whose lengths come from the heads (RFC 9112 §6: `Content-Length`,
//! chunked, and the responses that have none: HEAD, 1xx, 204, 304). The
//! state per direction is bounded: a few short buffers, never a whole head.
//!
//! A response's framing depends on its request's method, which travels the
//! other way: [`Shared`] carries it between the two directions.

use std::collections::VecDeque;

use crate::{stream::BodyRanges, Counts, Policy, MASK};

/// Requests whose responses are still due, per connection.
const MAX_PENDING: usize = 256;
/// Longest start line or chunk-size line followed.
const MAX_LINE: u64 = 64 * 1024;
/// Bytes of a framing header's value kept.
const MAX_VALUE: usize = 64;

/// What both directions of a connection know.
#[derive(Debug, Default)]
pub struct Shared {
    /// Whether each pending request was HEAD, oldest first.
    methods: VecDeque<bool>,
    /// More requests were pending than are kept: methods are not known.
    overflowed: bool,
    /// A 101 switched the connection to a protocol other than HTTP/2.
    pub(crate) upgraded: bool,
}

impl Shared {
    fn push(&mut self, head: bool) {
        if self.methods.len() == MAX_PENDING {
            self.methods.pop_front();
            self.overflowed = true;
        }
        self.methods.push_back(head);
    }

    /// Whether the oldest pending request was HEAD; `None` if unknown.
    fn pop(&mut self) -> Option<bool> {
        let head = self.methods.pop_front();
        if self.overflowed {
            return None;
        }
        head
    }
}

/// Where the bytes are going, after a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    /// HTTP/2 follows (`h2c` upgrade or prior knowledge), after `skip`
    /// bytes of the client preface that are still to come.
    Http2 { skip: usize },
    /// Another protocol (a WebSocket, a CONNECT tunnel): not HTTP.
    Opaque,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Collect {
    ContentLength,
    TransferEncoding,
    Upgrade,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between messages: blank lines, then a start line.
    Start,
    StartLine,
    LineStart,
    /// A CR at the start of a line: the head ends at the LF.
    LineStartCr,
    Name,
    Value {
        mask: bool,
        collect: Option<Collect>,
    },
    Body(u64),
    ChunkSize {
        digits: bool,
        ext: bool,
    },
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// A body that ends when the connection does.
    ToClose,
}

/// Masking state of one direction.
#[derive(Debug)]
pub struct Http1 {
    state: State,
    /// The first bytes of the start line, the name being read, or a chunk
    /// size line's length so far.
    line: Vec<u8>,
    line_len: u64,
    /// The last 8 bytes of the start line (CR left out).
    tail: [u8; 8],
    value: Vec<u8>,
    /// The previous header's value was masked (an obs-fold line continues it).
    prev_mask: bool,
    request: bool,
    head_method: bool,
    status: u16,
    content_length: Option<u64>,
    chunked: bool,
    upgrade_h2c: bool,
    trailers: bool,
    chunk_size: u64,
    /// The body's length came from a head whose request was not seen: a
    /// payload that starts with a status line ends it early.
    unsure_body: bool,
    /// A start line was read: the stream is HTTP/1. Until then, bytes that
    /// are no start line say it is another protocol, not a lost place.
    placed: bool,
}

/// Everything a step needs besides the bytes.
pub(crate) struct Ctx<'a> {
    pub policy: &'a Policy,
    pub shared: &'a mut Shared,
    pub counts: &'a mut Counts,
    pub bodies: &'a mut BodyRanges,
    /// Offset of the bytes given in the caller's payload.
    pub base: usize,
}

/// The stream lost its place at this offset of the bytes given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desync(pub usize);

/// Whether `buf` starts with an HTTP/1 start line (or the HTTP/2 preface),
/// complete up to its line end.
pub fn starts_message(buf: &[u8]) -> bool {
    let Some(end) = buf.iter().take(MAX_LINE as usize).position(|&b| b == b'\n') else {
        return false;
    };
    let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
    if line.starts_with(b"HTTP/1.") {
        return line.len() >= 12 && line[8] == b' ' && line[9..12].iter().all(u8::is_ascii_digit);
    }
    let method = line.iter().take_while(|b| b.is_ascii_uppercase()).count();
    method > 0
        && line.get(method) == Some(&b' ')
        && (line.ends_with(b" HTTP/1.1")
            || line.ends_with(b" HTTP/1.0")
            || line == b"PRI * HTTP/2.0")
}

/// A `Content-Length` value: digits between optional blanks.
fn number(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0')))
}

/// Whether a header line starts with `name` (any case) and a colon.
fn named(line: &[u8], name: &[u8]) -> bool {
    line.len() > name.len()
        && line[name.len()] == b':'
        && line[..name.len()].eq_ignore_ascii_case(name)
}

impl Http1 {
    /// A stream at a message boundary; `placed` if it is known to be HTTP/1
    /// (a start line was seen), else its first line decides.
    pub fn new(placed: bool) -> Self {
        Self {
            placed,
            state: State::Start,
            line: Vec::new(),
            line_len: 0,
            tail: [0; 8],
            value: Vec::new(),
            prev_mask: false,
            request: false,
            head_method: false,
            status: 0,
            content_length: None,
            chunked: false,
            upgrade_h2c: false,
            trailers: false,
            chunk_size: 0,
            unsure_body: false,
        }
    }

    fn end_message(&mut self) {
        // Field by field: the buffers keep their allocations.
        self.state = State::Start;
        self.line.clear();
        self.line_len = 0;
        self.value.clear();
        self.prev_mask = false;
        self.request = false;
        self.head_method = false;
        self.status = 0;
        self.content_length = None;
        self.chunked = false;
        self.upgrade_h2c = false;
        self.trailers = false;
        self.chunk_size = 0;
        self.unsure_body = false;
        self.placed = true;
    }

    /// The bytes are no HTTP/1 at `i`: another protocol if no start line
    /// was ever seen, else the place is lost.
    fn not_http(&self, i: usize) -> Result<Option<(usize, Switch)>, Desync> {
        if self.placed {
            Err(Desync(i))
        } else {
            Ok(Some((0, Switch::Opaque)))
        }
    }

    fn in_body(&self) -> bool {
        matches!(
            self.state,
            State::Body(_)
                | State::ChunkData(_)
                | State::ChunkSize { .. }
                | State::ChunkEnd
                | State::ToClose
        )
    }

    /// Bytes that never reached the capture (`n` of them) come next; false
    /// when they fall where lengths are read (the stream is lost).
    pub fn gap(&mut self, n: u64) -> bool {
        match self.state {
            State::Body(left) if n <= left => {
                if n == left {
                    self.end_message();
                } else {
                    self.state = State::Body(left - n);
                }
                true
            }
            State::ChunkData(left) if n <= left => {
                self.state = if n == left { State::ChunkEnd } else { State::ChunkData(left - n) };
                true
            }
            State::ToClose => true,
            _ => false,
        }
    }

    /// Masks one payload's bytes in place; body bytes are added to the
    /// context's ranges. Returns where the stream switched protocol, if it
    /// did.
    pub(crate) fn feed(
        &mut self,
        buf: &mut [u8],
        ctx: &mut Ctx<'_>,
    ) -> Result<Option<(usize, Switch)>, Desync> {
        if self.unsure_body && self.in_body() && buf.starts_with(b"HTTP/1.") && starts_message(buf)
        {
            self.end_message();
        }
        let mut i = 0;
        while i < buf.len() {
            if self.state == State::Start && self.placed {
                if let Some(head) = self.whole_head(&mut buf[i..], ctx) {
                    i += head;
                    if let Some(switch) = self.end_head(ctx.shared) {
                        return Ok(Some((i, switch)));
                    }
                    continue;
                }
            }
            match self.state {
                State::Body(left) => {
                    let n = left.min((buf.len() - i) as u64);
                    ctx.bodies.push(ctx.base + i, ctx.base + i + n as usize);
                    i += n as usize;
                    if n == left {
                        self.end_message();
                    } else {
                        self.state = State::Body(left - n);
                    }
                    continue;
                }
                State::ChunkData(left) => {
                    let n = left.min((buf.len() - i) as u64);
                    ctx.bodies.push(ctx.base + i, ctx.base + i + n as usize);
                    i += n as usize;
                    self.state =
                        if n == left { State::ChunkEnd } else { State::ChunkData(left - n) };
                    continue;
                }
                State::ToClose => {
                    ctx.bodies.push(ctx.base + i, ctx.base + buf.len());
                    return Ok(None);
                }
                _ => {}
            }
            let b = buf[i];
            match self.state {
                State::Start => match b {
                    b'\r' | b'\n' => {}
                    b'A'..=b'Z' => {
                        self.state = State::StartLine;
                        self.line.clear();
                        self.line.push(b);
                        self.line_len = 1;
                        self.tail = [0; 8];
                        self.push_tail(b);
                    }
                    _ if ctx.shared.upgraded => return Ok(Some((i, Switch::Opaque))),
                    _ => return self.not_http(i),
                },
                State::StartLine => {
                    if b == b'\n' {
                        match self.start_line() {
                            Some(Some(switch)) => return Ok(Some((i + 1, switch))),
                            Some(None) => {
                                self.placed = true;
                                self.state = State::LineStart;
                            }
                            None => return self.not_http(i),
                        }
                    } else {
                        self.line_len += 1;
                        if self.line_len > MAX_LINE || (b.is_ascii_control() && b != b'\r') {
                            return self.not_http(i);
                        }
                        if self.line.len() < 32 {
                            self.line.push(b);
                        }
                        if b != b'\r' {
                            self.push_tail(b);
                        }
                    }
                }
                State::LineStart => match b {
                    b'\r' => self.state = State::LineStartCr,
                    b'\n' => {
                        if let Some(switch) = self.end_head(ctx.shared) {
                            return Ok(Some((i + 1, switch)));
                        }
                    }
                    b' ' | b'\t' => {
                        // An obs-fold line continues the previous value.
                        if self.prev_mask {
                            buf[i] = MASK;
                        }
                        self.state = State::Value { mask: self.prev_mask, collect: None };
                    }
                    _ => {
                        self.state = State::Name;
                        self.line.clear();
                        self.line.push(b);
                        self.line_len = 1;
                    }
                },
                State::LineStartCr => {
                    if b != b'\n' {
                        return Err(Desync(i));
                    }
                    if let Some(switch) = self.end_head(ctx.shared) {
                        return Ok(Some((i + 1, switch)));
                    }
                }
                State::Name => match b {
                    b':' => {
                        let state = self.name_done(ctx.policy);
                        if let State::Value { mask: true, .. } = state {
                            ctx.counts.values += 1;
                        }
                        self.state = state;
                    }
                    b'\n' => return Err(Desync(i)),
                    _ => {
                        self.line_len += 1;
                        if self.line.len() <= ctx.policy.longest().max(17) {
                            self.line.push(b);
                        }
                    }
                },
                State::Value { mask, collect } => match b {
                    b'\n' => {
                        self.prev_mask = mask;
                        if let Some(which) = collect {
                            if !self.value_done(which) {
                                return Err(Desync(i));
                            }
                        }
                        self.state = State::LineStart;
                    }
                    b'\r' => {}
                    _ => {
                        if mask {
                            buf[i] = MASK;
                        }
                        if collect.is_some() && self.value.len() < MAX_VALUE {
                            self.value.push(b);
                        }
                    }
                },
                State::ChunkSize { digits, ext } => {
                    self.line_len += 1;
                    if self.line_len > MAX_LINE {
                        return Err(Desync(i));
                    }
                    match b {
                        b'\n' if digits => {
                            if self.chunk_size == 0 {
                                self.trailers = true;
                                self.state = State::LineStart;
                            } else {
                                self.state = State::ChunkData(self.chunk_size);
                            }
                        }
                        b'\r' => {}
                        _ if ext => {}
                        b';' | b' ' | b'\t' if digits => {
                            self.state = State::ChunkSize { digits, ext: true };
                        }
                        _ if b.is_ascii_hexdigit() => {
                            let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                            self.chunk_size = match self.chunk_size.checked_mul(16) {
                                Some(v) if v <= u64::MAX - d => v + d,
                                _ => return Err(Desync(i)),
                            };
                            self.state = State::ChunkSize { digits: true, ext: false };
                        }
                        _ => return Err(Desync(i)),
                    }
                }
                State::ChunkEnd => match b {
                    b'\r' => {}
                    b'\n' => {
                        self.chunk_size = 0;
                        self.line_len = 0;
                        self.state = State::ChunkSize { digits: false, ext: false };
                    }
                    _ => return Err(Desync(i)),
                },
                State::Body(_) | State::ChunkData(_) | State::ToClose => {
                    unreachable!("handled above")
                }
            }
            i += 1;
        }
        Ok(None)
    }

    /// The fast path for a head that lies whole in `buf` (the usual case):
    /// its lines are found with SIMD searches and only those whose name may
    /// matter are looked at. Returns the head's length, its framing taken
    /// in, or `None` (nothing changed) for the byte-wise path to handle it:
    /// a head cut by the payload's end, or anything unusual in it.
    fn whole_head(&mut self, buf: &mut [u8], ctx: &mut Ctx<'_>) -> Option<usize> {
        let head = &*buf;
        let mut lines = memchr::memchr_iter(b'\n', head);
        let first = lines.next()?;
        let line = head[..first].strip_suffix(b"\r")?;
        let request = if line.starts_with(b"HTTP/1.") {
            if line.len() < 12 || line[8] != b' ' || !line[9..12].iter().all(u8::is_ascii_digit) {
                return None;
            }
            false
        } else {
            let method = line.iter().take_while(|b| b.is_ascii_uppercase()).count();
            if method == 0
                || line.get(method) != Some(&b' ')
                || !(line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0"))
            {
                return None;
            }
            true
        };
        let mut masks = [(0usize, 0usize); 16];
        let mut n_masks = 0;
        let (mut length, mut chunked, mut h2c) = (None, false, false);
        let mut at = first + 1;
        let mut end = None;
        for line_end in lines {
            let line = &head[at..line_end];
            match line {
                b"\r" => {
                    end = Some(line_end + 1);
                    break;
                }
                [] => return None,
                _ => {}
            }
            let b = line[0].to_ascii_lowercase();
            if b == b' ' || b == b'\t' {
                return None; // obs-fold: the byte-wise path follows it
            }
            let value_end = line_end - usize::from(line.ends_with(b"\r"));
            // A line is looked at only if its first byte may start a name
            // that matters; names are matched with the colon after them.
            if ctx.policy.first_bytes[b as usize] {
                let redacted = ctx
                    .policy
                    .names
                    .iter()
                    .filter(|m| m.as_bytes()[0] == b)
                    .find(|m| named(line, m.as_bytes()));
                if let Some(n) = redacted.map(String::len) {
                    if n_masks == masks.len() {
                        return None;
                    }
                    masks[n_masks] = (at + n + 1, value_end);
                    n_masks += 1;
                    at = line_end + 1;
                    continue;
                }
            }
            if b == b'c' || b == b't' || b == b'u' {
                if b == b'c' && named(line, b"content-length") {
                    let n = number(&head[at + 15..value_end])?;
                    if length.is_some_and(|m| m != n) {
                        return None;
                    }
                    length = Some(n);
                } else if b == b't' && named(line, b"transfer-encoding") {
                    let value = &head[at + 18..value_end];
                    let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
                    chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
                } else if b == b'u' && named(line, b"upgrade") {
                    h2c = head[at + 8..value_end].trim_ascii().eq_ignore_ascii_case(b"h2c");
                }
            }
            at = line_end + 1;
        }
        // The head must end in this payload.
        let end = end?;
        // The start line, as the byte-wise path reads it.
        self.request = request;
        if request {
            self.head_method = line.starts_with(b"HEAD ");
        } else {
            self.status = line[9..12].iter().fold(0, |n, d| n * 10 + u16::from(d - b'0'));
        }
        for &(from, to) in &masks[..n_masks] {
            buf[from..to].fill(MASK);
        }
        ctx.counts.values += n_masks as u64;
        self.content_length = length;
        self.chunked = chunked;
        self.upgrade_h2c = h2c;
        Some(end)
    }

    fn push_tail(&mut self, b: u8) {
        self.tail.rotate_left(1);
        self.tail[7] = b;
    }

    /// Reads the start line: `None` if it is not one, else whether the
    /// stream switches to HTTP/2 (the preface).
    fn start_line(&mut self) -> Option<Option<Switch>> {
        let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
        if line == b"PRI * HTTP/2.0" {
            // "\r\nSM\r\n\r\n" follows.
            return Some(Some(Switch::Http2 { skip: 8 }));
        }
        if line.starts_with(b"HTTP/1.") {
            let digits = line.get(9..12)?;
            if line.get(8) != Some(&b' ') || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            self.request = false;
            self.status = digits.iter().fold(0, |n, d| n * 10 + u16::from(d - b'0'));
            return Some(None);
        }
        let method = line.iter().take_while(|b| b.is_ascii_uppercase()).count();
        if line.get(method) != Some(&b' ') || !matches!(&self.tail, b"HTTP/1.1" | b"HTTP/1.0") {
            return None;
        }
        self.request = true;
        self.head_method = &line[..method] == b"HEAD";
        Some(None)
    }

    fn name_done(&mut self, policy: &Policy) -> State {
        let name = self.line.as_slice();
        let whole = self.line_len as usize == name.len();
        let mask = whole && policy.redacts(name);
        let collect = if !whole || self.trailers {
            None
        } else if name.eq_ignore_ascii_case(b"content-length") {
            Some(Collect::ContentLength)
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            Some(Collect::TransferEncoding)
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            Some(Collect::Upgrade)
        } else {
            None
        };
        self.value.clear();
        State::Value { mask, collect }
    }

    /// Takes a framing header's value in; `false` if it makes the framing
    /// unknowable.
    fn value_done(&mut self, which: Collect) -> bool {
        let value = self.value.trim_ascii();
        match which {
            Collect::ContentLength => {
                let Some(n) = std::str::from_utf8(value).ok().and_then(|v| v.parse::<u64>().ok())
                else {
                    return false;
                };
                if self.content_length.is_some_and(|m| m != n) {
                    return false;
                }
                self.content_length = Some(n);
            }
            Collect::TransferEncoding => {
                let last = value.rsplit(|&b| b == b',').next().unwrap_or_default().trim_ascii();
                self.chunked = last.eq_ignore_ascii_case(b"chunked");
            }
            Collect::Upgrade => {
                self.upgrade_h2c = value.eq_ignore_ascii_case(b"h2c");
            }
        }
        true
    }

    /// The head ended: where its body, if any, goes.
    fn end_head(&mut self, shared: &mut Shared) -> Option<Switch> {
        if self.trailers {
            self.end_message();
            return None;
        }
        if self.request {
            shared.push(self.head_method);
            self.after_head(false);
            return None;
        }
        match self.status {
            101 => {
                let h2 = self.upgrade_h2c;
                shared.upgraded = !h2;
                self.end_message();
                return Some(if h2 { Switch::Http2 { skip: 0 } } else { Switch::Opaque });
            }
            100..=199 => {
                self.end_message();
                return None;
            }
            _ => {}
        }
        let head = shared.pop();
        let bodiless = head == Some(true) || self.status == 204 || self.status == 304;
        if bodiless {
            self.end_message();
            return None;
        }
        self.after_head(head.is_none());
        None
    }

    fn after_head(&mut self, unsure: bool) {
        let (chunked, length, request) = (self.chunked, self.content_length, self.request);
        self.end_message();
        self.state = if chunked {
            State::ChunkSize { digits: false, ext: false }
        } else if let Some(n) = length.filter(|&n| n > 0) {
            State::Body(n)
        } else if request || length == Some(0) {
            State::Start
        } else {
            State::ToClose
        };
        self.unsure_body = unsure && self.state != State::Start;
    }
}
