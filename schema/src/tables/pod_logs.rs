use super::{Column, ColumnType::*, TableContract};

/// Values of `stream`.
pub const STREAMS: [&str; 2] = ["stdout", "stderr"];

/// `platform.pod_logs`: one row per container log line, for every container
/// instance (restart) of every pod.
#[rustfmt::skip]
pub const POD_LOGS: TableContract = TableContract {
    name: "pod_logs",
    doc: "One row per container log line, across every restart of every container.",
    columns: &[
        Column::required(1, "ts", TimestampTz, "When the container runtime received the line (UTC, microseconds)."),
        Column::required(2, "cluster", String, "Cluster the node belongs to."),
        Column::required(3, "namespace", String, "Pod namespace."),
        Column::required(4, "pod", String, "Pod name."),
        Column::required(5, "pod_uid", String, "Pod UID; tells apart pods that reuse a name."),
        Column::required(6, "container", String, "Container name."),
        Column::required(7, "restart", Int, "The container's restart count for this instance (from the log file name, <restart>.log)."),
        Column::required(8, "stream", String, "stdout | stderr."),
        Column::optional(9, "level", String, "Log level parsed from JSON, logfmt or a plain prefix, lower case; NULL when none."),
        Column::required(10, "message", String, "The log line, partial lines joined, without the runtime's prefix."),
        Column::optional(11, "node", String, "Node that ran the container."),
        Column::required(12, "line_id", String, "Stable id of the line: the same every time the same bytes of the same file are read; the dedup key."),
        Column::optional(13, "byte_offset", Long, "Offset of the line in its source file; orders lines that share a timestamp."),
        Column::optional(14, "file_fingerprint", Long, "Which file of the container the line was read from: the xxh3-64 hash of the file's first line (as a signed integer), telling rotated files apart. With pod_uid, container, restart and byte_offset it derives line_id (sluice_schema::tables::pod_log_line_id). NULL when the line was not read from a file."),
    ],
    day_partition_column: "ts",
    sort_columns: &["namespace", "pod", "container", "restart", "ts"],
    id_column: "line_id",
};

/// The stable id of the logical line starting at `offset` of the file whose
/// first line hashes to `fingerprint`: 32 lowercase hex digits of an xxh3-128
/// hash, on the stack. The collector names every line it reads with it; the
/// log index derives it back instead of storing it (a stored hash is 16
/// bytes no compression can shrink, a tenth of a typical line).
pub fn line_id(
    pod_uid: &str,
    container: &str,
    restart: i32,
    fingerprint: u64,
    offset: u64,
) -> [u8; 32] {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for part in [pod_uid.as_bytes(), container.as_bytes()] {
        h.update(part);
        h.update(&[0]);
    }
    h.update(&restart.to_le_bytes());
    h.update(&fingerprint.to_le_bytes());
    h.update(&offset.to_le_bytes());
    // What `format!("{:032x}")` gives, without the formatting machinery
    // (one id per line read).
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = h.digest128();
    let mut hex = [0u8; 32];
    for (i, digit) in hex.iter_mut().enumerate() {
        *digit = HEX[((d >> ((31 - i) * 4)) & 0xf) as usize];
    }
    hex
}
