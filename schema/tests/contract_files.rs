//! The published JSON Schemas and the Rust contracts describe the same fields.

use std::collections::BTreeSet;

use serde_json::Value;
use sluice_schema::raw::{RAW_EVENT_FIELDS, RAW_EVENT_REQUIRED};
use sluice_schema::tables::{PLATFORM_EVENTS, POD_LOGS, TableContract};

fn schema(name: &str) -> Value {
    // Found at run time: a cached test binary may come from another checkout.
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("run under cargo test");
    let path = format!("{dir}/contracts/{name}");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn raw_event_schema_matches_the_validator() {
    let s = schema("platform_event.schema.json");
    let fields: BTreeSet<String> = RAW_EVENT_FIELDS.iter().map(|f| f.to_string()).collect();
    assert_eq!(keys(&s["properties"]), fields);
    let required: BTreeSet<String> = RAW_EVENT_REQUIRED.iter().map(|f| f.to_string()).collect();
    assert_eq!(strings(&s["required"]), required);
    assert_eq!(s["additionalProperties"], Value::Bool(true));
}

fn assert_matches_table(file: &str, table: &TableContract) {
    let s = schema(file);
    let columns: BTreeSet<String> = table.columns.iter().map(|c| c.name.to_string()).collect();
    assert_eq!(keys(&s["properties"]), columns, "{file}");
    let required: BTreeSet<String> = table
        .columns
        .iter()
        .filter(|c| c.required)
        .map(|c| c.name.to_string())
        .collect();
    assert_eq!(strings(&s["required"]), required, "{file}");
}

#[test]
fn record_schemas_match_their_tables() {
    assert_matches_table("pod_log_record.schema.json", &POD_LOGS);
    assert_matches_table("lifecycle_event.schema.json", &PLATFORM_EVENTS);
}
