//! Runs a rule's query: SQL through the query engine (admitted and bounded
//! like any query), LogQL through the Loki engine over the log index, and
//! turns the answer into samples — one per row or series, its labels the
//! row's other columns or the series' labels.

use std::sync::Arc;

use arrow_array::{Array, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::DataType;
use chrono::{DateTime, Utc};
use sluice_query::engine::Engine;
use sluice_query::logsearch::LogIndex;

use crate::rules::{Expr, Rule};
use crate::state::{Labels, Sample};

/// The column of a SQL rule that carries the value.
pub const VALUE_COLUMN: &str = "value";

/// Evaluates a rule at `now`: the samples that pass its comparison, or
/// the error that stopped it. More than `max_alerts` samples is an error
/// (the rule's query is probably missing a filter or a `GROUP BY`).
pub async fn evaluate(
    engine: &Engine,
    logs: &Arc<LogIndex>,
    rule: &Rule,
    now: DateTime<Utc>,
    max_alerts: usize,
) -> Result<Vec<Sample>, String> {
    let samples = match &rule.expr {
        Expr::Sql(sql) => {
            let out = engine
                .sql(sql, Vec::new())
                .await
                .map_err(|e| e.to_string())?;
            let mut samples = Vec::with_capacity(out.rows);
            for batch in &out.batches {
                samples.extend(rows(batch)?);
            }
            samples
        }
        Expr::LogQl(expr) => {
            let value =
                sluice_query::loki::instant_metric(logs, expr.clone(), now.timestamp_micros())
                    .await
                    .map_err(|e| e.message().to_string())?;
            match value {
                sluice_query::loki::eval::Value::Scalar(v) => vec![Sample {
                    labels: Labels::new(),
                    value: v,
                }],
                sluice_query::loki::eval::Value::Vector(series) => series
                    .into_iter()
                    .filter_map(|s| {
                        let value = s.points.last()?.1;
                        Some(Sample {
                            labels: s.labels.into_iter().collect(),
                            value,
                        })
                    })
                    .collect(),
            }
        }
    };
    let passing: Vec<Sample> = match &rule.condition {
        None => samples,
        Some(c) => samples.into_iter().filter(|s| c.holds(s.value)).collect(),
    };
    if passing.len() > max_alerts {
        return Err(format!(
            "{} alert instances exceed the limit of {max_alerts} ([alerts] max_alerts_per_rule); \
             narrow the query or group it",
            passing.len()
        ));
    }
    Ok(passing)
}

/// One sample per row: the `value` column as a number, the other columns
/// as labels (a NULL leaves its label out, as an empty Prometheus label).
fn rows(batch: &RecordBatch) -> Result<Vec<Sample>, String> {
    let schema = batch.schema();
    let value_at = schema.index_of(VALUE_COLUMN).map_err(|_| {
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        format!(
            "the query returns no `value` column (it returns {})",
            names.join(", ")
        )
    })?;
    let value = arrow_cast::cast(batch.column(value_at), &DataType::Float64)
        .map_err(|e| format!("the `value` column is not a number: {e}"))?;
    let value = value
        .as_any()
        .downcast_ref::<arrow_array::Float64Array>()
        .ok_or("the `value` column is not a number")?;
    let options = FormatOptions::default();
    let mut labels = Vec::new();
    for (i, field) in schema.fields().iter().enumerate() {
        if i == value_at {
            continue;
        }
        let column = batch.column(i);
        let formatter = ArrayFormatter::try_new(column.as_ref(), &options)
            .map_err(|e| format!("column {}: {e}", field.name()))?;
        labels.push((field.name().clone(), column.clone(), formatter));
    }
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut l = Labels::new();
        for (name, column, formatter) in &labels {
            if column.is_valid(row) {
                l.insert(name.clone(), formatter.value(row).to_string());
            }
        }
        let v = if value.is_valid(row) {
            value.value(row)
        } else {
            f64::NAN
        };
        out.push(Sample {
            labels: l,
            value: v,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{Field, Schema};

    use super::*;

    #[test]
    fn rows_become_samples_and_nulls_drop_labels() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("pod", DataType::Utf8, true),
            Field::new("value", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("a"), None])),
                Arc::new(Int64Array::from(vec![4, 2])),
            ],
        )
        .unwrap();
        let s = rows(&batch).unwrap();
        assert_eq!(s[0].labels["pod"], "a");
        assert_eq!(s[0].value, 4.0);
        assert!(s[1].labels.is_empty());
    }

    #[test]
    fn a_query_without_value_is_an_error_naming_its_columns() {
        let schema = Arc::new(Schema::new(vec![Field::new("pod", DataType::Utf8, true)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["a"]))]).unwrap();
        assert!(rows(&batch).unwrap_err().contains("returns pod"));
    }
}
