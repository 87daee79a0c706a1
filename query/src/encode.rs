//! Query answers on the wire: JSON rows, CSV, or an Arrow IPC stream.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::json::writer::{JsonArray, WriterBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::QueryError;

/// A result column: its name and Arrow type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
}

pub fn columns(schema: &SchemaRef) -> Vec<ColumnInfo> {
    schema
        .fields()
        .iter()
        .map(|f| ColumnInfo {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
        })
        .collect()
}

fn encode_err(what: &str, e: impl std::fmt::Display) -> QueryError {
    QueryError::Internal(format!("encoding the answer as {what}: {e}"))
}

/// Rows as JSON objects, every column present (NULL as `null`); timestamps
/// as RFC 3339 text.
pub fn json_rows(batches: &[RecordBatch]) -> Result<Vec<Map<String, Value>>, QueryError> {
    let mut buf = Vec::new();
    {
        let mut writer = WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, JsonArray>(&mut buf);
        for batch in batches {
            writer.write(batch).map_err(|e| encode_err("JSON", e))?;
        }
        writer.finish().map_err(|e| encode_err("JSON", e))?;
    }
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&buf).map_err(|e| encode_err("JSON", e))
}

/// RFC 4180 CSV with a header row.
pub fn csv(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, QueryError> {
    let mut buf = Vec::new();
    {
        let mut writer = datafusion::arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut buf);
        if batches.is_empty() {
            // Arrow's writer writes the header with the first batch; with
            // none, write an empty one so the header is there.
            let empty = RecordBatch::new_empty(schema.clone());
            writer.write(&empty).map_err(|e| encode_err("CSV", e))?;
        }
        for batch in batches {
            writer.write(batch).map_err(|e| encode_err("CSV", e))?;
        }
    }
    Ok(buf)
}

/// The Arrow IPC stream format (`application/vnd.apache.arrow.stream`).
pub fn arrow_ipc(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, QueryError> {
    let mut buf = Vec::new();
    {
        let mut writer =
            StreamWriter::try_new(&mut buf, schema).map_err(|e| encode_err("Arrow IPC", e))?;
        for batch in batches {
            writer
                .write(batch)
                .map_err(|e| encode_err("Arrow IPC", e))?;
        }
        writer.finish().map_err(|e| encode_err("Arrow IPC", e))?;
    }
    Ok(buf)
}
