//! Raw API events (NDJSON lines, Kafka payloads): the borrowing fast path
//! and the field-by-field validator must agree on every input — the fast
//! path may only accept what the validator accepts, identically.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice_schema::raw::RawEvent;
use sluice_schema::wire::decode_event;

fuzz_target!(|data: &[u8]| {
    let slow = RawEvent::validate_json_bytes(data);
    if let Some(fast) = decode_event(data) {
        assert_eq!(
            Some(&fast),
            slow.as_ref().ok(),
            "the fast path accepted what the validator did not"
        );
    }
    let _ = RawEvent::from_json_bytes(data);
});
