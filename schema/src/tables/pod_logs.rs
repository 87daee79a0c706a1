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
    ],
    day_partition_column: "ts",
    sort_columns: &["namespace", "pod", "container", "restart", "ts"],
    id_column: "line_id",
};
