//! Reassembly of one direction of a connection from capture rows.
//!
//! Rows carry `seq` (offset in the direction's byte stream), `size` (bytes the
//! syscall moved) and `payload` (the first bytes of them). Chunks arrive in
//! file order, which is nearly but not always stream order (two threads of a
//! target may use one socket), so a small window of early chunks is held back.
//! What the stream never shows (lost events, bytes past `max-payload`, bytes
//! moved by untraced syscalls) comes out as an explicit [`Piece::Gap`], so a
//! parser knows exactly where it lost track and how much it missed.

use std::collections::BTreeMap;

/// A chunk of a direction as recorded.
#[derive(Clone, Copy, Debug)]
pub struct Chunk<'a> {
    pub seq: u64,
    pub size: u64,
    pub payload: &'a [u8],
    /// Wall-clock time of the syscall, ns.
    pub ts: i64,
}

/// Stream-ordered output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    Data {
        bytes: &'a [u8],
        ts: i64,
    },
    /// `len` bytes of the stream were not seen: `cut` when the syscall was
    /// recorded but its payload was cut at `--max-payload`, otherwise lost
    /// (dropped events, or bytes moved by syscalls podtap does not trace).
    Gap {
        len: u64,
        ts: i64,
        cut: bool,
    },
}

/// Chunks held back at most before a missing one is declared a gap.
const WINDOW_CHUNKS: usize = 64;
/// Bytes held back at most.
const WINDOW_BYTES: usize = 4 << 20;

#[derive(Debug)]
struct Held {
    size: u64,
    payload: Vec<u8>,
    ts: i64,
}

/// Puts one direction's chunks in order.
#[derive(Debug, Default)]
pub struct Reassembler {
    /// Offset of the next byte to deliver.
    next: u64,
    held: BTreeMap<u64, Held>,
    held_bytes: usize,
    /// Bytes that arrived twice (overlapping chunks); dropped.
    pub overlaps: u64,
}

impl Reassembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Offset of the next byte to be delivered.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Feeds one chunk; stream-ordered pieces go to `out`.
    pub fn push<'a>(&mut self, chunk: Chunk<'a>, out: &mut impl FnMut(Piece<'_>)) {
        if chunk.seq > self.next {
            self.hold(chunk);
            if self.held.len() > WINDOW_CHUNKS || self.held_bytes > WINDOW_BYTES {
                self.skip_to_held(out);
            }
            return;
        }
        self.deliver(chunk.seq, chunk.size, chunk.payload, chunk.ts, out);
        self.drain_held(out);
    }

    /// Delivers everything held back, with gaps where chunks never came.
    pub fn flush(&mut self, out: &mut impl FnMut(Piece<'_>)) {
        while !self.held.is_empty() {
            self.skip_to_held(out);
        }
    }

    fn hold(&mut self, chunk: Chunk<'_>) {
        self.held_bytes += chunk.payload.len();
        let held = Held { size: chunk.size, payload: chunk.payload.to_vec(), ts: chunk.ts };
        // Two chunks at one offset: keep the longer.
        match self.held.get(&chunk.seq) {
            Some(existing) if existing.size >= chunk.size => self.overlaps += chunk.size,
            _ => {
                self.held.insert(chunk.seq, held);
            }
        }
    }

    /// Declares the bytes before the first held chunk missing and goes on.
    fn skip_to_held(&mut self, out: &mut impl FnMut(Piece<'_>)) {
        let Some((&seq, held)) = self.held.iter().next() else { return };
        if seq > self.next {
            out(Piece::Gap { len: seq - self.next, ts: held.ts, cut: false });
            self.next = seq;
        }
        self.drain_held(out);
    }

    fn drain_held(&mut self, out: &mut impl FnMut(Piece<'_>)) {
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() > self.next {
                break;
            }
            let (seq, held) = entry.remove_entry();
            self.held_bytes -= held.payload.len();
            self.deliver(seq, held.size, &held.payload, held.ts, out);
        }
    }

    /// Delivers a chunk that starts at or before `next`, skipping what was
    /// already delivered.
    fn deliver(
        &mut self,
        seq: u64,
        size: u64,
        payload: &[u8],
        ts: i64,
        out: &mut impl FnMut(Piece<'_>),
    ) {
        let end = seq.saturating_add(size);
        if end <= self.next {
            self.overlaps += size;
            return;
        }
        let skip = self.next - seq;
        self.overlaps += skip;
        let kept = payload.len() as u64;
        if skip < kept {
            out(Piece::Data { bytes: &payload[skip as usize..], ts });
        }
        // Bytes the syscall moved past what was kept.
        let missing_from = skip.max(kept);
        if size > missing_from {
            out(Piece::Gap { len: size - missing_from, ts, cut: true });
        }
        self.next = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Out {
        D(Vec<u8>),
        G(u64),
    }

    fn run(chunks: &[(u64, u64, &[u8])]) -> (Vec<Out>, u64) {
        let mut r = Reassembler::new();
        let mut out = Vec::new();
        let mut sink = |p: Piece<'_>| match p {
            Piece::Data { bytes, .. } => out.push(Out::D(bytes.to_vec())),
            Piece::Gap { len, .. } => out.push(Out::G(len)),
        };
        for &(seq, size, payload) in chunks {
            r.push(Chunk { seq, size, payload, ts: 0 }, &mut sink);
        }
        r.flush(&mut sink);
        (out, r.overlaps)
    }

    #[test]
    fn in_order_chunks_pass_through() {
        let (out, _) = run(&[(0, 3, b"abc"), (3, 2, b"de")]);
        assert_eq!(out, vec![Out::D(b"abc".to_vec()), Out::D(b"de".to_vec())]);
    }

    #[test]
    fn a_short_payload_is_followed_by_a_gap_of_the_rest() {
        let (out, _) = run(&[(0, 10, b"abcd"), (10, 1, b"z")]);
        assert_eq!(out, vec![Out::D(b"abcd".to_vec()), Out::G(6), Out::D(b"z".to_vec())]);
    }

    #[test]
    fn swapped_chunks_are_put_back_in_order() {
        let (out, _) = run(&[(3, 2, b"de"), (0, 3, b"abc")]);
        assert_eq!(out, vec![Out::D(b"abc".to_vec()), Out::D(b"de".to_vec())]);
    }

    #[test]
    fn a_hole_becomes_a_gap_at_the_end() {
        let (out, _) = run(&[(0, 2, b"ab"), (5, 1, b"f")]);
        assert_eq!(out, vec![Out::D(b"ab".to_vec()), Out::G(3), Out::D(b"f".to_vec())]);
    }

    #[test]
    fn a_missing_start_is_a_gap() {
        let (out, _) = run(&[(4, 2, b"ef")]);
        assert_eq!(out, vec![Out::G(4), Out::D(b"ef".to_vec())]);
    }

    #[test]
    fn a_hole_is_declared_once_the_window_is_full() {
        let mut chunks: Vec<(u64, u64, &[u8])> = vec![(0, 1, b"a")];
        for i in 0..=WINDOW_CHUNKS as u64 {
            chunks.push((2 + i, 1, b"x"));
        }
        let mut r = Reassembler::new();
        let mut gaps = 0;
        for &(seq, size, payload) in &chunks {
            r.push(Chunk { seq, size, payload, ts: 0 }, &mut |p| {
                if matches!(p, Piece::Gap { len: 1, .. }) {
                    gaps += 1;
                }
            });
        }
        assert_eq!(gaps, 1, "declared before the end");
        assert_eq!(r.position(), 2 + WINDOW_CHUNKS as u64 + 1);
    }

    #[test]
    fn overlapping_bytes_are_delivered_once() {
        let (out, overlaps) = run(&[(0, 4, b"abcd"), (2, 4, b"cdef"), (0, 2, b"ab")]);
        assert_eq!(out, vec![Out::D(b"abcd".to_vec()), Out::D(b"ef".to_vec())]);
        assert_eq!(overlaps, 4);
    }
}
