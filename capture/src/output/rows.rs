//! One capture row per event, buffered in Arrow builders in the column order
//! of [`formats::schema::capture_schema`].

use std::sync::Arc;

use arrow_array::{
    builder::{
        BinaryBuilder, Int32Builder, ListBuilder, StringBuilder, StringDictionaryBuilder,
        StructBuilder, TimestampNanosecondBuilder, UInt32Builder, UInt64Builder,
    },
    types::Int32Type,
    ArrayRef, RecordBatch,
};
use arrow_schema::{ArrowError, DataType, SchemaRef};
use formats::{
    schema::{capture_schema, headers_type},
    H2Field,
};

/// Kubernetes identity of a process; all `None` for local targets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub namespace: Option<Arc<str>>,
    pub pod: Option<Arc<str>>,
    pub pod_uid: Option<Arc<str>>,
    pub container: Option<Arc<str>>,
    pub container_id: Option<Arc<str>>,
    pub node: Option<Arc<str>>,
}

/// One row. Optional fields are written as nulls.
#[derive(Clone, Debug, Default)]
pub struct Row<'a> {
    pub ts_ns: i64,
    pub kind: &'static str,
    pub pid: Option<u32>,
    pub tid: Option<u32>,
    pub comm: Option<&'a str>,
    pub fd: Option<i32>,
    pub conn_id: Option<u64>,
    pub direction: Option<&'static str>,
    pub seq: Option<u64>,
    pub size: u64,
    pub payload: Option<&'a [u8]>,
    pub local_addr: Option<&'a str>,
    pub remote_addr: Option<&'a str>,
    pub identity: Option<&'a Identity>,
    pub flags: u32,
    pub cpu: Option<u32>,
    pub stream_id: Option<u32>,
    /// Header fields of an `h2_headers` row.
    pub headers: Option<&'a [H2Field<'a>]>,
}

/// A builder for the `headers` column; bytes that are not UTF-8 are replaced.
fn headers_builder() -> ListBuilder<StructBuilder> {
    let DataType::List(item) = headers_type() else { unreachable!("headers are a list") };
    let DataType::Struct(fields) = item.data_type().clone() else {
        unreachable!("header items are structs")
    };
    let values = StructBuilder::new(
        fields,
        vec![Box::new(StringBuilder::new()), Box::new(StringBuilder::new())],
    );
    ListBuilder::new(values).with_field(item)
}

fn push_headers(b: &mut ListBuilder<StructBuilder>, headers: Option<&[H2Field<'_>]>) {
    let Some(headers) = headers else {
        b.append(false);
        return;
    };
    let item = b.values();
    for h in headers {
        if let Some(name) = item.field_builder::<StringBuilder>(0) {
            name.append_value(String::from_utf8_lossy(h.name));
        }
        if let Some(value) = item.field_builder::<StringBuilder>(1) {
            value.append_value(String::from_utf8_lossy(h.value));
        }
        item.append(true);
    }
    b.append(true);
}

/// Buffered rows not yet written.
pub struct RowBuffer {
    schema: SchemaRef,
    ts: TimestampNanosecondBuilder,
    kind: StringDictionaryBuilder<Int32Type>,
    pid: UInt32Builder,
    tid: UInt32Builder,
    comm: StringBuilder,
    fd: Int32Builder,
    conn_id: UInt64Builder,
    direction: StringBuilder,
    seq: UInt64Builder,
    size: UInt64Builder,
    payload: BinaryBuilder,
    local_addr: StringBuilder,
    remote_addr: StringBuilder,
    namespace: StringBuilder,
    pod: StringBuilder,
    pod_uid: StringBuilder,
    container: StringBuilder,
    container_id: StringBuilder,
    node: StringBuilder,
    flags: UInt32Builder,
    cpu: UInt32Builder,
    stream_id: UInt32Builder,
    headers: ListBuilder<StructBuilder>,
    rows: usize,
    payload_bytes: usize,
}

impl Default for RowBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl RowBuffer {
    pub fn new() -> Self {
        Self::with_capacity(0, 0)
    }

    /// Room for `rows` rows and `payload` payload bytes without reallocating.
    pub fn with_capacity(rows: usize, payload: usize) -> Self {
        let strings =
            |bytes_per_row: usize| StringBuilder::with_capacity(rows, rows * bytes_per_row);
        Self {
            schema: capture_schema(),
            ts: TimestampNanosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            kind: StringDictionaryBuilder::new(),
            pid: UInt32Builder::with_capacity(rows),
            tid: UInt32Builder::with_capacity(rows),
            comm: strings(8),
            fd: Int32Builder::with_capacity(rows),
            conn_id: UInt64Builder::with_capacity(rows),
            direction: strings(7),
            seq: UInt64Builder::with_capacity(rows),
            size: UInt64Builder::with_capacity(rows),
            payload: BinaryBuilder::with_capacity(rows, payload),
            local_addr: strings(16),
            remote_addr: strings(16),
            namespace: strings(0),
            pod: strings(0),
            pod_uid: strings(0),
            container: strings(0),
            container_id: strings(0),
            node: strings(0),
            flags: UInt32Builder::with_capacity(rows),
            cpu: UInt32Builder::with_capacity(rows),
            stream_id: UInt32Builder::new(),
            headers: headers_builder(),
            rows: 0,
            payload_bytes: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Payload bytes buffered: what decides when to cut a segment early.
    pub fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }

    pub fn push(&mut self, row: &Row<'_>) {
        self.ts.append_value(row.ts_ns);
        self.kind.append_value(row.kind);
        self.pid.append_option(row.pid);
        self.tid.append_option(row.tid);
        self.comm.append_option(row.comm);
        self.fd.append_option(row.fd);
        self.conn_id.append_option(row.conn_id);
        self.direction.append_option(row.direction);
        self.seq.append_option(row.seq);
        self.size.append_value(row.size);
        self.payload.append_option(row.payload);
        self.local_addr.append_option(row.local_addr);
        self.remote_addr.append_option(row.remote_addr);
        let id = row.identity;
        let field = |f: fn(&Identity) -> &Option<Arc<str>>| id.and_then(|i| f(i).as_deref());
        self.namespace.append_option(field(|i| &i.namespace));
        self.pod.append_option(field(|i| &i.pod));
        self.pod_uid.append_option(field(|i| &i.pod_uid));
        self.container.append_option(field(|i| &i.container));
        self.container_id.append_option(field(|i| &i.container_id));
        self.node.append_option(field(|i| &i.node));
        self.flags.append_value(row.flags);
        self.cpu.append_option(row.cpu);
        self.stream_id.append_option(row.stream_id);
        push_headers(&mut self.headers, row.headers);
        self.rows += 1;
        self.payload_bytes += row.payload.map_or(0, <[u8]>::len);
    }

    /// Moves the buffered rows into a record batch and starts over, with room
    /// for as many rows as this batch had (segments are cut about once a
    /// second, so the next one is usually alike).
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut full = std::mem::replace(self, Self::with_capacity(self.rows, self.payload_bytes));
        full.take_batch()
    }

    fn take_batch(&mut self) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.ts.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.pid.finish()),
            Arc::new(self.tid.finish()),
            Arc::new(self.comm.finish()),
            Arc::new(self.fd.finish()),
            Arc::new(self.conn_id.finish()),
            Arc::new(self.direction.finish()),
            Arc::new(self.seq.finish()),
            Arc::new(self.size.finish()),
            Arc::new(self.payload.finish()),
            Arc::new(self.local_addr.finish()),
            Arc::new(self.remote_addr.finish()),
            Arc::new(self.namespace.finish()),
            Arc::new(self.pod.finish()),
            Arc::new(self.pod_uid.finish()),
            Arc::new(self.container.finish()),
            Arc::new(self.container_id.finish()),
            Arc::new(self.node.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.cpu.finish()),
            Arc::new(self.stream_id.finish()),
            Arc::new(self.headers.finish()),
        ];
        RecordBatch::try_new(self.schema.clone(), columns)
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::{cast::AsArray, types::UInt64Type, Array};

    use super::*;

    #[test]
    fn rows_become_a_batch_with_the_capture_schema_and_nulls_where_absent() {
        let mut buf = RowBuffer::new();
        buf.push(&Row {
            ts_ns: 1_700_000_000_000_000_000,
            kind: "data",
            pid: Some(10),
            tid: Some(11),
            comm: Some("srv"),
            fd: Some(4),
            conn_id: Some(1),
            direction: Some("egress"),
            seq: Some(0),
            size: 5,
            payload: Some(b"hello"),
            local_addr: Some("127.0.0.1:80"),
            remote_addr: Some("127.0.0.1:5555"),
            ..Row::default()
        });
        buf.push(&Row { ts_ns: 1, kind: "lost", size: 3, cpu: Some(1), ..Row::default() });
        assert_eq!(buf.payload_bytes(), 5);
        let batch = buf.finish().unwrap();
        assert!(buf.is_empty());
        assert_eq!(batch.schema(), capture_schema());
        assert_eq!(batch.num_rows(), 2);
        let size = batch.column_by_name("size").unwrap().as_primitive::<UInt64Type>();
        assert_eq!(size.values().to_vec(), vec![5, 3]);
        let payload = batch.column_by_name("payload").unwrap().as_binary::<i32>();
        assert_eq!(payload.value(0), b"hello");
        assert!(payload.is_null(1));
        for col in ["namespace", "pod", "pod_uid", "container", "container_id", "node"] {
            assert_eq!(batch.column_by_name(col).unwrap().null_count(), 2, "{col}");
        }
    }

    #[test]
    fn identity_fills_the_kubernetes_columns() {
        let mut buf = RowBuffer::new();
        let id = Identity {
            namespace: Some("wyw".into()),
            pod: Some("httpserver".into()),
            ..Identity::default()
        };
        buf.push(&Row { kind: "close", identity: Some(&id), ..Row::default() });
        let batch = buf.finish().unwrap();
        assert_eq!(batch.column_by_name("namespace").unwrap().as_string::<i32>().value(0), "wyw");
        assert_eq!(batch.column_by_name("pod").unwrap().as_string::<i32>().value(0), "httpserver");
        assert!(batch.column_by_name("node").unwrap().is_null(0));
    }
}
