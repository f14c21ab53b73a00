//! Turning capture record batches into [`Row`]s for the engine, without
//! copying payloads.

use arrow_array::{
    cast::AsArray,
    types::{Int32Type, TimestampNanosecondType, UInt32Type, UInt64Type},
    Array, ListArray, RecordBatch,
};
use formats::schema::{col, direction, kind};

use crate::{
    engine::Row,
    protocol::{Dir, Header},
};

/// Calls `f` for every row of a capture batch, in order. Columns were
/// checked by [`crate::input`]; a missing one yields no rows.
pub fn for_each(batch: &RecordBatch, mut f: impl FnMut(&Row<'_>)) {
    let Some(cols) = Columns::of(batch) else { return };
    let kinds = cols.kind.values().as_string::<i32>();
    for i in 0..batch.num_rows() {
        fn s(a: &arrow_array::StringArray, i: usize) -> Option<&str> {
            (!a.is_null(i)).then(|| a.value(i))
        }
        let key = cols.kind.keys().value(i) as usize;
        if key >= kinds.len() {
            continue;
        }
        let kind = kinds.value(key);
        let direction = match s(cols.direction, i) {
            Some(direction::INGRESS) => Some(Dir::Ingress),
            Some(direction::EGRESS) => Some(Dir::Egress),
            _ => None,
        };
        // Only the rare header rows have their list turned into values.
        let headers = match (kind, cols.headers) {
            (kind::H2_HEADERS, Some(list)) if !list.is_null(i) => Some(headers_at(list, i)),
            _ => None,
        };
        let row = Row {
            ts: cols.ts.value(i),
            kind,
            pid: (!cols.pid.is_null(i)).then(|| cols.pid.value(i)),
            comm: s(cols.comm, i),
            conn_id: (!cols.conn_id.is_null(i)).then(|| cols.conn_id.value(i)),
            direction,
            seq: if cols.seq.is_null(i) { 0 } else { cols.seq.value(i) },
            size: cols.size.value(i),
            payload: if cols.payload.is_null(i) { &[] } else { cols.payload.value(i) },
            local_addr: s(cols.local_addr, i),
            remote_addr: s(cols.remote_addr, i),
            namespace: s(cols.namespace, i),
            pod: s(cols.pod, i),
            pod_uid: s(cols.pod_uid, i),
            container: s(cols.container, i),
            node: s(cols.node, i),
            flags: cols.flags.map_or(0, |f| f.value(i)),
            stream_id: cols.stream_id.and_then(|c| (!c.is_null(i)).then(|| c.value(i))),
            headers: headers.as_deref(),
        };
        f(&row);
    }
}

/// The `(name, value)` pairs of row `i` of a `headers` column.
fn headers_at(list: &ListArray, i: usize) -> Vec<Header> {
    let item = list.value(i);
    let Some(pairs) = item.as_struct_opt() else { return Vec::new() };
    let (Some(names), Some(values)) = (
        pairs.column_by_name("name").and_then(|c| c.as_string_opt::<i32>()),
        pairs.column_by_name("value").and_then(|c| c.as_string_opt::<i32>()),
    ) else {
        return Vec::new();
    };
    (0..pairs.len())
        .map(|j| Header {
            name: names.value(j).to_string(),
            value: (!values.is_null(j)).then(|| values.value(j).to_string()),
        })
        .collect()
}

struct Columns<'a> {
    ts: &'a arrow_array::PrimitiveArray<TimestampNanosecondType>,
    kind: &'a arrow_array::DictionaryArray<Int32Type>,
    pid: &'a arrow_array::PrimitiveArray<UInt32Type>,
    comm: &'a arrow_array::StringArray,
    conn_id: &'a arrow_array::PrimitiveArray<UInt64Type>,
    direction: &'a arrow_array::StringArray,
    seq: &'a arrow_array::PrimitiveArray<UInt64Type>,
    size: &'a arrow_array::PrimitiveArray<UInt64Type>,
    payload: &'a arrow_array::BinaryArray,
    local_addr: &'a arrow_array::StringArray,
    remote_addr: &'a arrow_array::StringArray,
    namespace: &'a arrow_array::StringArray,
    pod: &'a arrow_array::StringArray,
    pod_uid: &'a arrow_array::StringArray,
    container: &'a arrow_array::StringArray,
    node: &'a arrow_array::StringArray,
    /// Columns added after the first files were written: absent in those.
    flags: Option<&'a arrow_array::PrimitiveArray<UInt32Type>>,
    stream_id: Option<&'a arrow_array::PrimitiveArray<UInt32Type>>,
    headers: Option<&'a ListArray>,
}

impl<'a> Columns<'a> {
    fn of(b: &'a RecordBatch) -> Option<Self> {
        let c = |name: &str| b.column_by_name(name);
        Some(Self {
            ts: c(col::TS)?.as_primitive_opt()?,
            kind: c(col::KIND)?.as_dictionary_opt()?,
            pid: c(col::PID)?.as_primitive_opt()?,
            comm: c(col::COMM)?.as_string_opt()?,
            conn_id: c(col::CONN_ID)?.as_primitive_opt()?,
            direction: c(col::DIRECTION)?.as_string_opt()?,
            seq: c(col::SEQ)?.as_primitive_opt()?,
            size: c(col::SIZE)?.as_primitive_opt()?,
            payload: c(col::PAYLOAD)?.as_binary_opt()?,
            local_addr: c(col::LOCAL_ADDR)?.as_string_opt()?,
            remote_addr: c(col::REMOTE_ADDR)?.as_string_opt()?,
            namespace: c(col::NAMESPACE)?.as_string_opt()?,
            pod: c(col::POD)?.as_string_opt()?,
            pod_uid: c(col::POD_UID)?.as_string_opt()?,
            container: c(col::CONTAINER)?.as_string_opt()?,
            node: c(col::NODE)?.as_string_opt()?,
            flags: c(col::FLAGS).and_then(|a| a.as_primitive_opt()),
            stream_id: c(col::STREAM_ID).and_then(|a| a.as_primitive_opt()),
            headers: c(col::HEADERS).and_then(|a| a.as_list_opt()),
        })
    }
}
