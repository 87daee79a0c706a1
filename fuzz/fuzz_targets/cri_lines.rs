//! CRI log lines (`<RFC 3339> <stream> <P|F> <content>`), and the joining
//! of partial (`P`) lines into logical ones, as the tailer reads them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice_ingest::sources::cri::{PartialJoiner, parse_line};

fuzz_target!(|data: &[u8]| {
    let max = 1024;
    let mut joiner = PartialJoiner::new(max);
    for physical in data.split(|b| *b == b'\n') {
        if let Ok(line) = parse_line(physical) {
            assert!(line.content.len() <= physical.len());
            if let Some(joined) = joiner.push(&line) {
                // A logical line never exceeds the bound; dropping is said.
                assert!(joined.content.len() <= max);
                assert!(joined.parts >= 1);
            }
        }
    }
});
