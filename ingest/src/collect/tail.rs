//! Tails a kubelet log tree (`<root>/<ns>_<pod>_<uid>/<container>/<restart>.log*`)
//! into the pod-log topic.
//!
//! A file is followed by device/inode while it exists (a rename is the same
//! file) and known by [`FileKey`] — its container instance plus a
//! fingerprint of its first line — across collector restarts, renames and
//! gzip. Positions become durable in the checkpoint only after the broker
//! acknowledged every line before them ([`Acks`]). Reading pauses while the
//! producer's bounded queue is full, so memory stays bounded in an outage.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flate2::read::MultiGzDecoder;
use sluice_schema::raw::PodLogLine;
use xxhash_rust::xxh3::xxh3_64;

use super::acks::{Acks, LaneId};
use super::checkpoint::{CheckpointFile, FileKey, Position};
use super::metrics::CollectorMetrics;
use crate::outlet::{Delivery, LogOutlet, SendError};
use crate::sources::pod_log_file::{LogFormat, Origin, PodLogReader, fingerprint};
use crate::sources::pod_log_path::PodLogPath;
use sluice_warehouse::source_id::SourceId;

/// How the tailer reads and batches.
#[derive(Debug, Clone)]
pub struct TailSettings {
    pub root: PathBuf,
    pub cluster: String,
    pub node: Option<String>,
    /// How often the tree is listed for new, renamed and deleted files.
    pub scan_interval: Duration,
    /// How long to wait when no file has new bytes.
    pub poll_interval: Duration,
    pub max_line_bytes: usize,
    /// Lines per message (1 = one JSON record per message, else an array).
    pub batch_lines: usize,
    /// Bytes per message, at most (one longer line still goes alone).
    pub batch_bytes: usize,
    /// Bytes read from one file before the next file gets its turn.
    pub read_chunk: usize,
    /// Threads that parse and encode files side by side (each file stays on
    /// one thread per pass, so its lines keep their order).
    pub read_threads: usize,
    pub checkpoint_interval: Duration,
    /// Positions of files gone this long are forgotten.
    pub forget_after: Duration,
}

impl TailSettings {
    pub fn new(root: PathBuf, cluster: String, node: Option<String>) -> Self {
        Self {
            root,
            cluster,
            node,
            scan_interval: Duration::from_millis(250),
            poll_interval: Duration::from_millis(50),
            max_line_bytes: crate::sources::pod_log_file::DEFAULT_MAX_LINE_BYTES,
            batch_lines: 500,
            batch_bytes: 512 * 1024,
            read_chunk: 512 * 1024,
            // Parsing and encoding a line costs about what librdkafka
            // spends sending it: two threads keep pace on a 2-core node.
            read_threads: 2,
            checkpoint_interval: Duration::from_secs(1),
            forget_after: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error(transparent)]
    Checkpoint(#[from] super::checkpoint::CheckpointError),
    #[error("pods root {path}: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("producing to Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

enum Source {
    Plain(File),
    Gzip(Box<MultiGzDecoder<BufReader<File>>>),
}

/// A message waiting to be enqueued (the producer's queue was full).
struct Outgoing {
    delivery: Box<Delivery>,
    payload: Vec<u8>,
}

struct Tracked {
    lane: LaneId,
    key: FileKey,
    generation: u32,
    path: PathBuf,
    /// `None` once a file that cannot grow (gzip) is read to its end.
    source: Option<Source>,
    reader: PodLogReader,
    /// Bytes read but not yet consumed (an unfinished line).
    buf: Vec<u8>,
    /// Offset of the next byte to read.
    read_pos: u64,
    /// Position of the last message sent (or skipped to).
    last_sent: Position,
    /// Listed in the latest scan.
    present: bool,
    outbox: VecDeque<Outgoing>,
    message_key: Vec<u8>,
    /// This file's key in a table's source positions.
    table_source: Arc<str>,
}

/// A file's key in a table's source positions: its [`FileKey`] and
/// truncation generation (`sluice up` keeps file positions in the table).
pub fn table_source(key: &FileKey, generation: u32) -> String {
    SourceId::PodLog {
        file: key.as_string(),
        generation,
    }
    .to_string()
}

/// The file key and position a [`table_source`] stands for.
pub fn parse_table_source(source: &str, offset: i64) -> Option<(FileKey, Position)> {
    let SourceId::PodLog { file, generation } = source.parse().ok()? else {
        return None;
    };
    Some((
        FileKey::parse(&file)?,
        Position {
            offset: u64::try_from(offset).ok()?,
            generation,
        },
    ))
}

enum Step {
    Read,
    Idle,
    /// The producer queue is full.
    Blocked,
    /// Gone and read to the end: forget it.
    Finished,
}

/// The mixing of a truncation generation into line ids; generation 0 keeps
/// the ids [`read_pod_log`](crate::sources::pod_log_file::read_pod_log) gives.
fn effective_fingerprint(fp: u64, generation: u32) -> u64 {
    if generation == 0 {
        fp
    } else {
        let mut bytes = fp.to_le_bytes().to_vec();
        bytes.extend_from_slice(&generation.to_le_bytes());
        xxh3_64(&bytes)
    }
}

struct Io {
    settings: TailSettings,
    producer: Box<dyn LogOutlet>,
    acks: Arc<Acks>,
    metrics: CollectorMetrics,
}

pub struct Tailer {
    io: Io,
    files: HashMap<(u64, u64), Tracked>,
    /// Next generation of keys found truncated, for their re-discovery.
    truncated: HashMap<FileKey, u32>,
    checkpoint: CheckpointFile,
    last_scan: Option<Instant>,
    last_checkpoint: Instant,
    checkpoint_current_at: Instant,
    /// Paths that are not kubelet log paths, reported once each.
    reported: HashSet<PathBuf>,
}

impl Tailer {
    pub fn new(
        settings: TailSettings,
        checkpoint: CheckpointFile,
        producer: Box<dyn LogOutlet>,
        acks: Arc<Acks>,
        metrics: CollectorMetrics,
    ) -> Result<Self, TailError> {
        acks.restore(checkpoint.load()?);
        let mut settings = settings;
        // More readers than cores only adds switching.
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        settings.read_threads = settings.read_threads.clamp(1, cores);
        Ok(Self {
            io: Io {
                settings,
                producer,
                acks,
                metrics,
            },
            files: HashMap::new(),
            truncated: HashMap::new(),
            checkpoint,
            last_scan: None,
            last_checkpoint: Instant::now(),
            checkpoint_current_at: Instant::now(),
            reported: HashSet::new(),
        })
    }

    /// Runs until `stop` is set, then waits (up to `drain`) for the broker to
    /// acknowledge what was sent and saves the checkpoint a last time.
    pub fn run(mut self, stop: &AtomicBool, drain: Duration) -> Result<(), TailError> {
        while !stop.load(Ordering::Relaxed) {
            if self
                .last_scan
                .is_none_or(|t| t.elapsed() >= self.io.settings.scan_interval)
            {
                self.scan()?;
            }
            let blocked_or_busy = self.pass();
            self.maybe_checkpoint(false);
            match blocked_or_busy {
                Step::Blocked => std::thread::sleep(Duration::from_millis(10)),
                Step::Idle => std::thread::sleep(self.io.settings.poll_interval),
                _ => {}
            }
        }
        if let Err(e) = self.io.producer.flush(drain) {
            tracing::warn!(error = %e, "not every line was acknowledged before shutdown; they are read again at the next start");
        }
        self.maybe_checkpoint(true);
        Ok(())
    }

    /// One turn over every file; `Read` if any made progress.
    fn pass(&mut self) -> Step {
        let failed = self.io.producer.take_failed();
        if !failed.is_empty() {
            // Deliveries only fail for lasting reasons (the timeout is
            // infinite): do not spin on them.
            std::thread::sleep(Duration::from_millis(500));
        }
        for failed in failed {
            let key = failed.key;
            let mut delivery = failed.delivery;
            loop {
                match self.io.producer.send(&key, &failed.payload, delivery) {
                    Ok(()) => break,
                    Err((SendError::QueueFull, d)) => {
                        delivery = d;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err((SendError::Other(e), d)) => {
                        tracing::warn!(error = %e, "resending a failed message");
                        delivery = d;
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
        }
        let threads = self
            .io
            .settings
            .read_threads
            .clamp(1, self.files.len().max(1));
        let mut groups: Vec<Vec<(&(u64, u64), &mut Tracked)>> =
            (0..threads).map(|_| Vec::new()).collect();
        for (i, file) in self.files.iter_mut().enumerate() {
            groups[i % threads].push(file);
        }
        let io = &self.io;
        let mut spawn_failed = false;
        let mut outcomes: Vec<PassOutcome> = std::thread::scope(|scope| {
            // The last group is read here, the others on threads of their own.
            let mine = groups.pop().unwrap_or_default();
            let mut handles = Vec::new();
            for g in groups {
                match std::thread::Builder::new()
                    .name("tailer-read".into())
                    .spawn_scoped(scope, move || io.pass_over(g))
                {
                    Ok(h) => handles.push(h),
                    // Its files wait for the next pass, which reads inline.
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot start a reader thread; reading on one thread");
                        spawn_failed = true;
                    }
                }
            }
            let mut out = vec![io.pass_over(mine)];
            for h in handles {
                out.push(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            }
            out
        });
        if spawn_failed {
            self.io.settings.read_threads = 1;
            outcomes.push(PassOutcome {
                any: true,
                ..Default::default()
            });
        }
        let any = outcomes.iter().any(|o| o.any);
        let blocked = outcomes.iter().any(|o| o.blocked);
        let mut finished = Vec::new();
        for o in &mut outcomes {
            finished.append(&mut o.finished);
            self.truncated.extend(o.truncated.drain());
        }
        for id in finished {
            if let Some(t) = self.files.remove(&id) {
                tracing::debug!(path = %t.path.display(), "file gone and read to its end");
            }
        }
        let open = self.files.values().filter(|t| t.source.is_some()).count();
        self.io.metrics.files_open.set(open as i64);
        if blocked {
            Step::Blocked
        } else if any {
            Step::Read
        } else {
            Step::Idle
        }
    }

    fn maybe_checkpoint(&mut self, force: bool) {
        if !force && self.last_checkpoint.elapsed() < self.io.settings.checkpoint_interval {
            self.update_age();
            return;
        }
        self.last_checkpoint = Instant::now();
        let on_disk: HashSet<FileKey> = self.files.values().map(|t| t.key.clone()).collect();
        match self
            .io
            .acks
            .snapshot(self.io.settings.forget_after, &on_disk)
        {
            None => self.checkpoint_current_at = Instant::now(),
            Some(positions) => match self.checkpoint.save(&positions) {
                Ok(()) => self.checkpoint_current_at = Instant::now(),
                Err(e) => {
                    self.io.acks.unsaved();
                    tracing::error!(error = %e, "saving the checkpoint failed; retrying");
                }
            },
        }
        self.update_age();
    }

    fn update_age(&self) {
        self.io
            .metrics
            .checkpoint_age_seconds
            .set(self.checkpoint_current_at.elapsed().as_secs_f64());
    }

    /// Lists the tree: new files are opened, renamed ones followed, missing
    /// ones marked gone (read to their end, then closed).
    fn scan(&mut self) -> Result<(), TailError> {
        self.last_scan = Some(Instant::now());
        let root = self.io.settings.root.clone();
        let mut seen = HashSet::new();
        let pod_dirs = match std::fs::read_dir(&root) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A node without pods yet; the directory appears later.
                for t in self.files.values_mut() {
                    t.present = false;
                }
                return Ok(());
            }
            Err(source) => return Err(TailError::Root { path: root, source }),
        };
        for pod_dir in pod_dirs.flatten() {
            let Ok(containers) = std::fs::read_dir(pod_dir.path()) else {
                continue;
            };
            for container in containers.flatten() {
                let Ok(files) = std::fs::read_dir(container.path()) else {
                    continue;
                };
                for file in files.flatten() {
                    let path = file.path();
                    let Ok(meta) = std::fs::metadata(&path) else {
                        continue;
                    };
                    if !meta.is_file() {
                        continue;
                    }
                    let id = (meta.dev(), meta.ino());
                    if let Some(t) = self.files.get_mut(&id) {
                        seen.insert(id);
                        t.present = true;
                        if t.path != path {
                            if let Ok(p) = PodLogPath::parse(&path) {
                                t.reader.set_path(p);
                            }
                            tracing::debug!(from = %t.path.display(), to = %path.display(), "file renamed");
                            t.path = path;
                        }
                        continue;
                    }
                    if self.discover(&path, id, meta.len()) {
                        seen.insert(id);
                    }
                }
            }
        }
        for (id, t) in self.files.iter_mut() {
            t.present = seen.contains(id);
        }
        Ok(())
    }

    /// Opens a file found by the scan; `false` if it is not tracked (yet).
    fn discover(&mut self, path: &Path, id: (u64, u64), size: u64) -> bool {
        let meta = match PodLogPath::parse(path) {
            Ok(m) => m,
            Err(e) => {
                if self.reported.insert(path.to_path_buf()) {
                    tracing::debug!(error = %e, "skipping a file that is not a kubelet log");
                }
                return false;
            }
        };
        let opened = File::open(path).and_then(|f| open_source(f, meta.gzipped));
        let (mut source, head) = match opened {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "cannot open yet");
                return false;
            }
        };
        // The fingerprint needs the whole first line (or 4 KiB of it).
        if !head.contains(&b'\n') && head.len() < 4096 {
            return false;
        }
        let fp = fingerprint(&head);
        let key = FileKey {
            pod_uid: meta.pod_uid.clone(),
            container: meta.container.clone(),
            restart: meta.restart,
            fingerprint: format!("{fp:016x}"),
        };
        if self.io.acks.is_open(&key) {
            // Another name of the same bytes (the gzip of a rotated file
            // still being read): its turn comes when that one is done.
            return false;
        }
        let mut start = self.io.acks.known(&key).unwrap_or(Position {
            offset: 0,
            generation: 0,
        });
        if let Some(generation) = self.truncated.remove(&key) {
            start = Position {
                offset: 0,
                generation,
            };
        } else if !meta.gzipped && size < start.offset {
            // Truncated while the collector was not running.
            self.io.metrics.file_truncations.inc();
            start = Position {
                offset: 0,
                generation: start.generation + 1,
            };
        }
        // Skip to the position: plain files by offset, gzip by reading.
        let mut buf = Vec::new();
        match &mut source {
            Source::Plain(_) => {}
            Source::Gzip(dec) => {
                let have = head.len() as u64;
                if start.offset <= have {
                    buf.extend_from_slice(&head[start.offset as usize..]);
                } else {
                    let skip = start.offset - have;
                    match std::io::copy(&mut dec.by_ref().take(skip), &mut std::io::sink()) {
                        Ok(n) if n == skip => {}
                        // Shorter than the saved position: nothing left to read.
                        Ok(_) => start.offset = have,
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "unreadable gzip");
                            return false;
                        }
                    }
                }
            }
        }
        let read_pos = start.offset + buf.len() as u64;
        let lane = self.io.acks.open(key.clone(), start);
        let reader = PodLogReader::new(
            meta.clone(),
            LogFormat::detect(&head),
            effective_fingerprint(fp, start.generation),
            start.offset,
            self.io.settings.max_line_bytes,
        );
        tracing::debug!(path = %path.display(), offset = start.offset, "following");
        let table_source = table_source(&key, start.generation).into();
        self.files.insert(
            id,
            Tracked {
                lane,
                key,
                generation: start.generation,
                path: path.to_path_buf(),
                source: Some(source),
                reader,
                buf,
                read_pos,
                last_sent: start,
                present: true,
                outbox: VecDeque::new(),
                message_key: format!("{}/{}", meta.pod_uid, meta.container).into_bytes(),
                table_source,
            },
        );
        true
    }
}

/// Opens a plain or gzip file and reads its first bytes (up to the end of
/// the first line or 4 KiB).
fn open_source(file: File, gzipped: bool) -> std::io::Result<(Source, Vec<u8>)> {
    let mut head = vec![0u8; 4096];
    if gzipped {
        let mut dec = MultiGzDecoder::new(BufReader::new(file));
        let mut n = 0;
        while n < head.len() {
            let got = dec.read(&mut head[n..])?;
            if got == 0 {
                break;
            }
            n += got;
            if head[..n].contains(&b'\n') {
                break;
            }
        }
        head.truncate(n);
        Ok((Source::Gzip(Box::new(dec)), head))
    } else {
        let n = file.read_at(&mut head, 0)?;
        head.truncate(n);
        Ok((Source::Plain(file), head))
    }
}

/// What one thread's share of a pass did.
#[derive(Default)]
struct PassOutcome {
    any: bool,
    blocked: bool,
    finished: Vec<(u64, u64)>,
    truncated: HashMap<FileKey, u32>,
}

impl Io {
    /// One turn over `files`, stopping at the first the producer refuses.
    fn pass_over(&self, files: Vec<(&(u64, u64), &mut Tracked)>) -> PassOutcome {
        let mut out = PassOutcome::default();
        for (id, t) in files {
            match self.step(t, &mut out.truncated) {
                Step::Read => out.any = true,
                Step::Idle => {}
                Step::Blocked => {
                    out.blocked = true;
                    break;
                }
                Step::Finished => out.finished.push(*id),
            }
        }
        out
    }

    fn step(&self, t: &mut Tracked, truncated: &mut HashMap<FileKey, u32>) -> Step {
        if !self.flush_outbox(t) {
            return Step::Blocked;
        }
        let chunk = self.settings.read_chunk;
        let got = match &mut t.source {
            None => {
                return if t.present {
                    Step::Idle
                } else {
                    Step::Finished
                };
            }
            Some(Source::Plain(file)) => {
                let size = match file.metadata() {
                    Ok(m) => m.len(),
                    Err(_) => return Step::Idle,
                };
                if size < t.read_pos {
                    self.metrics.file_truncations.inc();
                    tracing::warn!(path = %t.path.display(), size, read = t.read_pos, "file truncated; reading it again from the start");
                    truncated.insert(t.key.clone(), t.generation + 1);
                    self.acks.retire(t.lane);
                    return Step::Finished;
                }
                if size == t.read_pos {
                    if t.present {
                        return Step::Idle;
                    }
                    self.acks.retire(t.lane);
                    return Step::Finished;
                }
                let want = (size - t.read_pos).min(chunk as u64) as usize;
                let old = t.buf.len();
                t.buf.resize(old + want, 0);
                match file.read_at(&mut t.buf[old..], t.read_pos) {
                    Ok(n) => {
                        t.buf.truncate(old + n);
                        n
                    }
                    Err(e) => {
                        t.buf.truncate(old);
                        tracing::warn!(path = %t.path.display(), error = %e, "read failed");
                        return Step::Idle;
                    }
                }
            }
            Some(Source::Gzip(dec)) => {
                let old = t.buf.len();
                t.buf.resize(old + chunk, 0);
                match dec.read(&mut t.buf[old..]) {
                    Ok(0) => {
                        t.buf.truncate(old);
                        t.source = None;
                        t.buf = Vec::new();
                        self.acks.retire(t.lane);
                        return if t.present {
                            Step::Read
                        } else {
                            Step::Finished
                        };
                    }
                    Ok(n) => {
                        t.buf.truncate(old + n);
                        n
                    }
                    Err(e) => {
                        tracing::warn!(path = %t.path.display(), error = %e, "corrupt gzip; stopping at this point");
                        t.buf = Vec::new();
                        t.source = None;
                        self.acks.retire(t.lane);
                        return Step::Read;
                    }
                }
            }
        };
        t.read_pos += got as u64;
        self.metrics.bytes_read.inc_by(got as u64);
        let origin = Origin {
            cluster: &self.settings.cluster,
            node: self.settings.node.as_deref(),
        };
        let mut batcher = Batcher::new(&self.settings);
        let consumed = t
            .reader
            .feed_lines(&t.buf, &origin, |line| batcher.push(&line));
        t.buf.drain(..consumed);
        let stats = std::mem::take(&mut t.reader.stats);
        self.metrics.malformed_lines.inc_by(stats.malformed_lines);
        self.metrics.truncated_lines.inc_by(stats.truncated_lines);
        self.metrics.oversized_lines.inc_by(stats.oversized_lines);
        for example in &stats.malformed_examples {
            tracing::debug!(path = %t.path.display(), %example, "malformed line");
        }
        let messages = batcher.finish();
        self.metrics
            .lines_read
            .inc_by(messages.iter().map(|(_, lines)| lines).sum());
        let resume = Position {
            offset: t.reader.resume_offset(),
            generation: t.generation,
        };
        self.enqueue(t, messages, resume);
        if !self.flush_outbox(t) {
            return Step::Blocked;
        }
        Step::Read
    }

    /// Queues the messages of a chunk; only the last carries the new resume
    /// position (the earlier ones end mid-chunk, where no position is known).
    fn enqueue(&self, t: &mut Tracked, messages: Vec<(Vec<u8>, u64)>, resume: Position) {
        if messages.is_empty() {
            if resume != t.last_sent {
                self.acks.advance(t.lane, resume);
                t.last_sent = resume;
            }
            return;
        }
        let count = messages.len();
        for (i, (payload, lines)) in messages.into_iter().enumerate() {
            let after = if i + 1 == count { resume } else { t.last_sent };
            let seq = self.acks.sent(t.lane, after);
            t.outbox.push_back(Outgoing {
                delivery: Box::new(Delivery {
                    lane: t.lane,
                    seq,
                    lines,
                    source: t.table_source.clone(),
                    after: after.offset,
                    chunk_end: i + 1 == count,
                }),
                payload,
            });
        }
        t.last_sent = resume;
    }

    /// Enqueues what waits; `false` if the producer's queue is full.
    fn flush_outbox(&self, t: &mut Tracked) -> bool {
        while let Some(out) = t.outbox.pop_front() {
            match self
                .producer
                .send(&t.message_key, &out.payload, out.delivery)
            {
                Ok(()) => {}
                Err((why, delivery)) => {
                    if let SendError::Other(e) = why {
                        tracing::warn!(error = %e, "enqueueing failed; retrying");
                    }
                    t.outbox.push_front(Outgoing {
                        delivery,
                        payload: out.payload,
                    });
                    return false;
                }
            }
        }
        true
    }
}

/// Encodes the lines of a chunk into message payloads as they are read:
/// one line per message, or JSON arrays of up to `batch_lines` lines and
/// about `batch_bytes` bytes.
struct Batcher {
    single: bool,
    max_lines: usize,
    max_bytes: usize,
    messages: Vec<(Vec<u8>, u64)>,
    payload: Vec<u8>,
    lines: u64,
}

impl Batcher {
    fn new(settings: &TailSettings) -> Self {
        Self {
            single: settings.batch_lines <= 1,
            max_lines: settings.batch_lines,
            max_bytes: settings.batch_bytes,
            messages: Vec::new(),
            payload: Vec::new(),
            lines: 0,
        }
    }

    fn push(&mut self, line: &PodLogLine<'_>) {
        if !self.single {
            self.payload.push(if self.lines == 0 { b'[' } else { b',' });
        }
        line.write_json(&mut self.payload);
        self.lines += 1;
        if self.single
            || self.lines as usize >= self.max_lines
            || self.payload.len() >= self.max_bytes
        {
            self.close();
        }
    }

    fn close(&mut self) {
        if !self.single {
            self.payload.push(b']');
        }
        self.messages
            .push((std::mem::take(&mut self.payload), self.lines));
        self.lines = 0;
    }

    fn finish(mut self) -> Vec<(Vec<u8>, u64)> {
        if self.lines > 0 {
            self.close();
        }
        self.messages
    }
}
