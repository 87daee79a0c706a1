//! Log search over generated pod logs (≥ 5 GB by default), side by side
//! with ripgrep over the very same kubelet files, in one run:
//!
//! - indexing: `sluice index --once` (the binary, as a child process) over
//!   the `pod_logs` table that `sluice import` loaded from the files — raw
//!   MB/s wall and per core (raw file bytes over the child's CPU seconds,
//!   from its rusage) and the
//!   index's size against the raw size — beside bare tantivy indexing the
//!   same files: their messages alone, the floor of any tantivy indexer's
//!   cost, and the fields the issue requires in tantivy's plainest form
//!   (see `BareDoc`);
//! - what the index is made of: each part of the splits (postings,
//!   positions, term dictionaries, doc store, fast fields) against the raw
//!   size, read from the splits' footers;
//! - cold search: a fresh query service (a new cache in an empty directory)
//!   searching a term over the last 24 h and over all 7 days, the splits
//!   read in place: p50 time of `SLUICE_BENCH_COLD_RUNS` (default 5) fresh
//!   starts, and the bytes fetched against the index size. The warehouse is
//!   local here, so the OS page cache serves the reads: on S3 add the
//!   store's latency per round of fetches (a search has three: the splits'
//!   tails, the warm-up's ranges, the hits' doc-store blocks);
//! - warm search: a term query and a phrase query with a pod filter through
//!   the log index as the query service runs it (exact total, newest 100
//!   hits), p50/p99 of warm runs, against `rg` over the files (whole word,
//!   case-insensitive; the phrase only in that pod's directory), p50. Both
//!   count the same lines, which the benchmark checks.
//!
//! `scripts/test --bench logsearch` (installs ripgrep). SLUICE_BENCH_LOG_GB
//! sets the raw size (default 5), SLUICE_BENCH_RUNS the warm search runs
//! (default 30), SLUICE_BENCH_DIR where the data goes (default a temporary
//! directory; needs about 2.5× the raw size). Generation and import are
//! not timed. Machines here are noisy: read the ratios.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use sluice::generator::{self, GenConfig};
use sluice_ingest::sources::level;
use sluice_ingest::sources::pod_log_path::PodLogPath;
use sluice_query::logsearch::{LogIndex, SearchParams};
use sluice_query::object_stores::ObjectStores;

mod common;
use common::{UNTIL, env_usize, import};

/// The allocator `sluice` itself runs on (`src/main.rs`), so the searches
/// here run as the query service's do. The bare tantivy baselines run on
/// it too, as Quickwit's binary does.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const PODS: usize = 40;
const DAYS: u32 = 7;
/// Bytes per generated line, measured on the generator's mix.
const BYTES_PER_LINE: f64 = 200.0;

fn percentile(times: &[f64], p: f64) -> f64 {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    t[((t.len() - 1) as f64 * p).round() as usize]
}

/// CPU seconds (user + system) this process has used, and those of its
/// children that have been waited for.
fn cpu_seconds_self_and_children() -> anyhow::Result<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which may hold spaces) start at ")".
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc/self/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> { Ok(f[i].parse::<f64>()? / 100.0) };
    Ok((ticks(11)? + ticks(12)?, ticks(13)? + ticks(14)?))
}

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> anyhow::Result<f64> {
    Ok(cpu_seconds_self_and_children()?.0)
}

/// CPU seconds (user + system) of this process's children waited for.
fn children_cpu_seconds() -> anyhow::Result<f64> {
    Ok(cpu_seconds_self_and_children()?.1)
}

/// Every file under `dir`.
fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        if path.is_dir() {
            files_under(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut files = Vec::new();
    files_under(dir, &mut files)?;
    let mut total = 0;
    for f in files {
        total += std::fs::metadata(f)?.len();
    }
    Ok(total)
}

/// What the indexing baselines put in each document.
#[derive(Clone, Copy, PartialEq)]
enum BareDoc {
    /// The message alone: the floor of any tantivy-based log index.
    Message,
    /// What the issue asks a split to hold, in tantivy's plainest form: the
    /// message (stored), `namespace pod container stream level node` as
    /// exact-match strings, `restart` indexed, `ts` a fast field, the line
    /// id stored. No fast fields for the strings, no `pod_uid`, no bytes.
    Required,
}

/// The baselines for indexing: tantivy alone over the same kubelet files,
/// on this thread — each line (the CRI prefix cut off) a document with
/// tantivy's default tokenizer and positions (what phrases need) on the
/// message; one segment per GB-ish of memory, as the indexer's splits.
/// Reading plain text is cheaper than the indexer's Parquet, and the
/// default tokenizer makes fewer terms than sluice's (words whole and by
/// part). Returns CPU seconds.
fn bare_tantivy(pods_root: &Path, work: &Path, what: BareDoc) -> anyhow::Result<f64> {
    use tantivy::schema::{FAST, INDEXED, STORED, STRING, Schema, TEXT};
    let mut schema = Schema::builder();
    let required = what == BareDoc::Required;
    let message = schema.add_text_field("message", if required { TEXT | STORED } else { TEXT });
    let labels = ["namespace", "pod", "container", "stream", "level", "node"]
        .map(|name| schema.add_text_field(name, STRING));
    let restart = schema.add_i64_field("restart", INDEXED);
    let ts = schema.add_i64_field("ts", FAST);
    let line_id = schema.add_text_field("line_id", STORED);
    let schema = schema.build();
    let mut files = Vec::new();
    files_under(pods_root, &mut files)?;
    files.retain(|f| f.extension().is_some_and(|x| x == "log"));
    let cpu0 = cpu_seconds()?;
    let mut segments = 0;
    let new_writer = |n: usize| -> anyhow::Result<_> {
        let dir = work.join(format!("bare-{n}"));
        std::fs::create_dir_all(&dir)?;
        let dir = tantivy::directory::MmapDirectory::open(&dir)?;
        Ok(tantivy::Index::builder()
            .schema(schema.clone())
            .single_segment_index_writer::<tantivy::TantivyDocument>(dir, 256 << 20)?)
    };
    let mut writer = new_writer(segments)?;
    let mut n = 0u64;
    for file in files {
        let text = std::fs::read(&file)?;
        let path = PodLogPath::parse(file.strip_prefix(pods_root)?)?;
        for line in text.split(|b| *b == b'\n') {
            // `<time> <stream> <P|F> <message>`
            let mut parts = line.splitn(4, |b| *b == b' ');
            let (Some(_), Some(stream), Some(_), Some(msg)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let msg = String::from_utf8_lossy(msg);
            let mut doc = tantivy::TantivyDocument::new();
            if required {
                let stream = String::from_utf8_lossy(stream);
                let level = level::parse(&msg).unwrap_or("");
                let values = [
                    path.namespace.as_str(),
                    path.pod.as_str(),
                    path.container.as_str(),
                    &stream,
                    level,
                    "node-1",
                ];
                for (field, value) in labels.iter().zip(values) {
                    doc.add_text(*field, value);
                }
                doc.add_i64(restart, i64::from(path.restart));
                n += 1;
                doc.add_i64(ts, n as i64);
                doc.add_text(
                    line_id,
                    format!("{:032x}", u128::from(n) * 0x9e37_79b9_7f4a_7c15),
                );
            }
            doc.add_text(message, msg);
            writer.add_document(doc)?;
        }
        if writer.mem_usage() > 1 << 30 {
            writer.finalize()?;
            segments += 1;
            writer = new_writer(segments)?;
        }
    }
    writer.finalize()?;
    Ok(cpu_seconds()? - cpu0)
}

/// `rg ARGS PATH`, the matching lines counted; (seconds, lines).
fn ripgrep(args: &[&str], path: &Path) -> anyhow::Result<(f64, u64)> {
    let t = Instant::now();
    let out = Command::new("rg")
        .args(["--count", "--no-filename", "--no-messages"])
        .args(args)
        .arg(path)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| {
            anyhow::anyhow!("running rg (ripgrep; scripts/test --bench installs it): {e}")
        })?;
    let secs = t.elapsed().as_secs_f64();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .sum();
    Ok((secs, lines))
}

/// Bytes of each kind of tantivy file across the splits in `splits_dir`
/// (from each split object's footer), by extension.
/// What the listed splits (not those a merge retired, kept a while for
/// readers) are made of.
fn split_parts(
    splits_dir: &Path,
    listed: &[String],
) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
    use sluice_logindex::split_file::{Footer, TRAILER_BYTES, footer_len};
    use std::io::{Read, Seek, SeekFrom};
    let mut parts = std::collections::BTreeMap::new();
    for id in listed {
        let path = splits_dir.join(format!("{id}.split"));
        let mut f = std::fs::File::open(&path)?;
        let len = f.metadata()?.len();
        let mut trailer = [0u8; TRAILER_BYTES];
        f.seek(SeekFrom::Start(len - TRAILER_BYTES as u64))?;
        f.read_exact(&mut trailer)?;
        let json_len = footer_len(&trailer)?;
        let mut json = vec![0u8; json_len as usize];
        f.seek(SeekFrom::Start(len - TRAILER_BYTES as u64 - json_len))?;
        f.read_exact(&mut json)?;
        let footer: Footer = serde_json::from_slice(&json)?;
        for (name, entry) in &footer.files {
            let kind = match name.rsplit_once('.') {
                Some((_, ext)) if !name.starts_with('.') && ext != "json" => ext.to_string(),
                _ => "meta".to_string(),
            };
            *parts.entry(kind).or_default() += entry.len;
        }
        *parts.entry("hotcache + footer".into()).or_default() += len - footer.hotcache_offset;
    }
    Ok(parts)
}

fn main() -> anyhow::Result<()> {
    let gb: f64 = std::env::var("SLUICE_BENCH_LOG_GB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5.0);
    let runs = env_usize("SLUICE_BENCH_RUNS", 30).max(3);
    let tmp = match std::env::var_os("SLUICE_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let gen_dir = tmp.path().join("gen");
    let data_dir = tmp.path().join("data");
    let until = DateTime::parse_from_rfc3339(UNTIL)?.with_timezone(&Utc);

    let per_pod_day = ((gb * 1e9 / BYTES_PER_LINE) / (PODS as f64 * DAYS as f64)).ceil() as u64;
    let t = Instant::now();
    let manifest = generator::generate(
        &GenConfig {
            out: gen_dir.clone(),
            pods: PODS,
            events: 1_000,
            days: DAYS,
            until,
            seed: 7,
            cluster: "bench".into(),
            lines_per_pod_day: per_pod_day,
            // Plain files only: ripgrep reads them without decompressing.
            rotate_bytes: 1 << 40,
            force: false,
            events_part: 0,
        },
        &|_| {},
        &|_| {},
    )?;
    let pods_root = gen_dir.join("var/log/pods");
    let raw = dir_bytes(&pods_root)?;
    eprintln!(
        "generated {:.2} GB of pod logs in {:.0} s",
        raw as f64 / 1e9,
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    import(&data_dir, &gen_dir)?;
    eprintln!("imported in {:.0} s", t.elapsed().as_secs_f64());

    // `sluice index --once`, the binary users run, as a child: its wall
    // time and the CPU it used (waited-for children's rusage).
    let cpu0 = children_cpu_seconds()?;
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["index", "--once"])
        .stderr(Stdio::inherit())
        .output()?;
    let index_wall = t.elapsed().as_secs_f64();
    let index_cpu = children_cpu_seconds()? - cpu0;
    anyhow::ensure!(out.status.success(), "sluice index --once: {}", out.status);
    eprint!("{}", String::from_utf8_lossy(&out.stdout));

    let (rt, catalog) = common::embedded_catalog(&data_dir)?;
    let stores = Arc::new(ObjectStores::new(Default::default()));
    let store = rt.block_on(LogIndex::store_for(catalog.as_ref(), &stores))?;
    let state = rt.block_on(store.load_state())?;
    let index_bytes: u64 = state.splits.iter().map(|s| s.split_bytes).sum();
    let indexed_lines: u64 = state.splits.iter().map(|s| s.lines).sum();
    eprintln!(
        "indexed {indexed_lines} lines into {} splits in {index_wall:.1} s ({index_cpu:.1} CPU s)",
        state.splits.len()
    );

    let bare_cpu = bare_tantivy(&pods_root, &tmp.path().join("bare"), BareDoc::Message)?;
    let _ = std::fs::remove_dir_all(tmp.path().join("bare"));
    eprintln!("bare tantivy (messages) indexed the files in {bare_cpu:.1} CPU s");
    let required_cpu = bare_tantivy(&pods_root, &tmp.path().join("bare"), BareDoc::Required)?;
    let _ = std::fs::remove_dir_all(tmp.path().join("bare"));
    eprintln!("bare tantivy (required fields) indexed the files in {required_cpu:.1} CPU s");

    let listed: Vec<String> = state.splits.iter().map(|s| s.id.clone()).collect();
    let parts = split_parts(
        &data_dir.join("warehouse/sluice-index/pod_logs/splits"),
        &listed,
    )?;

    // Cold: a new query service each time, its cache empty.
    let cold_runs = env_usize("SLUICE_BENCH_COLD_RUNS", 5).max(1);
    let day_ago = (until - chrono::Duration::hours(24)).to_rfc3339();
    let mut cold = Vec::new();
    for (name, from) in [
        ("term OOMKilled, last 24 h", Some(day_ago)),
        ("term OOMKilled, 7 days", None),
    ] {
        let mut times = Vec::new();
        let mut fetched = Vec::new();
        let mut total = 0;
        for run in 0..cold_runs {
            let dir = tmp.path().join(format!("cold-{run}"));
            let cache = Arc::new(
                sluice_query::config::SearchConfig::default()
                    .cache(Some(dir.clone()), Default::default())?,
            );
            let logs = LogIndex::new(
                catalog.clone(),
                stores.clone(),
                cache.clone(),
                sluice_query::config::SearchConfig::default().columns_mib << 20,
            );
            let req = SearchParams {
                q: Some("OOMKilled".into()),
                from: from.clone(),
                ..Default::default()
            }
            .request(until)?;
            let t = Instant::now();
            total = rt.block_on(logs.search(req))?.total;
            times.push(t.elapsed().as_secs_f64());
            fetched.push(cache.stats().bytes_fetched as f64);
            let _ = std::fs::remove_dir_all(&dir);
        }
        cold.push((
            name,
            percentile(&times, 0.5),
            percentile(&fetched, 0.5),
            total,
        ));
    }

    let cache = sluice_query::config::SearchConfig::default()
        .cache(Some(data_dir.join("index-cache")), Default::default())?;
    let logs = LogIndex::new(
        catalog,
        stores,
        Arc::new(cache),
        sluice_query::config::SearchConfig::default().columns_mib << 20,
    );
    let search = |q: &str, pod: Option<&str>| -> anyhow::Result<(f64, u64)> {
        let params = SearchParams {
            q: Some(q.to_string()),
            pod: pod.map(str::to_string),
            ..Default::default()
        };
        let req = params.request(until)?;
        let t = Instant::now();
        let r = rt.block_on(logs.search(req))?;
        Ok((t.elapsed().as_secs_f64(), r.total))
    };

    // The term: what an operator looks for after a restart.
    let term = "OOMKilled";
    let (_, rg_term_lines) = ripgrep(&["-i", "-w", term], &pods_root)?;
    // The phrase, in the pod that logs it most.
    let phrase = "connection reset by peer";
    let mut best: Option<(u64, &generator::PodReport)> = None;
    for p in &manifest.pods {
        let dir = pods_root.join(format!("{}_{}_{}", p.namespace, p.pod, p.uid));
        let (_, n) = ripgrep(&["-i", "-F", phrase], &dir)?;
        if best.is_none_or(|(b, _)| n > b) {
            best = Some((n, p));
        }
    }
    let (rg_phrase_lines, pod) = best.ok_or_else(|| anyhow::anyhow!("no pods generated"))?;
    let pod_dir = pods_root.join(format!("{}_{}_{}", pod.namespace, pod.pod, pod.uid));

    // Cold first (splits fetched and opened), then warm.
    let (cold_term, total_term) = search(term, None)?;
    let (cold_phrase, total_phrase) = search(&format!("\"{phrase}\""), Some(&pod.pod))?;
    anyhow::ensure!(
        total_term == rg_term_lines,
        "{term}: sluice counts {total_term} lines, rg {rg_term_lines}"
    );
    anyhow::ensure!(
        total_phrase == rg_phrase_lines,
        "\"{phrase}\" in {}: sluice counts {total_phrase} lines, rg {rg_phrase_lines}",
        pod.pod
    );
    let mut term_times = Vec::new();
    let mut phrase_times = Vec::new();
    for _ in 0..runs {
        term_times.push(search(term, None)?.0);
        phrase_times.push(search(&format!("\"{phrase}\""), Some(&pod.pod))?.0);
    }
    let mut rg_term = Vec::new();
    let mut rg_phrase = Vec::new();
    for _ in 0..3 {
        rg_term.push(ripgrep(&["-i", "-w", term], &pods_root)?.0);
        rg_phrase.push(ripgrep(&["-i", "-F", phrase], &pod_dir)?.0);
    }

    let mb = raw as f64 / 1e6;
    let cores = index_cpu / index_wall;
    println!();
    println!(
        "log search over {:.2} GB raw ({} lines, {} pods × {} days)",
        raw as f64 / 1e9,
        indexed_lines,
        PODS,
        DAYS
    );
    println!(
        "indexing: {:.1} MB/s per core ({:.1} MB/s wall on {:.2} cores busy); index {:.0} MB = {:.0} % of raw",
        mb / index_cpu,
        mb / index_wall,
        cores,
        index_bytes as f64 / 1e6,
        100.0 * index_bytes as f64 / raw as f64
    );
    println!(
        "baseline, bare tantivy, messages only (default tokenizer, positions, one thread): {:.1} MB/s per core; sluice indexes at {:.0} % of it",
        mb / bare_cpu,
        100.0 * bare_cpu / index_cpu
    );
    println!(
        "baseline, bare tantivy, the required fields (as above + 6 exact strings, restart, ts, stored message and line id): {:.1} MB/s per core; sluice indexes at {:.0} % of it",
        mb / required_cpu,
        100.0 * required_cpu / index_cpu
    );
    println!("index parts, % of raw (positions: phrases; idx/term: every word whole and by part):");
    for (kind, bytes) in &parts {
        println!(
            "  {kind:<18} {:>8.1} MB  {:>5.1} %",
            *bytes as f64 / 1e6,
            100.0 * *bytes as f64 / raw as f64
        );
    }
    for (name, p50, fetched, total) in &cold {
        println!(
            "cold {name:<30} p50 {:>8.1} ms | fetched {:>7.1} MB = {:.2} % of the index | {total} lines",
            p50 * 1e3,
            fetched / 1e6,
            100.0 * fetched / index_bytes as f64
        );
    }
    let row = |name: &str, times: &[f64], cold: f64, rg: &[f64], lines: u64| {
        let p50 = percentile(times, 0.5);
        let rg50 = percentile(rg, 0.5);
        println!(
            "{name:<40} sluice p50 {:>8.2} ms  p99 {:>8.2} ms  (cold {:>7.1} ms) | rg p50 {:>8.1} ms | {:>6.0}× faster | {lines} lines",
            p50 * 1e3,
            percentile(times, 0.99) * 1e3,
            cold * 1e3,
            rg50 * 1e3,
            rg50 / p50
        );
    };
    row(
        &format!("term {term}"),
        &term_times,
        cold_term,
        &rg_term,
        total_term,
    );
    row(
        &format!("phrase \"{phrase}\" pod {}", pod.pod),
        &phrase_times,
        cold_phrase,
        &rg_phrase,
        total_phrase,
    );
    Ok(())
}
