//! Arrow schemas of the Parquet files podtap writes (SPEC §3), and the names of
//! their file-level key/value metadata.
//!
//! `capture` writes with these schemas and `analyze` checks files against them,
//! so both sides change together and [`SCHEMA_VERSION`] tells old files apart.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Version of the capture file layout. Bump on any incompatible change; readers
/// refuse versions newer than theirs.
pub const SCHEMA_VERSION: u32 = 1;

/// File-level metadata keys.
pub mod meta {
    /// `"capture"` for capture files.
    pub const FILE_KIND: &str = "podtap.file_kind";
    /// [`super::SCHEMA_VERSION`] of the writer.
    pub const SCHEMA_VERSION: &str = "podtap.schema_version";
    /// Version of the podtap build that wrote the file.
    pub const PODTAP_VERSION: &str = "podtap.version";
    pub const HOST: &str = "podtap.host";
    /// `uname -r` of the capturing node.
    pub const KERNEL: &str = "podtap.kernel";
    /// RFC 3339 wall-clock times of the capture window.
    pub const START: &str = "podtap.start";
    pub const END: &str = "podtap.end";
    /// JSON: the targets asked for and the processes they resolved to (in a
    /// segment, only the processes found since the previous segment).
    pub const TARGETS: &str = "podtap.targets";
    /// JSON: the options the capture ran with.
    pub const OPTIONS: &str = "podtap.options";
    /// Total events dropped because the ring buffer was full.
    pub const LOST_EVENTS: &str = "podtap.lost_events";
    /// JSON object: kernel-side counters of partly recorded events, by name.
    pub const KERNEL_ERRORS: &str = "podtap.kernel_errors";
    /// Ring buffer records the writer could not parse and dropped.
    pub const MALFORMED_RECORDS: &str = "podtap.malformed_records";
    /// Header blocks read by the Go header probes that failed capture's
    /// checks (an odd stream id, valid field names ...) and were dropped.
    pub const REJECTED_HEADER_BLOCKS: &str = "podtap.rejected_header_blocks";
    /// `"complete"` for a finished capture, `"segment"` for a part written while
    /// the capture was running (see the crash-safety notes in SPEC §3).
    pub const STATE: &str = "podtap.state";
    /// Sequence number of a segment within its capture.
    pub const SEGMENT: &str = "podtap.segment";
    /// JSON list: the programs of target processes looked at for uprobes:
    /// path, build id, Go and grpc-go versions, what was attached, the
    /// struct offsets used and where they came from (DWARF or podtap's table).
    pub const BINARIES: &str = "podtap.binaries";
    /// JSON [`super::Redaction`]: which header values capture masked before
    /// writing, and how often it masked more because it could not tell.
    pub const REDACTION: &str = "podtap.redaction";
}

/// Value of [`meta::REDACTION`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Redaction {
    /// Header names whose values were masked (lowercase); empty with
    /// `--no-redact`.
    pub headers: Vec<String>,
    /// `--no-bodies`: body bytes were not kept, only their lengths.
    pub no_bodies: bool,
    /// Header values masked because of their name.
    pub masked_values: u64,
    /// Times the rest of a header block, or a payload of a stream not
    /// placed yet, was masked because capture could not tell what it held.
    pub uncertain: u64,
    /// Bytes masked for that reason.
    pub uncertain_bytes: u64,
    /// Body bytes not kept (`--no-bodies`).
    pub body_bytes_dropped: u64,
}

/// Value of [`meta::FILE_KIND`] in capture files.
pub const FILE_KIND_CAPTURE: &str = "capture";

/// Values of the `kind` column.
pub mod kind {
    pub const DATA: &str = "data";
    pub const CONNECT: &str = "connect";
    pub const ACCEPT: &str = "accept";
    pub const CLOSE: &str = "close";
    pub const LOST: &str = "lost";
    pub const H2_HEADERS: &str = "h2_headers";
    pub const TLS_DATA: &str = "tls_data";
}

/// Values of the `direction` column.
pub mod direction {
    pub const INGRESS: &str = "ingress";
    pub const EGRESS: &str = "egress";
}

/// Column names of the capture file, in schema order.
pub mod col {
    pub const TS: &str = "ts";
    pub const KIND: &str = "kind";
    pub const PID: &str = "pid";
    pub const TID: &str = "tid";
    pub const COMM: &str = "comm";
    pub const FD: &str = "fd";
    pub const CONN_ID: &str = "conn_id";
    pub const DIRECTION: &str = "direction";
    pub const SEQ: &str = "seq";
    pub const SIZE: &str = "size";
    pub const PAYLOAD: &str = "payload";
    pub const LOCAL_ADDR: &str = "local_addr";
    pub const REMOTE_ADDR: &str = "remote_addr";
    pub const NAMESPACE: &str = "namespace";
    pub const POD: &str = "pod";
    pub const POD_UID: &str = "pod_uid";
    pub const CONTAINER: &str = "container";
    pub const CONTAINER_ID: &str = "container_id";
    pub const NODE: &str = "node";
    pub const FLAGS: &str = "flags";
    pub const CPU: &str = "cpu";
    /// `h2_headers` rows: the HTTP/2 stream id.
    pub const STREAM_ID: &str = "stream_id";
    /// `h2_headers` rows: the header fields, `(name, value)` in frame order.
    pub const HEADERS: &str = "headers";
}

/// Type of the `kind` column: dictionary-encoded strings.
pub fn kind_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// Type of the `ts` column.
pub fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// The schema of a capture file: one row per raw event.
///
/// Which columns are null depends on `kind`: `lost` rows carry only `ts`,
/// `size` (events lost) and `cpu`; lifecycle rows have no `direction`, `seq`
/// or `payload`. In `data` rows `size` is the number of bytes the syscall
/// moved and `payload` the first `min(size, max-payload)` of them. A
/// connection with no `connect`/`accept` row was already open when the
/// capture started.
///
/// `h2_headers` rows (from the Go gRPC uprobes) have `stream_id` and
/// `headers` instead of `seq` and `payload`, and in `size` the number of
/// fields of the frame: more than `headers` holds when
/// `FLAG_H2_FIELDS_TRUNCATED` is set in `flags`. `FLAG_H2_END_STREAM` marks
/// the frame that ends its stream.
pub fn capture_schema() -> SchemaRef {
    let s = |name: &str| Field::new(name, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new(col::TS, ts_type(), false),
        Field::new(col::KIND, kind_type(), false),
        Field::new(col::PID, DataType::UInt32, true),
        Field::new(col::TID, DataType::UInt32, true),
        s(col::COMM),
        Field::new(col::FD, DataType::Int32, true),
        Field::new(col::CONN_ID, DataType::UInt64, true),
        s(col::DIRECTION),
        Field::new(col::SEQ, DataType::UInt64, true),
        Field::new(col::SIZE, DataType::UInt64, false),
        Field::new(col::PAYLOAD, DataType::Binary, true),
        s(col::LOCAL_ADDR),
        s(col::REMOTE_ADDR),
        s(col::NAMESPACE),
        s(col::POD),
        s(col::POD_UID),
        s(col::CONTAINER),
        s(col::CONTAINER_ID),
        s(col::NODE),
        Field::new(col::FLAGS, DataType::UInt32, false),
        Field::new(col::CPU, DataType::UInt32, true),
        Field::new(col::STREAM_ID, DataType::UInt32, true),
        Field::new(col::HEADERS, headers_type(), true),
    ]))
}

/// Value of [`meta::FILE_KIND`] in exchange files.
pub const FILE_KIND_EXCHANGES: &str = "exchanges";

/// Column names of the exchange file (SPEC §4), in schema order.
pub mod xcol {
    pub const PROTOCOL: &str = "protocol";
    pub const START: &str = "start";
    pub const DURATION_NS: &str = "duration_ns";
    pub const NAMESPACE: &str = "namespace";
    pub const POD: &str = "pod";
    pub const CONTAINER: &str = "container";
    pub const PID: &str = "pid";
    pub const CONN_ID: &str = "conn_id";
    pub const STREAM_ID: &str = "stream_id";
    pub const METHOD: &str = "method";
    pub const PATH: &str = "path";
    pub const AUTHORITY: &str = "authority";
    pub const STATUS: &str = "status";
    pub const GRPC_STATUS: &str = "grpc_status";
    pub const GRPC_MESSAGE: &str = "grpc_message";
    pub const CONTENT_TYPE: &str = "content_type";
    pub const REQUEST_BODY_SIZE: &str = "request_body_size";
    pub const RESPONSE_BODY_SIZE: &str = "response_body_size";
    pub const REQUEST_HEADERS: &str = "request_headers";
    pub const RESPONSE_HEADERS: &str = "response_headers";
    pub const COMPLETE: &str = "complete";
    pub const RESPONSE_TRAILERS: &str = "response_trailers";
    pub const RESPONSE_BODY: &str = "response_body";
    pub const ROLE: &str = "role";
    pub const COMM: &str = "comm";
    pub const LOCAL_ADDR: &str = "local_addr";
    pub const REMOTE_ADDR: &str = "remote_addr";
    pub const POD_UID: &str = "pod_uid";
    pub const NODE: &str = "node";
    pub const ISSUES: &str = "issues";
    pub const RPC_SERVICE: &str = "rpc_service";
    pub const RPC_METHOD: &str = "rpc_method";
    pub const GRPC_TIMEOUT_NS: &str = "grpc_timeout_ns";
    /// The target process's name.
    pub const PROCESS: &str = "process";
    /// The machine the capture ran on.
    pub const HOST: &str = "host";
    /// The path with ids collapsed (`http_route`); gRPC: the path.
    pub const ROUTE: &str = "route";
    /// HTTP/2: the stream weight of the request's HEADERS (1–256).
    pub const REQUEST_WEIGHT: &str = "request_weight";
    /// HTTP/2: where the headers came from: `wire` (decoded from the
    /// bytes), `uprobe` (some read from a Go gRPC process because the wire
    /// could not give them) or `both` (the uprobes confirmed the wire).
    pub const HEADERS_SOURCE: &str = "headers_source";
    /// Decoded from the plaintext of a TLS connection, read by uprobes.
    pub const TLS: &str = "tls";
}

/// Values of the exchange `protocol` column.
pub mod protocol {
    pub const HTTP1: &str = "http1";
    pub const HTTP2: &str = "http2";
    pub const GRPC: &str = "grpc";
}

/// Type of a header list: `(name, value)` pairs in wire order.
pub fn headers_type() -> DataType {
    let pair = DataType::Struct(
        vec![Field::new("name", DataType::Utf8, false), Field::new("value", DataType::Utf8, true)]
            .into(),
    );
    DataType::List(Arc::new(Field::new("item", pair, false)))
}

/// The schema of an exchange file: one row per request/response pair.
///
/// `start` is the first byte of the request, `duration_ns` runs to the last
/// byte of the response (null when the response was not seen). `status` is
/// the HTTP status, for gRPC too. `content_type` is the response's.
/// `complete` is false when any part was not seen or could not be decoded;
/// `issues` then says what. A header whose value could not be decoded (HPACK
/// state from before the capture) has a null value; a field whose header was
/// unknown is null. `response_body` holds the first bytes of the response
/// body as seen (bounded). `role` is the target's side: `server` or `client`.
/// For gRPC, `rpc_service` and `rpc_method` come from `:path`
/// (`/package.Service/Method`) and `grpc_timeout_ns` from `grpc-timeout`.
pub fn exchange_schema() -> SchemaRef {
    let s = |name: &str| Field::new(name, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new(xcol::PROTOCOL, DataType::Utf8, false),
        Field::new(xcol::START, ts_type(), false),
        Field::new(xcol::DURATION_NS, DataType::Int64, true),
        s(xcol::NAMESPACE),
        s(xcol::POD),
        s(xcol::CONTAINER),
        Field::new(xcol::PID, DataType::UInt32, true),
        Field::new(xcol::CONN_ID, DataType::UInt64, false),
        Field::new(xcol::STREAM_ID, DataType::UInt32, true),
        s(xcol::METHOD),
        s(xcol::PATH),
        s(xcol::AUTHORITY),
        Field::new(xcol::STATUS, DataType::UInt16, true),
        Field::new(xcol::GRPC_STATUS, DataType::Int32, true),
        s(xcol::GRPC_MESSAGE),
        s(xcol::CONTENT_TYPE),
        Field::new(xcol::REQUEST_BODY_SIZE, DataType::UInt64, true),
        Field::new(xcol::RESPONSE_BODY_SIZE, DataType::UInt64, true),
        Field::new(xcol::REQUEST_HEADERS, headers_type(), true),
        Field::new(xcol::RESPONSE_HEADERS, headers_type(), true),
        Field::new(xcol::COMPLETE, DataType::Boolean, false),
        Field::new(xcol::RESPONSE_TRAILERS, headers_type(), true),
        Field::new(xcol::RESPONSE_BODY, DataType::Binary, true),
        Field::new(xcol::ROLE, DataType::Utf8, false),
        s(xcol::COMM),
        s(xcol::LOCAL_ADDR),
        s(xcol::REMOTE_ADDR),
        s(xcol::POD_UID),
        s(xcol::NODE),
        s(xcol::ISSUES),
        s(xcol::RPC_SERVICE),
        s(xcol::RPC_METHOD),
        Field::new(xcol::GRPC_TIMEOUT_NS, DataType::Int64, true),
        s(xcol::PROCESS),
        s(xcol::HOST),
        s(xcol::ROUTE),
        Field::new(xcol::REQUEST_WEIGHT, DataType::UInt16, true),
        s(xcol::HEADERS_SOURCE),
        Field::new(xcol::TLS, DataType::Boolean, false),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_schema_has_the_contract_columns() {
        let schema = exchange_schema();
        for name in [
            "protocol",
            "start",
            "duration_ns",
            "namespace",
            "pod",
            "container",
            "pid",
            "conn_id",
            "stream_id",
            "method",
            "path",
            "authority",
            "status",
            "grpc_status",
            "grpc_message",
            "content_type",
            "request_body_size",
            "response_body_size",
            "request_headers",
            "response_headers",
            "complete",
        ] {
            assert!(schema.field_with_name(name).is_ok(), "no column {name}");
        }
        assert_eq!(schema.field_with_name("start").unwrap().data_type(), &ts_type());
        assert_eq!(schema.field_with_name("complete").unwrap().data_type(), &DataType::Boolean);
    }

    #[test]
    fn capture_schema_has_the_contract_columns_with_their_types() {
        let schema = capture_schema();
        let expect: &[(&str, DataType)] = &[
            ("ts", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))),
            ("kind", DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))),
            ("pid", DataType::UInt32),
            ("tid", DataType::UInt32),
            ("comm", DataType::Utf8),
            ("fd", DataType::Int32),
            ("conn_id", DataType::UInt64),
            ("direction", DataType::Utf8),
            ("seq", DataType::UInt64),
            ("size", DataType::UInt64),
            ("payload", DataType::Binary),
            ("local_addr", DataType::Utf8),
            ("remote_addr", DataType::Utf8),
            ("namespace", DataType::Utf8),
            ("pod", DataType::Utf8),
            ("pod_uid", DataType::Utf8),
            ("container", DataType::Utf8),
            ("container_id", DataType::Utf8),
            ("node", DataType::Utf8),
        ];
        for (name, ty) in expect {
            let field = schema.field_with_name(name).unwrap_or_else(|_| panic!("no column {name}"));
            assert_eq!(field.data_type(), ty, "type of {name}");
        }
    }

    #[test]
    fn kubernetes_columns_are_nullable() {
        let schema = capture_schema();
        for name in
            [col::NAMESPACE, col::POD, col::POD_UID, col::CONTAINER, col::CONTAINER_ID, col::NODE]
        {
            assert!(schema.field_with_name(name).unwrap().is_nullable(), "{name}");
        }
        assert!(!schema.field_with_name(col::TS).unwrap().is_nullable());
        assert!(!schema.field_with_name(col::SIZE).unwrap().is_nullable());
    }

    #[test]
    fn column_names_are_unique() {
        let schema = capture_schema();
        let mut names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
    }
}
