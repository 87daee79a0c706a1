//! The CRI container log line format, as containerd and CRI-O write it:
//!
//! ```text
//! <RFC3339Nano timestamp> <stdout|stderr> <P|F>[:more tags] <content>
//! ```
//!
//! `P` marks a partial line (the runtime split a long line, 16 KiB by
//! default); the parts up to and including the next `F` of the same stream
//! form one logical line.

use chrono::DateTime;

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One physical line of a CRI log file, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CriLine<'a> {
    /// Nanoseconds since the Unix epoch.
    pub ts_nanos: i64,
    pub stream: Stream,
    /// `true` for `P` (more parts follow), `false` for `F`.
    pub partial: bool,
    /// The content, without the trailing newline.
    pub content: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CriError {
    #[error("CRI line has no {0} field")]
    MissingField(&'static str),
    #[error("CRI timestamp is not RFC 3339: {0:?}")]
    BadTimestamp(String),
    #[error("CRI stream must be stdout or stderr, got {0:?}")]
    BadStream(String),
    #[error("CRI tag must start with P or F, got {0:?}")]
    BadTag(String),
}

fn split_field(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = input.iter().position(|&b| b == b' ')?;
    Some((&input[..space], &input[space + 1..]))
}

/// Parses one physical line (a trailing `\n` or `\r\n`, if any, is ignored).
pub fn parse_line(line: &[u8]) -> Result<CriLine<'_>, CriError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let (ts, rest) = split_field(line).ok_or(CriError::MissingField("stream"))?;
    let ts_text = std::str::from_utf8(ts)
        .map_err(|_| CriError::BadTimestamp(String::from_utf8_lossy(ts).into_owned()))?;
    let ts_nanos = DateTime::parse_from_rfc3339(ts_text)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| CriError::BadTimestamp(ts_text.to_string()))?;
    let (stream, rest) = split_field(rest).ok_or(CriError::MissingField("tag"))?;
    let stream = match stream {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        other => {
            return Err(CriError::BadStream(
                String::from_utf8_lossy(other).into_owned(),
            ));
        }
    };
    // The content may be empty, and then the separator may be missing too.
    let (tag, content) = split_field(rest).unwrap_or((rest, &[]));
    let partial = match tag.first() {
        Some(b'P') => true,
        Some(b'F') => false,
        _ => return Err(CriError::BadTag(String::from_utf8_lossy(tag).into_owned())),
    };
    Ok(CriLine {
        ts_nanos,
        stream,
        partial,
        content,
    })
}

/// Formats a timestamp the way containerd does (Go's RFC3339Nano: trailing
/// zeros of the fraction dropped, no fraction at all when it is zero).
pub fn format_timestamp(ts_nanos: i64, out: &mut Vec<u8>) {
    use std::io::Write;
    let secs = ts_nanos.div_euclid(1_000_000_000);
    let nanos = ts_nanos.rem_euclid(1_000_000_000) as u32;
    let Some(t) = DateTime::from_timestamp(secs, 0) else {
        let _ = write!(out, "{ts_nanos}");
        return;
    };
    let _ = write!(out, "{}", t.format("%Y-%m-%dT%H:%M:%S"));
    if nanos != 0 {
        let mut frac = format!("{nanos:09}");
        while frac.ends_with('0') {
            frac.pop();
        }
        out.push(b'.');
        out.extend_from_slice(frac.as_bytes());
    }
    out.push(b'Z');
}

/// Joins partial lines into logical lines, per stream (stdout and stderr
/// partials may interleave). Content past `max_line_bytes` is dropped and the
/// line marked truncated: one bounded size, never unbounded memory.
#[derive(Debug)]
pub struct PartialJoiner {
    max_line_bytes: usize,
    pending: [Pending; 2],
}

#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Timestamp of the first part: the logical line's timestamp.
    ts_nanos: Option<i64>,
    parts: usize,
    truncated: bool,
}

/// A logical line assembled from one or more physical lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedLine {
    pub ts_nanos: i64,
    pub stream: Stream,
    pub content: Vec<u8>,
    /// Physical lines it was made of.
    pub parts: usize,
    /// Whether content beyond the maximum line size was dropped.
    pub truncated: bool,
}

impl PartialJoiner {
    pub fn new(max_line_bytes: usize) -> Self {
        Self {
            max_line_bytes,
            pending: Default::default(),
        }
    }

    /// Feeds a physical line; returns the logical line it completes, if any.
    pub fn push(&mut self, line: &CriLine<'_>) -> Option<JoinedLine> {
        let slot = &mut self.pending[line.stream as usize];
        let room = self.max_line_bytes.saturating_sub(slot.bytes.len());
        if line.content.len() > room {
            slot.truncated = true;
        }
        slot.bytes
            .extend_from_slice(&line.content[..line.content.len().min(room)]);
        slot.ts_nanos.get_or_insert(line.ts_nanos);
        slot.parts += 1;
        if line.partial {
            return None;
        }
        let done = std::mem::take(slot);
        Some(JoinedLine {
            ts_nanos: done.ts_nanos.unwrap_or(line.ts_nanos),
            stream: line.stream,
            content: done.bytes,
            parts: done.parts,
            truncated: done.truncated,
        })
    }

    /// Whether a partial line is waiting for its final part.
    pub fn has_pending(&self) -> bool {
        self.pending.iter().any(|p| p.parts > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_fields_and_content() {
        let l = parse_line(b"2026-11-21T14:32:08.123456789Z stderr F panic: boom here\n").unwrap();
        assert_eq!(l.stream, Stream::Stderr);
        assert!(!l.partial);
        assert_eq!(l.content, b"panic: boom here");
        assert_eq!(l.ts_nanos % 1_000_000_000, 123_456_789);
        let empty = parse_line(b"2026-11-21T14:32:08Z stdout F").unwrap();
        assert_eq!(empty.content, b"");
        let tagged = parse_line(b"2026-11-21T14:32:08+02:00 stdout P:x abc").unwrap();
        assert!(tagged.partial);
    }

    #[test]
    fn rejects_malformed_lines_with_reasons() {
        assert!(matches!(
            parse_line(b"garbage"),
            Err(CriError::MissingField(_))
        ));
        assert!(matches!(
            parse_line(b"yesterday stdout F x"),
            Err(CriError::BadTimestamp(_))
        ));
        assert!(matches!(
            parse_line(b"2026-11-21T14:32:08Z stdin F x"),
            Err(CriError::BadStream(_))
        ));
        assert!(matches!(
            parse_line(b"2026-11-21T14:32:08Z stdout X x"),
            Err(CriError::BadTag(_))
        ));
    }

    #[test]
    fn timestamps_format_like_containerd() {
        let l = parse_line(b"2026-11-21T14:32:08.1Z stdout F x").unwrap();
        let mut out = Vec::new();
        format_timestamp(l.ts_nanos, &mut out);
        assert_eq!(out, b"2026-11-21T14:32:08.1Z");
        out.clear();
        format_timestamp(l.ts_nanos - 100_000_000, &mut out);
        assert_eq!(out, b"2026-11-21T14:32:08Z");
    }

    #[test]
    fn joins_partials_per_stream_and_bounds_size() {
        let mut j = PartialJoiner::new(8);
        let a = parse_line(b"2026-11-21T14:32:08Z stdout P abcd").unwrap();
        let e = parse_line(b"2026-11-21T14:32:09Z stderr F err").unwrap();
        let b = parse_line(b"2026-11-21T14:32:10Z stdout F efghij").unwrap();
        assert_eq!(j.push(&a), None);
        assert!(j.has_pending());
        assert_eq!(j.push(&e).unwrap().content, b"err");
        let joined = j.push(&b).unwrap();
        assert_eq!(joined.content, b"abcdefgh");
        assert_eq!(joined.parts, 2);
        assert!(joined.truncated);
        assert_eq!(joined.ts_nanos, a.ts_nanos);
        assert!(!j.has_pending());
    }
}
