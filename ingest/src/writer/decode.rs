//! The writer's decoding stage: the raw records of one cut batch → Arrow
//! batches of the route's table, the dedup key of every row (in row order),
//! and the records that failed validation. Runs on every core, off the
//! consume loop.

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};
use rayon::prelude::*;
use serde_json::Value;
use sluice_schema::batch::{self, Strings};
use sluice_schema::raw::{LifecycleEvent, PodLogRecord};
use sluice_schema::validation::ValidationErrors;

use super::RecordKind;
use super::dedup::id_key;
use crate::enrich::Enricher;

/// One consumed Kafka record; its key and payload live in [`RawRecords`].
#[derive(Debug, Clone, Copy)]
pub struct RawRecord {
    pub partition: i32,
    pub offset: i64,
    key: Option<(usize, usize)>,
    payload: (usize, usize),
}

/// Consumed records, their bytes copied into one buffer (a Kafka message
/// does not outlive the next poll).
#[derive(Debug, Default)]
pub struct RawRecords {
    data: Vec<u8>,
    records: Vec<RawRecord>,
}

impl RawRecords {
    pub fn push(&mut self, partition: i32, offset: i64, key: Option<&[u8]>, payload: &[u8]) {
        let mut span = |bytes: &[u8]| {
            let start = self.data.len();
            self.data.extend_from_slice(bytes);
            (start, bytes.len())
        };
        let key = key.map(&mut span);
        let payload = span(payload);
        self.records.push(RawRecord {
            partition,
            offset,
            key,
            payload,
        });
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes held (keys and payloads).
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    pub fn record(&self, i: usize) -> RawRecord {
        self.records[i]
    }

    pub fn payload(&self, i: usize) -> &[u8] {
        let (start, len) = self.records[i].payload;
        &self.data[start..start + len]
    }

    pub fn key(&self, i: usize) -> Option<&[u8]> {
        let (start, len) = self.records[i].key?;
        Some(&self.data[start..start + len])
    }
}

/// A record (or one item of a record's array) that failed validation.
#[derive(Debug)]
pub struct Reject {
    /// Index into the batch's [`RawRecords`].
    pub record: usize,
    /// The failing item alone, when the record was an array of items.
    pub item: Option<Vec<u8>>,
    pub errors: ValidationErrors,
}

#[derive(Debug, Default)]
pub struct Decoded {
    pub batches: Vec<RecordBatch>,
    /// Dedup key of every row, in row order across `batches`.
    pub keys: Vec<u128>,
    pub rejects: Vec<Reject>,
}

fn keys_of(batches: &[RecordBatch], column: &str) -> Result<Vec<u128>, ArrowError> {
    let mut keys = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for b in batches {
        let ids = batch::column::<Strings>(b, column)
            .ok_or_else(|| ArrowError::SchemaError(format!("no string column {column}")))?;
        keys.extend(ids.iter().map(|id| id_key(id.unwrap_or_default())));
    }
    Ok(keys)
}

/// Decodes, validates and (for events) enriches `raw`.
pub fn decode(
    kind: RecordKind,
    enricher: &Enricher,
    schema: &SchemaRef,
    raw: &RawRecords,
    ingested_at: i64,
) -> Result<Decoded, ArrowError> {
    match kind {
        RecordKind::Events => {
            let payloads: Vec<(usize, &[u8])> =
                (0..raw.len()).map(|i| (i, raw.payload(i))).collect();
            let d = enricher.decode_events(schema, &payloads, ingested_at)?;
            Ok(Decoded {
                keys: keys_of(&d.batches, "event_id")?,
                batches: d.batches,
                rejects: d
                    .rejected
                    .into_iter()
                    .map(|(record, errors)| Reject {
                        record,
                        item: None,
                        errors,
                    })
                    .collect(),
            })
        }
        RecordKind::Lifecycle => {
            let parsed: Vec<_> = (0..raw.len())
                .into_par_iter()
                .with_min_len(512)
                .map(|i| LifecycleEvent::from_json_bytes(raw.payload(i)))
                .collect();
            let mut rows = Vec::with_capacity(parsed.len());
            let mut rejects = Vec::new();
            for (record, p) in parsed.into_iter().enumerate() {
                match p {
                    Ok(e) => rows.push(e),
                    Err(errors) => rejects.push(Reject {
                        record,
                        item: None,
                        errors,
                    }),
                }
            }
            let batches = vec![batch::platform_events_batch(schema, &rows)?];
            Ok(Decoded {
                keys: keys_of(&batches, "event_id")?,
                batches,
                rejects,
            })
        }
        RecordKind::PodLogs => {
            let parsed: Vec<(Vec<PodLogRecord>, Vec<Reject>)> = (0..raw.len())
                .into_par_iter()
                .with_min_len(64)
                .map(|i| pod_log_records(i, raw.payload(i)))
                .collect();
            let mut rows = Vec::new();
            let mut rejects = Vec::new();
            for (ok, bad) in parsed {
                rows.extend(ok);
                rejects.extend(bad);
            }
            let batches = vec![batch::pod_logs_batch(schema, &rows)?];
            Ok(Decoded {
                keys: keys_of(&batches, "line_id")?,
                batches,
                rejects,
            })
        }
    }
}

/// A pod log message holds one record or an array of one container's
/// records; a bad item is rejected alone, its path prefixed with its index.
fn pod_log_records(record: usize, payload: &[u8]) -> (Vec<PodLogRecord>, Vec<Reject>) {
    let items = match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Array(items)) => items,
        Ok(v) => {
            return match PodLogRecord::from_json(&v) {
                Ok(r) => (vec![r], Vec::new()),
                Err(errors) => (
                    Vec::new(),
                    vec![Reject {
                        record,
                        item: None,
                        errors,
                    }],
                ),
            };
        }
        Err(e) => {
            let errors = ValidationErrors::single("$", format!("not JSON: {e}"));
            return (
                Vec::new(),
                vec![Reject {
                    record,
                    item: None,
                    errors,
                }],
            );
        }
    };
    let mut rows = Vec::with_capacity(items.len());
    let mut rejects = Vec::new();
    for (n, item) in items.iter().enumerate() {
        match PodLogRecord::from_json(item) {
            Ok(r) => rows.push(r),
            Err(errors) => rejects.push(Reject {
                record,
                item: Some(serde_json::to_vec(item).unwrap_or_default()),
                errors: ValidationErrors(
                    errors
                        .0
                        .into_iter()
                        .map(|mut p| {
                            p.path = format!("[{n}].{}", p.path);
                            p
                        })
                        .collect(),
                ),
            }),
        }
    }
    (rows, rejects)
}
