//! The exchange file (`--exchanges PATH`): one Parquet row per exchange
//! (SPEC §4), written in batches as exchanges complete.

use std::{fs, path::Path, sync::Arc};

use anyhow::{Context as _, Result};
use arrow_array::{
    builder::{
        BinaryBuilder, BooleanBuilder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
        StructBuilder, TimestampNanosecondBuilder, UInt16Builder, UInt32Builder, UInt64Builder,
    },
    ArrayRef, RecordBatch,
};
use arrow_schema::{DataType, Field, SchemaRef};
use formats::schema::{exchange_schema, meta, FILE_KIND_EXCHANGES, SCHEMA_VERSION};
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, ZstdLevel},
    file::{metadata::KeyValue, properties::WriterProperties},
};

use crate::{exchange::Exchange, protocol::Header};

/// Exchanges per written batch.
const BATCH: usize = 8192;
/// Exchanges per row group.
const ROW_GROUP: usize = 8 * BATCH;

fn header_fields() -> Vec<Field> {
    vec![Field::new("name", DataType::Utf8, false), Field::new("value", DataType::Utf8, true)]
}

fn headers_builder() -> ListBuilder<StructBuilder> {
    let fields = header_fields();
    let item = StructBuilder::new(
        fields.clone(),
        vec![Box::new(StringBuilder::new()), Box::new(StringBuilder::new())],
    );
    ListBuilder::new(item).with_field(Arc::new(Field::new(
        "item",
        DataType::Struct(fields.into()),
        false,
    )))
}

fn push_headers(b: &mut ListBuilder<StructBuilder>, headers: Option<&[Header]>) {
    let Some(headers) = headers else {
        b.append(false);
        return;
    };
    let item = b.values();
    for h in headers {
        if let Some(name) = item.field_builder::<StringBuilder>(0) {
            name.append_value(&h.name);
        }
        if let Some(value) = item.field_builder::<StringBuilder>(1) {
            value.append_option(h.value.as_deref());
        }
        item.append(true);
    }
    b.append(true);
}

/// Buffered exchange rows.
struct Columns {
    protocol: StringBuilder,
    start: TimestampNanosecondBuilder,
    duration: Int64Builder,
    namespace: StringBuilder,
    pod: StringBuilder,
    container: StringBuilder,
    pid: UInt32Builder,
    conn_id: UInt64Builder,
    stream_id: UInt32Builder,
    method: StringBuilder,
    path: StringBuilder,
    authority: StringBuilder,
    status: UInt16Builder,
    grpc_status: Int32Builder,
    grpc_message: StringBuilder,
    content_type: StringBuilder,
    request_body_size: UInt64Builder,
    response_body_size: UInt64Builder,
    request_headers: ListBuilder<StructBuilder>,
    response_headers: ListBuilder<StructBuilder>,
    complete: BooleanBuilder,
    response_trailers: ListBuilder<StructBuilder>,
    response_body: BinaryBuilder,
    role: StringBuilder,
    comm: StringBuilder,
    local_addr: StringBuilder,
    remote_addr: StringBuilder,
    pod_uid: StringBuilder,
    node: StringBuilder,
    issues: StringBuilder,
    rpc_service: StringBuilder,
    rpc_method: StringBuilder,
    grpc_timeout_ns: Int64Builder,
    process: StringBuilder,
    host: StringBuilder,
    route: StringBuilder,
    request_weight: UInt16Builder,
    headers_source: StringBuilder,
    tls: BooleanBuilder,
    rows: usize,
}

impl Columns {
    fn new() -> Self {
        Self {
            protocol: StringBuilder::new(),
            start: TimestampNanosecondBuilder::new().with_timezone("UTC"),
            duration: Int64Builder::new(),
            namespace: StringBuilder::new(),
            pod: StringBuilder::new(),
            container: StringBuilder::new(),
            pid: UInt32Builder::new(),
            conn_id: UInt64Builder::new(),
            stream_id: UInt32Builder::new(),
            method: StringBuilder::new(),
            path: StringBuilder::new(),
            authority: StringBuilder::new(),
            status: UInt16Builder::new(),
            grpc_status: Int32Builder::new(),
            grpc_message: StringBuilder::new(),
            content_type: StringBuilder::new(),
            request_body_size: UInt64Builder::new(),
            response_body_size: UInt64Builder::new(),
            request_headers: headers_builder(),
            response_headers: headers_builder(),
            complete: BooleanBuilder::new(),
            response_trailers: headers_builder(),
            response_body: BinaryBuilder::new(),
            role: StringBuilder::new(),
            comm: StringBuilder::new(),
            local_addr: StringBuilder::new(),
            remote_addr: StringBuilder::new(),
            pod_uid: StringBuilder::new(),
            node: StringBuilder::new(),
            issues: StringBuilder::new(),
            rpc_service: StringBuilder::new(),
            rpc_method: StringBuilder::new(),
            grpc_timeout_ns: Int64Builder::new(),
            process: StringBuilder::new(),
            host: StringBuilder::new(),
            route: StringBuilder::new(),
            request_weight: UInt16Builder::new(),
            headers_source: StringBuilder::new(),
            tls: BooleanBuilder::new(),
            rows: 0,
        }
    }

    fn push(&mut self, x: &Exchange, details: bool) {
        let c = &x.conn;
        self.protocol.append_value(x.protocol);
        self.start.append_value(x.start_ts);
        self.duration.append_option(x.duration_ns());
        self.namespace.append_option(c.namespace.as_deref());
        self.pod.append_option(c.pod.as_deref());
        self.container.append_option(c.container.as_deref());
        self.pid.append_option(c.pid);
        self.conn_id.append_value(c.conn_id);
        self.stream_id.append_option(x.stream_id);
        self.method.append_option(x.method.as_deref());
        self.path.append_option(x.path.as_deref());
        self.authority.append_option(x.authority.as_deref());
        self.status.append_option(x.status);
        self.grpc_status.append_option(x.grpc_status);
        self.grpc_message.append_option(x.grpc_message.as_deref());
        self.content_type.append_option(x.content_type.as_deref());
        self.request_body_size.append_option(x.request_body_size);
        self.response_body_size.append_option(x.response_body_size);
        fn kept(h: &Option<Vec<Header>>, details: bool) -> Option<&[Header]> {
            h.as_deref().filter(|_| details)
        }
        push_headers(&mut self.request_headers, kept(&x.request_headers, details));
        push_headers(&mut self.response_headers, kept(&x.response_headers, details));
        self.complete.append_value(x.complete());
        push_headers(&mut self.response_trailers, kept(&x.response_trailers, details));
        self.response_body.append_option(x.response_body.as_deref().filter(|_| details));
        self.role.append_value(x.role.as_str());
        self.comm.append_option(c.comm.as_deref());
        self.local_addr.append_option(c.local_addr.as_deref());
        self.remote_addr.append_option(c.remote_addr.as_deref());
        self.pod_uid.append_option(c.pod_uid.as_deref());
        self.node.append_option(c.node.as_deref());
        self.issues.append_option((!x.issues.is_empty()).then(|| x.issues.join("; ")));
        self.rpc_service.append_option(x.rpc_service.as_deref());
        self.rpc_method.append_option(x.rpc_method.as_deref());
        self.grpc_timeout_ns.append_option(x.grpc_timeout_ns);
        self.process.append_option(x.conn.process.as_deref());
        self.host.append_option(x.conn.host.as_deref());
        self.route.append_option(x.route.as_deref());
        self.request_weight.append_option(x.request_weight);
        self.headers_source.append_option(x.headers_source);
        self.tls.append_value(x.conn.tls);
        self.rows += 1;
    }

    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.protocol.finish()),
            Arc::new(self.start.finish()),
            Arc::new(self.duration.finish()),
            Arc::new(self.namespace.finish()),
            Arc::new(self.pod.finish()),
            Arc::new(self.container.finish()),
            Arc::new(self.pid.finish()),
            Arc::new(self.conn_id.finish()),
            Arc::new(self.stream_id.finish()),
            Arc::new(self.method.finish()),
            Arc::new(self.path.finish()),
            Arc::new(self.authority.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.grpc_status.finish()),
            Arc::new(self.grpc_message.finish()),
            Arc::new(self.content_type.finish()),
            Arc::new(self.request_body_size.finish()),
            Arc::new(self.response_body_size.finish()),
            Arc::new(self.request_headers.finish()),
            Arc::new(self.response_headers.finish()),
            Arc::new(self.complete.finish()),
            Arc::new(self.response_trailers.finish()),
            Arc::new(self.response_body.finish()),
            Arc::new(self.role.finish()),
            Arc::new(self.comm.finish()),
            Arc::new(self.local_addr.finish()),
            Arc::new(self.remote_addr.finish()),
            Arc::new(self.pod_uid.finish()),
            Arc::new(self.node.finish()),
            Arc::new(self.issues.finish()),
            Arc::new(self.rpc_service.finish()),
            Arc::new(self.rpc_method.finish()),
            Arc::new(self.grpc_timeout_ns.finish()),
            Arc::new(self.process.finish()),
            Arc::new(self.host.finish()),
            Arc::new(self.route.finish()),
            Arc::new(self.request_weight.finish()),
            Arc::new(self.headers_source.finish()),
            Arc::new(self.tls.finish()),
        ];
        self.rows = 0;
        RecordBatch::try_new(schema.clone(), columns).context("failed to assemble exchange rows")
    }
}

/// Writes the exchange file.
pub struct ExchangeWriter {
    schema: SchemaRef,
    columns: Columns,
    writer: ArrowWriter<fs::File>,
    path: std::path::PathBuf,
    details: bool,
}

impl ExchangeWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let file = super::create_private(path)
            .with_context(|| format!("failed to create `{}`", path.display()))?;
        let schema = exchange_schema();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
            // A row group is buffered until it is complete: keep it small.
            .set_max_row_group_row_count(Some(ROW_GROUP))
            .set_max_row_group_bytes(Some(64 << 20))
            .set_key_value_metadata(Some(vec![
                KeyValue::new(meta::FILE_KIND.to_string(), FILE_KIND_EXCHANGES.to_string()),
                KeyValue::new(meta::SCHEMA_VERSION.to_string(), SCHEMA_VERSION.to_string()),
                KeyValue::new(
                    meta::PODTAP_VERSION.to_string(),
                    env!("CARGO_PKG_VERSION").to_string(),
                ),
            ]))
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .with_context(|| format!("failed to start `{}`", path.display()))?;
        Ok(Self {
            schema,
            columns: Columns::new(),
            writer,
            path: path.to_path_buf(),
            details: true,
        })
    }

    /// Whether headers, trailers and `response_body` are written (they are
    /// by default). Without them the file holds what RED needs, and is
    /// written several times faster.
    pub fn keep_details(&mut self, keep: bool) {
        self.details = keep;
    }

    pub fn push(&mut self, x: &Exchange) -> Result<()> {
        self.columns.push(x, self.details);
        if self.columns.rows >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let batch = self.columns.finish(&self.schema)?;
        self.writer
            .write(&batch)
            .with_context(|| format!("failed to write `{}`", self.path.display()))
    }

    pub fn close(mut self) -> Result<()> {
        if self.columns.rows > 0 {
            self.flush()?;
        }
        self.writer
            .close()
            .with_context(|| format!("failed to finish `{}`", self.path.display()))?;
        Ok(())
    }
}
