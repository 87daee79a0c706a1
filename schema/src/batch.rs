//! Validated rows → Arrow record batches in a table's exact Arrow schema
//! (field ids included), ready for the Parquet/Iceberg writer.

use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int32Builder, Int64Builder};
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, MapArray, PrimitiveArray,
    RecordBatch, StringArray, StructArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{ArrowError, DataType, SchemaRef};

use crate::raw::{Enrichment, LifecycleEvent, PodLogRecord, RawEvent};

/// The time zone Iceberg's `timestamptz` maps to in Arrow.
pub const UTC: &str = "+00:00";

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

fn required_strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(values.map(Some).collect::<StringArray>())
}

fn timestamps(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    let array: PrimitiveArray<TimestampMicrosecondType> = values.collect();
    Arc::new(array.with_timezone(UTC))
}

fn ints(values: impl Iterator<Item = Option<i32>>) -> ArrayRef {
    let mut b = Int32Builder::new();
    b.extend(values);
    Arc::new(b.finish())
}

fn longs(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    let mut b = Int64Builder::new();
    b.extend(values);
    Arc::new(b.finish())
}

fn doubles(values: impl Iterator<Item = Option<f64>>) -> ArrayRef {
    let mut b = Float64Builder::new();
    b.extend(values);
    Arc::new(b.finish())
}

fn bools(values: impl Iterator<Item = Option<bool>>) -> ArrayRef {
    let mut b = BooleanBuilder::new();
    b.extend(values);
    Arc::new(b.finish())
}

/// A `map<string,string>` column shaped exactly as `data_type` (the schema's
/// field names and field-id metadata); an empty map is stored as NULL.
fn string_maps<'a, I>(data_type: &DataType, maps: I) -> Result<ArrayRef, ArrowError>
where
    I: Iterator<Item = &'a std::collections::BTreeMap<String, String>>,
{
    let DataType::Map(entries, sorted) = data_type else {
        return Err(ArrowError::SchemaError(format!(
            "expected a map column, the schema has {data_type}"
        )));
    };
    let DataType::Struct(fields) = entries.data_type() else {
        return Err(ArrowError::SchemaError(
            "map entries are not a struct".into(),
        ));
    };
    let mut offsets = vec![0i32];
    let mut valid = Vec::new();
    let mut keys = Vec::new();
    let mut values = Vec::new();
    for map in maps {
        for (k, v) in map {
            keys.push(k.as_str());
            values.push(v.as_str());
        }
        let end = i32::try_from(keys.len())
            .map_err(|_| ArrowError::ComputeError("map column over 2^31 entries".into()))?;
        offsets.push(end);
        valid.push(!map.is_empty());
    }
    let entries_array = StructArray::try_new(
        fields.clone(),
        vec![
            Arc::new(StringArray::from(keys)) as ArrayRef,
            Arc::new(StringArray::from(values)) as ArrayRef,
        ],
        None,
    )?;
    Ok(Arc::new(MapArray::try_new(
        entries.clone(),
        OffsetBuffer::new(offsets.into()),
        entries_array,
        Some(NullBuffer::from(valid)),
        *sorted,
    )?))
}

fn map_type(schema: &SchemaRef, name: &str) -> Result<DataType, ArrowError> {
    Ok(schema.field_with_name(name)?.data_type().clone())
}

/// Builds a `platform_event_logs` batch.
pub fn event_logs_batch(
    schema: &SchemaRef,
    rows: &[(RawEvent, Enrichment)],
) -> Result<RecordBatch, ArrowError> {
    let raw = || rows.iter().map(|(e, _)| e);
    let enr = || rows.iter().map(|(_, x)| x);
    let columns: Vec<ArrayRef> = vec![
        required_strings(raw().map(|e| e.event_id.as_str())),
        timestamps(raw().map(|e| Some(e.occurred_at))),
        required_strings(raw().map(|e| e.service.as_str())),
        required_strings(raw().map(|e| e.action.as_str())),
        bools(raw().map(|e| Some(e.success))),
        strings(raw().map(|e| e.user_id.as_deref())),
        strings(raw().map(|e| e.method.as_deref())),
        strings(raw().map(|e| e.path.as_deref())),
        ints(raw().map(|e| e.status_code)),
        doubles(raw().map(|e| e.latency_ms)),
        strings(raw().map(|e| e.client_ip.as_deref())),
        strings(raw().map(|e| e.user_agent.as_deref())),
        bools(raw().map(|e| e.service_account)),
        strings(raw().map(|e| e.request_id.as_deref())),
        strings(raw().map(|e| e.trace_id.as_deref())),
        longs(raw().map(|e| e.bytes_in)),
        longs(raw().map(|e| e.bytes_out)),
        string_maps(
            &map_type(schema, "attributes")?,
            raw().map(|e| &e.attributes),
        )?,
        strings(enr().map(|x| x.endpoint.as_deref())),
        strings(enr().map(|x| x.caller_type)),
        strings(enr().map(|x| x.team.as_deref())),
        strings(enr().map(|x| x.domain.as_deref())),
        timestamps(enr().map(|x| x.ingested_at)),
    ];
    RecordBatch::try_new(schema.clone(), columns)
}

/// Builds a `pod_logs` batch.
pub fn pod_logs_batch(
    schema: &SchemaRef,
    rows: &[PodLogRecord],
) -> Result<RecordBatch, ArrowError> {
    let r = || rows.iter();
    let columns: Vec<ArrayRef> = vec![
        timestamps(r().map(|l| Some(l.ts))),
        required_strings(r().map(|l| l.cluster.as_str())),
        required_strings(r().map(|l| l.namespace.as_str())),
        required_strings(r().map(|l| l.pod.as_str())),
        required_strings(r().map(|l| l.pod_uid.as_str())),
        required_strings(r().map(|l| l.container.as_str())),
        ints(r().map(|l| Some(l.restart))),
        required_strings(r().map(|l| l.stream.as_str())),
        strings(r().map(|l| l.level.as_deref())),
        required_strings(r().map(|l| l.message.as_str())),
        strings(r().map(|l| l.node.as_deref())),
        required_strings(r().map(|l| l.line_id.as_str())),
        longs(r().map(|l| l.byte_offset)),
    ];
    RecordBatch::try_new(schema.clone(), columns)
}

/// Builds a `platform_events` batch.
pub fn platform_events_batch(
    schema: &SchemaRef,
    rows: &[LifecycleEvent],
) -> Result<RecordBatch, ArrowError> {
    let r = || rows.iter();
    let columns: Vec<ArrayRef> = vec![
        required_strings(r().map(|e| e.event_id.as_str())),
        timestamps(r().map(|e| Some(e.occurred_at))),
        required_strings(r().map(|e| e.cluster.as_str())),
        required_strings(r().map(|e| e.namespace.as_str())),
        required_strings(r().map(|e| e.kind.as_str())),
        required_strings(r().map(|e| e.name.as_str())),
        strings(r().map(|e| e.container.as_deref())),
        required_strings(r().map(|e| e.reason.as_str())),
        required_strings(r().map(|e| e.event_type.as_str())),
        strings(r().map(|e| e.message.as_deref())),
        ints(r().map(|e| e.restart_count)),
        strings(r().map(|e| e.actor.as_deref())),
        ints(r().map(|e| e.exit_code)),
    ];
    RecordBatch::try_new(schema.clone(), columns)
}

/// Typed access to a column of a batch this module built; `None` when the
/// column is missing or of another type.
pub fn column<'a, T: Array + 'static>(batch: &'a RecordBatch, name: &str) -> Option<&'a T> {
    batch.column_by_name(name)?.as_any().downcast_ref::<T>()
}

/// Type aliases for readers of the batches above.
pub type Strings = StringArray;
pub type Ints = Int32Array;
pub type Longs = Int64Array;
pub type Doubles = Float64Array;
pub type Bools = BooleanArray;
pub type Timestamps = PrimitiveArray<TimestampMicrosecondType>;
pub type Maps = MapArray;
