//! The principal directory (`directory.yaml`, or CSV) enrichment loads.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice_schema::directory::PrincipalDirectory;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = PrincipalDirectory::from_yaml(text);
    let _ = PrincipalDirectory::from_csv(text);
});
