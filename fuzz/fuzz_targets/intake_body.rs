//! `POST /v1/events` bodies: a JSON object, a JSON array or NDJSON,
//! plain or gzip; decoded and split as the intake does, within its limits.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice_ingest::collect::intake::body_records;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let encoding = if mode & 1 == 1 { Some("gzip") } else { None };
    let (max_bytes, max_records) = (64 << 10, 100);
    match body_records(encoding, body, max_bytes, max_records) {
        Ok(records) => {
            assert!(records.len() <= max_records);
            for r in records {
                let _ = sluice_schema::raw::RawEvent::from_json_bytes(&r);
            }
        }
        Err(status) => assert!((400..500).contains(&status), "{status}"),
    }
});
