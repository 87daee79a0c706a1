//! Property tests: any valid raw record survives JSON → validation → Arrow
//! unchanged, and arbitrary JSON never panics the validators.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::Array;
use proptest::prelude::*;
use serde_json::{Value, json};
use sluice_schema::batch::{self, Bools, Doubles, Ints, Longs, Maps, Strings, Timestamps};
use sluice_schema::raw::{Enrichment, LifecycleEvent, PodLogRecord, RAW_EVENT_FIELDS, RawEvent};
use sluice_schema::tables::{EVENT_LOGS, PLATFORM_EVENTS, POD_LOGS};
use sluice_schema::time::MIN_EPOCH_MILLIS;

const MAX_MICROS: i64 = 4_102_444_799_000_000;

fn micros() -> impl Strategy<Value = i64> {
    MIN_EPOCH_MILLIS * 1000..MAX_MICROS
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._/-]{1,24}"
}

fn text() -> impl Strategy<Value = String> {
    any::<String>().prop_map(|s| s.chars().take(200).collect())
}

prop_compose! {
    fn raw_event()(
        event_id in name(), occurred_at in micros(), service in name(), action in name(),
        success in any::<bool>(), user_id in proptest::option::of(name()),
        method in proptest::option::of("GET|POST|PUT|DELETE"), path in proptest::option::of(text()),
        status_code in proptest::option::of(100i32..600), latency_ms in proptest::option::of(0.0f64..1e6),
        client_ip in proptest::option::of(any::<std::net::IpAddr>().prop_map(|ip| ip.to_string())),
        user_agent in proptest::option::of(text()), service_account in proptest::option::of(any::<bool>()),
        request_id in proptest::option::of(name()), trace_id in proptest::option::of(name()),
        bytes_in in proptest::option::of(0i64..i64::MAX), bytes_out in proptest::option::of(0i64..i64::MAX),
        attributes in proptest::collection::btree_map("[a-z]{1,8}", text(), 0..5),
    ) -> RawEvent {
        let attributes: BTreeMap<String, String> = attributes
            .into_iter()
            .filter(|(k, _)| !RAW_EVENT_FIELDS.contains(&k.as_str()))
            .collect();
        RawEvent {
            event_id, occurred_at, service, action, success, user_id, method, path, status_code,
            latency_ms, client_ip, user_agent, service_account, request_id, trace_id, bytes_in,
            bytes_out, attributes,
        }
    }
}

prop_compose! {
    fn enrichment()(
        endpoint in proptest::option::of(name()),
        caller in proptest::option::of(prop_oneof![Just("internal"), Just("external"), Just("unknown")]),
        team in proptest::option::of(name()), domain in proptest::option::of(name()),
        ingested_at in proptest::option::of(micros()),
    ) -> Enrichment {
        Enrichment { endpoint, caller_type: caller, team, domain, ingested_at }
    }
}

prop_compose! {
    fn pod_log()(
        ts in micros(), cluster in name(), namespace in name(), pod in name(), pod_uid in name(),
        container in name(), restart in 0i32..1000, stream in prop_oneof![Just("stdout"), Just("stderr")],
        level in proptest::option::of(prop_oneof![Just("info"), Just("error")]), message in text(),
        node in proptest::option::of(name()), line_id in name(), byte_offset in proptest::option::of(0i64..1 << 40),
        file_fingerprint in proptest::option::of(any::<i64>()),
    ) -> PodLogRecord {
        PodLogRecord {
            ts, cluster, namespace, pod, pod_uid, container, restart, stream: stream.into(),
            level: level.map(Into::into), message, node, line_id, byte_offset, file_fingerprint,
        }
    }
}

prop_compose! {
    fn lifecycle()(
        event_id in name(), occurred_at in micros(), cluster in name(), namespace in name(),
        kind in name(), name_ in name(), container in proptest::option::of(name()), reason in name(),
        event_type in prop_oneof![Just("Normal"), Just("Warning")], message in proptest::option::of(text()),
        restart_count in proptest::option::of(0i32..1000), actor in proptest::option::of(name()),
        exit_code in proptest::option::of(any::<i32>()),
    ) -> LifecycleEvent {
        LifecycleEvent {
            event_id, occurred_at, cluster, namespace, kind, name: name_, container, reason,
            event_type: event_type.into(), message, restart_count, actor, exit_code,
        }
    }
}

fn opt_str(a: &Strings, i: usize) -> Option<String> {
    a.is_valid(i).then(|| a.value(i).to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn raw_event_round_trips_through_json_and_arrow(
        events in proptest::collection::vec((raw_event(), enrichment()), 1..20)
    ) {
        let schema = Arc::new(EVENT_LOGS.arrow_schema().unwrap());
        let mut rows = Vec::new();
        for (event, enr) in &events {
            // Through the wire format first: JSON text, then validation.
            let wire = serde_json::to_vec(&event.to_json()).unwrap();
            let parsed = RawEvent::from_json_bytes(&wire).unwrap();
            prop_assert_eq!(&parsed, event);
            rows.push((parsed, enr.clone()));
        }
        let b = batch::event_logs_batch(&schema, &rows).unwrap();
        prop_assert_eq!(b.num_rows(), rows.len());
        let ids = batch::column::<Strings>(&b, "event_id").unwrap();
        let ts = batch::column::<Timestamps>(&b, "occurred_at").unwrap();
        let ok = batch::column::<Bools>(&b, "success").unwrap();
        let user = batch::column::<Strings>(&b, "user_id").unwrap();
        let status = batch::column::<Ints>(&b, "status_code").unwrap();
        let latency = batch::column::<Doubles>(&b, "latency_ms").unwrap();
        let bytes_out = batch::column::<Longs>(&b, "bytes_out").unwrap();
        let ip = batch::column::<Strings>(&b, "client_ip").unwrap();
        let caller = batch::column::<Strings>(&b, "caller_type").unwrap();
        let ingested = batch::column::<Timestamps>(&b, "ingested_at").unwrap();
        let attrs = batch::column::<Maps>(&b, "attributes").unwrap();
        for (i, (e, x)) in rows.iter().enumerate() {
            prop_assert_eq!(ids.value(i), e.event_id.as_str());
            prop_assert_eq!(ts.value(i), e.occurred_at);
            prop_assert_eq!(ok.value(i), e.success);
            prop_assert_eq!(opt_str(user, i), e.user_id.clone());
            prop_assert_eq!(status.is_valid(i).then(|| status.value(i)), e.status_code);
            prop_assert_eq!(latency.is_valid(i).then(|| latency.value(i)), e.latency_ms);
            prop_assert_eq!(bytes_out.is_valid(i).then(|| bytes_out.value(i)), e.bytes_out);
            prop_assert_eq!(opt_str(ip, i), e.client_ip.clone());
            prop_assert_eq!(opt_str(caller, i), x.caller_type.map(String::from));
            prop_assert_eq!(ingested.is_valid(i).then(|| ingested.value(i)), x.ingested_at);
            let mut got = BTreeMap::new();
            if attrs.is_valid(i) {
                let entries = attrs.value(i);
                let keys = entries.column(0).as_any().downcast_ref::<Strings>().unwrap();
                let vals = entries.column(1).as_any().downcast_ref::<Strings>().unwrap();
                for j in 0..entries.len() {
                    got.insert(keys.value(j).to_string(), vals.value(j).to_string());
                }
            }
            prop_assert_eq!(&got, &e.attributes);
        }
    }

    #[test]
    fn pod_log_round_trips(rows in proptest::collection::vec(pod_log(), 1..20)) {
        let schema = Arc::new(POD_LOGS.arrow_schema().unwrap());
        for r in &rows {
            let parsed = PodLogRecord::from_json(&r.to_json()).unwrap();
            prop_assert_eq!(&parsed, r);
        }
        let b = batch::pod_logs_batch(&schema, &rows).unwrap();
        let msg = batch::column::<Strings>(&b, "message").unwrap();
        let restart = batch::column::<Ints>(&b, "restart").unwrap();
        let level = batch::column::<Strings>(&b, "level").unwrap();
        let ts = batch::column::<Timestamps>(&b, "ts").unwrap();
        let fingerprint = batch::column::<Longs>(&b, "file_fingerprint").unwrap();
        for (i, r) in rows.iter().enumerate() {
            prop_assert_eq!(msg.value(i), r.message.as_str());
            prop_assert_eq!(fingerprint.is_valid(i).then(|| fingerprint.value(i)), r.file_fingerprint);
            prop_assert_eq!(restart.value(i), r.restart);
            prop_assert_eq!(opt_str(level, i), r.level.clone());
            prop_assert_eq!(ts.value(i), r.ts);
        }
    }

    #[test]
    fn lifecycle_round_trips(rows in proptest::collection::vec(lifecycle(), 1..20)) {
        let schema = Arc::new(PLATFORM_EVENTS.arrow_schema().unwrap());
        for r in &rows {
            let parsed = LifecycleEvent::from_json(&r.to_json()).unwrap();
            prop_assert_eq!(&parsed, r);
        }
        let b = batch::platform_events_batch(&schema, &rows).unwrap();
        let reason = batch::column::<Strings>(&b, "reason").unwrap();
        let exit = batch::column::<Ints>(&b, "exit_code").unwrap();
        for (i, r) in rows.iter().enumerate() {
            prop_assert_eq!(reason.value(i), r.reason.as_str());
            prop_assert_eq!(exit.is_valid(i).then(|| exit.value(i)), r.exit_code);
        }
    }

    /// Whatever arrives, validation answers with a value or errors, never a panic.
    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        let _ = RawEvent::from_json(&v);
        let _ = PodLogRecord::from_json(&v);
        let _ = LifecycleEvent::from_json(&v);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = RawEvent::from_json_bytes(&bytes);
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        text().prop_map(Value::String),
        prop_oneof![
            Just("event_id"),
            Just("occurred_at"),
            Just("service"),
            Just("success"),
            Just("2026-11-21T14:32:08Z"),
            Just("ts"),
            Just("stream"),
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(3, 32, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("event_id".to_string()),
                    Just("occurred_at".to_string()),
                    Just("service".to_string()),
                    Just("action".to_string()),
                    Just("success".to_string()),
                    Just("ts".to_string()),
                    "[a-z_]{1,10}",
                ],
                inner,
                0..8,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
