//! Pod-log messages the live tail reads from the Kafka topic (any
//! producer's bytes), then filtered as a LogQL tail does.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice_query::live::filter::parse_lines;
use sluice_query::live::hub::Termination;

fuzz_target!(|data: &[u8]| {
    // Each line comes from at least a few bytes of the message.
    assert!(parse_lines(data).len() <= data.len() / 8 + 1);
    let _ = Termination::from_lifecycle(data);
});
