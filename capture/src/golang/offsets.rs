//! What the header probes read, one piece at a time: the struct field
//! offsets of [`GoOffsets`] ([`Field`]) and the argument registers of
//! [`GoArgs`] ([`Arg`]); and podtap's table of them for binaries without
//! DWARF.
//!
//! # The table
//!
//! `offsets.json` beside this file is data, written by
//! `scripts/peers/grpc/gen-offsets.py`, which builds the Go peers of the
//! version matrix (`scripts/peers/grpc/go/matrix/versions.txt`) with every
//! Go toolchain of the matrix, reads each binary's DWARF with this module's
//! own reader (`capture --inspect`), and groups the versions by layout. It
//! holds two lists:
//!
//! - `grpc`: grpc-go's and golang.org/x/net's struct offsets and the
//!   argument registers, for a range of grpc-go minor releases. An entry
//!   covers the minors from its first to its last **verified** version,
//!   which have the same layout; the minors between them are claimed, as
//!   their sources keep the probed structs and signatures as they are at
//!   both ends (the matrix lists a version at every change). Patch releases
//!   count as their minor: grpc-go's release branches take fixes, not
//!   transport changes. Every entry was verified with each Go toolchain of
//!   the matrix, and the layouts did not depend on it: the probed structs
//!   hold only pointers, interfaces, strings, slices and plain numbers
//!   before the probed fields.
//! - `go`: the Go runtime's part (`net.TCPConn` → `conn.fd`,
//!   `net.netFD` → `pfd.Sysfd`), for a range of Go releases, claimed the
//!   same way between verified releases.
//!
//! A version outside every range is not guessed: the binary is unsupported,
//! with a reason that says how far the table goes.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use super::symbols::Target;
use super::version::{self, GrpcVersion};
use super::{Functions, GoArgs, GoOffsets};

/// One struct field offset of [`GoOffsets`].
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

    /// The fields of the Go runtime (the table's `go` list); the others are
    /// grpc-go's and golang.org/x/net's (its `grpc` list).
    pub const RUNTIME: [Field; 2] = [Self::TcpconnFd, Self::NetfdSysfd];

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

    /// The name of the [`GoOffsets`] field, as the table and the capture
    /// metadata spell it.
    pub fn key(self) -> &'static str {
        match self {
            Self::ServerConn => "server_conn",
            Self::ClientConn => "client_conn",
            Self::LoopyFramer => "loopy_framer",
            Self::FramerWriter => "framer_writer",
            Self::BufwriterConn => "bufwriter_conn",
            Self::TcpconnFd => "tcpconn_fd",
            Self::NetfdSysfd => "netfd_sysfd",
            Self::MetaHeaders => "meta_headers",
            Self::MetaFields => "meta_fields",
            Self::MetaTruncated => "meta_truncated",
            Self::FrameFlags => "frame_flags",
            Self::FrameStreamId => "frame_stream_id",
            Self::HeaderFieldSize => "field_size",
            Self::HeaderFieldName => "field_name",
            Self::HeaderFieldValue => "field_value",
            Self::HeaderFieldSensitive => "field_sensitive",
        }
    }

    /// The field's value in `o`.
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

/// One argument register of [`GoArgs`]: a word of a probed function's
/// parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arg {
    /// `(*http2Server).operateHeaders`'s receiver `t`.
    ServerTransport,
    /// `(*http2Server).operateHeaders`'s `frame`.
    ServerFrame,
    /// `(*http2Client).operateHeaders`'s receiver `t`.
    ClientTransport,
    /// `(*http2Client).operateHeaders`'s `frame`.
    ClientFrame,
    /// `(*loopyWriter).writeHeader`'s receiver `l`.
    LoopyWriter,
    /// `(*loopyWriter).writeHeader`'s `streamID`.
    LoopyStreamId,
    /// `(*loopyWriter).writeHeader`'s `endStream`.
    LoopyEndStream,
    /// `(*loopyWriter).writeHeader`'s `hf`, its data pointer.
    LoopyFieldsPtr,
    /// `(*loopyWriter).writeHeader`'s `hf`, its length.
    LoopyFieldsLen,
}

impl Arg {
    /// Every argument, in [`GoArgs`] order.
    pub const ALL: [Arg; 9] = [
        Self::ServerTransport,
        Self::ServerFrame,
        Self::ClientTransport,
        Self::ClientFrame,
        Self::LoopyWriter,
        Self::LoopyStreamId,
        Self::LoopyEndStream,
        Self::LoopyFieldsPtr,
        Self::LoopyFieldsLen,
    ];

    /// The function whose parameter this is.
    pub fn target(self) -> Target {
        match self {
            Self::ServerTransport | Self::ServerFrame => Target::ServerOperateHeaders,
            Self::ClientTransport | Self::ClientFrame => Target::ClientOperateHeaders,
            _ => Target::LoopyWriteHeader,
        }
    }

    /// The parameter's name in grpc-go's source, and which of its words
    /// this is (a slice's pointer is word 0, its length word 1).
    pub fn param(self) -> (&'static str, usize) {
        match self {
            Self::ServerTransport | Self::ClientTransport => ("t", 0),
            Self::ServerFrame | Self::ClientFrame => ("frame", 0),
            Self::LoopyWriter => ("l", 0),
            Self::LoopyStreamId => ("streamID", 0),
            Self::LoopyEndStream => ("endStream", 0),
            Self::LoopyFieldsPtr => ("hf", 0),
            Self::LoopyFieldsLen => ("hf", 1),
        }
    }

    /// The name of the [`GoArgs`] field, as the table and the capture
    /// metadata spell it.
    pub fn key(self) -> &'static str {
        match self {
            Self::ServerTransport => "server_transport",
            Self::ServerFrame => "server_frame",
            Self::ClientTransport => "client_transport",
            Self::ClientFrame => "client_frame",
            Self::LoopyWriter => "loopy_writer",
            Self::LoopyStreamId => "loopy_stream_id",
            Self::LoopyEndStream => "loopy_end_stream",
            Self::LoopyFieldsPtr => "loopy_fields_ptr",
            Self::LoopyFieldsLen => "loopy_fields_len",
        }
    }

    /// For messages: `(*http2Server).operateHeaders frame`.
    pub fn go_name(self) -> String {
        let (name, word) = self.param();
        let word = if word > 0 { " (length)" } else { "" };
        format!("{} {name}{word}", self.target().method())
    }

    /// Sets the register in `a`.
    pub fn set(self, a: &mut GoArgs, register: u8) {
        *self.slot(a) = register;
    }

    fn slot(self, a: &mut GoArgs) -> &mut u8 {
        match self {
            Self::ServerTransport => &mut a.server_transport,
            Self::ServerFrame => &mut a.server_frame,
            Self::ClientTransport => &mut a.client_transport,
            Self::ClientFrame => &mut a.client_frame,
            Self::LoopyWriter => &mut a.loopy_writer,
            Self::LoopyStreamId => &mut a.loopy_stream_id,
            Self::LoopyEndStream => &mut a.loopy_end_stream,
            Self::LoopyFieldsPtr => &mut a.loopy_fields_ptr,
            Self::LoopyFieldsLen => &mut a.loopy_fields_len,
        }
    }

    /// The arguments the probes on `functions` read.
    pub fn needed_by(functions: &Functions) -> Vec<Arg> {
        Self::ALL.into_iter().filter(|a| functions.get(a.target()).is_some()).collect()
    }
}

/// Whether `register` (a DWARF number) is one of the integer registers of
/// Go's register ABI, the only ones the probes read.
pub fn is_abi_register(register: u8) -> bool {
    use formats::wire::*;
    [
        GO_REG_RAX, GO_REG_RBX, GO_REG_RCX, GO_REG_RDI, GO_REG_RSI, GO_REG_R8, GO_REG_R9,
        GO_REG_R10, GO_REG_R11,
    ]
    .contains(&register)
}

/// Offsets and registers with some unknown (what a binary's DWARF gave).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartialOffsets {
    values: [Option<u32>; 16],
    args: [Option<u8>; 9],
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

    /// One argument's register, if known.
    pub fn arg(&self, arg: Arg) -> Option<u8> {
        self.args[arg as usize]
    }

    /// Sets one argument's register.
    pub fn set_arg(&mut self, arg: Arg, register: u8) {
        self.args[arg as usize] = Some(register);
    }

    /// What the probes on `functions` need and is not known, for messages.
    pub fn missing(&self, functions: &Functions) -> Vec<String> {
        let fields = Field::needed_by(functions).into_iter().filter(|&f| self.get(f).is_none());
        let args = Arg::needed_by(functions).into_iter().filter(|&a| self.arg(a).is_none());
        fields.map(|f| f.go_name().to_owned()).chain(args.map(Arg::go_name)).collect()
    }

    /// The known fields and registers, 0 for the others.
    pub fn to_offsets(self) -> GoOffsets {
        let mut o = GoOffsets::default();
        for f in Field::ALL {
            if let Some(v) = self.get(f) {
                f.set(&mut o, v);
            }
        }
        for a in Arg::ALL {
            if let Some(r) = self.arg(a) {
                a.set(&mut o.args, r);
            }
        }
        o
    }
}

/// The table as `offsets.json` spells it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    #[allow(dead_code)]
    about: String,
    grpc: Vec<GrpcLayoutFile>,
    go: Vec<GoLayoutFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrpcLayoutFile {
    /// First and last grpc-go minor covered, as `1.40`.
    first: String,
    last: String,
    /// The (grpc-go, Go) builds whose DWARF gave this layout.
    verified: Vec<(String, String)>,
    offsets: BTreeMap<String, u32>,
    args: BTreeMap<String, u8>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GoLayoutFile {
    /// First and last Go release covered, as `go1.19`.
    first: String,
    last: String,
    verified: Vec<String>,
    offsets: BTreeMap<String, u32>,
}

/// One layout of grpc-go's side, for grpc-go `1.first..=1.last`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcLayout {
    /// `(major, minor)` of the first and last release covered.
    pub first: (u32, u32),
    pub last: (u32, u32),
    /// Every field but [`Field::RUNTIME`], and every argument.
    pub offsets: GoOffsets,
}

/// One layout of the Go runtime's side, for Go `1.first..=1.last`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoLayout {
    pub first: u32,
    pub last: u32,
    /// [`Field::RUNTIME`] only.
    pub offsets: GoOffsets,
}

/// The table, checked.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub grpc: Vec<GrpcLayout>,
    pub go: Vec<GoLayout>,
}

impl Table {
    /// Parses and checks a table in `offsets.json`'s form.
    pub fn parse(json: &str) -> Result<Self, String> {
        let file: TableFile = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let mut table = Table::default();
        let grpc_fields: Vec<Field> =
            Field::ALL.into_iter().filter(|f| !Field::RUNTIME.contains(f)).collect();
        for entry in file.grpc {
            let minor = |s: &str| {
                GrpcVersion::parse(s)
                    .filter(|v| v.patch.is_none() && v.pre.is_none())
                    .map(|v| (v.major, v.minor))
                    .ok_or(format!("grpc-go range end {s:?} is not major.minor"))
            };
            let (first, last) = (minor(&entry.first)?, minor(&entry.last)?);
            if first > last || entry.verified.is_empty() {
                return Err(format!("grpc-go {}–{}: empty", entry.first, entry.last));
            }
            let mut offsets = GoOffsets::default();
            read_fields(&entry.offsets, &grpc_fields, &mut offsets)
                .map_err(|e| format!("grpc-go {}–{}: {e}", entry.first, entry.last))?;
            if entry.args.len() != Arg::ALL.len() {
                return Err(format!("grpc-go {}–{}: not every argument", entry.first, entry.last));
            }
            for arg in Arg::ALL {
                match entry.args.get(arg.key()) {
                    Some(&r) if is_abi_register(r) => arg.set(&mut offsets.args, r),
                    _ => return Err(format!("grpc-go {}: bad or no {}", entry.first, arg.key())),
                }
            }
            table.grpc.push(GrpcLayout { first, last, offsets });
        }
        for entry in file.go {
            let minor = |s: &str| {
                version::go_minor(s).ok_or(format!("Go range end {s:?} names no release"))
            };
            let (first, last) = (minor(&entry.first)?, minor(&entry.last)?);
            if first > last || entry.verified.is_empty() {
                return Err(format!("Go {}–{}: empty", entry.first, entry.last));
            }
            let mut offsets = GoOffsets::default();
            read_fields(&entry.offsets, &Field::RUNTIME, &mut offsets)
                .map_err(|e| format!("Go {}–{}: {e}", entry.first, entry.last))?;
            table.go.push(GoLayout { first, last, offsets });
        }
        let overlap =
            |a: ((u32, u32), (u32, u32)), b: ((u32, u32), (u32, u32))| a.0 <= b.1 && b.0 <= a.1;
        for (i, a) in table.grpc.iter().enumerate() {
            if table.grpc[..i].iter().any(|b| overlap((a.first, a.last), (b.first, b.last))) {
                return Err(format!("grpc-go ranges overlap at 1.{}", a.first.1));
            }
        }
        for (i, a) in table.go.iter().enumerate() {
            if table.go[..i].iter().any(|b| a.first <= b.last && b.first <= a.last) {
                return Err(format!("Go ranges overlap at 1.{}", a.first));
            }
        }
        Ok(table)
    }

    /// The layout of grpc-go `version`'s side, if covered.
    pub fn grpc_layout(&self, version: &GrpcVersion) -> Option<&GrpcLayout> {
        let key = (version.major, version.minor);
        self.grpc.iter().find(|l| l.first <= key && key <= l.last)
    }

    /// The layout of the runtime of Go `go_version` (`go1.26.8`), if covered.
    pub fn go_layout(&self, go_version: &str) -> Option<&GoLayout> {
        let minor = version::go_minor(go_version)?;
        self.go.iter().find(|l| l.first <= minor && minor <= l.last)
    }

    /// The grpc-go releases listed, for messages: `1.33, 1.40–1.85`.
    pub fn grpc_listed(&self) -> String {
        let mut ranges: Vec<_> = self.grpc.iter().map(|l| (l.first, l.last)).collect();
        ranges.sort();
        // Adjacent ranges read as one.
        let mut merged: Vec<((u32, u32), (u32, u32))> = Vec::new();
        for (first, last) in ranges {
            match merged.last_mut() {
                Some((_, end)) if end.0 == first.0 && end.1 + 1 == first.1 => *end = last,
                _ => merged.push((first, last)),
            }
        }
        let show = |(a, b): ((u32, u32), (u32, u32))| {
            if a == b {
                format!("{}.{}", a.0, a.1)
            } else {
                format!("{}.{}–{}.{}", a.0, a.1, b.0, b.1)
            }
        };
        merged.into_iter().map(show).collect::<Vec<_>>().join(", ")
    }

    /// The newest grpc-go release listed, as `1.85`.
    pub fn grpc_newest(&self) -> Option<String> {
        self.grpc.iter().map(|l| l.last).max().map(|(a, b)| format!("{a}.{b}"))
    }

    /// The Go releases listed, for messages: `Go 1.19 to 1.27`.
    pub fn go_listed(&self) -> String {
        let mut ranges: Vec<_> = self.go.iter().map(|l| (l.first, l.last)).collect();
        ranges.sort();
        let show = |(a, b): (u32, u32)| {
            if a == b {
                format!("1.{a}")
            } else {
                format!("1.{a} to 1.{b}")
            }
        };
        ranges.into_iter().map(show).collect::<Vec<_>>().join(", ")
    }

    /// The offsets for grpc-go `version` in a binary built by Go
    /// `go_version`; the error says why there are none, in words that follow
    /// "and ".
    pub fn known(&self, version: &GrpcVersion, go_version: &str) -> Result<GoOffsets, String> {
        let Some(grpc) = self.grpc_layout(version) else {
            return Err(format!(
                "grpc-go {version} is not in podtap's offset table (known up to {}: {})",
                self.grpc_newest().unwrap_or_else(|| "none".to_owned()),
                self.grpc_listed()
            ));
        };
        let Some(go) = self.go_layout(go_version) else {
            return Err(format!(
                "podtap's offset table knows the runtime structs of Go {}, not {go_version}",
                self.go_listed()
            ));
        };
        let mut offsets = grpc.offsets;
        for f in Field::RUNTIME {
            f.set(&mut offsets, f.get(&go.offsets));
        }
        Ok(offsets)
    }
}

/// Reads `fields` from `values` into `offsets`: exactly those, each once.
fn read_fields(
    values: &BTreeMap<String, u32>,
    fields: &[Field],
    offsets: &mut GoOffsets,
) -> Result<(), String> {
    if values.len() != fields.len() {
        let extra: Vec<&str> = values
            .keys()
            .map(String::as_str)
            .filter(|k| !fields.iter().any(|f| f.key() == *k))
            .collect();
        let lacking: Vec<&str> =
            fields.iter().map(|f| f.key()).filter(|k| !values.contains_key(*k)).collect();
        return Err(format!("fields not expected {extra:?}, lacking {lacking:?}"));
    }
    for &f in fields {
        let v = values.get(f.key()).ok_or(format!("no {}", f.key()))?;
        f.set(offsets, *v);
    }
    Ok(())
}

/// The table of `offsets.json`, parsed once; an error if it does not parse
/// (the tests keep that from happening).
pub fn table() -> Result<&'static Table, &'static str> {
    static TABLE: OnceLock<Result<Table, String>> = OnceLock::new();
    TABLE
        .get_or_init(|| Table::parse(include_str!("offsets.json")))
        .as_ref()
        .map_err(String::as_str)
}

/// The table's offsets for grpc-go `version` in a binary built by Go
/// `go_version`; the error says why there are none, in words that follow
/// "and ".
pub fn known(version: &GrpcVersion, go_version: &str) -> Result<GoOffsets, String> {
    match table() {
        Ok(table) => table.known(version, go_version),
        Err(e) => Err(format!("podtap's offset table is damaged ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> GrpcVersion {
        GrpcVersion::parse(s).unwrap()
    }

    #[test]
    fn the_committed_table_parses_and_covers_the_matrix() {
        let table = table().expect("offsets.json parses");
        // The old end (Debian's) and the range of the version matrix.
        for version in ["1.33.3", "1.40.0", "1.40.1", "1.51.0", "1.59.0", "1.60.1", "1.85.0"] {
            assert!(table.known(&v(version), "go1.26.8").is_ok(), "{version}");
        }
        assert!(table.known(&v("1.33.0"), "go1.19.8").is_ok());
        assert!(table.known(&v("1.85.0"), "go1.27.3").is_ok());
        let newer = table.known(&v("1.86.0"), "go1.26.8").unwrap_err();
        assert!(newer.contains("grpc-go 1.86.0 is not in podtap's offset table (known up to 1.85"));
        assert!(table.known(&v("1.34.0"), "go1.26.8").is_err());
        assert!(table.known(&v("2.40.0"), "go1.26.8").is_err());
        let old_go = table.known(&v("1.60.0"), "go1.18.10").unwrap_err();
        assert!(old_go.contains("not go1.18.10"), "{old_go}");
        assert!(table.known(&v("1.60.0"), "go1.28.0").is_err());
        assert_eq!(table.grpc_newest().as_deref(), Some("1.85"));
    }

    #[test]
    fn the_server_frame_moved_in_1_60() {
        use formats::wire::{GO_REG_RBX, GO_REG_RDI};
        let before = known(&v("1.59.0"), "go1.26.8").unwrap();
        let after = known(&v("1.60.0"), "go1.26.8").unwrap();
        assert_eq!(before.args.server_frame, GO_REG_RBX);
        assert_eq!(after.args.server_frame, GO_REG_RDI);
        assert_eq!(before.args.client_frame, after.args.client_frame);
    }

    #[test]
    fn bad_tables_are_refused() {
        let ok = include_str!("offsets.json");
        assert!(Table::parse(ok).is_ok());
        assert!(Table::parse("").is_err());
        assert!(Table::parse("{}").is_err());
        // A register outside the ABI's integer registers.
        let mut json: serde_json::Value = serde_json::from_str(ok).unwrap();
        json["grpc"][0]["args"]["server_frame"] = 7.into();
        assert!(Table::parse(&json.to_string()).unwrap_err().contains("server_frame"));
        // A field missing.
        let mut json: serde_json::Value = serde_json::from_str(ok).unwrap();
        json["grpc"][0]["offsets"].as_object_mut().unwrap().remove("client_conn");
        assert!(Table::parse(&json.to_string()).unwrap_err().contains("client_conn"));
        // Overlapping ranges.
        let mut json: serde_json::Value = serde_json::from_str(ok).unwrap();
        let first = json["grpc"][0].clone();
        json["grpc"].as_array_mut().unwrap().push(first);
        assert!(Table::parse(&json.to_string()).unwrap_err().contains("overlap"));
    }

    #[test]
    fn listed_ranges_read_well() {
        let layout = |a: u32, b: u32| GrpcLayout {
            first: (1, a),
            last: (1, b),
            offsets: GoOffsets::default(),
        };
        let table = Table {
            grpc: vec![layout(40, 51), layout(33, 33), layout(52, 59), layout(60, 85)],
            go: vec![GoLayout { first: 19, last: 27, offsets: GoOffsets::default() }],
        };
        assert_eq!(table.grpc_listed(), "1.33, 1.40–1.85");
        assert_eq!(table.go_listed(), "1.19 to 1.27");
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
        for (i, a) in Arg::ALL.into_iter().enumerate() {
            a.set(&mut o.args, i as u8 + 1);
        }
        assert_eq!(o.args.server_transport, 1);
        assert_eq!(o.args.loopy_fields_len, 9);
        let keys: std::collections::HashSet<_> = Field::ALL.iter().map(|f| f.key()).collect();
        assert_eq!(keys.len(), Field::ALL.len());
    }

    #[test]
    fn needed_fields() {
        let none = Functions::default();
        assert_eq!(Field::needed_by(&none).len(), 6);
        assert!(Arg::needed_by(&none).is_empty());
        let loopy = Functions { loopy_write_header: Some(1), ..none };
        assert!(Field::needed_by(&loopy).contains(&Field::BufwriterConn));
        assert!(!Field::needed_by(&loopy).contains(&Field::MetaFields));
        assert_eq!(Arg::needed_by(&loopy).len(), 5);
        let all = Functions {
            server_operate_headers: Some(1),
            client_operate_headers: Some(2),
            loopy_write_header: Some(3),
        };
        assert_eq!(Field::needed_by(&all), Field::ALL);
        assert_eq!(Arg::needed_by(&all), Arg::ALL);
    }
}
