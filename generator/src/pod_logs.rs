//! Writes one container's log files exactly as kubelet and containerd leave
//! them: `<restart>.log` per instance in CRI format, long lines split into
//! 16 KiB partial parts, files rotated to `<restart>.log.<YYYYMMDD-HHMMSS>`
//! with all but the newest rotated file gzipped.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::DateTime;
use flate2::Compression;
use flate2::write::GzEncoder;
use rand::Rng;
use rand_distr::{Distribution, Exp};
use serde::Serialize;
use sluice_ingest::sources::cri::format_timestamp;

use super::app_logs::{self, AppLine};
use super::cluster::{Container, Pod, Termination};
use super::rng::GenRng;

/// containerd's maximum line size: longer lines become partial parts.
pub const CRI_MAX_LINE: usize = 16 * 1024;

/// One logical line in every this many is oversized (and so partial).
const OVERSIZED_ONE_IN: u32 = 2500;

/// A termination another pod saw (the operator logs these).
#[derive(Debug, Clone)]
pub struct ObservedTermination {
    pub ts_ns: i64,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub why: Termination,
    pub restart_count: i32,
}

/// What was written for one container instance.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InstanceReport {
    pub restart: i32,
    /// Logical lines (partials joined).
    pub lines: u64,
    /// Physical CRI lines, partial parts counted separately.
    pub physical_lines: u64,
    /// Logical lines that were split into partial parts.
    pub partial_lines: u64,
    pub bytes: u64,
    /// Files holding this instance's lines, oldest first (relative to the
    /// container directory).
    pub files: Vec<String>,
    pub first_ts: Option<String>,
    pub last_ts: Option<String>,
    pub termination: Option<Termination>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContainerReport {
    pub name: String,
    /// Relative to the output directory.
    pub dir: String,
    pub instances: Vec<InstanceReport>,
}

pub(super) struct CriFile {
    dir: PathBuf,
    live_name: String,
    out: BufWriter<File>,
    bytes_in_file: u64,
    rotate_bytes: u64,
    /// The newest rotated file, kept uncompressed until the next rotation.
    newest_rotated: Option<PathBuf>,
    last_stamp: String,
    line: Vec<u8>,
    report: InstanceReport,
}

fn rfc3339(ts_ns: i64) -> String {
    let mut v = Vec::new();
    format_timestamp(ts_ns, &mut v);
    String::from_utf8_lossy(&v).into_owned()
}

fn gzip_in_place(path: &Path) -> io::Result<PathBuf> {
    let gz_path = PathBuf::from(format!("{}.gz", path.display()));
    let mut input = File::open(path)?;
    // GzEncoder writes mtime 0 and no file name: identical input, identical bytes.
    let mut enc = GzEncoder::new(
        BufWriter::new(File::create(&gz_path)?),
        Compression::default(),
    );
    io::copy(&mut input, &mut enc)?;
    enc.finish()?.flush()?;
    fs::remove_file(path)?;
    Ok(gz_path)
}

impl CriFile {
    pub(super) fn create(dir: &Path, restart: i32, rotate_bytes: u64) -> io::Result<Self> {
        let live_name = format!("{restart}.log");
        let out = BufWriter::with_capacity(256 * 1024, File::create(dir.join(&live_name))?);
        Ok(Self {
            dir: dir.to_path_buf(),
            live_name,
            out,
            bytes_in_file: 0,
            rotate_bytes,
            newest_rotated: None,
            last_stamp: String::new(),
            line: Vec::with_capacity(512),
            report: InstanceReport {
                restart,
                ..Default::default()
            },
        })
    }

    /// Makes what was written visible to readers of the file.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub(super) fn write(&mut self, ts_ns: i64, line: &AppLine) -> io::Result<()> {
        let stream: &[u8] = if line.stderr { b"stderr" } else { b"stdout" };
        let text = line.text.as_bytes();
        let parts: Vec<&[u8]> = if text.is_empty() {
            vec![text]
        } else {
            text.chunks(CRI_MAX_LINE).collect()
        };
        let n = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            self.line.clear();
            // Parts of one line are written microseconds apart.
            format_timestamp(ts_ns + i as i64 * 1000, &mut self.line);
            self.line.push(b' ');
            self.line.extend_from_slice(stream);
            self.line
                .extend_from_slice(if i + 1 < n { b" P " } else { b" F " });
            self.line.extend_from_slice(part);
            self.line.push(b'\n');
            self.out.write_all(&self.line)?;
            self.bytes_in_file += self.line.len() as u64;
            self.report.bytes += self.line.len() as u64;
            self.report.physical_lines += 1;
        }
        self.report.lines += 1;
        if n > 1 {
            self.report.partial_lines += 1;
        }
        if self.report.first_ts.is_none() {
            self.report.first_ts = Some(rfc3339(ts_ns));
        }
        if self.bytes_in_file >= self.rotate_bytes {
            self.rotate(ts_ns)?;
        }
        Ok(())
    }

    fn rotate(&mut self, ts_ns: i64) -> io::Result<()> {
        self.out.flush()?;
        let mut secs = ts_ns.div_euclid(1_000_000_000);
        let mut stamp = String::new();
        // Two rotations within one second would collide on the name.
        while stamp.is_empty() || stamp <= self.last_stamp {
            stamp = DateTime::from_timestamp(secs, 0)
                .unwrap_or_default()
                .format("%Y%m%d-%H%M%S")
                .to_string();
            secs += 1;
        }
        self.last_stamp = stamp.clone();
        let rotated = self.dir.join(format!("{}.{stamp}", self.live_name));
        fs::rename(self.dir.join(&self.live_name), &rotated)?;
        if let Some(previous) = self.newest_rotated.take() {
            let gz = gzip_in_place(&previous)?;
            self.replace_file_name(&previous, &gz);
        }
        self.report.files.push(file_name(&rotated));
        self.newest_rotated = Some(rotated);
        self.out =
            BufWriter::with_capacity(256 * 1024, File::create(self.dir.join(&self.live_name))?);
        self.bytes_in_file = 0;
        Ok(())
    }

    fn replace_file_name(&mut self, old: &Path, new: &Path) {
        let old = file_name(old);
        for f in &mut self.report.files {
            if *f == old {
                *f = file_name(new);
            }
        }
    }

    fn finish(mut self, last_ts: Option<i64>) -> io::Result<InstanceReport> {
        self.out.flush()?;
        self.report.files.push(self.live_name.clone());
        self.report.last_ts = last_ts.map(rfc3339);
        Ok(self.report)
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Settings shared by every container.
pub struct LogVolume {
    pub lines_per_pod_day: f64,
    pub rotate_bytes: u64,
}

#[allow(clippy::too_many_arguments)]
/// Writes all instances of one container; returns what was written and how
/// many logical lines (for progress).
pub fn write_container(
    out_dir: &Path,
    pod: &Pod,
    container: &Container,
    sidecar: bool,
    observed: &[ObservedTermination],
    volume: &LogVolume,
    rng: &mut GenRng,
    progress: &dyn Fn(u64),
) -> anyhow::Result<ContainerReport> {
    let rel = format!(
        "var/log/pods/{}_{}_{}/{}",
        pod.namespace, pod.name, pod.uid, container.name
    );
    let dir = out_dir.join(&rel);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let per_day = volume.lines_per_pod_day * pod.volume * if sidecar { 0.3 } else { 1.0 };
    let mean_gap_ns = (86_400e9 / per_day.max(1.0)).max(1000.0);
    let gap = Exp::new(1.0 / mean_gap_ns).map_err(|e| anyhow::anyhow!("log rate: {e}"))?;
    let logger = format!("{}.{}", pod.workload, container.name).replace('-', "_");

    let mut instances = Vec::new();
    let mut previous: Option<Termination> = None;
    let mut seen = observed.iter().peekable();
    for inst in &container.instances {
        let mut file = CriFile::create(&dir, inst.restart, volume.rotate_bytes)
            .with_context(|| format!("creating {}/{}.log", dir.display(), inst.restart))?;
        let mut t = inst.start_ns;
        let mut last = None;
        let mut written = 0u64;
        for line in app_logs::startup_lines(
            container.style,
            t,
            &container.name,
            inst.restart,
            previous,
            &logger,
        ) {
            file.write(t, &line)?;
            last = Some(t);
            t += 3_000_000;
        }
        // Leave room for the crash tail before the instance's end.
        let body_end = if inst.termination.is_some() {
            inst.end_ns - 1_000_000_000
        } else {
            inst.end_ns
        };
        loop {
            t += gap.sample(rng) as i64 + 1;
            if t >= body_end {
                break;
            }
            while let Some(o) = seen.peek().filter(|o| o.ts_ns <= t) {
                let l = app_logs::operator_saw_termination(
                    o.ts_ns,
                    &o.namespace,
                    &o.pod,
                    &o.container,
                    o.why,
                    o.restart_count,
                );
                file.write(o.ts_ns.max(last.unwrap_or(o.ts_ns)), &l)?;
                seen.next();
            }
            let line = if rng.random_ratio(1, OVERSIZED_ONE_IN) {
                app_logs::oversized_line(rng, container.style, t, &logger)
            } else {
                app_logs::normal_line(rng, container.style, t, &logger)
            };
            file.write(t, &line)?;
            last = Some(t);
            written += 1;
            if written.is_multiple_of(8192) {
                progress(8192);
            }
        }
        progress(written % 8192);
        if let Some(why) = inst.termination {
            let tail_start = body_end.max(last.unwrap_or(body_end));
            for (i, line) in app_logs::crash_tail(rng, container.style, tail_start, why, &logger)
                .into_iter()
                .enumerate()
            {
                let ts = tail_start + (i as i64 + 1) * 2_000_000;
                file.write(ts, &line)?;
                last = Some(ts);
            }
        }
        let mut report = file.finish(last)?;
        report.termination = inst.termination;
        instances.push(report);
        previous = inst.termination;
    }
    Ok(ContainerReport {
        name: container.name.clone(),
        dir: rel,
        instances,
    })
}
