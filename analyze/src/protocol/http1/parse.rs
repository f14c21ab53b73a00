//! HTTP/1.x message framing for one direction of a connection (RFC 9112).
//!
//! A pure state machine: bytes and gaps go in, complete messages come out.
//! Heads are parsed with httparse; bodies are framed by Content-Length,
//! chunked transfer coding, the rules for HEAD, 1xx, 204 and 304 responses,
//! or the end of the connection. When framing is lost (a gap inside a head or
//! a chunk header, or bytes that are not HTTP) the parser resynchronises at
//! the next thing that looks like a message start and counts what it skipped.

use crate::protocol::Header;

/// Which messages a direction carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Request,
    Response,
}

/// Longest head accepted; longer is treated as garbage.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most headers in one head.
const MAX_HEADERS: usize = 256;
/// Body bytes kept per message.
pub const BODY_PREFIX: usize = 16 * 1024;

/// The start line and headers of a message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head {
    pub method: Option<String>,
    pub target: Option<String>,
    pub status: Option<u16>,
    /// Minor version: 0 or 1.
    pub version: u8,
    pub headers: Vec<Header>,
}

impl Head {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| h.value.as_deref())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .filter_map(|h| h.value.as_deref())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// A parsed message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub head: Head,
    /// Body length on the wire after transfer decoding, as far as known.
    pub body_size: u64,
    /// The first body bytes that were seen.
    pub body: Vec<u8>,
    pub trailers: Vec<Header>,
    /// Time of the first and last byte.
    pub start_ts: i64,
    pub end_ts: i64,
    /// Why the message is not whole, if it is not.
    pub issues: Vec<&'static str>,
}

impl Message {
    pub fn complete(&self) -> bool {
        self.issues.is_empty()
    }
}

/// What the parser produced from some input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Message(Message),
    /// The connection switched protocols (101 Switching Protocols, or an
    /// HTTP/2 connection preface where a request should start). The new
    /// protocol's bytes are `replay` (held from earlier inputs) followed by
    /// the current input from `offset`.
    Switched {
        offset: usize,
        replay: Vec<u8>,
    },
    /// Bytes that could not be parsed were skipped.
    Skipped {
        bytes: u64,
        reason: &'static str,
    },
}

/// How the body of the current message ends.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line.
    Size(Vec<u8>),
    Data(u64),
    /// The CRLF after chunk data; how many of its bytes were seen.
    DataEnd(u8),
    /// Trailer section, up to the empty line.
    Trailers(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Collecting a head (possibly empty so far).
    Head(Vec<u8>),
    Body(Framing),
    /// Looking for the next message start; holds a short tail of what was
    /// scanned so a start split across inputs is found.
    Resync(Vec<u8>),
    /// After a protocol switch: nothing more is HTTP/1.
    Switched,
}

/// Context the parser needs from the other direction.
pub trait Context {
    /// Method of the request the next response answers, if known.
    fn request_method(&self) -> Option<&str>;
}

/// A context for requests, and for responses whose request is unknown.
pub struct NoContext;

impl Context for NoContext {
    fn request_method(&self) -> Option<&str> {
        None
    }
}

/// Parses one direction.
#[derive(Clone, Debug)]
pub struct Parser {
    kind: Kind,
    state: State,
    current: Option<Message>,
    /// The message being assembled switches protocols when it ends.
    switch_after: bool,
    /// Time of the first byte of the head being collected.
    head_ts: i64,
    /// Bytes from earlier inputs that belong to the protocol switched to.
    replay: Vec<u8>,
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

impl Parser {
    /// A parser at a message boundary (a connection seen from its start).
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            state: State::Head(Vec::new()),
            current: None,
            switch_after: false,
            head_ts: 0,
            replay: Vec::new(),
        }
    }

    /// A parser that first looks for a message start (a connection that was
    /// already open when the capture began).
    pub fn resyncing(kind: Kind) -> Self {
        Self { state: State::Resync(Vec::new()), ..Self::new(kind) }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Whether the connection switched away from HTTP/1.
    pub fn switched(&self) -> bool {
        self.state == State::Switched
    }

    /// Feeds bytes seen at time `ts`.
    ///
    /// Stops right after a message completes and returns the bytes used, so
    /// the caller can update what the next message depends on (a response's
    /// framing depends on its request's method); call again with the rest.
    pub fn data(
        &mut self,
        input: &[u8],
        ts: i64,
        ctx: &dyn Context,
        out: &mut Vec<Output>,
    ) -> usize {
        let mut pos = 0;
        while pos < input.len() {
            let before = out.iter().filter(|o| matches!(o, Output::Message(_))).count();
            let used = match &mut self.state {
                State::Switched => return input.len(),
                State::Head(_) => self.head(&input[pos..], ts, ctx, out),
                State::Body(_) => self.body(&input[pos..], ts, out),
                State::Resync(_) => self.resync(&input[pos..], ts, out),
            };
            pos += used;
            if self.state == State::Switched {
                out.push(Output::Switched {
                    offset: pos,
                    replay: std::mem::take(&mut self.replay),
                });
                return input.len();
            }
            if out.iter().filter(|o| matches!(o, Output::Message(_))).count() > before {
                return pos;
            }
        }
        pos
    }

    /// Notes `len` bytes that were not seen (`cut` at `--max-payload`, or lost).
    pub fn gap(&mut self, len: u64, ts: i64, cut: bool, out: &mut Vec<Output>) {
        let unseen = if cut { "body cut by --max-payload" } else { "body partly lost" };
        match &mut self.state {
            State::Switched => {}
            State::Head(buf) => {
                let seen = buf.len() as u64;
                if seen > 0 {
                    out.push(Output::Skipped { bytes: seen + len, reason: "head cut by a gap" });
                }
                self.state = State::Resync(Vec::new());
            }
            State::Body(Framing::Length(left)) => {
                let inside = len.min(*left);
                *left -= inside;
                let msg = self.current.get_or_insert_with(Message::default);
                msg.body_size += inside;
                msg.end_ts = ts;
                note(msg, unseen);
                if *left == 0 {
                    self.finish(out);
                }
                if len > inside {
                    // The gap runs past this message: the next one's start is lost.
                    self.state = State::Resync(Vec::new());
                }
            }
            State::Body(Framing::Chunked(Chunk::Data(left))) if len <= *left => {
                // Inside one chunk's data (`--no-bodies`, or a cut payload
                // that ends mid-chunk): its length is known, the framing
                // goes on after it.
                *left -= len;
                if *left == 0 {
                    self.state = State::Body(Framing::Chunked(Chunk::DataEnd(0)));
                }
                let msg = self.current.get_or_insert_with(Message::default);
                msg.body_size += len;
                msg.end_ts = ts;
                note(msg, unseen);
            }
            State::Body(Framing::Chunked(_)) => {
                let msg = self.current.get_or_insert_with(Message::default);
                msg.end_ts = ts;
                note(
                    msg,
                    if cut {
                        "chunked body cut by --max-payload"
                    } else {
                        "chunked body partly lost"
                    },
                );
                self.finish(out);
                self.state = State::Resync(Vec::new());
            }
            State::Body(Framing::UntilClose) => {
                let msg = self.current.get_or_insert_with(Message::default);
                msg.body_size += len;
                msg.end_ts = ts;
                note(msg, unseen);
            }
            State::Resync(tail) => tail.clear(),
        }
    }

    /// The stream ended (the connection closed, or the capture did).
    pub fn close(&mut self, ts: i64, connection_closed: bool, out: &mut Vec<Output>) {
        match &self.state {
            State::Body(Framing::UntilClose) if connection_closed => {
                if let Some(msg) = self.current.as_mut() {
                    msg.end_ts = msg.end_ts.max(ts);
                }
                self.finish(out);
            }
            State::Body(_) => {
                if let Some(msg) = self.current.as_mut() {
                    note(
                        msg,
                        if connection_closed {
                            "connection closed mid-body"
                        } else {
                            "capture ended mid-body"
                        },
                    );
                }
                self.finish(out);
            }
            State::Head(buf) if !buf.iter().all(|b| matches!(b, b'\r' | b'\n')) => {
                out.push(Output::Skipped {
                    bytes: buf.len() as u64,
                    reason: "head never finished",
                });
            }
            _ => {}
        }
        self.state = State::Resync(Vec::new());
    }

    fn finish(&mut self, out: &mut Vec<Output>) {
        if let Some(msg) = self.current.take() {
            out.push(Output::Message(msg));
        }
        self.state = if std::mem::take(&mut self.switch_after) {
            State::Switched
        } else {
            State::Head(Vec::new())
        };
    }

    /// Collects a head; returns how many input bytes it used.
    fn head(&mut self, input: &[u8], ts: i64, ctx: &dyn Context, out: &mut Vec<Output>) -> usize {
        let State::Head(buf) = &mut self.state else { return 0 };
        // Empty lines before a request line are allowed (RFC 9112 §2.2).
        let mut start = 0;
        if buf.is_empty() {
            while start < input.len() && matches!(input[start], b'\r' | b'\n') {
                start += 1;
            }
            if start == input.len() {
                return start;
            }
            self.head_ts = ts;
        }
        let earlier = buf.len();
        let from = earlier.saturating_sub(3);
        buf.extend_from_slice(&input[start..]);
        // An HTTP/2 client preface where a request should start: h2c after an
        // Upgrade, or prior knowledge. Its first bytes may come alone.
        if self.kind == Kind::Request {
            let n = buf.len().min(PREFACE.len());
            if buf[..n] == PREFACE[..n] {
                if n < PREFACE.len() {
                    return input.len();
                }
                self.replay = buf[..earlier].to_vec();
                self.state = State::Switched;
                return start;
            }
        }
        let Some(end) = find_head_end(&buf[from..]).map(|e| from + e) else {
            if buf.len() > MAX_HEAD || looks_invalid(self.kind, buf) {
                let bytes = buf.len() as u64;
                out.push(Output::Skipped { bytes, reason: "not an HTTP/1 head" });
                self.state = State::Resync(Vec::new());
            }
            return input.len();
        };
        let head_bytes = buf[..end].to_vec();
        let used = input.len() - (buf.len() - end);
        let Some(head) = parse_head(self.kind, &head_bytes) else {
            out.push(Output::Skipped { bytes: end as u64, reason: "not an HTTP/1 head" });
            self.state = State::Resync(Vec::new());
            return used;
        };
        let framing = self.framing(&head, ctx);
        let msg = Message { head, start_ts: self.head_ts, end_ts: ts, ..Message::default() };
        self.current = Some(msg);
        match framing {
            Some(f) => self.state = State::Body(f),
            None => self.finish(out),
        }
        used
    }

    /// How the body of a message with this head is delimited; `None` for no
    /// body (RFC 9112 §6.3).
    fn framing(&mut self, head: &Head, ctx: &dyn Context) -> Option<Framing> {
        if self.kind == Kind::Response {
            let status = head.status.unwrap_or(0);
            if status == 101 {
                self.switch_after = true;
                return None;
            }
            let method = ctx.request_method();
            if (100..200).contains(&status)
                || status == 204
                || status == 304
                || method == Some("HEAD")
            {
                return None;
            }
            if method == Some("CONNECT") && (200..300).contains(&status) {
                // A tunnel: what follows is not HTTP.
                self.switch_after = true;
                return None;
            }
        }
        if head.has_token("transfer-encoding", "chunked") {
            return Some(Framing::Chunked(Chunk::Size(Vec::new())));
        }
        if let Some(len) = head.header("content-length").and_then(|v| v.trim().parse::<u64>().ok())
        {
            return (len > 0).then_some(Framing::Length(len));
        }
        match self.kind {
            Kind::Request => None,
            Kind::Response => Some(Framing::UntilClose),
        }
    }

    fn body(&mut self, input: &[u8], ts: i64, out: &mut Vec<Output>) -> usize {
        let State::Body(framing) = &mut self.state else { return 0 };
        let msg = self.current.get_or_insert_with(Message::default);
        msg.end_ts = ts;
        match framing {
            Framing::Length(left) => {
                let n = (*left).min(input.len() as u64) as usize;
                keep(msg, &input[..n]);
                *left -= n as u64;
                if *left == 0 {
                    self.finish(out);
                }
                n
            }
            Framing::UntilClose => {
                keep(msg, input);
                input.len()
            }
            Framing::Chunked(chunk) => {
                let (used, done) = chunked(chunk, msg, input);
                if done {
                    self.finish(out);
                } else if matches!(framing, Framing::Chunked(Chunk::Size(line)) if line.len() > 1024)
                {
                    note(msg, "bad chunk header");
                    self.finish(out);
                    self.state = State::Resync(Vec::new());
                }
                used
            }
        }
    }

    /// Scans for the start of the next message; returns input bytes used.
    fn resync(&mut self, input: &[u8], ts: i64, out: &mut Vec<Output>) -> usize {
        let State::Resync(tail) = &mut self.state else { return 0 };
        let carried = std::mem::take(tail);
        let mut window = carried.clone();
        window.extend_from_slice(input);
        let Some(pos) = find_start(self.kind, &window) else {
            // Keep a short tail: a start may be split across inputs.
            let keep_from = window.len().saturating_sub(START_PROBE);
            if keep_from > 0 {
                out.push(Output::Skipped { bytes: keep_from as u64, reason: "not HTTP/1" });
            }
            self.state = State::Resync(window[keep_from..].to_vec());
            return input.len();
        };
        if pos > 0 {
            out.push(Output::Skipped { bytes: pos as u64, reason: "not HTTP/1" });
        }
        if window[pos..].starts_with(PREFACE) {
            self.replay = window[pos.min(carried.len())..carried.len()].to_vec();
            self.state = State::Switched;
            return pos.saturating_sub(carried.len());
        }
        if pos >= carried.len() {
            self.state = State::Head(Vec::new());
            return pos - carried.len();
        }
        // The start began in the carried tail: those bytes open the head.
        self.head_ts = ts;
        self.state = State::Head(window[pos..carried.len()].to_vec());
        0
    }
}

fn note(msg: &mut Message, issue: &'static str) {
    if !msg.issues.contains(&issue) {
        msg.issues.push(issue);
    }
}

fn keep(msg: &mut Message, bytes: &[u8]) {
    msg.body_size += bytes.len() as u64;
    let room = BODY_PREFIX.saturating_sub(msg.body.len());
    msg.body.extend_from_slice(&bytes[..room.min(bytes.len())]);
}

/// Runs the chunked decoder over `input`; returns (bytes used, body done).
fn chunked(state: &mut Chunk, msg: &mut Message, input: &[u8]) -> (usize, bool) {
    let mut i = 0;
    while i < input.len() {
        match state {
            Chunk::Size(line) => {
                let nl = input[i..].iter().position(|&b| b == b'\n');
                let end = nl.map_or(input.len(), |p| i + p + 1);
                line.extend_from_slice(&input[i..end]);
                i = end;
                if nl.is_none() {
                    return (i, false);
                }
                let text = String::from_utf8_lossy(line);
                // chunk-size [; extensions]
                let hex = text.split(';').next().unwrap_or("").trim();
                match u64::from_str_radix(hex, 16) {
                    Ok(0) => *state = Chunk::Trailers(Vec::new()),
                    Ok(n) => *state = Chunk::Data(n),
                    Err(_) => {
                        note(msg, "bad chunk header");
                        return (i, true);
                    }
                }
            }
            Chunk::Data(left) => {
                let n = (*left).min((input.len() - i) as u64) as usize;
                keep(msg, &input[i..i + n]);
                *left -= n as u64;
                i += n;
                if *left == 0 {
                    *state = Chunk::DataEnd(0);
                }
            }
            Chunk::DataEnd(seen) => {
                // Tolerate a bare LF.
                match input[i] {
                    b'\r' if *seen == 0 => *seen = 1,
                    b'\n' => *state = Chunk::Size(Vec::new()),
                    _ => {
                        note(msg, "bad chunk terminator");
                        return (i, true);
                    }
                }
                i += 1;
            }
            Chunk::Trailers(buf) => {
                buf.push(input[i]);
                i += 1;
                let ended = buf == b"\r\n"
                    || buf == b"\n"
                    || buf.ends_with(b"\r\n\r\n")
                    || buf.ends_with(b"\n\n");
                if ended {
                    msg.trailers = parse_fields(buf);
                    return (i, true);
                }
                if buf.len() > MAX_HEAD {
                    note(msg, "trailers too long");
                    return (i, true);
                }
            }
        }
    }
    (i, false)
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Whether a head that has not ended yet can already be told invalid.
fn looks_invalid(kind: Kind, buf: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let result = match kind {
        Kind::Request => httparse::Request::new(&mut headers).parse(buf).map(|s| s.is_complete()),
        Kind::Response => httparse::Response::new(&mut headers).parse(buf).map(|s| s.is_complete()),
    };
    result.is_err()
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn to_headers(headers: &[httparse::Header<'_>]) -> Vec<Header> {
    headers
        .iter()
        .map(|h| Header { name: h.name.to_string(), value: Some(lossy(h.value)) })
        .collect()
}

/// Parses a complete head (ending in CRLF CRLF).
pub fn parse_head(kind: Kind, bytes: &[u8]) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match kind {
        Kind::Request => {
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(bytes) {
                Ok(httparse::Status::Complete(_)) => Some(Head {
                    method: req.method.map(str::to_string),
                    target: req.path.map(str::to_string),
                    status: None,
                    version: req.version.unwrap_or(1),
                    headers: to_headers(req.headers),
                }),
                _ => None,
            }
        }
        Kind::Response => {
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(bytes) {
                Ok(httparse::Status::Complete(_)) => Some(Head {
                    method: None,
                    target: None,
                    status: resp.code,
                    version: resp.version.unwrap_or(1),
                    headers: to_headers(resp.headers),
                }),
                _ => None,
            }
        }
    }
}

/// Parses `name: value` lines (trailers).
fn parse_fields(bytes: &[u8]) -> Vec<Header> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(bytes, &mut headers) {
        Ok(httparse::Status::Complete((_, parsed))) => to_headers(parsed),
        _ => Vec::new(),
    }
}

/// Bytes kept between inputs while resynchronising: enough for any start.
const START_PROBE: usize = 32;

const METHODS: &[&str] =
    &["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE"];

/// Whether a message start appears at some line start of `buf`.
pub fn contains_start(kind: Kind, buf: &[u8]) -> bool {
    find_start(kind, buf).is_some()
}

/// Position of the next plausible message start (at a line start or at 0).
fn find_start(kind: Kind, buf: &[u8]) -> Option<usize> {
    let mut pos = 0;
    while pos < buf.len() {
        let at_line_start = pos == 0 || buf[pos - 1] == b'\n';
        if at_line_start && starts_message(kind, &buf[pos..]) {
            return Some(pos);
        }
        pos += 1;
    }
    None
}

/// Whether `s` begins with a request line (or an HTTP/2 preface) or a status line.
pub fn starts_message(kind: Kind, s: &[u8]) -> bool {
    match kind {
        Kind::Response => {
            s.len() >= 12
                && (s.starts_with(b"HTTP/1.1 ") || s.starts_with(b"HTTP/1.0 "))
                && s[9..12].iter().all(u8::is_ascii_digit)
        }
        Kind::Request => {
            METHODS.iter().any(|m| {
                let m = m.as_bytes();
                s.len() > m.len() + 1
                    && s.starts_with(m)
                    && s[m.len()] == b' '
                    && (s[m.len() + 1] == b'/'
                        || s[m.len() + 1].is_ascii_alphabetic()
                        || s[m.len() + 1] == b'*')
            }) || s.starts_with(PREFACE)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    struct Method(&'static str);

    impl Context for Method {
        fn request_method(&self) -> Option<&str> {
            Some(self.0)
        }
    }

    fn parse_all(kind: Kind, input: &[u8], ctx: &dyn Context) -> Vec<Output> {
        let mut p = Parser::new(kind);
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            pos += p.data(&input[pos..], 1, ctx, &mut out).max(1).min(input.len() - pos);
        }
        p.close(2, true, &mut out);
        out
    }

    fn messages(out: &[Output]) -> Vec<&Message> {
        out.iter().filter_map(|o| if let Output::Message(m) = o { Some(m) } else { None }).collect()
    }

    #[test]
    fn content_length_delimits_the_body() {
        let out = parse_all(
            Kind::Response,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 204 No Content\r\n\r\n",
            &NoContext,
        );
        let m = messages(&out);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].body_size, m[0].body.as_slice()), (5, &b"hello"[..]));
        assert_eq!(m[1].head.status, Some(204));
    }

    #[test]
    fn chunked_bodies_with_extensions_and_trailers() {
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Checksum: 42\r\n\r\n";
        let out = parse_all(Kind::Response, input, &NoContext);
        let m = messages(&out);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].body, b"Wikipedia");
        assert_eq!(m[0].body_size, 9);
        assert_eq!(m[0].trailers, vec![Header::new("X-Checksum", "42")]);
        assert!(m[0].complete());
    }

    #[test]
    fn a_response_to_head_has_no_body() {
        let out = parse_all(
            Kind::Response,
            b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n",
            &Method("HEAD"),
        );
        assert_eq!(messages(&out)[0].body_size, 0);
        assert!(messages(&out)[0].complete());
    }

    #[test]
    fn status_1xx_204_and_304_have_no_body() {
        for status in ["100 Continue", "204 No Content", "304 Not Modified"] {
            let input = format!("HTTP/1.1 {status}\r\nContent-Length: 10\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            let out = parse_all(Kind::Response, input.as_bytes(), &NoContext);
            assert_eq!(messages(&out).len(), 2, "{status}");
        }
    }

    #[test]
    fn a_response_without_length_reads_until_close() {
        let out = parse_all(Kind::Response, b"HTTP/1.0 200 OK\r\n\r\nall of this", &NoContext);
        let m = messages(&out);
        assert_eq!((m[0].body.as_slice(), m[0].complete()), (&b"all of this"[..], true));
    }

    #[test]
    fn a_body_still_open_when_the_capture_ends_is_incomplete() {
        let mut p = Parser::new(Kind::Response);
        let mut out = Vec::new();
        p.data(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 1, &NoContext, &mut out);
        p.close(2, false, &mut out);
        assert_eq!(messages(&out)[0].issues, vec!["capture ended mid-body"]);
    }

    #[test]
    fn a_request_without_length_has_no_body_and_empty_lines_before_it_are_skipped() {
        let out = parse_all(
            Kind::Request,
            b"\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
            &NoContext,
        );
        let m = messages(&out);
        assert_eq!(
            m.iter().map(|m| m.head.target.as_deref()).collect::<Vec<_>>(),
            vec![Some("/a"), Some("/b")]
        );
        assert_eq!(m[0].head.header("host"), Some("h"));
    }

    #[test]
    fn a_gap_in_a_body_is_counted_and_the_next_message_parses() {
        let mut p = Parser::new(Kind::Response);
        let mut out = Vec::new();
        p.data(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab", 1, &NoContext, &mut out);
        p.gap(6, 2, false, &mut out);
        let rest = b"yzHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        let used = p.data(rest, 3, &NoContext, &mut out);
        p.data(&rest[used..], 3, &NoContext, &mut out);
        let m = messages(&out);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].body_size, m[0].issues.clone()), (10, vec!["body partly lost"]));
        assert_eq!(m[1].head.status, Some(404));
    }

    #[test]
    fn a_gap_in_a_head_resynchronises_at_the_next_message() {
        let mut p = Parser::new(Kind::Request);
        let mut out = Vec::new();
        p.data(b"GET /lost HT", 1, &NoContext, &mut out);
        p.gap(10, 2, false, &mut out);
        p.data(b"ost: x\r\n\r\nGET /found HTTP/1.1\r\n\r\n", 3, &NoContext, &mut out);
        let m = messages(&out);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].head.target.as_deref(), Some("/found"));
        assert!(out.iter().any(|o| matches!(o, Output::Skipped { .. })));
    }

    #[test]
    fn a_bad_chunk_size_ends_the_message_and_resynchronises() {
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let out = parse_all(Kind::Response, input, &NoContext);
        let m = messages(&out);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].issues, vec!["bad chunk header"]);
        assert!(m[1].complete());
    }

    #[test]
    fn garbage_before_a_request_is_skipped_when_joining_mid_stream() {
        let mut p = Parser::resyncing(Kind::Request);
        let mut out = Vec::new();
        p.data(
            b"...tail of an upload\r\nPOST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            1,
            &NoContext,
            &mut out,
        );
        let m = messages(&out);
        assert_eq!(m[0].head.method.as_deref(), Some("POST"));
        assert!(matches!(out[0], Output::Skipped { bytes: 22, .. }), "{out:?}");
    }

    #[test]
    fn not_http_at_all_is_skipped_without_messages() {
        let out = parse_all(Kind::Request, &[0xffu8; 300], &NoContext);
        assert!(messages(&out).is_empty());
        assert!(out.iter().any(|o| matches!(o, Output::Skipped { .. })));
    }

    #[test]
    fn an_h2_preface_where_a_request_starts_switches() {
        let mut p = Parser::new(Kind::Request);
        let mut out = Vec::new();
        p.data(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 1, &NoContext, &mut out);
        assert_eq!(out, vec![Output::Switched { offset: 0, replay: vec![] }]);
        assert!(p.switched());
    }

    #[test]
    fn a_101_response_switches_after_its_head() {
        let mut p = Parser::new(Kind::Response);
        let mut out = Vec::new();
        let input = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n\x00\x00\x00\x04";
        p.data(input, 1, &NoContext, &mut out);
        assert!(
            matches!(out.last(), Some(Output::Switched { offset, .. }) if *offset == input.len() - 4)
        );
    }

    #[test]
    fn a_preface_split_across_inputs_is_handed_over_whole() {
        let mut p = Parser::new(Kind::Request);
        let mut out = Vec::new();
        assert_eq!(p.data(b"PRI * HT", 1, &NoContext, &mut out), 8);
        assert!(out.is_empty());
        p.data(b"TP/2.0\r\n\r\nSM\r\n\r\n\x00", 2, &NoContext, &mut out);
        assert_eq!(out, vec![Output::Switched { offset: 0, replay: b"PRI * HT".to_vec() }]);
    }

    #[test]
    fn an_endless_head_is_given_up() {
        let mut input = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..5000 {
            input.extend_from_slice(format!("X-{i}: {}\r\n", "v".repeat(20)).as_bytes());
        }
        let out = parse_all(Kind::Request, &input, &NoContext);
        assert!(messages(&out).is_empty());
        assert!(out.iter().any(|o| matches!(o, Output::Skipped { .. })));
    }

    /// Requests and responses cut into random pieces parse exactly as when
    /// fed whole.
    fn exchange_bytes() -> (Vec<u8>, Vec<u8>) {
        let requests = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloPUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nHEAD /d HTTP/1.1\r\n\r\n".to_vec();
        let responses = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nT: 1\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n".to_vec();
        (requests, responses)
    }

    fn split_parse(kind: Kind, bytes: &[u8], cuts: &[usize]) -> Vec<Output> {
        let mut p = Parser::new(kind);
        let mut out = Vec::new();
        let mut pos = 0;
        let mut cuts = cuts.iter().copied().cycle();
        while pos < bytes.len() {
            let n = cuts.next().unwrap_or(1).clamp(1, bytes.len() - pos);
            let chunk = &bytes[pos..pos + n];
            let mut used = 0;
            while used < chunk.len() {
                used += p.data(&chunk[used..], 1, &NoContext, &mut out);
            }
            pos += n;
        }
        p.close(1, true, &mut out);
        out
    }

    proptest! {
        #[test]
        fn random_splits_parse_the_same(cuts in prop::collection::vec(1usize..40, 1..20)) {
            let (requests, responses) = exchange_bytes();
            for (kind, bytes) in [(Kind::Request, &requests), (Kind::Response, &responses)] {
                let whole = split_parse(kind, bytes, &[bytes.len()]);
                let split = split_parse(kind, bytes, &cuts);
                prop_assert_eq!(messages(&whole), messages(&split));
                prop_assert_eq!(messages(&whole).len(), 4);
            }
        }
    }
}
