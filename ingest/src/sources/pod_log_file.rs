//! A kubelet log file → pod log records with stable line ids.
//!
//! A line's id depends only on what identifies the bytes it was read from:
//! the container instance (pod uid, container, restart), the file's
//! fingerprint (a hash of its first line, which never changes once written and
//! survives renames and gzip), and the line's offset in the uncompressed
//! stream. Reading the same line again — after a restart, from the rotated or
//! the gzipped copy — gives the same id, so the writer drops the replay.

use sluice_schema::raw::PodLogRecord;
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

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

/// The stable id of the logical line starting at `offset`.
pub fn line_id(path: &PodLogPath, fingerprint: u64, offset: u64) -> String {
    let mut h = Xxh3::new();
    for part in [path.pod_uid.as_bytes(), path.container.as_bytes()] {
        h.update(part);
        h.update(&[0]);
    }
    h.update(&path.restart.to_le_bytes());
    h.update(&fingerprint.to_le_bytes());
    h.update(&offset.to_le_bytes());
    format!("{:032x}", h.digest128())
}

/// What reading a file found besides records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub physical_lines: u64,
    pub malformed_lines: u64,
    pub truncated_lines: u64,
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
    let fp = fingerprint(content);
    let json_file = docker_json::is_docker_json(content);
    let mut joiner = PartialJoiner::new(max_line_bytes);
    let mut stats = ReadStats::default();
    let mut out = Vec::new();
    let mut offset = 0u64;
    // Offset where the logical line being joined started.
    let mut line_start = [None::<u64>; 2];
    for raw in content.split_inclusive(|b| *b == b'\n') {
        let here = offset;
        offset += raw.len() as u64;
        if !raw.ends_with(b"\n") {
            // An unterminated last line is still being written; leave it.
            break;
        }
        stats.physical_lines += 1;
        let docker = json_file.then(|| docker_json::parse_line(raw));
        let parsed = match &docker {
            Some(Ok(d)) => Ok(d.as_cri()),
            Some(Err(e)) => Err(e.to_string()),
            None => cri::parse_line(raw).map_err(|e| e.to_string()),
        };
        let line = match parsed {
            Ok(l) => l,
            Err(e) => {
                stats.malformed_lines += 1;
                if stats.malformed_examples.len() < 5 {
                    stats.malformed_examples.push(format!("offset {here}: {e}"));
                }
                continue;
            }
        };
        let slot = &mut line_start[line.stream as usize];
        let start = *slot.get_or_insert(here);
        let Some(joined) = joiner.push(&line) else {
            continue;
        };
        *slot = None;
        stats.truncated_lines += u64::from(joined.truncated);
        let message = String::from_utf8_lossy(&joined.content).into_owned();
        out.push(PodLogRecord {
            ts: joined.ts_nanos.div_euclid(1000),
            cluster: origin.cluster.to_string(),
            namespace: path.namespace.clone(),
            pod: path.pod.clone(),
            pod_uid: path.pod_uid.clone(),
            container: path.container.clone(),
            restart: path.restart,
            stream: joined.stream.as_str().to_string(),
            level: level::parse(&message).map(str::to_string),
            message,
            node: origin.node.map(str::to_string),
            line_id: line_id(path, fp, start),
            byte_offset: Some(start as i64),
        });
    }
    (out, stats)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

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
