//! HTTP/2: follows frames (RFC 9113 §4.1) in one direction of a connection
//! and masks the values of redacted fields in their HPACK header blocks.
//!
//! Frames are walked by their 9-byte headers, which may be cut anywhere by
//! payload boundaries. The payloads of HEADERS, PUSH_PROMISE and
//! CONTINUATION (minus padding and priority fields) form header blocks,
//! which [`BlockMasker`] reads representation by representation while it
//! keeps the dynamic table in step with the peer's, through the same
//! tolerant decoder `analyze` uses. A representation may straddle payloads:
//! its bytes are kept until it is whole (bounded), and the value bytes in
//! each payload are masked as they pass.

use crate::{
    hpack::{self, Decoder, HpackError},
    huffman,
    stream::BodyRanges,
    Counts, Policy, MASK,
};

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Filler for the rest of a header block that cannot be followed: an
/// indexed field with index 0, which every HPACK decoder rejects at once
/// (RFC 7541 §6.1), so nothing after it is taken for a field.
pub const BLOCK_FILLER: u8 = 0x80;

/// Largest representation kept whole across payloads.
const MAX_CARRY: usize = 64 * 1024;
/// Largest frame accepted when looking for frames in a stream joined late
/// (SETTINGS_MAX_FRAME_SIZE can go higher, but rarely does).
const MAX_PLAUSIBLE_FRAME: u32 = 1 << 20;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PRIORITY: u8 = 2;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PUSH_PROMISE: u8 = 5;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;

const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;

/// Whether `buf` starts with frame headers that chain plausibly to its end
/// (or past it): how a stream joined late, or lost, finds frames again.
pub fn plausible_frames(buf: &[u8]) -> bool {
    let mut pos = 0;
    let mut frames = 0;
    while pos + 9 <= buf.len() {
        let h = &buf[pos..pos + 9];
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]);
        let (kind, stream) = (h[3], u32::from_be_bytes([h[5], h[6], h[7], h[8]]));
        let ok = len <= MAX_PLAUSIBLE_FRAME
            && stream & 0x8000_0000 == 0
            && match kind {
                DATA | HEADERS | CONTINUATION => stream != 0,
                PRIORITY => stream != 0 && len == 5,
                RST_STREAM => stream != 0 && len == 4,
                SETTINGS => stream == 0 && len.is_multiple_of(6),
                PUSH_PROMISE => stream != 0 && len >= 4,
                PING => stream == 0 && len == 8,
                GOAWAY => stream == 0 && len >= 8,
                WINDOW_UPDATE => len == 4,
                _ => false,
            };
        if !ok {
            return false;
        }
        frames += 1;
        pos += 9 + len as usize;
    }
    frames > 0 && (pos >= buf.len())
}

/// A representation read as far as the bytes go.
struct Peek {
    /// Its length, once whole.
    end: Option<usize>,
    /// Where its value starts, how long it is and whether it is Huffman-coded.
    value: Option<(usize, usize, bool)>,
    name: Name,
}

enum Name {
    /// An indexed field or a size update: no value of its own.
    None,
    /// Not read yet.
    Pending,
    /// Known; `None` for an entry from before the decoder's knowledge.
    Known(Option<String>),
}

/// Masks header blocks of one direction, with its HPACK state.
#[derive(Debug)]
pub struct BlockMasker {
    decoder: Decoder,
    /// The bytes of the representation in progress (as sent, unmasked).
    carry: Vec<u8>,
    in_block: bool,
    /// The block can no longer be read (lost bytes, a decoding error).
    broken: bool,
    scratch: Vec<u8>,
    /// Whether any name is redacted: without, nothing is masked, not even
    /// what cannot be placed.
    redacting: bool,
}

impl BlockMasker {
    /// `fresh`: the connection was seen from its start, so the dynamic
    /// table is empty.
    pub fn new(fresh: bool, redacting: bool) -> Self {
        Self {
            redacting,
            decoder: if fresh { Decoder::new() } else { Decoder::joining() },
            carry: Vec::new(),
            in_block: false,
            broken: false,
            scratch: Vec::new(),
        }
    }

    /// Bytes of the block were lost: the rest of it is masked.
    pub fn gap(&mut self, counts: &mut Counts) {
        if !self.broken && self.redacting {
            counts.uncertain += 1;
        }
        self.decoder.lost_block();
        self.carry.clear();
        self.broken = true;
        self.in_block = true;
    }

    /// The stream lost its frames: whatever block was open is gone.
    pub fn lost(&mut self) {
        self.decoder.lost_block();
        self.carry.clear();
        self.in_block = false;
        self.broken = false;
    }

    /// A HEADERS or PUSH_PROMISE frame starts a block (one left open
    /// without END_HEADERS is over: a decoder fails there).
    pub fn start_block(&mut self) {
        if self.in_block {
            self.end_block();
        }
        self.in_block = true;
    }

    /// The block ended (END_HEADERS).
    pub fn end_block(&mut self) {
        if !self.carry.is_empty() && !self.broken {
            // It ended inside a representation: a decoder fails there too.
            self.decoder.lost_block();
        }
        self.carry.clear();
        self.in_block = false;
        self.broken = false;
    }

    fn mask_rest(&self, frag: &mut [u8], from: usize, counts: &mut Counts) {
        if self.redacting && from < frag.len() {
            counts.uncertain_bytes += (frag.len() - from) as u64;
            frag[from..].fill(BLOCK_FILLER);
        }
    }

    /// Masks one fragment of a header block in place.
    pub fn fragment(&mut self, frag: &mut [u8], policy: &Policy, counts: &mut Counts) {
        self.in_block = true;
        if self.broken {
            self.mask_rest(frag, 0, counts);
            return;
        }
        let base = self.carry.len();
        self.carry.extend_from_slice(frag);
        let mut pos = 0;
        while pos < self.carry.len() {
            let peek = match peek(&self.carry[pos..], &self.decoder) {
                Ok(peek) => peek,
                Err(_) => {
                    self.fail(frag, pos.max(base) - base, counts);
                    return;
                }
            };
            if let Some((start, len, huff)) = peek.value {
                // A name from an entry inserted before the capture may be a
                // redacted one: its value is masked, and counted as such.
                // The rest of the block stays readable: every other name
                // is known exactly (static, literal, or an entry seen).
                let (redact, unsure) = match &peek.name {
                    Name::Known(Some(name)) => (policy.redacts(name.as_bytes()), false),
                    Name::Known(None) => (!policy.names.is_empty(), true),
                    _ => (false, false),
                };
                if redact {
                    let (vs, ve) = (pos + start, pos + start + len);
                    self.mask_value(frag, base, vs, ve, huff);
                    if peek.end.is_some() {
                        if unsure {
                            counts.uncertain += 1;
                            counts.uncertain_bytes += len as u64;
                        } else {
                            counts.values += 1;
                        }
                    }
                }
            }
            let Some(end) = peek.end else { break };
            let mut at = pos;
            if self.decoder.field(&self.carry, &mut at).is_err() || at != pos + end {
                self.fail(frag, pos.max(base) - base, counts);
                return;
            }
            pos = at;
        }
        self.carry.drain(..pos);
        if self.carry.len() > MAX_CARRY {
            let from = frag.len() - self.carry.len().min(frag.len());
            self.fail(frag, from, counts);
        }
    }

    /// The block cannot be read on: masked from `from` (in `frag`) to its end.
    fn fail(&mut self, frag: &mut [u8], from: usize, counts: &mut Counts) {
        counts.uncertain += u64::from(self.redacting);
        self.mask_rest(frag, from, counts);
        self.decoder.lost_block();
        self.carry.clear();
        self.broken = true;
    }

    /// Masks the part of the value at `vs..ve` (carry offsets) that lies in
    /// this fragment, which starts at carry offset `base`.
    fn mask_value(&mut self, frag: &mut [u8], base: usize, vs: usize, ve: usize, huff: bool) {
        let end = self.carry.len();
        let (from, to) = (vs.max(base), ve.min(end));
        if from >= to {
            return;
        }
        let part = &mut frag[from - base..to - base];
        if !huff {
            part.fill(MASK);
            return;
        }
        if vs >= base && ve <= end {
            // The whole value is here: keep its decoded length as well.
            let symbols = huffman::decoded_len(&self.carry[vs..ve], &mut self.scratch);
            if let Some(fill) =
                symbols.and_then(|n| huffman::filler(ve - vs, n, &self.carry[vs..ve]))
            {
                part.copy_from_slice(&fill);
                return;
            }
        }
        part.fill(huffman::STAR_BYTE);
    }
}

/// Reads the representation at the start of `bytes` as far as they go.
fn peek(bytes: &[u8], decoder: &Decoder) -> Result<Peek, HpackError> {
    let truncated = |e: HpackError| e == HpackError::Truncated;
    let first = bytes[0];
    let mut pos = 0;
    if first & 0x80 != 0 || first & 0xe0 == 0x20 {
        let prefix = if first & 0x80 != 0 { 7 } else { 5 };
        return match hpack::integer(bytes, &mut pos, prefix) {
            Ok(_) => Ok(Peek { end: Some(pos), value: None, name: Name::None }),
            Err(e) if truncated(e) => Ok(Peek { end: None, value: None, name: Name::None }),
            Err(e) => Err(e),
        };
    }
    let prefix = if first & 0xc0 == 0x40 { 6 } else { 4 };
    let pending = Ok(Peek { end: None, value: None, name: Name::Pending });
    let index = match hpack::integer(bytes, &mut pos, prefix) {
        Ok(i) => i,
        Err(e) if truncated(e) => return pending,
        Err(e) => return Err(e),
    };
    let name = if index == 0 {
        match hpack::string(bytes, &mut pos) {
            Ok(name) => Some(name),
            Err(e) if truncated(e) => return pending,
            Err(e) => return Err(e),
        }
    } else {
        decoder.name_at(index)?
    };
    let Some(&flag) = bytes.get(pos) else {
        return Ok(Peek { end: None, value: None, name: Name::Known(name) });
    };
    let len = match hpack::integer(bytes, &mut pos, 7) {
        Ok(len) => len,
        Err(e) if truncated(e) => {
            return Ok(Peek { end: None, value: None, name: Name::Known(name) })
        }
        Err(e) => return Err(e),
    };
    if len > hpack::MAX_STRING {
        return Err(HpackError::StringTooLong);
    }
    let end = (pos + len <= bytes.len()).then_some(pos + len);
    Ok(Peek { end, value: Some((pos, len, flag & 0x80 != 0)), name: Name::Known(name) })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Bytes of the client preface still to come.
    Preface(usize),
    Header {
        buf: [u8; 9],
        have: usize,
    },
    Payload(Frame),
    /// Frames are lost: until a payload starts with plausible frames.
    Lost,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Frame {
    len: usize,
    kind: u8,
    flags: u8,
    /// Bytes of the payload read so far.
    off: usize,
    /// Bytes before the header block fragment (pad length, priority,
    /// promised stream id), and the padding after it once known.
    pre: usize,
    pad: Option<usize>,
}

impl Frame {
    fn parse(h: &[u8; 9]) -> Self {
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
        let (kind, flags) = (h[3], h[4]);
        let padded = flags & PADDED != 0 && matches!(kind, HEADERS | PUSH_PROMISE | DATA);
        let pre = match kind {
            HEADERS => usize::from(padded) + if flags & PRIORITY_FLAG != 0 { 5 } else { 0 },
            PUSH_PROMISE => usize::from(padded) + 4,
            _ => 0,
        };
        Frame { len, kind, flags, off: 0, pre, pad: (!padded).then_some(0) }
    }

    fn carries_block(&self) -> bool {
        matches!(self.kind, HEADERS | PUSH_PROMISE | CONTINUATION)
    }
}

/// The masking state of one direction of an HTTP/2 connection.
#[derive(Debug)]
pub struct Http2 {
    state: State,
    blocks: BlockMasker,
}

/// The frames could not be followed on from this offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lost(pub usize);

impl Http2 {
    /// A stream at a frame boundary, after `preface` bytes of the client
    /// preface; `fresh` if the connection was seen from its start;
    /// `redacting` if any name is masked.
    pub fn new(preface: usize, fresh: bool, redacting: bool) -> Self {
        let state = if preface > 0 {
            State::Preface(preface)
        } else {
            State::Header { buf: [0; 9], have: 0 }
        };
        Self { state, blocks: BlockMasker::new(fresh, redacting) }
    }

    /// A stream lost earlier found frames again at a payload's start.
    pub fn resync(&mut self) {
        self.blocks.lost();
        self.state = State::Header { buf: [0; 9], have: 0 };
    }

    pub fn is_lost(&self) -> bool {
        self.state == State::Lost
    }

    /// `n` bytes that never reached the capture come next.
    pub fn gap(&mut self, n: u64, counts: &mut Counts) {
        let State::Payload(mut frame) = self.state else {
            self.lose();
            return;
        };
        let left = (frame.len - frame.off) as u64;
        if n > left {
            self.lose();
            return;
        }
        let n = n as usize;
        if frame.carries_block() {
            let block_end = frame.len - frame.pad.unwrap_or(0);
            if frame.pad.is_none() || (frame.off + n > frame.pre && frame.off < block_end) {
                self.blocks.gap(counts);
            }
        }
        if frame.pad.is_none() {
            // The pad length itself was lost: the rest of the payload is
            // taken for the (masked) block.
            frame.pad = Some(0);
        }
        frame.off += n;
        self.state = State::Payload(frame);
        if frame.off == frame.len {
            self.end_frame(frame);
        }
    }

    fn lose(&mut self) {
        self.blocks.lost();
        self.state = State::Lost;
    }

    fn end_frame(&mut self, frame: Frame) {
        if frame.carries_block() && frame.flags & END_HEADERS != 0 {
            self.blocks.end_block();
        }
        self.state = State::Header { buf: [0; 9], have: 0 };
    }

    /// Masks one payload's bytes in place; DATA payloads are added to
    /// `bodies` (offsets plus `base`).
    pub fn feed(
        &mut self,
        buf: &mut [u8],
        base: usize,
        policy: &Policy,
        counts: &mut Counts,
        bodies: &mut BodyRanges,
    ) -> Result<(), Lost> {
        let mut i = 0;
        while i < buf.len() {
            match &mut self.state {
                State::Lost => return Err(Lost(i)),
                State::Preface(left) => {
                    let n = (*left).min(buf.len() - i);
                    let want = &PREFACE[PREFACE.len() - *left..][..n];
                    if &buf[i..i + n] != want {
                        self.lose();
                        return Err(Lost(i));
                    }
                    *left -= n;
                    i += n;
                    if *left == 0 {
                        self.state = State::Header { buf: [0; 9], have: 0 };
                    }
                }
                State::Header { buf: h, have } => {
                    let n = (9 - *have).min(buf.len() - i);
                    h[*have..*have + n].copy_from_slice(&buf[i..i + n]);
                    *have += n;
                    i += n;
                    if *have == 9 {
                        let frame = Frame::parse(h);
                        if frame.carries_block() && frame.pre > frame.len {
                            self.lose();
                            return Err(Lost(i));
                        }
                        if frame.kind == CONTINUATION && !self.blocks.in_block {
                            // A block whose start was never seen.
                            self.blocks.gap(counts);
                        } else if matches!(frame.kind, HEADERS | PUSH_PROMISE) {
                            self.blocks.start_block();
                        }
                        self.state = State::Payload(frame);
                        if frame.len == 0 {
                            self.end_frame(frame);
                        }
                    }
                }
                State::Payload(frame) => {
                    let mut frame = *frame;
                    let avail = buf.len() - i;
                    if frame.kind == DATA {
                        let n = (frame.len - frame.off).min(avail);
                        bodies.push(base + i, base + i + n);
                        frame.off += n;
                        i += n;
                    } else if !frame.carries_block() {
                        let n = (frame.len - frame.off).min(avail);
                        frame.off += n;
                        i += n;
                    } else if frame.pad.is_none() {
                        // The first byte of a padded frame: the pad length.
                        let pad = buf[i] as usize;
                        if frame.pre + pad > frame.len {
                            self.lose();
                            return Err(Lost(i));
                        }
                        frame.pad = Some(pad);
                        frame.off += 1;
                        i += 1;
                    } else if frame.off < frame.pre {
                        let n = (frame.pre - frame.off).min(avail);
                        frame.off += n;
                        i += n;
                    } else {
                        let block_end = frame.len - frame.pad.unwrap_or(0);
                        if frame.off < block_end {
                            let n = (block_end - frame.off).min(avail);
                            self.blocks.fragment(&mut buf[i..i + n], policy, counts);
                            frame.off += n;
                            i += n;
                        } else {
                            let n = (frame.len - frame.off).min(avail);
                            frame.off += n;
                            i += n;
                        }
                    }
                    self.state = State::Payload(frame);
                    if frame.off == frame.len {
                        self.end_frame(frame);
                    }
                }
            }
        }
        Ok(())
    }
}
