//! A kubelet log file, CRI or json-file, read whole and read in pieces as
//! the tailer reads a growing file: the same records either way, whatever
//! the bytes and wherever the reads stop (the first input byte chooses the
//! piece size).
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sluice_ingest::sources::pod_log_file::{LogFormat, Origin, PodLogReader, fingerprint};
use sluice_ingest::sources::pod_log_path::PodLogPath;

fuzz_target!(|data: &[u8]| {
    let Some((&step, content)) = data.split_first() else {
        return;
    };
    let path = PodLogPath::parse(Path::new(
        "/var/log/pods/shop_api-0_0b7c6d4e-0000-4000-8000-000000000001/app/0.log",
    ))
    .expect("a valid kubelet path");
    let origin = Origin {
        cluster: "fuzz",
        node: Some("n1"),
    };
    let reader = || {
        PodLogReader::new(
            path.clone(),
            LogFormat::detect(content),
            fingerprint(content),
            0,
            512,
        )
    };
    let mut whole = Vec::new();
    let mut r = reader();
    let used = r.feed(content, &origin, &mut whole);
    assert!(used <= content.len());

    // In pieces: what a read does not consume is fed again with what follows.
    let step = usize::from(step % 64) + 1;
    let mut pieces = Vec::new();
    let mut r = reader();
    let mut at = 0;
    let mut pending: Vec<u8> = Vec::new();
    while at < content.len() {
        let end = (at + step).min(content.len());
        pending.extend_from_slice(&content[at..end]);
        at = end;
        let n = r.feed(&pending, &origin, &mut pieces);
        pending.drain(..n);
    }
    let ids = |v: &[sluice_schema::raw::PodLogRecord]| -> Vec<(String, String)> {
        v.iter()
            .map(|r| (r.line_id.clone(), r.message.clone()))
            .collect()
    };
    assert_eq!(
        ids(&whole),
        ids(&pieces),
        "read whole and in pieces of {step}"
    );
});
