//! The write-ahead log of `sluice up`'s HTTP intake (and its demo's
//! lifecycle events): records are appended as NDJSON and fsync'd before the
//! request is answered; the in-process writer reads them back from the
//! position its table holds (`wal:<name>` in the snapshot summary), so the
//! log is replayed exactly from where the last commit stopped.
//!
//! Positions are byte offsets over the whole log, which is kept in segments
//! (`<name>.wal` from offset 0, then `<name>.<start offset>.wal`) of about
//! [`SEGMENT_BYTES`]; a segment always ends at a record boundary. Once the
//! table's position has passed a segment, [`Wal::trim`] deletes it, so the
//! log's disk use follows what is not yet committed, not everything ever
//! received.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use super::{DeadLetterFile, Message};
use crate::outlet::{OutletError, RecordOutlet};
use futures::future::BoxFuture;
use sluice_warehouse::retry::Backoff;
use sluice_warehouse::source_id::SourceId;

#[derive(Debug, thiserror::Error)]
#[error("write-ahead log {path}: {source}")]
pub struct WalError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// A new segment is started once the active one holds this much.
pub const SEGMENT_BYTES: u64 = 64 << 20;

pub struct Wal {
    name: String,
    dir: PathBuf,
    /// The segment appended to, and its start offset.
    active: Mutex<(File, u64)>,
    /// Start offset → file of every segment still on disk.
    segments: Mutex<BTreeMap<u64, PathBuf>>,
    /// Durable end of the log (always at a line boundary).
    len: AtomicU64,
    appended: Notify,
    segment_bytes: u64,
}

/// The file of the segment starting at `start`.
fn segment_path(dir: &Path, name: &str, start: u64) -> PathBuf {
    if start == 0 {
        dir.join(format!("{name}.wal"))
    } else {
        dir.join(format!("{name}.{start:020}.wal"))
    }
}

impl Wal {
    /// Opens (or creates) the log `name` in `dir`. A torn last line — a
    /// crash during an append that was never acknowledged — is cut off.
    pub fn open(dir: &Path, name: &str) -> Result<Arc<Self>, WalError> {
        Self::open_with(dir, name, SEGMENT_BYTES)
    }

    /// [`Self::open`] with segments of `segment_bytes`.
    pub fn open_with(dir: &Path, name: &str, segment_bytes: u64) -> Result<Arc<Self>, WalError> {
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| WalError { path, source }
        };
        std::fs::create_dir_all(dir).map_err(err(dir))?;
        let mut segments = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(err(dir))? {
            let entry = entry.map_err(err(dir))?;
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            let start = if file_name == format!("{name}.wal") {
                Some(0)
            } else {
                file_name
                    .strip_prefix(&format!("{name}."))
                    .and_then(|r| r.strip_suffix(".wal"))
                    .filter(|n| n.len() == 20)
                    .and_then(|n| n.parse::<u64>().ok())
            };
            if let Some(start) = start {
                segments.insert(start, entry.path());
            }
        }
        let (start, path) = match segments.iter().next_back() {
            Some((s, p)) => (*s, p.clone()),
            None => {
                let p = segment_path(dir, name, 0);
                segments.insert(0, p.clone());
                (0, p)
            }
        };
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(err(&path))?;
        if !existed {
            // The new file's directory entry must be durable before the
            // first record acknowledged in it is.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(err(&path))?;
        }
        let size = file.metadata().map_err(err(&path))?.len();
        let end = complete_length(&mut file, size).map_err(err(&path))?;
        if end != size {
            tracing::warn!(path = %path.display(), dropped = size - end, "cutting an unacknowledged torn record off the write-ahead log");
            file.set_len(end).map_err(err(&path))?;
            file.sync_all().map_err(err(&path))?;
        }
        Ok(Arc::new(Self {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            active: Mutex::new((file, start)),
            segments: Mutex::new(segments),
            len: AtomicU64::new(start + end),
            appended: Notify::new(),
            segment_bytes: segment_bytes.max(1),
        }))
    }

    /// The source key of this log in a table's positions.
    pub fn source(&self) -> String {
        SourceId::Wal {
            name: self.name.clone(),
        }
        .to_string()
    }

    /// The first segment's file (`<dir>/<name>.wal`), naming the log.
    pub fn path(&self) -> PathBuf {
        segment_path(&self.dir, &self.name, 0)
    }

    /// Offset where the oldest segment still on disk starts.
    pub fn first_offset(&self) -> u64 {
        self.segments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .next()
            .copied()
            .unwrap_or(0)
    }

    /// Deletes the segments that end at or before `committed` (the table's
    /// position: everything before it is in the table). The segment being
    /// appended to stays. Returns how many were deleted.
    pub fn trim(&self, committed: u64) -> Result<usize, WalError> {
        let active_start = self.active.lock().unwrap_or_else(|p| p.into_inner()).1;
        let mut segments = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        let starts: Vec<u64> = segments.keys().copied().collect();
        let mut deleted = 0;
        for pair in starts.windows(2) {
            let (start, next) = (pair[0], pair[1]);
            if next > committed || start == active_start {
                break;
            }
            if let Some(path) = segments.remove(&start) {
                std::fs::remove_file(&path).map_err(|source| WalError {
                    path: path.clone(),
                    source,
                })?;
                tracing::info!(path = %path.display(), "write-ahead log segment committed; deleted");
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends one record per element and returns once they are on disk.
    /// A record's raw newlines (JSON allows them only between tokens) become
    /// spaces, so each stays one line.
    pub async fn append(self: &Arc<Self>, records: &[&[u8]]) -> Result<(), WalError> {
        let mut buf = Vec::with_capacity(records.iter().map(|r| r.len() + 1).sum());
        for r in records {
            buf.extend(r.iter().map(|b| if *b == b'\n' { b' ' } else { *b }));
            buf.push(b'\n');
        }
        let wal = self.clone();
        let written = tokio::task::spawn_blocking(move || wal.append_blocking(&buf))
            .await
            .map_err(|e| WalError {
                path: self.path(),
                source: std::io::Error::other(e),
            })?;
        written?;
        self.appended.notify_waiters();
        Ok(())
    }

    fn append_blocking(&self, buf: &[u8]) -> Result<(), WalError> {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        let before = self.len.load(Ordering::Acquire);
        if before - active.1 >= self.segment_bytes {
            // Roll over: the new segment starts where the log ends, at a
            // record boundary.
            let path = segment_path(&self.dir, &self.name, before);
            let err = |source| WalError {
                path: path.clone(),
                source,
            };
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&path)
                .map_err(err)?;
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(err)?;
            self.segments
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(before, path);
            *active = (file, before);
        }
        let (file, start) = &mut *active;
        let result = file.write_all(buf).and_then(|()| file.sync_data());
        if let Err(e) = result {
            // Leave no half record behind for the reader to take.
            let _ = file.set_len(before - *start);
            return Err(WalError {
                path: segment_path(&self.dir, &self.name, *start),
                source: e,
            });
        }
        self.len.store(before + buf.len() as u64, Ordering::Release);
        Ok(())
    }

    /// The segment holding offset `pos`: its start, its end (the next
    /// segment's start, or the log's end) and its file.
    fn segment_at(&self, pos: u64) -> Option<(u64, u64, PathBuf)> {
        let segments = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        let (start, path) = segments.range(..=pos).next_back()?;
        let end = segments
            .range(pos + 1..)
            .next()
            .map_or_else(|| self.len(), |(next, _)| *next);
        Some((*start, end, path.clone()))
    }

    /// Feeds records from `from` on into `out`, `max_records` per message,
    /// until `out` closes.
    /// A record too long to be one (over [`MAX_RECORD_BYTES`]) goes to
    /// `dead_letters`, for `table`, with its length and first bytes.
    pub async fn follow(
        self: Arc<Self>,
        from: u64,
        max_records: usize,
        out: mpsc::Sender<Message>,
        dead_letters: Arc<DeadLetterFile>,
        table: &'static str,
    ) {
        let source: Arc<str> = self.source().into();
        // The open segment: its start and file.
        let mut open: Option<(u64, File)> = None;
        let mut pos = from;
        loop {
            let notified = self.appended.notified();
            if pos >= self.len() {
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = out.closed() => return,
                }
                continue;
            }
            let Some((start, end, path)) = self.segment_at(pos) else {
                tracing::error!(log = %self.name, offset = pos, first = self.first_offset(), "the write-ahead log no longer holds this offset (trimmed past what the table holds?); stopping");
                return;
            };
            if open.as_ref().is_none_or(|(s, _)| *s != start) {
                match File::open(&path) {
                    Ok(f) => open = Some((start, f)),
                    Err(e) => {
                        tracing::error!(path = %path.display(), error = %e, "cannot read the write-ahead log; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            let Some((_, reader)) = open.as_mut() else {
                continue;
            };
            let chunk = (end - pos).min(4 << 20);
            let mut buf = vec![0u8; chunk as usize];
            let read = reader
                .seek(SeekFrom::Start(pos - start))
                .and_then(|_| reader.read_exact(&mut buf));
            if let Err(e) = read {
                tracing::error!(path = %path.display(), error = %e, "reading the write-ahead log; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            // Durable length is at a line boundary; a 4 MiB cut may not be.
            let usable = match buf.iter().rposition(|b| *b == b'\n') {
                Some(i) => i + 1,
                None => {
                    // One record longer than the chunk (the intake caps
                    // records far below this; older logs may hold one).
                    let after = match long_record(reader, pos - start, end - start) {
                        Ok(LongRecord::Whole(record, after)) => {
                            let after = after + start;
                            let m = Message::records(source.clone(), after, vec![record]);
                            if out.send(m).await.is_err() {
                                return;
                            }
                            after
                        }
                        Ok(LongRecord::TooLong { len, head, after }) => {
                            let after = after + start;
                            let reason = format!(
                                "a write-ahead log record of {len} bytes: over the {} MiB a record may have",
                                MAX_RECORD_BYTES >> 20
                            );
                            tracing::error!(path = %path.display(), offset = pos, len, "{reason}; dead-lettered");
                            let line = serde_json::json!({
                                "table": table,
                                "source": &*source,
                                "position": after,
                                "reason": reason,
                                "record_bytes": len,
                                "record_head": String::from_utf8_lossy(&head),
                            });
                            let mut backoff = Backoff::unavailable();
                            while let Err(e) = dead_letters.write(std::slice::from_ref(&line)) {
                                tracing::error!(path = %dead_letters.path().display(), error = %e, "cannot write dead letters; retrying");
                                backoff.wait().await;
                            }
                            // Moves the table's position past it.
                            let m = Message::records(source.clone(), after, Vec::new());
                            if out.send(m).await.is_err() {
                                return;
                            }
                            after
                        }
                        Err(e) => {
                            tracing::error!(path = %path.display(), error = %e, "reading the write-ahead log; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                    };
                    pos = after;
                    continue;
                }
            };
            let mut records = Vec::new();
            let mut at = pos;
            for line in buf[..usable].split_inclusive(|b| *b == b'\n') {
                at += line.len() as u64;
                let line = line.strip_suffix(b"\n").unwrap_or(line);
                if !line.trim_ascii().is_empty() {
                    records.push(line.to_vec());
                }
                if records.len() >= max_records {
                    let m = Message::records(source.clone(), at, std::mem::take(&mut records));
                    if out.send(m).await.is_err() {
                        return;
                    }
                }
            }
            if !records.is_empty() || at != pos {
                let m = Message::records(source.clone(), at, records);
                if out.send(m).await.is_err() {
                    return;
                }
            }
            pos = at;
        }
    }
}

/// Length of the file up to and including its last newline.
fn complete_length(file: &mut File, size: u64) -> std::io::Result<u64> {
    let mut end = size;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|b| *b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The longest record read back whole; the intake's own cap is far lower.
pub const MAX_RECORD_BYTES: u64 = 64 << 20;

/// How much of a too-long record its dead letter shows.
const HEAD_BYTES: usize = 64 * 1024;

enum LongRecord {
    /// The record and the offset after its newline.
    Whole(Vec<u8>, u64),
    TooLong {
        len: u64,
        head: Vec<u8>,
        after: u64,
    },
}

/// Reads the record starting at `from`, which runs past one chunk; `end`
/// (the durable length) is at a line boundary, so its newline is there.
fn long_record(file: &mut File, from: u64, end: u64) -> std::io::Result<LongRecord> {
    file.seek(SeekFrom::Start(from))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut record = Vec::new();
    let mut at = from;
    while at < end {
        let want = buf.len().min((end - at) as usize);
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        let newline = buf[..n].iter().position(|b| *b == b'\n');
        let take = newline.map_or(n, |i| i);
        if (record.len() + take) as u64 <= MAX_RECORD_BYTES {
            record.extend_from_slice(&buf[..take]);
        } else if record.len() < HEAD_BYTES {
            record.extend_from_slice(&buf[..take.min(HEAD_BYTES - record.len())]);
        }
        at += take as u64;
        if newline.is_some() {
            let len = at - from;
            let after = at + 1;
            if len <= MAX_RECORD_BYTES {
                return Ok(LongRecord::Whole(record, after));
            }
            record.truncate(HEAD_BYTES);
            return Ok(LongRecord::TooLong {
                len,
                head: record,
                after,
            });
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        format!("no end to the record at offset {from} before the log's durable end {end}"),
    ))
}

/// Records appended to one of `sluice up`'s write-ahead logs (keys are
/// not kept: the in-process writer needs none), durable once fsync'd.
pub struct WalOutlet(pub Arc<Wal>);

impl RecordOutlet for WalOutlet {
    fn send<'a>(
        &'a self,
        records: &'a [(&'a [u8], &'a [u8])],
    ) -> BoxFuture<'a, Result<(), OutletError>> {
        Box::pin(async move {
            let payloads: Vec<&[u8]> = records.iter().map(|(_, p)| *p).collect();
            self.0
                .append(&payloads)
                .await
                .map_err(|e| OutletError::Wal(e.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_torn_tail_is_cut_and_records_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), "events").unwrap();
        wal.append(&[b"{\"a\":1}", b"{\"b\":\n2}"]).await.unwrap();
        let durable = wal.len();
        drop(wal);
        let path = dir.path().join("events.wal");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"torn\":").unwrap();
        drop(f);
        let wal = Wal::open(dir.path(), "events").unwrap();
        assert_eq!(wal.len(), durable);
        wal.append(&[b"{\"c\":3}"]).await.unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let dead = Arc::new(DeadLetterFile::new(dir.path().join("dead.ndjson")));
        let follower = tokio::spawn(wal.clone().follow(0, 2, tx, dead, "t"));
        let first = rx.recv().await.unwrap();
        assert_eq!(
            first.records,
            vec![b"{\"a\":1}".to_vec(), b"{\"b\": 2}".to_vec()]
        );
        let second = rx.recv().await.unwrap();
        assert_eq!(second.records, vec![b"{\"c\":3}".to_vec()]);
        assert_eq!(second.after as u64, wal.len());
        follower.abort();
    }

    #[tokio::test]
    async fn long_records_come_back_whole_and_too_long_ones_are_dead_lettered() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), "events").unwrap();
        let five_mib = format!("{{\"a\":\"{}\"}}", "x".repeat(5 << 20));
        let too_long = format!("{{\"b\":\"{}\"}}", "y".repeat(MAX_RECORD_BYTES as usize));
        wal.append(&[five_mib.as_bytes()]).await.unwrap();
        wal.append(&[too_long.as_bytes(), b"{\"c\":1}"])
            .await
            .unwrap();
        let dead_path = dir.path().join("dead.ndjson");
        let dead = Arc::new(DeadLetterFile::new(dead_path.clone()));
        let (tx, mut rx) = mpsc::channel(4);
        let follower = tokio::spawn(wal.clone().follow(0, 100, tx, dead, "platform_event_logs"));
        let first = rx.recv().await.unwrap();
        assert_eq!(first.records, vec![five_mib.into_bytes()]);
        let second = rx.recv().await.unwrap();
        assert!(
            second.records.is_empty(),
            "the too-long record is not passed on"
        );
        let third = rx.recv().await.unwrap();
        assert_eq!(third.records, vec![b"{\"c\":1}".to_vec()]);
        assert_eq!(third.after as u64, wal.len());
        let letters = std::fs::read_to_string(&dead_path).unwrap();
        let letter: serde_json::Value = serde_json::from_str(letters.trim()).unwrap();
        assert_eq!(letter["table"], "platform_event_logs");
        assert_eq!(letter["source"], "wal:events");
        assert_eq!(letter["record_bytes"], too_long.len() as u64);
        assert_eq!(letter["position"], second.after);
        assert!(letter["reason"].as_str().unwrap().contains("64 MiB"));
        follower.abort();
    }

    #[tokio::test]
    async fn segments_roll_are_read_across_and_trimmed_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open_with(dir.path(), "events", 20).unwrap();
        let records: Vec<String> = (0..10).map(|i| format!("{{\"n\":{i:03}}}")).collect();
        for r in &records {
            wal.append(&[r.as_bytes()]).await.unwrap();
        }
        let files = |d: &Path| {
            let mut f: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            f.sort();
            f
        };
        // Each record is 10 bytes: a new segment every second record.
        assert_eq!(files(dir.path()).len(), 5, "{:?}", files(dir.path()));
        assert_eq!(wal.len(), 100);

        // Read back across every segment, from the middle of one.
        let dead = Arc::new(DeadLetterFile::new(dir.path().join("dead.ndjson")));
        let (tx, mut rx) = mpsc::channel(16);
        let follower = tokio::spawn(wal.clone().follow(10, 100, tx, dead.clone(), "t"));
        let mut got = Vec::new();
        while got.len() < 9 {
            let m = rx.recv().await.unwrap();
            got.extend(m.records.into_iter().map(|r| String::from_utf8(r).unwrap()));
        }
        assert_eq!(got, records[1..].to_vec());
        follower.abort();

        // Committed up to offset 30: the segment ending at 20 goes, the
        // one holding offset 30 (20..40) stays.
        assert_eq!(wal.trim(30).unwrap(), 1);
        assert_eq!(wal.first_offset(), 20);
        assert_eq!(wal.trim(30).unwrap(), 0);
        // Never the active segment.
        assert_eq!(wal.trim(u64::MAX).unwrap(), 3);
        assert_eq!(wal.first_offset(), 80);

        // Reopened, the log goes on at the same offsets.
        drop(wal);
        let wal = Wal::open_with(dir.path(), "events", 20).unwrap();
        assert_eq!(wal.len(), 100);
        assert_eq!(wal.first_offset(), 80);
        wal.append(&[b"{\"n\":010}"]).await.unwrap();
        assert_eq!(wal.len(), 110);
        let (tx, mut rx) = mpsc::channel(16);
        let follower = tokio::spawn(wal.clone().follow(90, 100, tx, dead, "t"));
        let m = rx.recv().await.unwrap();
        assert_eq!(m.records, vec![records[9].as_bytes().to_vec()]);
        follower.abort();
    }
}
