//! The write-ahead log of `sluice up`'s HTTP intake (and its demo's
//! lifecycle events): records are appended as NDJSON and fsync'd before the
//! request is answered; the in-process writer reads them back from the
//! position its table holds (`wal:<name>` in the snapshot summary), so the
//! log is replayed exactly from where the last commit stopped.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use super::{DeadLetterFile, Message};

#[derive(Debug, thiserror::Error)]
#[error("write-ahead log {path}: {source}")]
pub struct WalError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

pub struct Wal {
    name: String,
    path: PathBuf,
    file: Mutex<File>,
    /// Bytes durable in the file (always at a line boundary).
    len: AtomicU64,
    appended: Notify,
}

impl Wal {
    /// Opens (or creates) `dir/<name>.wal`. A torn last line — a crash
    /// during an append that was never acknowledged — is cut off.
    pub fn open(dir: &Path, name: &str) -> Result<Arc<Self>, WalError> {
        let path = dir.join(format!("{name}.wal"));
        let err = |source| WalError {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(err)?;
        if !existed {
            // The new file's directory entry must be durable before the
            // first record acknowledged in it is.
            File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        }
        let size = file.metadata().map_err(err)?.len();
        let end = complete_length(&mut file, size).map_err(err)?;
        if end != size {
            tracing::warn!(path = %path.display(), dropped = size - end, "cutting an unacknowledged torn record off the write-ahead log");
            file.set_len(end).map_err(err)?;
            file.sync_all().map_err(err)?;
        }
        Ok(Arc::new(Self {
            name: name.to_string(),
            path,
            file: Mutex::new(file),
            len: AtomicU64::new(end),
            appended: Notify::new(),
        }))
    }

    /// The source key of this log in a table's positions.
    pub fn source(&self) -> String {
        format!("wal:{}", self.name)
    }

    pub fn path(&self) -> &Path {
        &self.path
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
                path: self.path.clone(),
                source: std::io::Error::other(e),
            })?;
        written?;
        self.appended.notify_waiters();
        Ok(())
    }

    fn append_blocking(&self, buf: &[u8]) -> Result<(), WalError> {
        let err = |source| WalError {
            path: self.path.clone(),
            source,
        };
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let before = self.len.load(Ordering::Acquire);
        let result = file.write_all(buf).and_then(|()| file.sync_data());
        if let Err(e) = result {
            // Leave no half record behind for the reader to take.
            let _ = file.set_len(before);
            return Err(err(e));
        }
        self.len.store(before + buf.len() as u64, Ordering::Release);
        Ok(())
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
        let mut reader = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "cannot read the write-ahead log");
                return;
            }
        };
        let mut pos = from;
        loop {
            let notified = self.appended.notified();
            let end = self.len();
            if pos >= end {
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = out.closed() => return,
                }
                continue;
            }
            let chunk = (end - pos).min(4 << 20);
            let mut buf = vec![0u8; chunk as usize];
            let read = reader
                .seek(SeekFrom::Start(pos))
                .and_then(|_| reader.read_exact(&mut buf));
            if let Err(e) = read {
                tracing::error!(path = %self.path.display(), error = %e, "reading the write-ahead log; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            // Durable length is at a line boundary; a 4 MiB cut may not be.
            let usable = match buf.iter().rposition(|b| *b == b'\n') {
                Some(i) => i + 1,
                None => {
                    // One record longer than the chunk (the intake caps
                    // records far below this; older logs may hold one).
                    let after = match long_record(&mut reader, pos, end) {
                        Ok(LongRecord::Whole(record, after)) => {
                            let m = Message::records(source.clone(), after, vec![record]);
                            if out.send(m).await.is_err() {
                                return;
                            }
                            after
                        }
                        Ok(LongRecord::TooLong { len, head, after }) => {
                            let reason = format!(
                                "a write-ahead log record of {len} bytes: over the {} MiB a record may have",
                                MAX_RECORD_BYTES >> 20
                            );
                            tracing::error!(path = %self.path.display(), offset = pos, len, "{reason}; dead-lettered");
                            let line = serde_json::json!({
                                "table": table,
                                "source": &*source,
                                "position": after,
                                "reason": reason,
                                "record_bytes": len,
                                "record_head": String::from_utf8_lossy(&head),
                            });
                            let mut wait = Duration::from_millis(200);
                            while let Err(e) = dead_letters.write(std::slice::from_ref(&line)) {
                                tracing::error!(path = %dead_letters.path().display(), error = %e, "cannot write dead letters; retrying");
                                tokio::time::sleep(wait).await;
                                wait = (wait * 2).min(Duration::from_secs(10));
                            }
                            // Moves the table's position past it.
                            let m = Message::records(source.clone(), after, Vec::new());
                            if out.send(m).await.is_err() {
                                return;
                            }
                            after
                        }
                        Err(e) => {
                            tracing::error!(path = %self.path.display(), error = %e, "reading the write-ahead log; retrying");
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
}
