//! A kubelet log file → pod log records with stable line ids.
//!
//! A line's id depends only on what identifies the bytes it was read from:
//! the container instance (pod uid, container, restart), the file's
//! fingerprint (a hash of its first line, which never changes once written and
//! survives renames and gzip), and the line's offset in the uncompressed
//! stream. Reading the same line again — after a restart, from the rotated or
//! the gzipped copy — gives the same id, so the writer drops the replay.

use sluice_schema::raw::{PodLogLine, PodLogRecord};
use xxhash_rust::xxh3::xxh3_64;

use super::cri::{self, PartialJoiner};
use super::docker_json;
use super::level;
use super::pod_log_path::PodLogPath;

/// Longest logical line kept; the rest is cut and counted.
pub const DEFAULT_MAX_LINE_BYTES: usize = 256 * 1024;

/// Fingerprint of a file: a hash of its first line (or of what there is of it).
pub fn fingerprint(content: &[u8]) -> u64 {
    let end = content
        .iter()
        .position(|b| *b == b'\n')
        .map_or(content.len(), |i| i + 1)
        .min(4096);
    xxh3_64(&content[..end])
}

/// The stable id of the logical line starting at `offset`: 32 lowercase hex
/// digits (the table contract's derivation, which the log index repeats).
pub fn line_id(path: &PodLogPath, fingerprint: u64, offset: u64) -> [u8; 32] {
    sluice_schema::tables::pod_log_line_id(
        &path.pod_uid,
        &path.container,
        path.restart,
        fingerprint,
        offset,
    )
}

/// What reading a file found besides records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub physical_lines: u64,
    pub malformed_lines: u64,
    pub truncated_lines: u64,
    /// Physical lines longer than any runtime writes, dropped whole.
    pub oversized_lines: u64,
    /// First few malformed lines, with the reason, for the operator.
    pub malformed_examples: Vec<String>,
}

/// Context a record needs that the file path does not give.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub cluster: &'a str,
    pub node: Option<&'a str>,
}

/// Parses a whole (uncompressed) kubelet log file into records: CRI or
/// Docker json-file, told apart by the file's first byte.
pub fn read_pod_log(
    path: &PodLogPath,
    content: &[u8],
    origin: &Origin<'_>,
    max_line_bytes: usize,
) -> (Vec<PodLogRecord>, ReadStats) {
    let mut reader = PodLogReader::new(
        path.clone(),
        LogFormat::detect(content),
        fingerprint(content),
        0,
        max_line_bytes,
    );
    let mut out = Vec::new();
    reader.feed(content, origin, &mut out);
    (out, reader.stats)
}

/// The two on-disk formats kubelets leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Cri,
    DockerJson,
}

impl LogFormat {
    /// Told from the file's first bytes (a json-file line starts with `{`).
    pub fn detect(content: &[u8]) -> Self {
        if docker_json::is_docker_json(content) {
            LogFormat::DockerJson
        } else {
            LogFormat::Cri
        }
    }
}

/// Reads one log file incrementally: fed the bytes that follow what it has
/// consumed, it emits every logical line completed so far. The ids it gives
/// are those [`read_pod_log`] gives for the whole file, wherever reading
/// started, as long as it started at a [`PodLogReader::resume_offset`].
#[derive(Debug)]
pub struct PodLogReader {
    path: PodLogPath,
    format: LogFormat,
    fingerprint: u64,
    joiner: PartialJoiner,
    /// Offset of the next physical line.
    offset: u64,
    /// Where the logical line being joined started, per stream.
    line_start: [Option<u64>; 2],
    /// Inside a physical line longer than the bound: dropping to its end.
    discarding: bool,
    max_line_bytes: usize,
    pub stats: ReadStats,
}

impl PodLogReader {
    /// `offset` must be a line start, normally a saved
    /// [`resume_offset`](Self::resume_offset).
    pub fn new(
        path: PodLogPath,
        format: LogFormat,
        fingerprint: u64,
        offset: u64,
        max_line_bytes: usize,
    ) -> Self {
        Self {
            path,
            format,
            fingerprint,
            joiner: PartialJoiner::new(max_line_bytes),
            offset,
            line_start: [None; 2],
            discarding: false,
            max_line_bytes,
            stats: ReadStats::default(),
        }
    }

    pub fn path(&self) -> &PodLogPath {
        &self.path
    }

    /// Renamed (rotated) files keep their identity; only the path changes.
    pub fn set_path(&mut self, path: PodLogPath) {
        self.path = path;
    }

    /// Offset of the next byte to feed.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Where reading must start again so that no logical line is lost: the
    /// start of the oldest partial line still being joined, else
    /// [`offset`](Self::offset). Lines re-read from there get the same ids.
    pub fn resume_offset(&self) -> u64 {
        self.line_start
            .iter()
            .flatten()
            .copied()
            .min()
            .unwrap_or(self.offset)
    }

    /// A physical line can be at most this long before it is dropped (a
    /// runtime splits lines at 16 KiB; anything longer is not a log line).
    pub fn max_physical_line(&self) -> usize {
        self.max_line_bytes + 64 * 1024
    }

    /// Consumes every complete physical line at the start of `buf` (which
    /// starts at [`offset`](Self::offset)) and returns how many bytes that
    /// was; the rest is an unfinished line to feed again with what follows.
    pub fn feed(&mut self, buf: &[u8], origin: &Origin<'_>, out: &mut Vec<PodLogRecord>) -> usize {
        self.feed_lines(buf, origin, |line| out.push(line.to_record()))
    }

    /// [`feed`](Self::feed), each line handed to `each` with its strings
    /// borrowed instead of collected as records.
    pub fn feed_lines(
        &mut self,
        buf: &[u8],
        origin: &Origin<'_>,
        mut each: impl FnMut(PodLogLine<'_>),
    ) -> usize {
        let mut consumed = 0usize;
        for raw in buf.split_inclusive(|b| *b == b'\n') {
            if !raw.ends_with(b"\n") {
                if raw.len() > self.max_physical_line() {
                    // Bounded memory whatever the file holds: drop it whole.
                    if !self.discarding {
                        self.stats.oversized_lines += 1;
                    }
                    self.discarding = true;
                    consumed += raw.len();
                    self.offset += raw.len() as u64;
                }
                break;
            }
            let here = self.offset;
            consumed += raw.len();
            self.offset += raw.len() as u64;
            if self.discarding {
                self.discarding = false;
                continue;
            }
            self.line(raw, here, origin, &mut each);
        }
        consumed
    }

    fn line(
        &mut self,
        raw: &[u8],
        here: u64,
        origin: &Origin<'_>,
        each: &mut impl FnMut(PodLogLine<'_>),
    ) {
        self.stats.physical_lines += 1;
        let docker = (self.format == LogFormat::DockerJson).then(|| docker_json::parse_line(raw));
        let parsed = match &docker {
            Some(Ok(d)) => Ok(d.as_cri()),
            Some(Err(e)) => Err(e.to_string()),
            None => cri::parse_line(raw).map_err(|e| e.to_string()),
        };
        let line = match parsed {
            Ok(l) => l,
            Err(e) => {
                self.stats.malformed_lines += 1;
                if self.stats.malformed_examples.len() < 5 {
                    self.stats
                        .malformed_examples
                        .push(format!("offset {here}: {e}"));
                }
                return;
            }
        };
        let slot = &mut self.line_start[line.stream as usize];
        let start = *slot.get_or_insert(here);
        let Some(joined) = self.joiner.push(&line) else {
            return;
        };
        *slot = None;
        self.stats.truncated_lines += u64::from(joined.truncated);
        let message = String::from_utf8(joined.content)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        let path = &self.path;
        let id = line_id(path, self.fingerprint, start);
        each(PodLogLine {
            ts: joined.ts_nanos.div_euclid(1000),
            cluster: origin.cluster,
            namespace: &path.namespace,
            pod: &path.pod,
            pod_uid: &path.pod_uid,
            container: &path.container,
            restart: path.restart,
            stream: joined.stream.as_str(),
            level: level::parse(&message),
            message: &message,
            node: origin.node,
            // Hex digits: always UTF-8.
            line_id: std::str::from_utf8(&id).unwrap_or_default(),
            byte_offset: Some(start as i64),
            // The same bits, as the table's signed long.
            file_fingerprint: Some(self.fingerprint as i64),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use xxhash_rust::xxh3::Xxh3;

    use super::*;

    #[test]
    fn line_ids_are_32_hex_digits_of_the_hash() {
        let path = PodLogPath::parse(Path::new("ns_p_uid/c/3.log")).unwrap();
        for (fp, offset) in [(0, 0), (1, 17), (u64::MAX, u64::MAX), (42, 1 << 40)] {
            let mut h = Xxh3::new();
            h.update(b"uid\0c\0");
            h.update(&3i32.to_le_bytes());
            h.update(&u64::to_le_bytes(fp));
            h.update(&u64::to_le_bytes(offset));
            assert_eq!(
                line_id(&path, fp, offset),
                format!("{:032x}", h.digest128()).as_bytes()
            );
        }
    }

    #[test]
    fn docker_json_files_read_like_cri_files() {
        let path = PodLogPath::parse(Path::new("ns_p_uid/c/0.log")).unwrap();
        let content = concat!(
            r#"{"log":"{\"level\":\"warn\",\"msg\":\"slow\"}\n","stream":"stdout","time":"2026-11-21T14:32:08.5Z"}"#,
            "\n",
            r#"{"log":"long line, first part ","stream":"stderr","time":"2026-11-21T14:32:09Z"}"#,
            "\n",
            r#"{"log":"and the rest\n","stream":"stderr","time":"2026-11-21T14:32:09.1Z"}"#,
            "\nnot json\n",
        )
        .as_bytes();
        let origin = Origin {
            cluster: "c1",
            node: None,
        };
        let (recs, stats) = read_pod_log(&path, content, &origin, 1024);
        assert_eq!(recs.len(), 2, "{stats:?}");
        assert_eq!(recs[0].message, r#"{"level":"warn","msg":"slow"}"#);
        assert_eq!(recs[0].level.as_deref(), Some("warn"));
        assert_eq!(recs[0].ts, 1_795_271_528_500_000);
        assert_eq!(recs[1].message, "long line, first part and the rest");
        assert_eq!(recs[1].stream, "stderr");
        assert_eq!(stats.malformed_lines, 1);
        assert!(stats.malformed_examples[0].contains("not a log object"));
    }

    #[test]
    fn ids_are_stable_and_partials_join() {
        let path = PodLogPath::parse(Path::new("ns_p_uid/c/2.log")).unwrap();
        let content = b"2026-11-21T14:32:08Z stdout F {\"level\":\"info\",\"msg\":\"a\"}\n\
2026-11-21T14:32:09Z stderr P part1-\n\
2026-11-21T14:32:09.5Z stdout F ERROR b\n\
2026-11-21T14:32:10Z stderr F part2\n\
garbage\n\
2026-11-21T14:32:11Z stdout F unterminated";
        let origin = Origin {
            cluster: "c1",
            node: Some("n1"),
        };
        let (recs, stats) = read_pod_log(&path, content, &origin, 1024);
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].level.as_deref(), Some("info"));
        assert_eq!(recs[1].message, "ERROR b");
        assert_eq!(recs[1].level.as_deref(), Some("error"));
        assert_eq!(recs[2].message, "part1-part2");
        assert_eq!(recs[2].stream, "stderr");
        // The joined line starts where its first part does: right after line 1.
        let second_line = content.iter().position(|b| *b == b'\n').unwrap() as i64 + 1;
        assert_eq!(recs[2].byte_offset, Some(second_line));
        assert_eq!(recs[0].restart, 2);
        assert_eq!(stats.malformed_lines, 1);
        assert_eq!(stats.physical_lines, 5);
        // Same bytes, same ids; a different file (other first line), other ids.
        let (again, _) = read_pod_log(&path, content, &origin, 1024);
        assert_eq!(recs, again);
        let other = b"2026-11-21T15:00:00Z stdout F x\n";
        let (o, _) = read_pod_log(&path, other, &origin, 1024);
        assert_ne!(o[0].line_id, recs[0].line_id);
        // Growing the file does not change the ids of lines already there.
        let mut longer = content[..content.len() - 12].to_vec();
        longer.extend_from_slice(b"more\n");
        let (grown, _) = read_pod_log(&path, &longer, &origin, 1024);
        assert_eq!(grown[..3], recs[..]);
    }
}
