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
    /// `"complete"` for a finished capture, `"segment"` for a part written while
    /// the capture was running (see the crash-safety notes in SPEC §3).
    pub const STATE: &str = "podtap.state";
    /// Sequence number of a segment within its capture.
    pub const SEGMENT: &str = "podtap.segment";
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
/// or `payload`. `size` is the number of bytes the syscall moved and
/// `payload` the first `min(size, max-payload)` of them. A connection with
/// no `connect`/`accept` row was already open when the capture started.
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
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

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
