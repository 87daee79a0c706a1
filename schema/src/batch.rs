//! Validated rows → Arrow record batches in a table's exact Arrow schema
//! (field ids included), ready for the Parquet/Iceberg writer.

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
};
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, MapArray, PrimitiveArray,
    RecordBatch, StringArray, StructArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{ArrowError, DataType, SchemaRef};

use crate::raw::{Enrichment, LifecycleEvent, PodLogRecord, RawEvent};
use crate::wire::EventView;

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

fn map_type(schema: &SchemaRef, name: &str) -> Result<DataType, ArrowError> {
    Ok(schema.field_with_name(name)?.data_type().clone())
}

/// What the writer adds to an event, borrowed from the enricher's state.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EnrichmentRef<'a> {
    pub endpoint: Option<&'a str>,
    pub caller_type: Option<&'static str>,
    pub team: Option<&'a str>,
    pub domain: Option<&'a str>,
    /// Epoch microseconds.
    pub ingested_at: Option<i64>,
}

impl Enrichment {
    pub fn as_ref(&self) -> EnrichmentRef<'_> {
        EnrichmentRef {
            endpoint: self.endpoint.as_deref(),
            caller_type: self.caller_type,
            team: self.team.as_deref(),
            domain: self.domain.as_deref(),
            ingested_at: self.ingested_at,
        }
    }
}

/// Appends events straight into `platform_event_logs` columns: each string
/// is copied once, from the input into the column.
#[derive(Debug, Default)]
pub struct EventLogsBuilder {
    event_id: StringBuilder,
    occurred_at: Vec<i64>,
    service: StringBuilder,
    action: StringBuilder,
    success: BooleanBuilder,
    user_id: StringBuilder,
    method: StringBuilder,
    path: StringBuilder,
    status_code: Int32Builder,
    latency_ms: Float64Builder,
    client_ip: StringBuilder,
    user_agent: StringBuilder,
    service_account: BooleanBuilder,
    request_id: StringBuilder,
    trace_id: StringBuilder,
    bytes_in: Int64Builder,
    bytes_out: Int64Builder,
    attribute_offsets: Vec<i32>,
    attribute_valid: Vec<bool>,
    attribute_keys: StringBuilder,
    attribute_values: StringBuilder,
    endpoint: StringBuilder,
    caller_type: StringBuilder,
    team: StringBuilder,
    domain: StringBuilder,
    ingested_at: Vec<Option<i64>>,
}

impl EventLogsBuilder {
    /// Room for `rows` events of about `bytes` of input in all.
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        // Sized from a typical gateway event, so columns rarely regrow.
        let strings = |per_row: usize| StringBuilder::with_capacity(rows, rows * per_row);
        Self {
            event_id: strings(36),
            occurred_at: Vec::with_capacity(rows),
            service: strings(16),
            action: strings(24),
            success: BooleanBuilder::with_capacity(rows),
            user_id: strings(16),
            method: strings(6),
            path: StringBuilder::with_capacity(rows, bytes / 8),
            status_code: Int32Builder::with_capacity(rows),
            latency_ms: Float64Builder::with_capacity(rows),
            client_ip: strings(15),
            user_agent: StringBuilder::with_capacity(rows, bytes / 10),
            service_account: BooleanBuilder::with_capacity(rows),
            request_id: strings(16),
            trace_id: strings(32),
            bytes_in: Int64Builder::with_capacity(rows),
            bytes_out: Int64Builder::with_capacity(rows),
            attribute_offsets: Vec::with_capacity(rows + 1),
            attribute_valid: Vec::with_capacity(rows),
            attribute_keys: strings(8),
            attribute_values: strings(8),
            endpoint: strings(24),
            caller_type: strings(8),
            team: strings(12),
            domain: strings(8),
            ingested_at: Vec::with_capacity(rows),
        }
    }

    pub fn len(&self) -> usize {
        self.occurred_at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.occurred_at.is_empty()
    }

    pub fn append(&mut self, e: &EventView<'_>, x: &EnrichmentRef<'_>) {
        self.event_id.append_value(&e.event_id);
        self.occurred_at.push(e.occurred_at);
        self.service.append_value(&e.service);
        self.action.append_value(&e.action);
        self.success.append_value(e.success);
        self.user_id.append_option(e.user_id.as_deref());
        self.method.append_option(e.method.as_deref());
        self.path.append_option(e.path.as_deref());
        self.status_code.append_option(e.status_code);
        self.latency_ms.append_option(e.latency_ms);
        self.client_ip.append_option(e.client_ip.as_deref());
        self.user_agent.append_option(e.user_agent.as_deref());
        self.service_account.append_option(e.service_account);
        self.request_id.append_option(e.request_id.as_deref());
        self.trace_id.append_option(e.trace_id.as_deref());
        self.bytes_in.append_option(e.bytes_in);
        self.bytes_out.append_option(e.bytes_out);
        if self.attribute_offsets.is_empty() {
            self.attribute_offsets.push(0);
        }
        for (k, v) in &e.attributes {
            self.attribute_keys.append_value(k);
            self.attribute_values.append_value(v);
        }
        // Offsets are i32 like Arrow's; a batch never nears 2^31 attributes
        // (at most 64 per event, batches are bounded far below 2^25 rows).
        self.attribute_offsets
            .push(self.attribute_keys.len() as i32);
        self.attribute_valid.push(!e.attributes.is_empty());
        self.endpoint.append_option(x.endpoint);
        self.caller_type.append_option(x.caller_type);
        self.team.append_option(x.team);
        self.domain.append_option(x.domain);
        self.ingested_at.push(x.ingested_at);
    }

    /// The batch in `schema` (the table's, with its field ids).
    pub fn finish(mut self, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
        let rows = self.len();
        if self.attribute_offsets.is_empty() {
            self.attribute_offsets.push(0);
        }
        let DataType::Map(entries, sorted) = map_type(schema, "attributes")? else {
            return Err(ArrowError::SchemaError(
                "attributes is not a map column".into(),
            ));
        };
        let DataType::Struct(fields) = entries.data_type() else {
            return Err(ArrowError::SchemaError(
                "map entries are not a struct".into(),
            ));
        };
        let entries_array = StructArray::try_new(
            fields.clone(),
            vec![
                Arc::new(self.attribute_keys.finish()) as ArrayRef,
                Arc::new(self.attribute_values.finish()) as ArrayRef,
            ],
            None,
        )?;
        let attributes = MapArray::try_new(
            entries.clone(),
            OffsetBuffer::new(std::mem::take(&mut self.attribute_offsets).into()),
            entries_array,
            Some(NullBuffer::from(std::mem::take(&mut self.attribute_valid))),
            sorted,
        )?;
        let occurred_at =
            PrimitiveArray::<TimestampMicrosecondType>::from(std::mem::take(&mut self.occurred_at))
                .with_timezone(UTC);
        let ingested_at =
            PrimitiveArray::<TimestampMicrosecondType>::from(std::mem::take(&mut self.ingested_at))
                .with_timezone(UTC);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(occurred_at),
            Arc::new(self.service.finish()),
            Arc::new(self.action.finish()),
            Arc::new(self.success.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.method.finish()),
            Arc::new(self.path.finish()),
            Arc::new(self.status_code.finish()),
            Arc::new(self.latency_ms.finish()),
            Arc::new(self.client_ip.finish()),
            Arc::new(self.user_agent.finish()),
            Arc::new(self.service_account.finish()),
            Arc::new(self.request_id.finish()),
            Arc::new(self.trace_id.finish()),
            Arc::new(self.bytes_in.finish()),
            Arc::new(self.bytes_out.finish()),
            Arc::new(attributes),
            Arc::new(self.endpoint.finish()),
            Arc::new(self.caller_type.finish()),
            Arc::new(self.team.finish()),
            Arc::new(self.domain.finish()),
            Arc::new(ingested_at),
        ];
        debug_assert!(columns.iter().all(|c| c.len() == rows));
        RecordBatch::try_new(schema.clone(), columns)
    }
}

/// Builds a `platform_event_logs` batch.
pub fn event_logs_batch(
    schema: &SchemaRef,
    rows: &[(RawEvent, Enrichment)],
) -> Result<RecordBatch, ArrowError> {
    let mut b = EventLogsBuilder::with_capacity(rows.len(), rows.len() * 256);
    for (e, x) in rows {
        b.append(&e.view(), &x.as_ref());
    }
    b.finish(schema)
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
        longs(r().map(|l| l.file_fingerprint)),
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

/// One row of `alert_history` (see [`crate::tables::ALERT_HISTORY`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertTransitionRow {
    pub transition_id: String,
    /// Epoch microseconds.
    pub at: i64,
    pub rule_group: String,
    pub rule: String,
    pub series: String,
    pub labels: Vec<(String, String)>,
    pub from_state: &'static str,
    pub to_state: &'static str,
    pub value: Option<f64>,
    /// Epoch microseconds.
    pub active_at: Option<i64>,
    pub summary: Option<String>,
    pub evaluator: Option<String>,
    pub seq: i64,
}

/// Builds an `alert_history` batch.
pub fn alert_history_batch(
    schema: &SchemaRef,
    rows: &[AlertTransitionRow],
) -> Result<RecordBatch, ArrowError> {
    let r = || rows.iter();
    let DataType::Map(entries, sorted) = map_type(schema, "labels")? else {
        return Err(ArrowError::SchemaError("labels is not a map column".into()));
    };
    let DataType::Struct(fields) = entries.data_type() else {
        return Err(ArrowError::SchemaError(
            "map entries are not a struct".into(),
        ));
    };
    let mut offsets = Vec::with_capacity(rows.len() + 1);
    offsets.push(0i32);
    let (mut keys, mut values) = (StringBuilder::new(), StringBuilder::new());
    for row in rows {
        for (k, v) in &row.labels {
            keys.append_value(k);
            values.append_value(v);
        }
        let end = i32::try_from(keys.len())
            .map_err(|_| ArrowError::ComputeError("too many labels in one batch".into()))?;
        offsets.push(end);
    }
    let labels = MapArray::try_new(
        entries.clone(),
        OffsetBuffer::new(offsets.into()),
        StructArray::try_new(
            fields.clone(),
            vec![
                Arc::new(keys.finish()) as ArrayRef,
                Arc::new(values.finish()) as ArrayRef,
            ],
            None,
        )?,
        None,
        sorted,
    )?;
    let mut value = Float64Builder::new();
    value.extend(r().map(|t| t.value));
    let columns: Vec<ArrayRef> = vec![
        required_strings(r().map(|t| t.transition_id.as_str())),
        timestamps(r().map(|t| Some(t.at))),
        required_strings(r().map(|t| t.rule_group.as_str())),
        required_strings(r().map(|t| t.rule.as_str())),
        required_strings(r().map(|t| t.series.as_str())),
        Arc::new(labels),
        required_strings(r().map(|t| t.from_state)),
        required_strings(r().map(|t| t.to_state)),
        Arc::new(value.finish()),
        timestamps(r().map(|t| t.active_at)),
        strings(r().map(|t| t.summary.as_deref())),
        strings(r().map(|t| t.evaluator.as_deref())),
        longs(r().map(|t| Some(t.seq))),
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
