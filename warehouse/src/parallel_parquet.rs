//! Iceberg data files in Parquet whose columns are encoded side by side.
//!
//! iceberg-rust's `ParquetWriter` encodes a row group's columns one after the
//! other on the calling thread, and Parquet encoding is half of what the
//! writer spends per event. This writer buffers a row group's batches and
//! encodes its columns on rayon's pool (parquet's `ArrowColumnWriter` API, the
//! way DataFusion writes in parallel), so the encoder uses the cores the
//! decoding stage leaves idle. The file's `DataFile` entry (sizes, counts,
//! bounds, split offsets) is built from the footer as iceberg-rust builds it;
//! a test below checks the two agree.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, SchemaRef as ArrowSchemaRef};
use iceberg::io::{FileWrite, OutputFile};
use iceberg::spec::{
    DataContentType, DataFileBuilder, DataFileFormat, Datum, PrimitiveType, SchemaRef, Struct, Type,
};
use iceberg::writer::CurrentFileStatus;
use iceberg::writer::file_writer::{FileWriter, FileWriterBuilder};
use iceberg::{Error, ErrorKind};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::WriterProperties;
use parquet::file::statistics::Statistics;
use parquet::file::writer::SerializedFileWriter;
use rayon::prelude::*;

fn parquet_err(context: &'static str) -> impl Fn(parquet::errors::ParquetError) -> Error {
    move |e| Error::new(ErrorKind::Unexpected, context).with_source(e)
}

/// Builds [`ParallelParquetWriter`]s (a drop-in for iceberg-rust's
/// `ParquetWriterBuilder` under its rolling and data file writers).
#[derive(Clone, Debug)]
pub struct ParallelParquetWriterBuilder {
    props: WriterProperties,
    schema: SchemaRef,
}

impl ParallelParquetWriterBuilder {
    pub fn new(props: WriterProperties, schema: SchemaRef) -> Self {
        Self { props, schema }
    }
}

impl FileWriterBuilder for ParallelParquetWriterBuilder {
    type R = ParallelParquetWriter;

    async fn build(&self, output_file: OutputFile) -> iceberg::Result<ParallelParquetWriter> {
        Ok(ParallelParquetWriter {
            schema: self.schema.clone(),
            props: self.props.clone(),
            output_file,
            open: None,
            pending: Vec::new(),
            rows: 0,
            written: 0,
            nan_counts: HashMap::new(),
        })
    }
}

/// Threads that encode columns: one per core (`None` if none could be
/// started; rayon's global pool does the work then).
fn encode_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("parquet-encode-{i}"))
            .build()
            .inspect_err(
                |e| tracing::warn!(error = %e, "no Parquet encoder threads; sharing rayon's pool"),
            )
            .ok()
    })
    .as_ref()
}

/// Bytes a batch's rows take in memory (slices counted for their rows, not
/// for the buffers they share).
fn slice_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

/// The sink the serialized file writer writes into; what it holds is
/// handed to the output file after each row group.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl std::io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Open {
    file: SerializedFileWriter<Buffer>,
    factory: ArrowRowGroupWriterFactory,
    arrow_schema: ArrowSchemaRef,
    buffer: Buffer,
    out: Box<dyn FileWrite>,
}

pub struct ParallelParquetWriter {
    schema: SchemaRef,
    props: WriterProperties,
    output_file: OutputFile,
    open: Option<Open>,
    /// Rows of the row group being gathered.
    pending: Vec<RecordBatch>,
    rows: usize,
    /// Bytes handed to the output file.
    written: usize,
    nan_counts: HashMap<i32, u64>,
}

impl ParallelParquetWriter {
    async fn open(&mut self) -> iceberg::Result<&mut Open> {
        if self.open.is_none() {
            let arrow_schema: ArrowSchemaRef =
                Arc::new(iceberg::arrow::schema_to_arrow_schema(&self.schema)?);
            let buffer = Buffer::default();
            // ArrowWriter lays out the file (schema with field ids, the
            // embedded Arrow schema) and hands over its lower-level parts.
            let (file, factory) = ArrowWriter::try_new(
                buffer.clone(),
                arrow_schema.clone(),
                Some(self.props.clone()),
            )
            .and_then(ArrowWriter::into_serialized_writer)
            .map_err(parquet_err("starting a Parquet file"))?;
            let out = self.output_file.writer().await?;
            self.open = Some(Open {
                file,
                factory,
                arrow_schema,
                buffer,
                out,
            });
        }
        self.open
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::Unexpected, "Parquet file not open"))
    }

    /// Encodes `rows` of the pending batches as one row group, its columns
    /// in parallel, and hands the bytes to the output file.
    async fn flush_row_group(&mut self, rows: usize) -> iceberg::Result<()> {
        // Opened before rows leave `pending`, so a failed open loses none.
        self.open().await?;
        let mut group = Vec::new();
        let mut need = rows;
        while need > 0 && !self.pending.is_empty() {
            let b = self.pending.remove(0);
            if b.num_rows() <= need {
                need -= b.num_rows();
                group.push(b);
            } else {
                group.push(b.slice(0, need));
                self.pending.insert(0, b.slice(need, b.num_rows() - need));
                need = 0;
            }
        }
        let open = self.open().await?;
        let index = open.file.flushed_row_groups().len();
        let writers = open
            .factory
            .create_column_writers(index)
            .map_err(parquet_err("creating column writers"))?;
        let mut leaves: Vec<Vec<_>> = writers.iter().map(|_| Vec::new()).collect();
        for batch in &group {
            let mut at = 0;
            for (field, column) in open.arrow_schema.fields().iter().zip(batch.columns()) {
                for leaf in compute_leaves(field, column).map_err(parquet_err("leveling"))? {
                    leaves
                        .get_mut(at)
                        .ok_or_else(|| {
                            Error::new(ErrorKind::Unexpected, "more leaves than columns")
                        })?
                        .push(leaf);
                    at += 1;
                }
            }
        }
        // On a pool of its own, awaited: the async worker stays free, and the
        // encoder does not queue behind the decoder's jobs on rayon's global
        // pool (the OS shares the cores between the two stages instead).
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = move || {
            let chunks: parquet::errors::Result<Vec<ArrowColumnChunk>> = writers
                .into_par_iter()
                .zip(leaves)
                .map(|(mut writer, leaves)| {
                    for leaf in &leaves {
                        writer.write(leaf)?;
                    }
                    writer.close()
                })
                .collect();
            let _ = tx.send(chunks);
        };
        match encode_pool() {
            Some(pool) => pool.spawn(job),
            None => rayon::spawn(job),
        }
        let chunks = rx
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Unexpected, "the Parquet encoder stopped").with_source(e)
            })?
            .map_err(parquet_err("encoding columns"))?;
        let mut row_group = open
            .file
            .next_row_group()
            .map_err(parquet_err("starting a row group"))?;
        for chunk in chunks {
            chunk
                .append_to_row_group(&mut row_group)
                .map_err(parquet_err("appending a column chunk"))?;
        }
        row_group
            .close()
            .map_err(parquet_err("closing a row group"))?;
        let bytes = open.buffer.take();
        let len = bytes.len();
        open.out.write(bytes.into()).await?;
        self.written += len;
        Ok(())
    }

    fn pending_rows(&self) -> usize {
        self.pending.iter().map(RecordBatch::num_rows).sum()
    }

    fn count_nans(&mut self, batch: &RecordBatch) {
        for (field, column) in self.schema.as_struct().fields().iter().zip(batch.columns()) {
            let nans = match column.data_type() {
                DataType::Float64 => column
                    .as_primitive::<Float64Type>()
                    .iter()
                    .filter(|v| v.is_some_and(f64::is_nan))
                    .count(),
                DataType::Float32 => column
                    .as_primitive::<Float32Type>()
                    .iter()
                    .filter(|v| v.is_some_and(f32::is_nan))
                    .count(),
                _ => continue,
            };
            *self.nan_counts.entry(field.id).or_default() += nans as u64;
        }
    }
}

impl FileWriter for ParallelParquetWriter {
    async fn write(&mut self, batch: &RecordBatch) -> iceberg::Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.count_nans(batch);
        self.rows += batch.num_rows();
        self.pending.push(batch.clone());
        let group_rows = self.props.max_row_group_row_count().unwrap_or(1024 * 1024);
        while self.pending_rows() >= group_rows {
            self.flush_row_group(group_rows).await?;
        }
        Ok(())
    }

    async fn close(mut self) -> iceberg::Result<Vec<DataFileBuilder>> {
        if self.rows == 0 {
            return Ok(Vec::new());
        }
        let rest = self.pending_rows();
        if rest > 0 {
            self.flush_row_group(rest).await?;
        }
        let Some(mut open) = self.open.take() else {
            return Ok(Vec::new());
        };
        let metadata = open
            .file
            .close()
            .map_err(parquet_err("finishing a Parquet file"))?;
        let tail = open.buffer.take();
        self.written += tail.len();
        open.out.write(tail.into()).await?;
        open.out.close().await?;
        let builder = data_file_builder(
            &self.schema,
            &metadata,
            self.written,
            self.output_file.location().to_string(),
            std::mem::take(&mut self.nan_counts),
        )?;
        Ok(vec![builder])
    }
}

impl CurrentFileStatus for ParallelParquetWriter {
    fn current_file_path(&self) -> String {
        self.output_file.location().to_string()
    }

    fn current_row_num(&self) -> usize {
        self.rows
    }

    fn current_written_size(&self) -> usize {
        // Buffered rows count at their Arrow size: an overestimate of what
        // they will take encoded, so a file rolls over early, never late.
        self.written + self.pending.iter().map(slice_bytes).sum::<usize>()
    }
}

/// A Parquet statistic as an Iceberg bound (`None` for types sluice's
/// tables do not have, which then carry no bound, and for inexact ones).
fn bound(ty: &PrimitiveType, stats: &Statistics, min: bool) -> iceberg::Result<Option<Datum>> {
    macro_rules! pick {
        ($s:expr) => {
            if min {
                $s.min_opt().filter(|_| $s.min_is_exact())
            } else {
                $s.max_opt().filter(|_| $s.max_is_exact())
            }
        };
    }
    Ok(match (ty, stats) {
        (PrimitiveType::Boolean, Statistics::Boolean(s)) => pick!(s).map(|v| Datum::bool(*v)),
        (PrimitiveType::Int, Statistics::Int32(s)) => pick!(s).map(|v| Datum::int(*v)),
        (PrimitiveType::Date, Statistics::Int32(s)) => pick!(s).map(|v| Datum::date(*v)),
        (PrimitiveType::Long, Statistics::Int64(s)) => pick!(s).map(|v| Datum::long(*v)),
        (PrimitiveType::Timestamp, Statistics::Int64(s)) => {
            pick!(s).map(|v| Datum::timestamp_micros(*v))
        }
        (PrimitiveType::Timestamptz, Statistics::Int64(s)) => {
            pick!(s).map(|v| Datum::timestamptz_micros(*v))
        }
        (PrimitiveType::Float, Statistics::Float(s)) => pick!(s).map(|v| Datum::float(*v)),
        (PrimitiveType::Double, Statistics::Double(s)) => pick!(s).map(|v| Datum::double(*v)),
        (PrimitiveType::String, Statistics::ByteArray(s)) => match pick!(s) {
            Some(v) => Some(Datum::string(v.as_utf8().map_err(|e| {
                Error::new(ErrorKind::DataInvalid, "a string bound is not UTF-8").with_source(e)
            })?)),
            None => None,
        },
        _ => None,
    })
}

/// The `DataFile` entry of a written file, from its footer.
fn data_file_builder(
    schema: &SchemaRef,
    metadata: &ParquetMetaData,
    written: usize,
    path: String,
    nan_value_counts: HashMap<i32, u64>,
) -> iceberg::Result<DataFileBuilder> {
    let mut sizes: HashMap<i32, u64> = HashMap::new();
    let mut values: HashMap<i32, u64> = HashMap::new();
    let mut nulls: HashMap<i32, u64> = HashMap::new();
    let mut lower: HashMap<i32, Datum> = HashMap::new();
    let mut upper: HashMap<i32, Datum> = HashMap::new();
    for row_group in metadata.row_groups() {
        for column in row_group.columns() {
            let info = column.column_descr().self_type().get_basic_info();
            if !info.has_id() {
                continue;
            }
            let id = info.id();
            // Columns the table's schema does not know are skipped (as
            // Iceberg's Java writer does).
            let Some(field) = schema.field_by_id(id) else {
                continue;
            };
            *sizes.entry(id).or_default() += column.compressed_size() as u64;
            *values.entry(id).or_default() += column.num_values() as u64;
            let Some(stats) = column.statistics() else {
                continue;
            };
            if let Some(n) = stats.null_count_opt() {
                *nulls.entry(id).or_default() += n;
            }
            let Type::Primitive(ty) = field.field_type.as_ref() else {
                continue;
            };
            if let Some(min) = bound(ty, stats, true)? {
                match lower.get(&id) {
                    Some(old) if *old <= min => {}
                    _ => {
                        lower.insert(id, min);
                    }
                }
            }
            if let Some(max) = bound(ty, stats, false)? {
                match upper.get(&id) {
                    Some(old) if *old >= max => {}
                    _ => {
                        upper.insert(id, max);
                    }
                }
            }
        }
    }
    let mut builder = DataFileBuilder::default();
    builder
        .content(DataContentType::Data)
        .file_path(path)
        .file_format(DataFileFormat::Parquet)
        .partition(Struct::empty())
        .record_count(metadata.file_metadata().num_rows() as u64)
        .file_size_in_bytes(written as u64)
        .column_sizes(sizes)
        .value_counts(values)
        .null_value_counts(nulls)
        .nan_value_counts(nan_value_counts)
        .lower_bounds(lower)
        .upper_bounds(upper)
        .split_offsets(Some(
            metadata
                .row_groups()
                .iter()
                .filter_map(|g| g.file_offset())
                .collect(),
        ));
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iceberg::io::FileIO;
    use iceberg::writer::file_writer::ParquetWriterBuilder;
    use sluice_schema::raw::{Enrichment, RawEvent};
    use sluice_schema::tables::EVENT_LOGS;

    /// Enriched events with nulls, repeats and attributes in every column.
    fn event_logs(n: usize) -> RecordBatch {
        let rows: Vec<(RawEvent, Enrichment)> = (0..n)
            .map(|i| {
                let event = RawEvent::from_json(&serde_json::json!({
                    "event_id": format!("e{i}"),
                    "occurred_at": 1_795_264_328_500_i64 + (i as i64 % 977) * 1_000,
                    "service": format!("svc-{}", i % 7),
                    "action": "get",
                    "success": i % 5 != 0,
                    "user_id": (i % 3 != 0).then(|| format!("user-{}", i % 41)),
                    "path": format!("/api/v1/jobs/{}", i % 100),
                    "status_code": 200 + (i % 4) * 100,
                    "latency_ms": (i % 11 != 0).then_some(i as f64 / 7.0),
                    "client_ip": format!("10.0.{}.{}", i % 5, i % 250),
                    "request_id": format!("r-{i}"),
                    "bytes_out": i * 3,
                    "tenant": format!("t{}", i % 4),
                }))
                .unwrap();
                let enrichment = Enrichment {
                    endpoint: Some(format!("jobs/{{id}}/{}", i % 3)),
                    caller_type: Some(["internal", "external", "unknown"][i % 3]),
                    team: (i % 4 != 0).then(|| format!("team-{}", i % 6)),
                    domain: (i % 4 != 0).then(|| "data".to_string()),
                    ingested_at: Some(42),
                };
                (event, enrichment)
            })
            .collect();
        let schema = Arc::new(EVENT_LOGS.arrow_schema().unwrap());
        let batch = sluice_schema::batch::event_logs_batch(&schema, &rows).unwrap();
        // JSON has no NaN: put some in, for the NaN counts.
        let at = schema.index_of("latency_ms").unwrap();
        let latency: arrow_array::Float64Array = batch
            .column(at)
            .as_primitive::<Float64Type>()
            .iter()
            .enumerate()
            .map(|(i, v)| if i % 13 == 0 { Some(f64::NAN) } else { v })
            .collect();
        let mut columns = batch.columns().to_vec();
        columns[at] = Arc::new(latency);
        RecordBatch::try_new(schema, columns).unwrap()
    }

    /// The same rows through iceberg-rust's writer and this one give the
    /// same `DataFile` statistics and the same rows back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn agrees_with_iceberg_rusts_writer() {
        let dir = tempfile::tempdir().unwrap();
        let io = FileIO::new_with_fs();
        let schema = Arc::new(EVENT_LOGS.iceberg_schema().unwrap());
        let batch = event_logs(5_000);
        // Small row groups, so there are several, split mid-batch.
        let props = crate::append::parquet_properties(1_500);
        let out = |name: &str| {
            io.new_output(format!("{}/{name}", dir.path().display()))
                .unwrap()
        };

        let mut theirs = ParquetWriterBuilder::new(props.clone(), schema.clone())
            .build(out("theirs.parquet"))
            .await
            .unwrap();
        let mut ours = ParallelParquetWriterBuilder::new(props, schema.clone())
            .build(out("ours.parquet"))
            .await
            .unwrap();
        for rows in [batch.slice(0, 1_000), batch.slice(1_000, 4_000)] {
            theirs.write(&rows).await.unwrap();
            ours.write(&rows).await.unwrap();
        }
        let theirs = theirs
            .close()
            .await
            .unwrap()
            .pop()
            .unwrap()
            .build()
            .unwrap();
        let ours = ours.close().await.unwrap().pop().unwrap().build().unwrap();
        assert_eq!(ours.record_count(), 5_000);
        assert_eq!(ours.record_count(), theirs.record_count());
        assert_eq!(ours.value_counts(), theirs.value_counts());
        assert_eq!(ours.null_value_counts(), theirs.null_value_counts());
        assert_eq!(ours.nan_value_counts(), theirs.nan_value_counts());
        let latency_id = schema.field_by_name("latency_ms").unwrap().id;
        assert_eq!(ours.nan_value_counts().get(&latency_id), Some(&385));
        assert_eq!(ours.column_sizes(), theirs.column_sizes());
        assert_eq!(ours.split_offsets(), theirs.split_offsets());
        assert_eq!(ours.file_size_in_bytes(), theirs.file_size_in_bytes());
        assert_eq!(ours.lower_bounds(), theirs.lower_bounds());
        assert_eq!(ours.upper_bounds(), theirs.upper_bounds());
        assert_eq!(ours.split_offsets().map(<[i64]>::len), Some(4));
        let on_disk = std::fs::metadata(dir.path().join("ours.parquet"))
            .unwrap()
            .len();
        assert_eq!(ours.file_size_in_bytes(), on_disk);

        let read = |name: &str| {
            let f = std::fs::File::open(dir.path().join(name)).unwrap();
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                .unwrap()
                .build()
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap()
        };
        let (a, b) = (read("ours.parquet"), read("theirs.parquet"));
        let concat =
            |v: &[RecordBatch]| arrow_select::concat::concat_batches(&v[0].schema(), v).unwrap();
        assert_eq!(concat(&a), concat(&b));
    }
}
