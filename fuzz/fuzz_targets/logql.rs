//! LogQL as Grafana sends it: parsed, and each stream selector's matchers
//! and line filters evaluated on a line made of the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice_query::loki::logql::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(mut q) = parse(text) {
        for sel in q.selectors_mut() {
            for m in &sel.matchers {
                let _ = m.matches(text);
                let _ = m.matches_empty();
            }
            for f in &sel.filters {
                let _ = f.keeps(text);
            }
        }
    }
});
