//! The struct field offsets of [`GoOffsets`], one [`Field`] at a time, and
//! podtap's table of them for grpc-go versions without DWARF at hand.
//!
//! # The table
//!
//! Only layouts read from a real binary's DWARF are listed. The 1.33 entry
//! comes from grpc-go 1.33.3 (Debian's golang-google-grpc-dev) with
//! golang.org/x/net from Debian, built by Go 1.19.8 in GOPATH mode
//! (`scripts/peers/grpc/build-go-all.sh`); the offsets were read from
//! `readelf --debug-dump=info` and are checked against the DWARF of that
//! binary by this module's tests. It is claimed for every 1.33.x: patch
//! releases of a minor do not change the transport's structs.
//!
//! Assumptions behind an entry:
//! - the Go runtime side, `net.TCPConn` → `conn.fd` (0) and `net.netFD` →
//!   `pfd.Sysfd` (16), is the same from Go 1.17 to 1.23: the table is only
//!   used for binaries built by those ([`GO_MINORS`]);
//! - golang.org/x/net's `MetaHeadersFrame`, `HeadersFrame`, `FrameHeader` and
//!   `hpack.HeaderField` have kept their layout since grpc-go 1.33's time;
//! - grpc-go's own structs hold only pointers, interfaces, strings and plain
//!   numbers before the probed fields, so they do not depend on the Go
//!   release.

use std::ops::RangeInclusive;

use super::version::{self, GrpcVersion};
use super::{Functions, GoOffsets};

/// One field of [`GoOffsets`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// `transport.http2Server.conn`.
    ServerConn,
    /// `transport.http2Client.conn`.
    ClientConn,
    /// `transport.loopyWriter.framer`.
    LoopyFramer,
    /// `transport.framer.writer`.
    FramerWriter,
    /// `transport.bufWriter.conn`.
    BufwriterConn,
    /// `net.TCPConn` → `conn.fd`.
    TcpconnFd,
    /// `net.netFD` → `pfd.Sysfd`.
    NetfdSysfd,
    /// `http2.MetaHeadersFrame.HeadersFrame`.
    MetaHeaders,
    /// `http2.MetaHeadersFrame.Fields`.
    MetaFields,
    /// `http2.MetaHeadersFrame.Truncated`.
    MetaTruncated,
    /// `http2.HeadersFrame` → `FrameHeader.Flags`.
    FrameFlags,
    /// `http2.HeadersFrame` → `FrameHeader.StreamID`.
    FrameStreamId,
    /// The size of `hpack.HeaderField`.
    HeaderFieldSize,
    /// `hpack.HeaderField.Name`.
    HeaderFieldName,
    /// `hpack.HeaderField.Value`.
    HeaderFieldValue,
    /// `hpack.HeaderField.Sensitive`.
    HeaderFieldSensitive,
}

impl Field {
    /// Every field, in [`GoOffsets`] order.
    pub const ALL: [Field; 16] = [
        Self::ServerConn,
        Self::ClientConn,
        Self::LoopyFramer,
        Self::FramerWriter,
        Self::BufwriterConn,
        Self::TcpconnFd,
        Self::NetfdSysfd,
        Self::MetaHeaders,
        Self::MetaFields,
        Self::MetaTruncated,
        Self::FrameFlags,
        Self::FrameStreamId,
        Self::HeaderFieldSize,
        Self::HeaderFieldName,
        Self::HeaderFieldValue,
        Self::HeaderFieldSensitive,
    ];

    /// The Go struct field, for messages (`net.netFD.pfd.Sysfd`).
    pub fn go_name(self) -> &'static str {
        match self {
            Self::ServerConn => "transport.http2Server.conn",
            Self::ClientConn => "transport.http2Client.conn",
            Self::LoopyFramer => "transport.loopyWriter.framer",
            Self::FramerWriter => "transport.framer.writer",
            Self::BufwriterConn => "transport.bufWriter.conn",
            Self::TcpconnFd => "net.TCPConn.conn.fd",
            Self::NetfdSysfd => "net.netFD.pfd.Sysfd",
            Self::MetaHeaders => "http2.MetaHeadersFrame.HeadersFrame",
            Self::MetaFields => "http2.MetaHeadersFrame.Fields",
            Self::MetaTruncated => "http2.MetaHeadersFrame.Truncated",
            Self::FrameFlags => "http2.HeadersFrame.FrameHeader.Flags",
            Self::FrameStreamId => "http2.HeadersFrame.FrameHeader.StreamID",
            Self::HeaderFieldSize => "size of hpack.HeaderField",
            Self::HeaderFieldName => "hpack.HeaderField.Name",
            Self::HeaderFieldValue => "hpack.HeaderField.Value",
            Self::HeaderFieldSensitive => "hpack.HeaderField.Sensitive",
        }
    }

    /// The field's value in `o`.
    #[cfg(test)]
    pub fn get(self, o: &GoOffsets) -> u32 {
        let mut copy = *o;
        *self.slot(&mut copy)
    }

    /// Sets the field in `o`.
    pub fn set(self, o: &mut GoOffsets, value: u32) {
        *self.slot(o) = value;
    }

    fn slot(self, o: &mut GoOffsets) -> &mut u32 {
        match self {
            Self::ServerConn => &mut o.server_conn,
            Self::ClientConn => &mut o.client_conn,
            Self::LoopyFramer => &mut o.loopy_framer,
            Self::FramerWriter => &mut o.framer_writer,
            Self::BufwriterConn => &mut o.bufwriter_conn,
            Self::TcpconnFd => &mut o.tcpconn_fd,
            Self::NetfdSysfd => &mut o.netfd_sysfd,
            Self::MetaHeaders => &mut o.meta_headers,
            Self::MetaFields => &mut o.meta_fields,
            Self::MetaTruncated => &mut o.meta_truncated,
            Self::FrameFlags => &mut o.frame_flags,
            Self::FrameStreamId => &mut o.frame_stream_id,
            Self::HeaderFieldSize => &mut o.field_size,
            Self::HeaderFieldName => &mut o.field_name,
            Self::HeaderFieldValue => &mut o.field_value,
            Self::HeaderFieldSensitive => &mut o.field_sensitive,
        }
    }

    /// The fields the probes on `functions` read: every probe needs the
    /// socket (`TcpconnFd`, `NetfdSysfd`) and the header fields (`HeaderField*`);
    /// `operateHeaders` its transport's `conn` and the frame (`Meta*`,
    /// `Frame*`); `writeHeader` the way from the loopy writer to the `conn`.
    pub fn needed_by(functions: &Functions) -> Vec<Field> {
        use Field::*;
        let mut needed = vec![
            TcpconnFd,
            NetfdSysfd,
            HeaderFieldSize,
            HeaderFieldName,
            HeaderFieldValue,
            HeaderFieldSensitive,
        ];
        let frame = [MetaHeaders, MetaFields, MetaTruncated, FrameFlags, FrameStreamId];
        if functions.server_operate_headers.is_some() {
            needed.push(ServerConn);
            needed.extend(frame);
        }
        if functions.client_operate_headers.is_some() {
            needed.push(ClientConn);
            needed.extend(frame);
        }
        if functions.loopy_write_header.is_some() {
            needed.extend([LoopyFramer, FramerWriter, BufwriterConn]);
        }
        needed.sort();
        needed.dedup();
        needed
    }
}

/// Offsets with some fields unknown (what a binary's DWARF gave).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartialOffsets {
    values: [Option<u32>; 16],
}

impl PartialOffsets {
    /// One field, if known.
    pub fn get(&self, field: Field) -> Option<u32> {
        self.values[field as usize]
    }

    /// Sets one field.
    pub fn set(&mut self, field: Field, value: u32) {
        self.values[field as usize] = Some(value);
    }

    /// The fields of `needed` not known.
    pub fn missing(&self, needed: &[Field]) -> Vec<Field> {
        needed.iter().copied().filter(|&f| self.get(f).is_none()).collect()
    }

    /// The known fields, 0 for the others.
    pub fn to_offsets(self) -> GoOffsets {
        let mut o = GoOffsets::default();
        for f in Field::ALL {
            if let Some(v) = self.get(f) {
                f.set(&mut o, v);
            }
        }
        o
    }
}

/// Go releases (minor numbers of Go 1) whose runtime structs the table
/// assumes (see the module docs).
pub const GO_MINORS: RangeInclusive<u32> = 17..=23;

/// The table: grpc-go `(major, minor)` → offsets. See the module docs for
/// where each entry comes from.
const TABLE: &[((u32, u32), GoOffsets)] = &[(
    (1, 33),
    GoOffsets {
        server_conn: 32,
        client_conn: 72,
        loopy_framer: 40,
        framer_writer: 0,
        bufwriter_conn: 40,
        tcpconn_fd: 0,
        netfd_sysfd: 16,
        meta_headers: 0,
        meta_fields: 8,
        meta_truncated: 32,
        frame_flags: 2,
        frame_stream_id: 8,
        field_size: 40,
        field_name: 0,
        field_value: 16,
        field_sensitive: 32,
    },
)];

/// The table's offsets for grpc-go `version` (any patch release of a listed
/// minor); `None` if it is not listed.
pub fn lookup(version: &GrpcVersion) -> Option<GoOffsets> {
    TABLE.iter().find(|(key, _)| *key == (version.major, version.minor)).map(|(_, o)| *o)
}

/// The grpc-go minors the table lists, for messages (`1.33.x`).
pub fn listed() -> String {
    TABLE
        .iter()
        .map(|((major, minor), _)| format!("{major}.{minor}.x"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The table's offsets for grpc-go `version` in a binary built by Go
/// `go_version`; the error says why there are none, in words that follow
/// "and ".
pub fn known(version: &GrpcVersion, go_version: &str) -> Result<GoOffsets, String> {
    let Some(offsets) = lookup(version) else {
        return Err(format!("grpc-go {version} is not in podtap's offset table ({})", listed()));
    };
    match version::go_minor(go_version) {
        Some(minor) if GO_MINORS.contains(&minor) => Ok(offsets),
        _ => Err(format!(
            "podtap's offset table assumes the runtime structs of Go 1.{} to 1.{}, not {go_version}",
            GO_MINORS.start(),
            GO_MINORS.end()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> GrpcVersion {
        GrpcVersion::parse(s).unwrap()
    }

    #[test]
    fn table_lookup_by_minor() {
        let o = lookup(&v("v1.33.3")).unwrap();
        assert_eq!(o.client_conn, 72);
        assert_eq!(lookup(&v("1.33.0")), Some(o));
        assert_eq!(lookup(&v("1.33.3-dev")), Some(o));
        assert_eq!(lookup(&v("1.33")), Some(o));
        assert_eq!(lookup(&v("1.34.0")), None);
        assert_eq!(lookup(&v("1.3.3")), None);
        assert_eq!(lookup(&v("2.33.3")), None);
        assert!(known(&v("1.33.1"), "go1.19.8").is_ok());
        assert!(known(&v("1.33.1"), "go1.24.0").unwrap_err().contains("Go 1.17 to 1.23"));
        assert!(known(&v("1.60.0"), "go1.19.8").unwrap_err().contains("1.33.x"));
    }

    #[test]
    fn fields_round_trip() {
        let mut o = GoOffsets::default();
        for (i, f) in Field::ALL.into_iter().enumerate() {
            f.set(&mut o, i as u32 + 100);
        }
        for (i, f) in Field::ALL.into_iter().enumerate() {
            assert_eq!(f.get(&o), i as u32 + 100, "{f:?}");
        }
        // Every field of the struct is covered once.
        assert_eq!(o.field_sensitive, 115);
        assert_eq!(o.server_conn, 100);
    }

    #[test]
    fn needed_fields() {
        let none = Functions::default();
        assert_eq!(Field::needed_by(&none).len(), 6);
        let loopy = Functions { loopy_write_header: Some(1), ..none };
        assert!(Field::needed_by(&loopy).contains(&Field::BufwriterConn));
        assert!(!Field::needed_by(&loopy).contains(&Field::MetaFields));
        let all = Functions {
            server_operate_headers: Some(1),
            client_operate_headers: Some(2),
            loopy_write_header: Some(3),
        };
        assert_eq!(Field::needed_by(&all), Field::ALL);
    }
}
