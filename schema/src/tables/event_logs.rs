use super::{Column, ColumnType::*, TableContract};

/// Values of `caller_type`.
pub const CALLER_TYPES: [&str; 3] = ["internal", "external", "unknown"];

/// `platform.platform_event_logs`: one row per API request seen by a platform
/// gateway, as producers sent it plus the writer's enrichment.
#[rustfmt::skip]
pub const EVENT_LOGS: TableContract = TableContract {
    name: "platform_event_logs",
    doc: "One row per API request seen by a platform gateway, enriched with endpoint template, caller type, team and domain.",
    columns: &[
        Column::required(1, "event_id", String, "Producer-assigned unique id of the request event; the dedup key."),
        Column::required(2, "occurred_at", TimestampTz, "When the request happened (UTC, microseconds)."),
        Column::required(3, "service", String, "Platform service that handled the request, e.g. iom-cluster."),
        Column::required(4, "action", String, "Logical operation, e.g. spark.jobs.runs.list."),
        Column::required(5, "success", Boolean, "Whether the request succeeded."),
        Column::optional(6, "user_id", String, "Authenticated principal; NULL for anonymous requests."),
        Column::optional(7, "method", String, "HTTP method."),
        Column::optional(8, "path", String, "Raw request path as received, e.g. /api/v1/spark/jobs/8812/runs."),
        Column::optional(9, "status_code", Int, "HTTP status code."),
        Column::optional(10, "latency_ms", Double, "Server-side latency in milliseconds."),
        Column::optional(11, "client_ip", String, "Caller's IP address (canonical text form)."),
        Column::optional(12, "user_agent", String, "Caller's User-Agent header."),
        Column::optional(13, "service_account", Boolean, "Whether the principal is a service account."),
        Column::optional(14, "request_id", String, "Request id assigned by the gateway."),
        Column::optional(15, "trace_id", String, "Distributed trace id."),
        Column::optional(16, "bytes_in", Long, "Request body size in bytes."),
        Column::optional(17, "bytes_out", Long, "Response body size in bytes."),
        Column::optional(18, "attributes", StringMap { key_id: 24, value_id: 25 }, "Every other field the producer sent: strings as-is, other values as JSON text."),
        Column::optional(19, "endpoint", String, "Enriched: the path as a template, ids replaced by {id}, e.g. spark/jobs/{id}/runs."),
        Column::optional(20, "caller_type", String, "Enriched: internal | external | unknown."),
        Column::optional(21, "team", String, "Enriched: owning team of the principal from the principal directory; NULL when unknown."),
        Column::optional(22, "domain", String, "Enriched: business domain of the team; NULL when unknown."),
        Column::optional(23, "ingested_at", TimestampTz, "Enriched: when the writer processed the event."),
    ],
    day_partition_column: "occurred_at",
    sort_columns: &["service", "occurred_at"],
    id_column: "event_id",
};
