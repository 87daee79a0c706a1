//! Every time and duration parameter of the API: `since`/`from`/`to`
//! (RFC 3339 or a span back), Loki's timestamps and LogQL durations.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice_query::loki::logql::parse_duration_us;
use sluice_query::loki::parse_time;
use sluice_query::window::{parse_instant, parse_span};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now = chrono::DateTime::from_timestamp(1_796_000_000, 0).expect("a valid instant");
    let _ = parse_span(text);
    if let Ok(t) = parse_instant(text, now) {
        let _ = t.timestamp_micros();
    }
    let _ = parse_time(text);
    if let Some(us) = parse_duration_us(text) {
        assert!(us >= 0, "a duration is never negative: {text:?} → {us}");
    }
});
