//! zstd asks the CPU for its features once per process, not once per
//! compression context (`vendor/zstd-sys`, docs/ARCHITECTURE.md). tantivy
//! makes a context for every doc-store block and term-dictionary block it
//! writes or reads, and under a hypervisor each `cpuid` is a VM exit
//! (9.5 µs on this project's CI machines): a fifth of a warm search's CPU.
//!
//! The check turns on CPUID faulting for a child process
//! (`arch_prctl(ARCH_SET_CPUID, 0)`, Linux on x86-64), after which a `cpuid`
//! kills it with SIGSEGV, then writes and reads a split as the indexer and
//! the query service do. A control child runs `cpuid` itself, to show the
//! fault is on.

#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::process::Command;

use tantivy::collector::TopDocs;
use tantivy::query::TermQuery;
use tantivy::schema::{IndexRecordOption, STORED, Schema, TEXT, Value};
use tantivy::{Index, TantivyDocument, Term};

use crate::split::split_settings;

const CHILD: &str = "SLUICE_CPUID_FAULT_CHILD";
const ARCH_SET_CPUID: libc::c_int = 0x1012;

/// Writes a small split (enough distinct words that term-dictionary blocks
/// are compressed, enough text for several doc-store blocks), then looks a
/// term up and reads every hit back.
fn write_and_read(dir: &std::path::Path) -> tantivy::Result<usize> {
    let mut schema = Schema::builder();
    let message = schema.add_text_field("message", TEXT | STORED);
    let index = Index::builder()
        .schema(schema.build())
        .settings(split_settings())
        .create_in_dir(dir)?;
    let mut writer = index.writer_with_num_threads(1, 15_000_000)?;
    for i in 0..5_000u32 {
        let mut doc = TantivyDocument::default();
        doc.add_text(
            message,
            format!(
                "line {i} word{i:05} request_id=r{} status=200 common",
                i * 7919
            ),
        );
        writer.add_document(doc)?;
    }
    writer.commit()?;
    let searcher = index.reader()?.searcher();
    let query = TermQuery::new(
        Term::from_field_text(message, "common"),
        IndexRecordOption::Basic,
    );
    let mut read = 0;
    for (_, addr) in searcher.search(&query, &TopDocs::with_limit(200).order_by_score())? {
        let doc: TantivyDocument = searcher.doc(addr)?;
        if doc
            .get_first(message)
            .and_then(|v| v.as_str())
            .is_some_and(|m| m.ends_with("common"))
        {
            read += 1;
        }
    }
    Ok(read)
}

fn fault_on_cpuid() {
    // SAFETY: arch_prctl with ARCH_SET_CPUID takes an integer and changes
    // only whether this thread (and threads it starts) may run `cpuid`.
    let rc = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_SET_CPUID, 0) };
    assert_eq!(
        rc,
        0,
        "this machine cannot fault on CPUID (no cpuid_fault flag?): {}",
        std::io::Error::last_os_error()
    );
}

fn run_child(mode: &str) -> std::process::ExitStatus {
    let exe = std::env::current_exe().expect("the test binary's path");
    Command::new(exe)
        .args(["zstd_cpuid_tests::", "--test-threads", "1", "--nocapture"])
        .env(CHILD, mode)
        // The harness's lines would mix into the parent's; a failure's
        // panic message is on stderr.
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running the test binary again")
}

#[test]
fn zstd_asks_for_cpu_features_once_not_per_block() {
    match std::env::var(CHILD).as_deref() {
        Ok("zstd") => {
            let tmp = tempfile::tempdir().expect("tempdir");
            // Once before faulting, as any process does its first context.
            let first = tmp.path().join("first");
            std::fs::create_dir(&first).expect("dir");
            assert_eq!(write_and_read(&first).expect("first split"), 200);
            fault_on_cpuid();
            let second = tmp.path().join("second");
            std::fs::create_dir(&second).expect("dir");
            assert_eq!(write_and_read(&second).expect("second split"), 200);
        }
        Ok("control") => {
            fault_on_cpuid();
            // Faulting makes cpuid raise SIGSEGV: what this child is for.
            let leaf = std::arch::x86_64::__cpuid(0);
            println!("cpuid answered with faulting on: {}", leaf.eax);
        }
        Ok(_) => {}
        Err(_) => {
            use std::os::unix::process::ExitStatusExt;
            let control = run_child("control");
            assert_eq!(
                control.signal(),
                Some(libc::SIGSEGV),
                "cpuid did not fault in the control child ({control}), so the check proves nothing"
            );
            let zstd = run_child("zstd");
            assert!(
                zstd.success(),
                "writing and reading a split ran cpuid after the first time ({zstd}): \
                 zstd is probing the CPU per context again (is vendor/zstd-sys patched in?)"
            );
        }
    }
}
