use super::{Column, ColumnType::*, TableContract};

/// Values of `from_state` and `to_state`.
pub const ALERT_STATES: [&str; 3] = ["inactive", "pending", "firing"];

/// `platform.alert_history`: every state change of every alert sluice's
/// evaluator made (inactive → pending → firing → inactive), written by the
/// evaluator holding the alert lease.
#[rustfmt::skip]
pub const ALERT_HISTORY: TableContract = TableContract {
    name: "alert_history",
    doc: "State transitions of sluice's alerts: pending, firing, resolved, each with the alert's labels and value.",
    columns: &[
        Column::required(1, "transition_id", String, "Unique id of the transition (UUIDv7); the dedup key."),
        Column::required(2, "at", TimestampTz, "When the evaluation that made the change ran (UTC, microseconds)."),
        Column::required(3, "rule_group", String, "The rule group (rule file `groups[].name`)."),
        Column::required(4, "rule", String, "The alert rule's name (`alertname`)."),
        Column::required(5, "series", String, "The alert instance, as Prometheus prints a series: `rule{label=\"value\",...}`; one alert's transitions share it."),
        Column::optional(6, "labels", StringMap { key_id: 14, value_id: 15 }, "The alert's labels, the rule's labels and `alertname` included."),
        Column::required(7, "from_state", String, "inactive | pending | firing."),
        Column::required(8, "to_state", String, "inactive (resolved, or pending that went away) | pending | firing."),
        Column::optional(9, "value", Double, "The rule's value for this alert at the transition (NaN and ±Inf as such)."),
        Column::optional(10, "active_at", TimestampTz, "When this alert became pending: one alert episode's transitions share it."),
        Column::optional(11, "summary", String, "The `summary` annotation, expanded, at the transition."),
        Column::optional(12, "evaluator", String, "The replica that evaluated (host, pid and a random suffix)."),
        Column::required(13, "seq", Long, "The evaluator's sequence number of the transition: the order within one alert state."),
    ],
    day_partition_column: "at",
    sort_columns: &["rule", "series", "at"],
    id_column: "transition_id",
};
