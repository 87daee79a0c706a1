//! What the writer reads from Kafka besides raw events: pod-log records
//! (and arrays of them, as the collector sends them) and lifecycle events.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice_schema::raw::{LifecycleEvent, PodLogRecord};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = PodLogRecord::from_json_bytes(data) {
        // What validates round-trips through the collector's encoding.
        let mut out = Vec::new();
        r.as_line().write_json(&mut out);
        assert_eq!(PodLogRecord::from_json_bytes(&out).ok().as_ref(), Some(&r));
    }
    let _ = LifecycleEvent::from_json_bytes(data);
    if let Ok(serde_json::Value::Array(items)) = serde_json::from_slice::<serde_json::Value>(data) {
        for v in items.iter().take(64) {
            let _ = PodLogRecord::from_json(v);
        }
    }
});
