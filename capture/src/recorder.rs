//! Turning ring buffer records into capture rows.
//!
//! The kernel's connection ids are unique but sparse (`cpu << 48 | n`); rows get
//! dense ids (1, 2, 3, …) in order of first appearance, kept until the kernel
//! reports the socket closed for good (a socket shared by a forking server and
//! its children outlives the parent's `close()`). Addresses are formatted once
//! per connection. Fork notices are passed on to keep the target list current;
//! neither they nor connection ends become rows.
//!
//! Every payload passes through a [`redact::Redactor`] before it becomes a
//! row: header values are masked in place and, with `--no-bodies`, body
//! bytes are cut out of the row into rows that keep only their length. The
//! recorder knows no HTTP; the redactor is told which bytes belong to which
//! stream, and when connections open and end.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use formats::{
    schema::{direction, kind, Redaction},
    wire::{Direction, EventHeader, EventKind, AF_INET, AF_INET6, FLAG_NO_CONN},
    H2Field, Record,
};
use redact::{BodyRanges, Redactor, StreamKey};

use crate::{
    golang::sanity,
    kernel::clock::WallClock,
    output::rows::{Identity, Row, RowBuffer},
};

/// Counters for the progress line and the summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Rows written (all kinds).
    pub events: u64,
    /// Bytes the target's syscalls moved.
    pub bytes_moved: u64,
    /// Payload bytes kept.
    pub bytes_kept: u64,
    pub connections: u64,
    pub lost: u64,
    /// Records that failed to parse (a podtap bug if ever non-zero).
    pub malformed: u64,
    /// `h2_headers` rows: header frames read from Go gRPC processes.
    pub h2_headers: u64,
    /// Header blocks the probes read that failed the checks of
    /// [`sanity`] and were dropped.
    pub h2_rejected: u64,
    /// Plaintext bytes read from TLS libraries (`tls_data` rows).
    pub tls_bytes: u64,
}

/// A process forked by a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fork {
    pub pid: u32,
    pub parent: u32,
    /// The parent's name at the time of the fork (the child's until it execs).
    pub comm: String,
}

struct ConnEntry {
    id: u64,
    /// Raw address bytes the strings were formatted from.
    raw: (u8, u16, u16, [u8; 16], [u8; 16]),
    local: Option<String>,
    remote: Option<String>,
}

/// Builds rows from records.
pub struct Recorder {
    clock: WallClock,
    rows: RowBuffer,
    conns: HashMap<u64, ConnEntry>,
    next_conn: u64,
    forks: Vec<Fork>,
    /// Target processes that ran a new program.
    execs: Vec<u32>,
    stats: Stats,
    /// Kubernetes identities of target processes, by pid; `None` for a pid
    /// whose cgroup was looked up and is in no targeted container.
    identities: HashMap<u32, Option<Arc<Identity>>>,
    /// Targeted containers: their cgroup paths as `/proc/PID/cgroup` shows
    /// them, and who they are.
    containers: Vec<(String, Arc<Identity>)>,
    redactor: Redactor,
    /// The payload being masked, and its body ranges.
    scratch: Vec<u8>,
    bodies: BodyRanges,
    /// Masked header values of an `h2_headers` row.
    values: Vec<Vec<u8>>,
}

fn socket_addr(family: u8, addr: &[u8; 16], port: u16) -> Option<String> {
    let ip = match family {
        AF_INET => IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])),
        // IPv4-mapped addresses (dual-stack sockets) are shown as IPv4.
        AF_INET6 => Ipv6Addr::from(*addr).to_canonical(),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port).to_string())
}

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Ingress => direction::INGRESS,
        Direction::Egress => direction::EGRESS,
    }
}

fn comm(header: &EventHeader) -> std::borrow::Cow<'_, str> {
    let end = header.comm.iter().position(|&b| b == 0).unwrap_or(header.comm.len());
    String::from_utf8_lossy(&header.comm[..end])
}

impl Recorder {
    pub fn new(clock: WallClock, redaction: redact::Policy) -> Self {
        Self {
            redactor: Redactor::new(redaction),
            scratch: Vec::new(),
            bodies: BodyRanges::default(),
            values: Vec::new(),
            clock,
            rows: RowBuffer::new(),
            conns: HashMap::new(),
            next_conn: 0,
            forks: Vec::new(),
            execs: Vec::new(),
            stats: Stats::default(),
            identities: HashMap::new(),
            containers: Vec::new(),
        }
    }

    /// A targeted container: a process whose cgroup is `cgroup` (relative
    /// to its hierarchy's root) or below is labelled `identity` from its
    /// first row, before any rescan has seen it.
    pub fn add_container(&mut self, cgroup: String, identity: Arc<Identity>) {
        self.containers.push((cgroup, identity));
    }

    /// The identity of a pid not seen before, from `/proc/PID/cgroup`.
    fn look_up(&mut self, pid: u32) {
        if self.containers.is_empty() || self.identities.contains_key(&pid) {
            return;
        }
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let found = text.lines().filter_map(|line| line.splitn(3, ':').nth(2)).find_map(|path| {
            self.containers.iter().find_map(|(cgroup, identity)| {
                path.strip_prefix(cgroup.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
                    .then(|| identity.clone())
            })
        });
        self.identities.insert(pid, found);
    }

    /// Labels the rows of `pid` with a pod identity from now on.
    pub fn set_identity(&mut self, pid: u32, identity: Arc<Identity>) {
        self.identities.insert(pid, Some(identity));
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// What redaction did so far, for the capture's metadata.
    pub fn redaction(&self) -> Redaction {
        let policy = self.redactor.policy();
        let counts = self.redactor.counts();
        Redaction {
            headers: policy.names().to_vec(),
            no_bodies: policy.no_bodies,
            masked_values: counts.values,
            uncertain: counts.uncertain,
            uncertain_bytes: counts.uncertain_bytes,
            body_bytes_dropped: counts.body_bytes,
        }
    }

    pub fn rows(&mut self) -> &mut RowBuffer {
        &mut self.rows
    }

    /// Forks seen since the last call.
    pub fn take_forks(&mut self) -> Vec<Fork> {
        std::mem::take(&mut self.forks)
    }

    /// Processes that ran a new program since the last call.
    pub fn take_execs(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.execs)
    }

    /// Records one ring buffer record.
    pub fn record(&mut self, bytes: &[u8]) {
        self.values.clear();
        let rec = match Record::parse(bytes) {
            Ok(rec) => rec,
            Err(e) => {
                self.stats.malformed += 1;
                if self.stats.malformed == 1 {
                    tracing::error!("dropped a malformed ring buffer record: {e}");
                }
                return;
            }
        };
        let h = &rec.header;
        let row_kind = match rec.kind {
            EventKind::Data => kind::DATA,
            EventKind::Connect => kind::CONNECT,
            EventKind::Accept => kind::ACCEPT,
            EventKind::Close => kind::CLOSE,
            EventKind::H2Headers => kind::H2_HEADERS,
            EventKind::TlsData => kind::TLS_DATA,
            EventKind::Fork => {
                // A child of a pod's process is in the pod.
                if let Some(Some(identity)) = self.identities.get(&(h.size as u32)).cloned() {
                    self.identities.insert(h.pid, Some(identity));
                }
                self.forks.push(Fork {
                    pid: h.pid,
                    parent: h.size as u32,
                    comm: comm(h).to_string(),
                });
                return;
            }
            EventKind::Exec => {
                self.execs.push(h.pid);
                return;
            }
            EventKind::ConnEnd => {
                // The socket is gone for good; a later one gets a new id.
                self.conns.remove(&h.conn_id);
                self.redactor.ended(h.conn_id);
                return;
            }
        };
        if matches!(rec.kind, EventKind::Connect | EventKind::Accept) {
            self.redactor.opened(h.conn_id);
        }
        let fields: Vec<H2Field<'_>> = if rec.kind == EventKind::H2Headers {
            let fields = match rec.h2_fields() {
                Ok(fields) => fields,
                Err(e) => {
                    self.stats.malformed += 1;
                    if self.stats.malformed == 1 {
                        tracing::error!("dropped a malformed header record: {e}");
                    }
                    return;
                }
            };
            if let Err(why) = sanity::check(h.seq as u32, h.size, &fields) {
                self.stats.h2_rejected += 1;
                if self.stats.h2_rejected == 1 {
                    tracing::warn!(
                        pid = h.pid,
                        "dropped a header block read by the Go probes: it has {} (counted in \
                         podtap.rejected_header_blocks; more are not logged)",
                        why.describe()
                    );
                }
                return;
            }
            let masked = mask_fields(self.redactor.policy(), &fields, &mut self.values);
            self.redactor.count_fields(masked);
            fields
        } else {
            Vec::new()
        };
        self.look_up(h.pid);
        let headers = rec.kind == EventKind::H2Headers;
        // grpc-go's connection may not lead to a TCP socket, and a TLS
        // call may come before any syscall of its connection: such rows are
        // kept, without a connection.
        let from_uprobe = headers || rec.kind == EventKind::TlsData;
        let conn = if from_uprobe && h.flags & FLAG_NO_CONN != 0 {
            None
        } else {
            let raw = (h.family, h.local_port, h.remote_port, h.local_addr, h.remote_addr);
            let next_conn = &mut self.next_conn;
            let stats = &mut self.stats;
            let conn = self.conns.entry(h.conn_id).or_insert_with(|| {
                *next_conn += 1;
                stats.connections += 1;
                ConnEntry {
                    id: *next_conn,
                    raw: (0, 0, 0, [0; 16], [0; 16]),
                    local: None,
                    remote: None,
                }
            });
            if conn.raw != raw {
                conn.local = socket_addr(h.family, &h.local_addr, h.local_port);
                conn.remote = socket_addr(h.family, &h.remote_addr, h.remote_port);
                conn.raw = raw;
            }
            Some(&*conn)
        };
        let (dir, seq, payload) = match rec.direction {
            Some(d) if headers => (Some(direction_name(d)), None, None),
            Some(d) => (Some(direction_name(d)), Some(h.seq), Some(rec.payload)),
            None => (None, None, None),
        };
        let masking = payload.is_some() && self.redactor.policy().is_active();
        if let (true, Some(d)) = (masking, rec.direction) {
            self.scratch.clear();
            self.scratch.extend_from_slice(rec.payload);
            if conn.is_some() {
                let key = StreamKey { conn: h.conn_id, tls: rec.kind == EventKind::TlsData };
                let dir = d as usize & 1;
                self.redactor.data(key, dir, h.seq, h.size, &mut self.scratch, &mut self.bodies);
            } else {
                self.redactor.standalone(&mut self.scratch, &mut self.bodies);
            }
        }
        let payload = if masking { Some(&self.scratch[..]) } else { payload };
        let masked_fields: Vec<H2Field<'_>>;
        let fields = if self.values.is_empty() {
            &fields[..]
        } else {
            masked_fields = fields
                .iter()
                .zip(&self.values)
                .map(|(f, v)| H2Field { name: f.name, value: v, flags: f.flags })
                .collect();
            &masked_fields[..]
        };
        let row = Row {
            ts_ns: self.clock.to_unix_ns(h.ts_ns),
            kind: row_kind,
            pid: Some(h.pid),
            tid: Some(h.tid),
            comm: Some(&comm(h)),
            fd: (h.fd >= 0).then_some(h.fd),
            conn_id: conn.map(|c| c.id),
            direction: dir,
            seq,
            size: h.size,
            payload,
            local_addr: conn.and_then(|c| c.local.as_deref()),
            remote_addr: conn.and_then(|c| c.remote.as_deref()),
            identity: self.identities.get(&h.pid).and_then(Option::as_deref),
            flags: h.flags,
            cpu: None,
            stream_id: headers.then_some(h.seq as u32),
            headers: headers.then_some(fields),
        };
        let pieces = if masking && self.redactor.policy().no_bodies && !self.bodies.is_empty() {
            push_without_bodies(&mut self.rows, &row, self.bodies.ranges())
        } else {
            self.rows.push(&row);
            1
        };
        let kept = row.payload.map_or(0, |p| p.len() as u64) - self.bodies_dropped(masking);
        self.stats.events += pieces;
        self.stats.h2_headers += u64::from(headers);
        if rec.kind == EventKind::TlsData {
            self.stats.tls_bytes += h.size;
        }
        if rec.kind == EventKind::Data {
            self.stats.bytes_moved += h.size;
            self.stats.bytes_kept += kept;
        }
    }

    /// Body bytes cut out of the last payload.
    fn bodies_dropped(&self, masking: bool) -> u64 {
        if masking && self.redactor.policy().no_bodies {
            self.bodies.len() as u64
        } else {
            0
        }
    }

    /// Records `count` events the kernel could not hand over on `cpu`.
    pub fn lost(&mut self, cpu: u32, count: u64, ts_unix_ns: i64) {
        if count == 0 {
            return;
        }
        self.rows.push(&Row {
            ts_ns: ts_unix_ns,
            kind: kind::LOST,
            size: count,
            cpu: Some(cpu),
            ..Row::default()
        });
        self.stats.events += 1;
        self.stats.lost += count;
    }
}

/// Masks the redacted values of a header record's fields into `values`
/// (one per field, left empty when nothing is masked); returns how many.
fn mask_fields(policy: &redact::Policy, fields: &[H2Field<'_>], values: &mut Vec<Vec<u8>>) -> u64 {
    values.clear();
    let cut = |f: &H2Field<'_>| f.flags & formats::wire::H2_FIELD_NAME_CUT != 0;
    if policy.names().is_empty() || !fields.iter().any(|f| policy.redacts(f.name) || cut(f)) {
        return 0;
    }
    values.extend(fields.iter().map(|f| f.value.to_vec()));
    let mut counts = redact::Counts::default();
    redact::mask_fields(
        policy,
        fields.iter().zip(values.iter_mut()).map(|(f, v)| (f.name, cut(f), v.as_mut_slice())),
        &mut counts,
    );
    counts.values
}

/// Pushes `row` as pieces: the bytes between body ranges with their
/// payload, each body range as a row of its length with no payload (what a
/// payload cut short looks like to `analyze`). Returns the rows pushed.
fn push_without_bodies(rows: &mut RowBuffer, row: &Row<'_>, bodies: &[(usize, usize)]) -> u64 {
    let (Some(payload), Some(seq)) = (row.payload, row.seq) else {
        rows.push(row);
        return 1;
    };
    // Bytes the kernel did not copy are part of the last piece.
    let uncopied = row.size.saturating_sub(payload.len() as u64);
    let mut pieces = 0;
    let mut at = 0;
    let mut push = |from: usize, to: usize, kept: bool, last: bool| {
        let size = (to - from) as u64 + if last { uncopied } else { 0 };
        let payload = if kept { &payload[from..to] } else { &[][..] };
        rows.push(&Row { seq: Some(seq + from as u64), size, payload: Some(payload), ..*row });
        pieces += 1;
    };
    for (n, &(from, to)) in bodies.iter().enumerate() {
        if from > at {
            push(at, from, true, false);
        }
        push(from, to, false, n + 1 == bodies.len() && to == payload.len());
        at = to;
    }
    if at < payload.len() {
        push(at, payload.len(), true, true);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use arrow_array::{cast::AsArray, types::UInt64Type, Array};
    use formats::wire::EVENT_HEADER_LEN;

    use super::*;

    fn record(kind: EventKind, conn: u64, dir: Direction, seq: u64, payload: &[u8]) -> Vec<u8> {
        let mut local = [0u8; 16];
        local[..4].copy_from_slice(&[127, 0, 0, 1]);
        let mut remote = [0u8; 16];
        remote[..4].copy_from_slice(&[10, 1, 2, 3]);
        let h = EventHeader {
            kind: kind as u32,
            flags: 0,
            ts_ns: 1_000,
            conn_id: conn,
            seq,
            size: payload.len() as u64,
            pid: 100,
            tid: 101,
            fd: 7,
            captured: payload.len() as u32,
            direction: dir as u8,
            family: AF_INET,
            _pad: 0,
            local_port: 8080,
            remote_port: 40000,
            local_addr: local,
            remote_addr: remote,
            comm: *b"python3\0\0\0\0\0\0\0\0\0",
        };
        let mut out = vec![0u8; EVENT_HEADER_LEN];
        // SAFETY: exactly one header fits.
        unsafe { std::ptr::write_unaligned(out.as_mut_ptr().cast::<EventHeader>(), h) };
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn renumbers_connections_densely_and_formats_addresses() {
        let mut r = Recorder::new(WallClock::measure(), redact::Policy::default());
        r.record(&record(EventKind::Accept, (1 << 48) | 5, Direction::Ingress, 0, b""));
        r.record(&record(EventKind::Data, (1 << 48) | 5, Direction::Ingress, 0, b"GET /"));
        r.record(&record(EventKind::Data, 9, Direction::Egress, 0, b"x"));
        r.record(&record(EventKind::Data, (1 << 48) | 5, Direction::Egress, 0, b"HTTP/1.1 200 OK"));
        let batch = r.rows().finish().unwrap();
        let ids = batch.column_by_name("conn_id").unwrap().as_primitive::<UInt64Type>();
        assert_eq!(ids.values().to_vec(), vec![1, 1, 2, 1]);
        let local = batch.column_by_name("local_addr").unwrap().as_string::<i32>();
        let remote = batch.column_by_name("remote_addr").unwrap().as_string::<i32>();
        assert_eq!(local.value(1), "127.0.0.1:8080");
        assert_eq!(remote.value(1), "10.1.2.3:40000");
        let dir = batch.column_by_name("direction").unwrap().as_string::<i32>();
        assert!(dir.is_null(0));
        assert_eq!(dir.value(1), "ingress");
        assert_eq!(dir.value(3), "egress");
        assert_eq!(batch.column_by_name("comm").unwrap().as_string::<i32>().value(0), "python3");
        let stats = r.stats();
        assert_eq!((stats.events, stats.connections, stats.bytes_moved), (4, 2, 21));
    }

    #[test]
    fn a_close_keeps_the_connection_id_until_the_socket_ends() {
        let mut r = Recorder::new(WallClock::measure(), redact::Policy::default());
        // A forking server: the parent closes its copy, the child goes on.
        r.record(&record(EventKind::Accept, 77, Direction::Ingress, 0, b""));
        r.record(&record(EventKind::Close, 77, Direction::Ingress, 0, b""));
        r.record(&record(EventKind::Data, 77, Direction::Egress, 0, b"HTTP/1.1 200 OK"));
        r.record(&record(EventKind::ConnEnd, 77, Direction::Ingress, 0, b""));
        // The kernel reuses nothing, but a reused id would start a new connection.
        r.record(&record(EventKind::Data, 77, Direction::Egress, 0, b"x"));
        let batch = r.rows().finish().unwrap();
        let ids = batch.column_by_name("conn_id").unwrap().as_primitive::<UInt64Type>();
        assert_eq!(ids.values().to_vec(), vec![1, 1, 1, 2]);
    }

    fn field(name: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = (name.len() as u16).to_le_bytes().to_vec();
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(name);
        out.extend_from_slice(value);
        out
    }

    #[test]
    fn header_records_become_h2_headers_rows_with_and_without_a_connection() {
        let mut r = Recorder::new(WallClock::measure(), redact::Policy::default());
        r.record(&record(EventKind::Data, 5, Direction::Ingress, 0, b"PRI * HTTP/2.0"));
        let mut fields = field(b":path", b"/helloworld.Greeter/SayHello");
        fields.extend(field(b"te", b"trailers"));
        let mut rec = record(EventKind::H2Headers, 5, Direction::Ingress, 7, &fields);
        // size: fields in the frame; flags: END_STREAM.
        rec[32..40].copy_from_slice(&2u64.to_le_bytes());
        rec[4..8].copy_from_slice(&formats::wire::FLAG_H2_END_STREAM.to_le_bytes());
        r.record(&rec);
        let mut lone = record(EventKind::H2Headers, 0, Direction::Egress, 9, &field(b"a", b"b"));
        lone[4..8].copy_from_slice(&FLAG_NO_CONN.to_le_bytes());
        r.record(&lone);
        let stats = r.stats();
        assert_eq!((stats.events, stats.h2_headers, stats.connections), (3, 2, 1));
        let batch = r.rows().finish().unwrap();
        let ids = batch.column_by_name("conn_id").unwrap().as_primitive::<UInt64Type>();
        assert_eq!((ids.value(1), ids.is_null(2)), (1, true));
        let streams = batch
            .column_by_name("stream_id")
            .unwrap()
            .as_primitive::<arrow_array::types::UInt32Type>();
        assert!(streams.is_null(0));
        assert_eq!((streams.value(1), streams.value(2)), (7, 9));
        assert!(batch.column_by_name("seq").unwrap().is_null(1));
        assert!(batch.column_by_name("payload").unwrap().is_null(1));
        let headers = batch.column_by_name("headers").unwrap().as_list::<i32>();
        assert!(headers.is_null(0));
        let first = headers.value(1);
        let pairs = first.as_struct();
        let names = pairs.column(0).as_string::<i32>();
        let values = pairs.column(1).as_string::<i32>();
        assert_eq!((names.value(0), values.value(0)), (":path", "/helloworld.Greeter/SayHello"));
        assert_eq!((names.value(1), values.value(1)), ("te", "trailers"));
        let dir = batch.column_by_name("direction").unwrap().as_string::<i32>();
        assert_eq!((dir.value(1), dir.value(2)), ("ingress", "egress"));

        // A field that runs past its record is a malformed record, not a row.
        let mut bad = field(b"x", b"y");
        bad[0] = 99;
        r.record(&record(EventKind::H2Headers, 5, Direction::Ingress, 11, &bad));
        assert_eq!(r.stats().malformed, 1);
        assert!(r.rows().is_empty());
    }

    #[test]
    fn implausible_header_blocks_are_dropped_and_counted() {
        let mut r = Recorder::new(WallClock::measure(), redact::Policy::default());
        let block = |stream: u64, name: &[u8], value: &[u8]| {
            let mut rec =
                record(EventKind::H2Headers, 5, Direction::Ingress, stream, &field(name, value));
            rec[32..40].copy_from_slice(&1u64.to_le_bytes());
            rec
        };
        // What a probe reading the wrong register or a moved field would
        // give: an even stream id, a name that is no token, a broken value.
        r.record(&block(2, b":path", b"/a"));
        r.record(&block(3, b"\x90\x1f\x00P", b"/a"));
        r.record(&block(5, b":path", b"/a\r\n"));
        assert!(r.rows().is_empty());
        assert_eq!((r.stats().h2_rejected, r.stats().h2_headers, r.stats().malformed), (3, 0, 0));
        r.record(&block(7, b":path", b"/a"));
        assert_eq!((r.stats().h2_rejected, r.stats().h2_headers), (3, 1));
    }

    fn payloads(r: &mut Recorder) -> Vec<(u64, u64, Vec<u8>)> {
        let batch = r.rows().finish().unwrap();
        let seq = batch.column_by_name("seq").unwrap().as_primitive::<UInt64Type>();
        let size = batch.column_by_name("size").unwrap().as_primitive::<UInt64Type>();
        let payload = batch.column_by_name("payload").unwrap().as_binary::<i32>();
        (0..batch.num_rows())
            .filter(|&i| !seq.is_null(i))
            .map(|i| (seq.value(i), size.value(i), payload.value(i).to_vec()))
            .collect()
    }

    #[test]
    fn header_values_are_masked_before_they_become_rows() {
        let mut r = Recorder::new(
            WallClock::measure(),
            redact::Policy::new(redact::Policy::default_names(), false),
        );
        r.record(&record(EventKind::Accept, 5, Direction::Ingress, 0, b""));
        r.record(&record(
            EventKind::Data,
            5,
            Direction::Ingress,
            0,
            b"GET / HTTP/1.1\r\nCookie: a",
        ));
        r.record(&record(EventKind::Data, 5, Direction::Ingress, 26, b"bc\r\n\r\n"));
        let rows = payloads(&mut r);
        assert_eq!(rows[0].2, b"GET / HTTP/1.1\r\nCookie:**");
        assert_eq!(rows[1].2, b"**\r\n\r\n");
        assert_eq!(r.redaction().masked_values, 1);
        assert_eq!(r.redaction().headers, redact::Policy::default_names());
    }

    #[test]
    fn header_records_from_the_go_probes_are_masked_by_name() {
        let mut r = Recorder::new(
            WallClock::measure(),
            redact::Policy::new(redact::Policy::default_names(), false),
        );
        let mut fields = field(b":path", b"/helloworld.Greeter/SayHello");
        fields.extend(field(b"authorization", b"Bearer t0ken"));
        let mut rec = record(EventKind::H2Headers, 5, Direction::Ingress, 1, &fields);
        rec[32..40].copy_from_slice(&2u64.to_le_bytes());
        r.record(&rec);
        let batch = r.rows().finish().unwrap();
        let headers = batch.column_by_name("headers").unwrap().as_list::<i32>();
        let first = headers.value(0);
        let values = first.as_struct().column(1).as_string::<i32>();
        assert_eq!(values.value(0), "/helloworld.Greeter/SayHello");
        assert_eq!(values.value(1), "************");
        assert_eq!(r.redaction().masked_values, 1);
    }

    #[test]
    fn without_bodies_a_row_is_cut_around_its_body_keeping_seq_and_size() {
        let mut r = Recorder::new(WallClock::measure(), redact::Policy::new(Vec::new(), true));
        r.record(&record(EventKind::Accept, 5, Direction::Ingress, 0, b""));
        let head = b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n";
        let bytes = [&head[..], b"bodyGET / HTTP/1.1\r\n\r\n"].concat();
        r.record(&record(EventKind::Data, 5, Direction::Ingress, 0, &bytes));
        let n = head.len() as u64;
        assert_eq!(
            payloads(&mut r),
            vec![
                (0, n, head.to_vec()),
                (n, 4, Vec::new()),
                (n + 4, 18, b"GET / HTTP/1.1\r\n\r\n".to_vec()),
            ]
        );
        assert_eq!(r.stats().bytes_kept, bytes.len() as u64 - 4);
        assert_eq!(r.redaction().body_bytes_dropped, 4);
    }

    #[test]
    fn forks_are_reported_not_written() {
        let mut r = Recorder::new(WallClock::measure(), redact::Policy::default());
        let mut rec = record(EventKind::Fork, 0, Direction::Ingress, 0, b"");
        // size carries the parent.
        rec[32..40].copy_from_slice(&55u64.to_le_bytes());
        r.record(&rec);
        assert!(r.rows().is_empty());
        assert_eq!(r.take_forks(), vec![Fork { pid: 100, parent: 55, comm: "python3".into() }]);
        assert!(r.take_forks().is_empty());
    }

    #[test]
    fn lost_events_become_lost_rows_and_malformed_records_are_counted() {
        let mut r = Recorder::new(WallClock::measure(), redact::Policy::default());
        r.lost(1, 17, 42);
        r.lost(0, 0, 42);
        r.record(&[1, 2, 3]);
        let stats = r.stats();
        assert_eq!((stats.lost, stats.malformed, stats.events), (17, 1, 1));
        let batch = r.rows().finish().unwrap();
        assert_eq!(batch.num_rows(), 1);
        let kind =
            batch.column_by_name("kind").unwrap().as_dictionary::<arrow_array::types::Int32Type>();
        let values = kind.values().as_string::<i32>();
        assert_eq!(values.value(kind.keys().value(0) as usize), "lost");
        assert!(batch.column_by_name("conn_id").unwrap().is_null(0));
    }

    #[test]
    fn ipv4_mapped_ipv6_addresses_read_as_ipv4() {
        let mut mapped = [0u8; 16];
        mapped[10] = 0xff;
        mapped[11] = 0xff;
        mapped[12..].copy_from_slice(&[192, 168, 0, 1]);
        assert_eq!(socket_addr(AF_INET6, &mapped, 443).as_deref(), Some("192.168.0.1:443"));
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert_eq!(socket_addr(AF_INET6, &v6, 80).as_deref(), Some("[::1]:80"));
        assert_eq!(socket_addr(0, &v6, 80), None);
    }
}
