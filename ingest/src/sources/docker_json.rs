//! Docker's `json-file` log format, as dockershim-era kubelets and Docker
//! Engine nodes write it:
//!
//! ```text
//! {"log":"text\n","stream":"stdout","time":"2026-11-21T14:32:08.123456789Z"}
//! ```
//!
//! A `log` without its trailing newline is a partial line (Docker splits
//! lines at 16 KiB); the next parts of the same stream complete it, as CRI's
//! `P`/`F` tags do, so both formats feed the same joiner.

use std::borrow::Cow;

use chrono::DateTime;
use serde::Deserialize;

use super::cri::{CriLine, Stream};

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    log: Cow<'a, str>,
    #[serde(borrow)]
    stream: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
}

/// One physical line of a json-file log, its text unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerLine<'a> {
    pub ts_nanos: i64,
    pub stream: Stream,
    /// The `log` field as written, trailing newline included when present.
    pub log: Cow<'a, str>,
}

impl DockerLine<'_> {
    /// The line in the shape the partial-line joiner takes.
    pub fn as_cri(&self) -> CriLine<'_> {
        let bytes = self.log.as_bytes();
        let (content, partial) = match bytes.strip_suffix(b"\n") {
            Some(c) => (c.strip_suffix(b"\r").unwrap_or(c), false),
            None => (bytes, true),
        };
        CriLine {
            ts_nanos: self.ts_nanos,
            stream: self.stream,
            partial,
            content,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerError {
    #[error("json-file line is not a log object: {0}")]
    NotJson(String),
    #[error("json-file time is not RFC 3339: {0:?}")]
    BadTimestamp(String),
    #[error("json-file stream must be stdout or stderr, got {0:?}")]
    BadStream(String),
}

/// Parses one physical line (a trailing `\n`, if any, is ignored).
pub fn parse_line(line: &[u8]) -> Result<DockerLine<'_>, DockerError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let raw: Raw<'_> =
        serde_json::from_slice(line).map_err(|e| DockerError::NotJson(e.to_string()))?;
    let ts_nanos = DateTime::parse_from_rfc3339(&raw.time)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| DockerError::BadTimestamp(raw.time.to_string()))?;
    let stream = match raw.stream.as_ref() {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        other => return Err(DockerError::BadStream(other.to_string())),
    };
    Ok(DockerLine {
        ts_nanos,
        stream,
        log: raw.log,
    })
}

/// Whether a log file's content is json-file (else CRI): its first
/// non-blank byte opens a JSON object, which no CRI timestamp does.
pub fn is_docker_json(content: &[u8]) -> bool {
    content
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unescapes_and_marks_partials() {
        let l = parse_line(
            br#"{"log":"panic: \"boom\"\tat main.go:12\n","stream":"stderr","time":"2026-11-21T14:32:08.123456789Z"}"#,
        )
        .unwrap();
        assert_eq!(l.stream, Stream::Stderr);
        assert_eq!(l.ts_nanos % 1_000_000_000, 123_456_789);
        let cri = l.as_cri();
        assert!(!cri.partial);
        assert_eq!(cri.content, b"panic: \"boom\"\tat main.go:12");
        let part =
            parse_line(br#"{"log":"first half ","stream":"stdout","time":"2026-11-21T14:32:08Z"}"#)
                .unwrap();
        assert!(part.as_cri().partial);
        assert!(matches!(
            parse_line(br#"{"log":"x\n","stream":"stdin","time":"2026-11-21T14:32:08Z"}"#),
            Err(DockerError::BadStream(_))
        ));
        assert!(matches!(
            parse_line(b"2026-11-21T14:32:08Z stdout F x"),
            Err(DockerError::NotJson(_))
        ));
        assert!(is_docker_json(b"\n{\"log\":\"x\"}"));
        assert!(!is_docker_json(b"2026-11-21T14:32:08Z stdout F x\n"));
    }
}
