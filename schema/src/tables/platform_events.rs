use super::{Column, ColumnType::*, TableContract};

/// Values of `type`.
pub const EVENT_TYPES: [&str; 2] = ["Normal", "Warning"];

/// `platform.platform_events`: Kubernetes lifecycle events and platform
/// changes (restarts with their termination reason, back-offs, scaling,
/// resource changes).
#[rustfmt::skip]
pub const PLATFORM_EVENTS: TableContract = TableContract {
    name: "platform_events",
    doc: "Kubernetes lifecycle events and platform changes: restarts, OOMKilled, back-offs, scaling, resource updates.",
    columns: &[
        Column::required(1, "event_id", String, "Stable id of the event (Kubernetes event UID, or derived from the object and its state); the dedup key."),
        Column::required(2, "occurred_at", TimestampTz, "When it happened (UTC, microseconds)."),
        Column::required(3, "cluster", String, "Cluster the object lives in."),
        Column::required(4, "namespace", String, "Namespace of the object."),
        Column::required(5, "kind", String, "Kind of the object: Pod, Deployment, StatefulSet, ..."),
        Column::required(6, "name", String, "Name of the object."),
        Column::optional(7, "container", String, "Container the event is about, when it is about one."),
        Column::required(8, "reason", String, "OOMKilled, Error, Completed, BackOff, Started, Killing, ScalingReplicaSet, ResourcesUpdated, ..."),
        Column::required(9, "type", String, "Normal | Warning."),
        Column::optional(10, "message", String, "Human-readable description."),
        Column::optional(11, "restart_count", Int, "The container's restart count after the event."),
        Column::optional(12, "actor", String, "Who caused the change (a user or controller), when known."),
        Column::optional(13, "exit_code", Int, "Exit code of a terminated container."),
    ],
    day_partition_column: "occurred_at",
    sort_columns: &["namespace", "name", "occurred_at"],
    id_column: "event_id",
};
