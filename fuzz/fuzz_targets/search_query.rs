//! The search `q` (terms, phrases, AND/OR/NOT, field:value): parsed, and
//! evaluated on a line as the live tail does.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice_logindex::line_match::{LineFields, LineMatcher};
use sluice_logindex::query_lang::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (q, message) = text.split_once('\n').unwrap_or((text, text));
    if let Ok(expr) = parse(q) {
        let mut m = LineMatcher::new(expr);
        let _ = m.matches(&LineFields {
            namespace: "shop",
            pod: "api-0",
            pod_uid: "u",
            container: "app",
            restart: 1,
            stream: "stdout",
            level: Some("error"),
            node: None,
            message,
        });
    }
});
