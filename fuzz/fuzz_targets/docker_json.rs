//! Docker json-file log lines (`{"log":…,"stream":…,"time":…}`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice_ingest::sources::docker_json::{is_docker_json, parse_line};

fuzz_target!(|data: &[u8]| {
    let _ = is_docker_json(data);
    if let Ok(line) = parse_line(data) {
        let cri = line.as_cri();
        let _ = cri.ts_nanos;
    }
});
