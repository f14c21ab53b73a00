//! HTTP/2 framing (RFC 9113 §4, §6) for one direction of a connection.
//!
//! A pure, incremental reader: bytes and gaps go in, frames come out. DATA
//! payloads are not buffered beyond what a body prefix needs; other payloads
//! are (they are small: headers, settings). Padding is removed. After a gap
//! that is not inside a DATA payload the reader looks for the next run of
//! well-formed frame headers and says how much it skipped.

/// Frame header length.
pub const HEADER_LEN: usize = 9;
/// Largest payload accepted for frames that are buffered whole.
const MAX_BUFFERED: u32 = 1 << 20;
/// Largest frame length believed at all (2^24 - 1 is the protocol maximum).
const MAX_LEN: u32 = (1 << 24) - 1;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const FLAG_END_STREAM: u8 = 0x1;
pub const FLAG_ACK: u8 = 0x1;
pub const FLAG_END_HEADERS: u8 = 0x4;
pub const FLAG_PADDED: u8 = 0x8;
pub const FLAG_PRIORITY: u8 = 0x20;

/// A frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl FrameHeader {
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Self {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        })
    }

    /// Whether this could be a real frame header (used to find frames in
    /// bytes of unknown alignment): a known type with a length and stream
    /// that type allows.
    pub fn plausible(&self) -> bool {
        let len = self.len;
        let s = self.stream;
        match self.kind {
            DATA | HEADERS | CONTINUATION => s != 0 && len <= MAX_BUFFERED,
            PRIORITY => s != 0 && len == 5,
            RST_STREAM => s != 0 && len == 4,
            SETTINGS => s == 0 && len.is_multiple_of(6) && len <= 600,
            PUSH_PROMISE => s != 0 && (4..=MAX_BUFFERED).contains(&len),
            PING => s == 0 && len == 8,
            GOAWAY => s == 0 && (8..=MAX_BUFFERED).contains(&len),
            WINDOW_UPDATE => len == 4,
            _ => false,
        }
    }
}

/// Whether `bytes` begin with at least one plausible frame and nothing
/// implausible follows it within `bytes`.
pub fn looks_like_frames(bytes: &[u8]) -> bool {
    let mut pos = 0;
    let mut frames = 0;
    while let Some(h) = FrameHeader::parse(&bytes[pos..]) {
        if !h.plausible() {
            return false;
        }
        frames += 1;
        pos += HEADER_LEN + h.len as usize;
        if pos >= bytes.len() {
            break;
        }
    }
    frames > 0
}

/// A frame as read. For DATA, `payload` holds at most the bytes the caller
/// asked to keep and `data_len` the whole length (padding removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub header: FrameHeader,
    /// Payload with padding (and HEADERS priority fields) removed.
    pub payload: Vec<u8>,
    /// DATA: bytes of data in the frame, padding excluded.
    pub data_len: u64,
    /// DATA bytes not seen (gaps).
    pub data_unseen: u64,
    /// Some unseen bytes were lost, not just cut at `--max-payload`.
    pub data_lost: bool,
    /// HEADERS with the PRIORITY flag: the stream's weight (1–256).
    pub weight: Option<u16>,
    pub start_ts: i64,
    pub end_ts: i64,
}

/// What the reader produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Frame(Frame),
    /// Bytes skipped to find frames again (after a gap or garbage); frames
    /// in them may have been lost.
    Skipped {
        bytes: u64,
    },
}

#[derive(Clone, Debug)]
enum State {
    /// Expecting the client preface first (`left` bytes of it to go).
    Preface {
        left: usize,
    },
    Header(Vec<u8>),
    Payload {
        header: FrameHeader,
        buf: Vec<u8>,
        left: u32,
        unseen: u64,
        lost: bool,
        start_ts: i64,
    },
    /// Lost alignment: scanning for frames.
    Lost(Vec<u8>),
}

/// Reads the frames of one direction.
#[derive(Clone, Debug)]
pub struct Reader {
    state: State,
    /// DATA bytes kept per frame.
    keep_data: usize,
    header_ts: i64,
}

const PREFACE_LEN: usize = 24;

impl Reader {
    /// A reader at a frame boundary; `preface` when the client preface comes first.
    pub fn new(preface: bool, keep_data: usize) -> Self {
        let state =
            if preface { State::Preface { left: PREFACE_LEN } } else { State::Header(Vec::new()) };
        Self { state, keep_data, header_ts: 0 }
    }

    /// A reader that must first find frame alignment.
    pub fn lost(keep_data: usize) -> Self {
        Self { state: State::Lost(Vec::new()), keep_data, header_ts: 0 }
    }

    pub fn data(&mut self, mut input: &[u8], ts: i64, out: &mut Vec<Output>) {
        while !input.is_empty() {
            let used = self.step(input, ts, out);
            input = &input[used..];
        }
    }

    /// `len` bytes were not seen. Inside a DATA payload they are counted;
    /// anywhere else alignment is lost.
    pub fn gap(&mut self, len: u64, ts: i64, cut: bool, out: &mut Vec<Output>) {
        match &mut self.state {
            State::Payload { header, left, unseen, lost, .. }
                if header.kind == DATA && len <= u64::from(*left) =>
            {
                *left -= len as u32;
                *unseen += len;
                *lost |= !cut;
                if *left == 0 {
                    self.finish(ts, out);
                }
            }
            State::Lost(buf) => buf.clear(),
            _ => {
                out.push(Output::Skipped { bytes: len });
                self.state = State::Lost(Vec::new());
            }
        }
    }

    fn step(&mut self, input: &[u8], ts: i64, out: &mut Vec<Output>) -> usize {
        match &mut self.state {
            State::Preface { left } => {
                let n = (*left).min(input.len());
                *left -= n;
                if *left == 0 {
                    self.state = State::Header(Vec::new());
                }
                n
            }
            State::Header(buf) => {
                if buf.is_empty() {
                    self.header_ts = ts;
                }
                let n = (HEADER_LEN - buf.len()).min(input.len());
                buf.extend_from_slice(&input[..n]);
                if buf.len() == HEADER_LEN {
                    let Some(header) = FrameHeader::parse(buf) else { return n };
                    if header.len > MAX_LEN || (header.kind != DATA && header.len > MAX_BUFFERED) {
                        out.push(Output::Skipped { bytes: HEADER_LEN as u64 });
                        self.state = State::Lost(Vec::new());
                        return n;
                    }
                    self.state = State::Payload {
                        header,
                        buf: Vec::new(),
                        left: header.len,
                        unseen: 0,
                        lost: false,
                        start_ts: self.header_ts,
                    };
                    if header.len == 0 {
                        self.finish(ts, out);
                    }
                }
                n
            }
            State::Payload { header, buf, left, .. } => {
                let n = (*left as usize).min(input.len());
                let keep = if header.kind == DATA { self.keep_data + 256 } else { usize::MAX };
                let room = keep.saturating_sub(buf.len()).min(n);
                buf.extend_from_slice(&input[..room]);
                *left -= n as u32;
                if *left == 0 {
                    self.finish(ts, out);
                }
                n
            }
            State::Lost(tail) => {
                let carried = tail.len();
                let mut window = std::mem::take(tail);
                window.extend_from_slice(input);
                match find_alignment(&window) {
                    Some(pos) => {
                        if pos > 0 {
                            out.push(Output::Skipped { bytes: pos as u64 });
                        }
                        self.state = State::Header(Vec::new());
                        if pos < carried {
                            // The frame began in the carried bytes: replay them.
                            let replay = window[pos..carried].to_vec();
                            self.data(&replay, ts, out);
                            0
                        } else {
                            pos - carried
                        }
                    }
                    None => {
                        let keep_from = window.len().saturating_sub(64);
                        if keep_from > 0 {
                            out.push(Output::Skipped { bytes: keep_from as u64 });
                        }
                        self.state = State::Lost(window[keep_from..].to_vec());
                        input.len()
                    }
                }
            }
        }
    }

    fn finish(&mut self, ts: i64, out: &mut Vec<Output>) {
        let State::Payload { header, buf, unseen, lost, start_ts, .. } =
            std::mem::replace(&mut self.state, State::Header(Vec::new()))
        else {
            return;
        };
        let mut frame = Frame {
            header,
            payload: buf,
            data_len: 0,
            data_unseen: unseen,
            data_lost: lost,
            weight: None,
            start_ts,
            end_ts: ts,
        };
        if strip(&mut frame, self.keep_data) {
            out.push(Output::Frame(frame));
        } else {
            // Padding or priority fields longer than the frame: garbage.
            out.push(Output::Skipped { bytes: (HEADER_LEN as u64) + u64::from(header.len) });
        }
    }
}

/// Removes padding and priority fields; sets `data_len`. False if malformed.
fn strip(frame: &mut Frame, keep_data: usize) -> bool {
    let h = frame.header;
    let total = u64::from(h.len);
    let mut skip_front = 0usize;
    let mut pad = 0u64;
    if matches!(h.kind, DATA | HEADERS | PUSH_PROMISE) && h.flags & FLAG_PADDED != 0 {
        let Some(&p) = frame.payload.first() else { return false };
        pad = u64::from(p);
        skip_front = 1;
    }
    if h.kind == HEADERS && h.flags & FLAG_PRIORITY != 0 {
        // Stream dependency (4 bytes), then the weight minus one (RFC 9113 §6.2).
        frame.weight = frame.payload.get(skip_front + 4).map(|w| u16::from(*w) + 1);
        skip_front += 5;
    }
    if skip_front as u64 + pad > total {
        return false;
    }
    if h.kind == DATA {
        frame.data_len = total - skip_front as u64 - pad;
        let have = frame.payload.len().saturating_sub(skip_front);
        let end = skip_front + have.min(frame.data_len as usize).min(keep_data);
        frame.payload = frame.payload.get(skip_front..end).unwrap_or_default().to_vec();
        // Unseen bytes may have fallen in the padding; never count more than the data.
        frame.data_unseen = frame.data_unseen.min(frame.data_len);
        return true;
    }
    let end = frame.payload.len().saturating_sub(pad as usize);
    if skip_front > end {
        return false;
    }
    frame.payload = frame.payload[skip_front..end].to_vec();
    true
}

/// First offset at which two plausible frame headers follow each other (or
/// one that reaches the end of `buf`).
fn find_alignment(buf: &[u8]) -> Option<usize> {
    (0..buf.len()).find(|&pos| {
        let Some(h) = FrameHeader::parse(&buf[pos..]) else { return false };
        if !h.plausible() {
            return false;
        }
        let next = pos + HEADER_LEN + h.len as usize;
        if next + HEADER_LEN > buf.len() {
            // Only accept a lone header when it is at the very start of what
            // arrived: syscalls mostly carry whole frames.
            return pos == 0;
        }
        FrameHeader::parse(&buf[next..]).is_some_and(|n| n.plausible())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut out = len.to_be_bytes()[1..].to_vec();
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn frames(bytes: &[u8]) -> Vec<Frame> {
        let mut r = Reader::new(false, 1024);
        let mut out = Vec::new();
        r.data(bytes, 1, &mut out);
        out.into_iter()
            .filter_map(|o| match o {
                Output::Frame(f) => Some(f),
                Output::Skipped { .. } => None,
            })
            .collect()
    }

    #[test]
    fn frames_split_anywhere_read_the_same() {
        let bytes =
            [frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]), frame(DATA, 1, 1, b"hello")].concat();
        let whole = frames(&bytes);
        for cut in 1..bytes.len() {
            let mut r = Reader::new(false, 1024);
            let mut out = Vec::new();
            r.data(&bytes[..cut], 1, &mut out);
            r.data(&bytes[cut..], 1, &mut out);
            let split: Vec<_> = out
                .into_iter()
                .filter_map(|o| if let Output::Frame(f) = o { Some(f) } else { None })
                .collect();
            assert_eq!(split, whole, "cut at {cut}");
        }
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[1].payload, b"hello");
        assert_eq!(whole[1].data_len, 5);
    }

    #[test]
    fn the_preface_is_skipped() {
        let bytes =
            [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), frame(PING, 0, 0, &[0; 8])].concat();
        let mut r = Reader::new(true, 0);
        let mut out = Vec::new();
        r.data(&bytes, 1, &mut out);
        assert!(matches!(&out[..], [Output::Frame(f)] if f.header.kind == PING));
    }

    #[test]
    fn padding_is_removed_from_data_and_headers() {
        let data = frame(DATA, FLAG_PADDED, 1, &[3, b'a', b'b', 0, 0, 0]);
        let f = &frames(&data)[0];
        assert_eq!((f.payload.as_slice(), f.data_len), (&b"ab"[..], 2));
        let headers =
            frame(HEADERS, FLAG_PADDED | FLAG_PRIORITY, 1, &[2, 0, 0, 0, 0, 16, 0x82, 0, 0]);
        assert_eq!(frames(&headers)[0].payload, vec![0x82]);
        // The weight byte (16) is the weight minus one.
        assert_eq!(frames(&headers)[0].weight, Some(17));
    }

    #[test]
    fn padding_longer_than_the_frame_is_skipped() {
        let bad = frame(DATA, FLAG_PADDED, 1, &[9, b'a']);
        let mut r = Reader::new(false, 16);
        let mut out = Vec::new();
        r.data(&bad, 1, &mut out);
        assert_eq!(out, vec![Output::Skipped { bytes: 11 }]);
    }

    #[test]
    fn a_gap_inside_data_is_counted_and_reading_goes_on() {
        let data = frame(DATA, 0, 1, &[7; 100]);
        let ping = frame(PING, 0, 0, &[0; 8]);
        let mut r = Reader::new(false, 16);
        let mut out = Vec::new();
        r.data(&data[..50], 1, &mut out);
        r.gap(40, 2, true, &mut out);
        r.data(&data[90..], 3, &mut out);
        r.data(&ping, 4, &mut out);
        match &out[..] {
            [Output::Frame(d), Output::Frame(p)] => {
                assert_eq!((d.data_len, d.data_unseen, d.payload.len()), (100, 40, 16));
                assert_eq!(p.header.kind, PING);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn after_a_gap_in_a_header_frames_are_found_again() {
        let a = frame(HEADERS, FLAG_END_HEADERS, 1, &[0x82; 10]);
        let b = frame(DATA, 0, 1, b"x");
        let c = frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]);
        let mut r = Reader::new(false, 16);
        let mut out = Vec::new();
        r.data(&a[..5], 1, &mut out);
        r.gap(3, 2, false, &mut out);
        r.data(&[b.clone(), c.clone()].concat(), 3, &mut out);
        let kinds: Vec<u8> = out
            .iter()
            .filter_map(|o| if let Output::Frame(f) = o { Some(f.header.kind) } else { None })
            .collect();
        assert_eq!(kinds, vec![DATA, WINDOW_UPDATE]);
        assert!(out.iter().any(|o| matches!(o, Output::Skipped { .. })));
    }

    #[test]
    fn frame_detection_accepts_frames_and_rejects_text() {
        assert!(looks_like_frames(&frame(SETTINGS, 0, 0, &[])));
        assert!(looks_like_frames(
            &[frame(HEADERS, 4, 1, &[0x82]), frame(DATA, 1, 1, b"x")].concat()
        ));
        assert!(!looks_like_frames(b"GET / HTTP/1.1\r\n"));
        assert!(!looks_like_frames(b""));
    }
}
