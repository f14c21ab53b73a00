//! Header blocks read from Go gRPC processes by `capture`'s uprobes
//! (`h2_headers` rows), merged into the streams decoded from the wire.
//!
//! On a connection opened before the capture, HPACK fields that refer to the
//! dynamic table cannot be decoded from the wire; grpc-go had them decoded in
//! memory, and the uprobes kept them. A stream's blocks are matched in order
//! per direction: the first non-informational block is the headers, a later
//! one the trailers, exactly as the wire decoder files them. Where the wire
//! block is whole too, both must say the same: a difference is counted (it is
//! a decoder or a capture bug) and the wire's version is kept.
//!
//! The uprobe row for a block a target *receives* follows the syscall that
//! read it, so a stream may be decoded from the wire before its last uprobe
//! row arrives. Streams of connections with uprobe rows are therefore held
//! until their blocks have caught up with the wire's, or for [`HOLD_NS`] of
//! capture time.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
};

use super::{Side, Stream};
use crate::{
    exchange::{self, ConnInfo, Exchange},
    protocol::{header, Dir, Header, Role},
};

/// How long (capture time) a decoded stream waits for its uprobe rows.
pub const HOLD_NS: i64 = 1_000_000_000;
/// Streams with blocks but no decoded stream kept per connection; beyond it
/// the oldest are given up (and counted): a connection the wire cannot
/// decode must not pile them up for its whole life.
const MAX_WAITING_STREAMS: usize = 10_000;

/// Where an exchange's headers came from (`headers_source`).
pub mod source {
    /// Decoded from the wire only.
    pub const WIRE: &str = "wire";
    /// At least one block from the uprobes, which the wire could not give.
    pub const UPROBE: &str = "uprobe";
    /// From the wire, and the uprobes said the same.
    pub const BOTH: &str = "both";
}

/// One header block from an `h2_headers` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub fields: Vec<Header>,
    pub end_stream: bool,
    /// Not every field, or not every byte of one, was kept.
    pub truncated: bool,
}

/// What merging found, for the summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Blocks read from `h2_headers` rows.
    pub blocks: u64,
    /// Blocks the wire lacked or could not decode, filled from the uprobes.
    pub filled: u64,
    /// Blocks both sources had whole, and agreed on.
    pub agreed: u64,
    /// Blocks both sources had whole, and disagreed on.
    pub disagreed: u64,
    /// Blocks whose stream was never decoded from the wire.
    pub unmatched: u64,
    /// Blocks `capture` dropped because what the probes read failed its
    /// checks (the capture's `podtap.rejected_header_blocks`).
    pub rejected: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.blocks += other.blocks;
        self.filled += other.filled;
        self.agreed += other.agreed;
        self.disagreed += other.disagreed;
        self.unmatched += other.unmatched;
        self.rejected += other.rejected;
    }
}

/// A stream decoded from the wire, waiting for its uprobe blocks.
pub struct Held {
    pub stream: Box<Stream>,
    pub role: Role,
    pub grpc: bool,
    release_at: i64,
}

impl Held {
    /// The exchange of the (merged) stream.
    pub fn into_exchange(self, conn: Arc<ConnInfo>) -> Exchange {
        // Merged headers may tell gRPC where the wire alone could not.
        let grpc = self.grpc || exchange::is_grpc(&self.stream);
        exchange::from_http2(*self.stream, conn, self.role, grpc)
    }
}

/// The uprobe side of one connection.
#[derive(Default)]
pub struct GoHeaders {
    /// Blocks by stream id, per direction, in arrival order.
    blocks: BTreeMap<u32, [Vec<Block>; 2]>,
    held: VecDeque<Held>,
    pub counts: Counts,
}

impl GoHeaders {
    /// Files a block read by the uprobes. Returns the held stream it
    /// completes, merged, if any.
    pub fn add(&mut self, stream_id: u32, dir: Dir, block: Block) -> Option<Held> {
        self.counts.blocks += 1;
        self.blocks.entry(stream_id).or_default()[dir as usize].push(block);
        while self.blocks.len() > MAX_WAITING_STREAMS {
            if let Some((_, old)) = self.blocks.pop_first() {
                self.counts.unmatched += (old[0].len() + old[1].len()) as u64;
            }
        }
        let at = self.held.iter().position(|h| h.stream.id == stream_id)?;
        if !self.caught_up(&self.held[at].stream) {
            return None;
        }
        let held = self.held.remove(at)?;
        Some(self.merge(held))
    }

    /// Takes a stream decoded from the wire: merged at once when its blocks
    /// are all here, held otherwise.
    pub fn stream(&mut self, stream: Box<Stream>, role: Role, grpc: bool) -> Option<Held> {
        let end = stream.sides.iter().map(|s| s.end_ts).max().unwrap_or(0);
        let held = Held { stream, role, grpc, release_at: end + HOLD_NS };
        if self.caught_up(&held.stream) {
            return Some(self.merge(held));
        }
        self.held.push_back(held);
        None
    }

    /// Held streams whose time is up at capture time `now` (all of them
    /// when `now` is `None`), merged with what arrived.
    pub fn release(&mut self, now: Option<i64>) -> Vec<Held> {
        let mut out = Vec::new();
        while let Some(front) = self.held.front() {
            if now.is_some_and(|now| front.release_at > now) {
                break;
            }
            if let Some(held) = self.held.pop_front() {
                out.push(self.merge(held));
            }
        }
        out
    }

    /// The connection ended: every held stream comes out, and blocks left
    /// without a stream are counted.
    pub fn finish(&mut self) -> Vec<Held> {
        let out = self.release(None);
        self.counts.unmatched +=
            self.blocks.values().map(|b| (b[0].len() + b[1].len()) as u64).sum::<u64>();
        self.blocks.clear();
        out
    }

    /// Whether the uprobes have delivered at least as many blocks as the
    /// wire did, in both directions.
    fn caught_up(&self, stream: &Stream) -> bool {
        let have = self.blocks.get(&stream.id);
        stream.sides.iter().enumerate().all(|(d, side)| {
            let wire = usize::from(side.headers.is_some()) + usize::from(side.trailers.is_some());
            have.map_or(0, |b| b[d].len()) >= wire
        })
    }

    fn merge(&mut self, mut held: Held) -> Held {
        let blocks = self.blocks.remove(&held.stream.id).unwrap_or_default();
        let mut from_uprobe = false;
        let mut confirmed = false;
        for (side, blocks) in held.stream.sides.iter_mut().zip(blocks) {
            let (headers, trailers) = split(blocks);
            for (wire, block) in [(&mut side.headers, headers), (&mut side.trailers, trailers)] {
                match merge_block(wire, block) {
                    Merged::Filled => {
                        from_uprobe = true;
                        self.counts.filled += 1;
                    }
                    Merged::Agreed => {
                        confirmed = true;
                        self.counts.agreed += 1;
                    }
                    Merged::Disagreed => self.counts.disagreed += 1,
                    Merged::WireOnly => {}
                }
            }
            recount_unknown(side);
        }
        held.stream.headers_source = Some(if from_uprobe {
            source::UPROBE
        } else if confirmed {
            source::BOTH
        } else {
            source::WIRE
        });
        held
    }
}

/// A side's blocks as the wire decoder files them: the first block that is
/// not informational (1xx) is the headers, the last later one the trailers.
fn split(blocks: Vec<Block>) -> (Option<Block>, Option<Block>) {
    let mut headers = None;
    let mut trailers = None;
    for block in blocks {
        if headers.is_none() {
            let informational = header(&block.fields, ":status")
                .and_then(|s| s.parse::<u16>().ok())
                .is_some_and(|s| (100..200).contains(&s));
            if !informational {
                headers = Some(block);
            }
        } else {
            trailers = Some(block);
        }
    }
    (headers, trailers)
}

enum Merged {
    Filled,
    Agreed,
    Disagreed,
    WireOnly,
}

fn known(fields: &[Header]) -> bool {
    fields.iter().all(|h| h.name != "?" && h.value.is_some())
}

fn merge_block(wire: &mut Option<Vec<Header>>, block: Option<Block>) -> Merged {
    let Some(block) = block else { return Merged::WireOnly };
    match wire {
        Some(fields) if known(fields) => {
            if block.truncated {
                // The uprobe kept less than the wire: nothing to compare.
                Merged::WireOnly
            } else if *fields == block.fields {
                Merged::Agreed
            } else {
                Merged::Disagreed
            }
        }
        _ => {
            *wire = Some(block.fields);
            Merged::Filled
        }
    }
}

/// A side's count of fields HPACK could not decode, after merging.
fn recount_unknown(side: &mut Side) {
    let unknown = |h: &Option<Vec<Header>>| {
        h.as_deref().map_or(0, |f| f.iter().filter(|h| h.name == "?" || h.value.is_none()).count())
    };
    side.unknown_fields = (unknown(&side.headers) + unknown(&side.trailers)) as u32;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, value: &str) -> Header {
        Header::new(name, value)
    }

    fn unknown() -> Header {
        Header { name: "?".into(), value: None }
    }

    fn block(fields: Vec<Header>, end_stream: bool) -> Block {
        Block { fields, end_stream, truncated: false }
    }

    /// A client's stream as a joined connection decodes it: the request
    /// path and the trailers' fields refer to HPACK state not seen.
    fn joined_client_stream() -> Box<Stream> {
        let mut s = Stream::new(7);
        let req = &mut s.sides[Dir::Egress as usize];
        req.headers = Some(vec![h(":method", "POST"), unknown()]);
        req.unknown_fields = 1;
        req.end_ts = 10;
        let resp = &mut s.sides[Dir::Ingress as usize];
        resp.headers = Some(vec![h(":status", "200")]);
        resp.trailers = Some(vec![unknown(), unknown()]);
        resp.unknown_fields = 2;
        resp.end_ts = 20;
        Box::new(s)
    }

    #[test]
    fn fills_unknown_blocks_once_the_trailers_row_arrives() {
        let mut go = GoHeaders::default();
        let path = vec![h(":method", "POST"), h(":path", "/helloworld.Greeter/SayHello")];
        assert!(go.add(7, Dir::Egress, block(path.clone(), false)).is_none());
        assert!(go.add(7, Dir::Ingress, block(vec![h(":status", "200")], false)).is_none());
        // The wire finished the stream before the trailers' uprobe row came.
        assert!(go.stream(joined_client_stream(), Role::Client, true).is_none());
        let trailers = vec![h("grpc-status", "5"), h("grpc-message", "gone")];
        let held = go.add(7, Dir::Ingress, block(trailers.clone(), true)).expect("released");
        let s = held.stream;
        assert_eq!(s.sides[Dir::Egress as usize].headers.as_ref(), Some(&path));
        assert_eq!(s.sides[Dir::Ingress as usize].trailers.as_ref(), Some(&trailers));
        assert_eq!(s.sides[Dir::Ingress as usize].unknown_fields, 0);
        assert_eq!(s.headers_source, Some(source::UPROBE));
        assert_eq!(go.counts, Counts { blocks: 3, filled: 2, agreed: 1, ..Counts::default() });
    }

    #[test]
    fn whole_blocks_are_compared_and_a_difference_is_counted() {
        let mut go = GoHeaders::default();
        let mut s = Stream::new(1);
        s.sides[0].headers = Some(vec![h(":path", "/a")]);
        s.sides[1].headers = Some(vec![h(":status", "200")]);
        go.add(1, Dir::Ingress, block(vec![h(":path", "/a")], true));
        go.add(1, Dir::Egress, block(vec![h(":status", "500")], true));
        let held = go.stream(Box::new(s), Role::Server, false).expect("caught up");
        // The wire's version stays.
        assert_eq!(held.stream.sides[1].headers, Some(vec![h(":status", "200")]));
        assert_eq!(held.stream.headers_source, Some(source::BOTH));
        assert_eq!((go.counts.agreed, go.counts.disagreed), (1, 1));
    }

    #[test]
    fn a_truncated_uprobe_block_does_not_override_a_whole_wire_block() {
        let mut go = GoHeaders::default();
        let mut s = Stream::new(3);
        s.sides[0].headers = Some(vec![h(":path", "/long")]);
        go.add(3, Dir::Ingress, Block { fields: vec![], end_stream: false, truncated: true });
        let held = go.stream(Box::new(s), Role::Server, false).expect("caught up");
        assert_eq!(held.stream.sides[0].headers, Some(vec![h(":path", "/long")]));
        assert_eq!(held.stream.headers_source, Some(source::WIRE));
        assert_eq!(go.counts.disagreed, 0);
    }

    #[test]
    fn held_streams_leave_on_time_and_leftover_blocks_are_unmatched() {
        let mut go = GoHeaders::default();
        assert!(go.stream(joined_client_stream(), Role::Client, true).is_none());
        assert!(go.release(Some(20 + HOLD_NS - 1)).is_empty());
        let out = go.release(Some(20 + HOLD_NS));
        assert_eq!(out.len(), 1);
        // Nothing came: the stream is as the wire had it.
        assert_eq!(out[0].stream.sides[Dir::Ingress as usize].unknown_fields, 2);
        go.add(9, Dir::Ingress, block(vec![h(":path", "/x")], false));
        assert!(go.finish().is_empty());
        assert_eq!(go.counts.unmatched, 1);
    }

    #[test]
    fn blocks_without_a_decoded_stream_are_bounded() {
        let mut go = GoHeaders::default();
        for id in 0..(MAX_WAITING_STREAMS as u32 + 5) {
            go.add(2 * id + 1, Dir::Ingress, block(vec![h(":path", "/x")], false));
        }
        assert_eq!(go.blocks.len(), MAX_WAITING_STREAMS);
        assert_eq!(go.counts.unmatched, 5);
        // The oldest went first.
        assert!(!go.blocks.contains_key(&1));
    }

    #[test]
    fn informational_responses_are_not_taken_for_the_headers() {
        let (headers, trailers) = split(vec![
            block(vec![h(":status", "100")], false),
            block(vec![h(":status", "200")], false),
            block(vec![h("grpc-status", "0")], true),
        ]);
        assert_eq!(headers.unwrap().fields, vec![h(":status", "200")]);
        assert_eq!(trailers.unwrap().fields, vec![h("grpc-status", "0")]);
    }
}
