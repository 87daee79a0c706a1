//! Raw input contracts: what producers send, and how it is validated.
//!
//! - [`RawEvent`]: an API request event (topic `sluice.events`, HTTP intake,
//!   NDJSON import). Public: gateways of any kind produce it. JSON Schema:
//!   `schema/contracts/platform_event.schema.json`.
//! - [`PodLogRecord`]: one container log line as the collector produces it
//!   (topic `sluice.podlogs`). JSON Schema: `pod_log_record.schema.json`.
//! - [`LifecycleEvent`]: a Kubernetes lifecycle event (topic `sluice.k8s`,
//!   `k8s-events.ndjson`). JSON Schema: `lifecycle_event.schema.json`.
//!
//! Validation never panics and reports every problem of a record at once.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Map, Value, json};

use crate::tables::{CALLER_TYPES, EVENT_TYPES, STREAMS};
use crate::time::format_micros;
use crate::validation::{FieldReader, ValidationErrors};

/// Fields of the raw event contract; anything else goes to `attributes`.
pub const RAW_EVENT_FIELDS: [&str; 17] = [
    "event_id",
    "occurred_at",
    "service",
    "action",
    "success",
    "user_id",
    "method",
    "path",
    "status_code",
    "latency_ms",
    "client_ip",
    "user_agent",
    "service_account",
    "request_id",
    "trace_id",
    "bytes_in",
    "bytes_out",
];

/// Required fields of the raw event contract.
pub const RAW_EVENT_REQUIRED: [&str; 5] =
    ["event_id", "occurred_at", "service", "action", "success"];

/// Most attributes a single event may carry; more is a producer bug, not data.
pub const MAX_ATTRIBUTES: usize = 64;

/// A validated API request event.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent {
    pub event_id: String,
    /// Epoch microseconds, UTC.
    pub occurred_at: i64,
    pub service: String,
    pub action: String,
    pub success: bool,
    pub user_id: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub status_code: Option<i32>,
    pub latency_ms: Option<f64>,
    /// Canonical text form of the parsed address.
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub service_account: Option<bool>,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    pub bytes_in: Option<i64>,
    pub bytes_out: Option<i64>,
    /// Every field not in the contract: strings as-is, others as JSON text.
    pub attributes: BTreeMap<String, String>,
}

impl RawEvent {
    /// Validates one JSON value against the contract.
    pub fn from_json(value: &Value) -> Result<Self, ValidationErrors> {
        let mut r = FieldReader::new(value)?;
        let event_id = r.required_name("event_id");
        let occurred_at = r.required_timestamp("occurred_at");
        let service = r.required_name("service");
        let action = r.required_name("action");
        let success = r.required_bool("success");
        let user_id = r.optional_name("user_id");
        let method = r.optional_name("method");
        let path = r.optional_text("path");
        let status_code = r
            .optional_integer("status_code", 100, 599)
            .map(|n| n as i32);
        let latency_ms = r.optional_number("latency_ms", 0.0, 1e9);
        let client_ip = match r.optional_name("client_ip") {
            Some(text) => match text.parse::<IpAddr>() {
                Ok(ip) => Some(ip.to_string()),
                Err(_) => {
                    r.problem("client_ip", format!("not an IP address: {text:?}"));
                    None
                }
            },
            None => None,
        };
        let user_agent = r.optional_text("user_agent");
        let service_account = r.optional_bool("service_account");
        let request_id = r.optional_name("request_id");
        let trace_id = r.optional_name("trace_id");
        let bytes_in = r.optional_integer("bytes_in", 0, i64::MAX);
        let bytes_out = r.optional_integer("bytes_out", 0, i64::MAX);

        let mut attributes = BTreeMap::new();
        for (key, v) in r.object() {
            if RAW_EVENT_FIELDS.contains(&key.as_str()) || v.is_null() {
                continue;
            }
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            attributes.insert(key.clone(), text);
        }
        if attributes.len() > MAX_ATTRIBUTES {
            r.problem(
                "$",
                format!(
                    "{} fields beyond the contract; at most {MAX_ATTRIBUTES} are kept as attributes",
                    attributes.len()
                ),
            );
        }
        r.finish()?;

        // `finish` succeeded, so every required field above is present.
        match (event_id, occurred_at, service, action, success) {
            (Some(event_id), Some(occurred_at), Some(service), Some(action), Some(success)) => {
                Ok(Self {
                    event_id,
                    occurred_at,
                    service,
                    action,
                    success,
                    user_id,
                    method,
                    path,
                    status_code,
                    latency_ms,
                    client_ip,
                    user_agent,
                    service_account,
                    request_id,
                    trace_id,
                    bytes_in,
                    bytes_out,
                    attributes,
                })
            }
            _ => Err(ValidationErrors::single("$", "required fields missing")),
        }
    }

    /// The field-by-field validator alone, for a payload the fast path
    /// (`RawEvent::from_json_bytes`, in the `wire` module) already stepped
    /// aside from.
    pub fn validate_json_bytes(bytes: &[u8]) -> Result<Self, ValidationErrors> {
        Self::from_json(&parse_json(bytes)?)
    }

    /// The event in the raw contract's JSON form (timestamps as RFC 3339).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("event_id".into(), json!(self.event_id));
        m.insert("occurred_at".into(), json!(format_micros(self.occurred_at)));
        m.insert("service".into(), json!(self.service));
        m.insert("action".into(), json!(self.action));
        m.insert("success".into(), json!(self.success));
        let optional: [(&str, Value); 12] = [
            ("user_id", json!(self.user_id)),
            ("method", json!(self.method)),
            ("path", json!(self.path)),
            ("status_code", json!(self.status_code)),
            ("latency_ms", json!(self.latency_ms)),
            ("client_ip", json!(self.client_ip)),
            ("user_agent", json!(self.user_agent)),
            ("service_account", json!(self.service_account)),
            ("request_id", json!(self.request_id)),
            ("trace_id", json!(self.trace_id)),
            ("bytes_in", json!(self.bytes_in)),
            ("bytes_out", json!(self.bytes_out)),
        ];
        for (k, v) in optional {
            if !v.is_null() {
                m.insert(k.into(), v);
            }
        }
        for (k, v) in &self.attributes {
            m.insert(k.clone(), Value::String(v.clone()));
        }
        Value::Object(m)
    }
}

/// What the writer adds to a [`RawEvent`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Enrichment {
    pub endpoint: Option<String>,
    /// One of [`CALLER_TYPES`].
    pub caller_type: Option<&'static str>,
    pub team: Option<String>,
    pub domain: Option<String>,
    /// Epoch microseconds.
    pub ingested_at: Option<i64>,
}

/// Looks up a caller type's canonical static name.
pub fn caller_type(name: &str) -> Option<&'static str> {
    CALLER_TYPES.iter().copied().find(|c| *c == name)
}

fn parse_json(bytes: &[u8]) -> Result<Value, ValidationErrors> {
    serde_json::from_slice(bytes)
        .map_err(|e| ValidationErrors::single("$", format!("not JSON: {e}")))
}

/// A [`PodLogRecord`] whose strings are borrowed: the collector encodes
/// each line it reads straight from its file's metadata and buffer, with no
/// record (eight strings) allocated per line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodLogLine<'a> {
    /// Epoch microseconds, UTC.
    pub ts: i64,
    pub cluster: &'a str,
    pub namespace: &'a str,
    pub pod: &'a str,
    pub pod_uid: &'a str,
    pub container: &'a str,
    pub restart: i32,
    /// One of [`STREAMS`].
    pub stream: &'a str,
    pub level: Option<&'a str>,
    pub message: &'a str,
    pub node: Option<&'a str>,
    pub line_id: &'a str,
    pub byte_offset: Option<i64>,
    /// The source file's fingerprint (see the `file_fingerprint` column).
    pub file_fingerprint: Option<i64>,
}

impl PodLogLine<'_> {
    /// Appends the line's JSON, the document [`PodLogRecord::to_json`] builds.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Written by hand, byte for byte what serde_json writes for the same
        // document (a property test holds them equal): serde's field-by-field
        // machinery and chrono's formatting were a third of a line's cost.
        out.extend_from_slice(b"{\"ts\":\"");
        crate::time::write_micros(out, self.ts);
        out.push(b'"');
        let fields: [(&[u8], &str); 5] = [
            (b",\"cluster\":", self.cluster),
            (b",\"namespace\":", self.namespace),
            (b",\"pod\":", self.pod),
            (b",\"pod_uid\":", self.pod_uid),
            (b",\"container\":", self.container),
        ];
        for (name, value) in fields {
            out.extend_from_slice(name);
            write_json_str(out, value);
        }
        out.extend_from_slice(b",\"restart\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.restart).as_bytes());
        for (name, value) in [
            (&b",\"stream\":"[..], Some(self.stream)),
            (b",\"message\":", Some(self.message)),
            (b",\"line_id\":", Some(self.line_id)),
            (b",\"level\":", self.level),
            (b",\"node\":", self.node),
        ] {
            if let Some(value) = value {
                out.extend_from_slice(name);
                write_json_str(out, value);
            }
        }
        if let Some(offset) = self.byte_offset {
            out.extend_from_slice(b",\"byte_offset\":");
            out.extend_from_slice(itoa::Buffer::new().format(offset).as_bytes());
        }
        if let Some(fingerprint) = self.file_fingerprint {
            out.extend_from_slice(b",\"file_fingerprint\":");
            out.extend_from_slice(itoa::Buffer::new().format(fingerprint).as_bytes());
        }
        out.push(b'}');
    }

    pub fn to_record(&self) -> PodLogRecord {
        PodLogRecord {
            ts: self.ts,
            cluster: self.cluster.to_string(),
            namespace: self.namespace.to_string(),
            pod: self.pod.to_string(),
            pod_uid: self.pod_uid.to_string(),
            container: self.container.to_string(),
            restart: self.restart,
            stream: self.stream.to_string(),
            level: self.level.map(str::to_string),
            message: self.message.to_string(),
            node: self.node.map(str::to_string),
            line_id: self.line_id.to_string(),
            byte_offset: self.byte_offset,
            file_fingerprint: self.file_fingerprint,
        }
    }
}

/// One container log line as the collector produces it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodLogRecord {
    /// Epoch microseconds, UTC.
    pub ts: i64,
    pub cluster: String,
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
    pub restart: i32,
    /// One of [`STREAMS`].
    pub stream: String,
    pub level: Option<String>,
    pub message: String,
    pub node: Option<String>,
    pub line_id: String,
    pub byte_offset: Option<i64>,
    /// The source file's fingerprint (see the `file_fingerprint` column).
    pub file_fingerprint: Option<i64>,
}

impl PodLogRecord {
    pub fn from_json(value: &Value) -> Result<Self, ValidationErrors> {
        let mut r = FieldReader::new(value)?;
        let ts = r.required_timestamp("ts");
        let cluster = r.required_name("cluster");
        let namespace = r.required_name("namespace");
        let pod = r.required_name("pod");
        let pod_uid = r.required_name("pod_uid");
        let container = r.required_name("container");
        let restart = r.required_integer("restart", 0, i32::MAX as i64);
        let stream = r.required_choice("stream", &STREAMS);
        let level = r.optional_name("level");
        let message = r.required_text("message");
        let node = r.optional_name("node");
        let line_id = r.required_name("line_id");
        let byte_offset = r.optional_integer("byte_offset", 0, i64::MAX);
        let file_fingerprint = r.optional_integer("file_fingerprint", i64::MIN, i64::MAX);
        r.finish()?;
        match (
            ts, cluster, namespace, pod, pod_uid, container, restart, stream, message, line_id,
        ) {
            (
                Some(ts),
                Some(cluster),
                Some(namespace),
                Some(pod),
                Some(pod_uid),
                Some(container),
                Some(restart),
                Some(stream),
                Some(message),
                Some(line_id),
            ) => Ok(Self {
                ts,
                cluster,
                namespace,
                pod,
                pod_uid,
                container,
                restart: restart as i32,
                stream,
                level,
                message,
                node,
                line_id,
                byte_offset,
                file_fingerprint,
            }),
            _ => Err(ValidationErrors::single("$", "required fields missing")),
        }
    }

    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, ValidationErrors> {
        Self::from_json(&parse_json(bytes)?)
    }

    /// Appends the record's JSON (the same document as [`to_json`](Self::to_json))
    /// without building a `Value`.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        self.as_line().write_json(out);
        Ok(())
    }

    /// The record with its strings borrowed.
    pub fn as_line(&self) -> PodLogLine<'_> {
        PodLogLine {
            ts: self.ts,
            cluster: &self.cluster,
            namespace: &self.namespace,
            pod: &self.pod,
            pod_uid: &self.pod_uid,
            container: &self.container,
            restart: self.restart,
            stream: &self.stream,
            level: self.level.as_deref(),
            message: &self.message,
            node: self.node.as_deref(),
            line_id: &self.line_id,
            byte_offset: self.byte_offset,
            file_fingerprint: self.file_fingerprint,
        }
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "ts": format_micros(self.ts),
            "cluster": self.cluster,
            "namespace": self.namespace,
            "pod": self.pod,
            "pod_uid": self.pod_uid,
            "container": self.container,
            "restart": self.restart,
            "stream": self.stream,
            "message": self.message,
            "line_id": self.line_id,
        });
        if let Value::Object(m) = &mut v {
            if let Some(level) = &self.level {
                m.insert("level".into(), json!(level));
            }
            if let Some(node) = &self.node {
                m.insert("node".into(), json!(node));
            }
            if let Some(off) = self.byte_offset {
                m.insert("byte_offset".into(), json!(off));
            }
            if let Some(fingerprint) = self.file_fingerprint {
                m.insert("file_fingerprint".into(), json!(fingerprint));
            }
        }
        v
    }
}

/// A Kubernetes lifecycle event or platform change.
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleEvent {
    pub event_id: String,
    /// Epoch microseconds, UTC.
    pub occurred_at: i64,
    pub cluster: String,
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub container: Option<String>,
    pub reason: String,
    /// One of [`EVENT_TYPES`].
    pub event_type: String,
    pub message: Option<String>,
    pub restart_count: Option<i32>,
    pub actor: Option<String>,
    pub exit_code: Option<i32>,
}

impl LifecycleEvent {
    pub fn from_json(value: &Value) -> Result<Self, ValidationErrors> {
        let mut r = FieldReader::new(value)?;
        let event_id = r.required_name("event_id");
        let occurred_at = r.required_timestamp("occurred_at");
        let cluster = r.required_name("cluster");
        let namespace = r.required_name("namespace");
        let kind = r.required_name("kind");
        let name = r.required_name("name");
        let container = r.optional_name("container");
        let reason = r.required_name("reason");
        let event_type = r.required_choice("type", &EVENT_TYPES);
        let message = r.optional_text("message");
        let restart_count = r.optional_integer("restart_count", 0, i32::MAX as i64);
        let actor = r.optional_name("actor");
        let exit_code = r.optional_integer("exit_code", i32::MIN as i64, i32::MAX as i64);
        r.finish()?;
        match (
            event_id,
            occurred_at,
            cluster,
            namespace,
            kind,
            name,
            reason,
            event_type,
        ) {
            (
                Some(event_id),
                Some(occurred_at),
                Some(cluster),
                Some(namespace),
                Some(kind),
                Some(name),
                Some(reason),
                Some(event_type),
            ) => Ok(Self {
                event_id,
                occurred_at,
                cluster,
                namespace,
                kind,
                name,
                container,
                reason,
                event_type,
                message,
                restart_count: restart_count.map(|n| n as i32),
                actor,
                exit_code: exit_code.map(|n| n as i32),
            }),
            _ => Err(ValidationErrors::single("$", "required fields missing")),
        }
    }

    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, ValidationErrors> {
        Self::from_json(&parse_json(bytes)?)
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "event_id": self.event_id,
            "occurred_at": format_micros(self.occurred_at),
            "cluster": self.cluster,
            "namespace": self.namespace,
            "kind": self.kind,
            "name": self.name,
            "reason": self.reason,
            "type": self.event_type,
        });
        if let Value::Object(m) = &mut v {
            let optional: [(&str, Value); 5] = [
                ("container", json!(self.container)),
                ("message", json!(self.message)),
                ("restart_count", json!(self.restart_count)),
                ("actor", json!(self.actor)),
                ("exit_code", json!(self.exit_code)),
            ];
            for (k, val) in optional {
                if !val.is_null() {
                    m.insert(k.into(), val);
                }
            }
        }
        v
    }
}

/// Whether any byte of `w` is below 0x20, `"` or `\\` (a byte above 0x7f
/// never is: the high bits are masked out of every test).
fn needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH != 0;
    // Bytes below 0x20: subtracting 0x20 borrows into the high bit.
    let low = w.wrapping_sub(ONES * 0x20) & !w & HIGH != 0;
    low || has_zero(w ^ (ONES * u64::from(b'"'))) || has_zero(w ^ (ONES * u64::from(b'\\')))
}

/// A JSON string literal, escaped exactly as serde_json escapes it (`"`,
/// `\\` and control characters; everything else as is).
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut clean = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Eight bytes at a time while none needs escaping (most never do).
        if let Some(word) = bytes.get(i..i + 8) {
            let w = u64::from_le_bytes([
                word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
            ]);
            if !needs_escape(w) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        i += 1;
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        let i = i - 1;
        out.extend_from_slice(&bytes[clean..i]);
        clean = i + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
    }
    out.extend_from_slice(&bytes[clean..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_log_write_json_is_to_json() {
        let mut r = PodLogRecord {
            ts: 1_795_271_528_500_001,
            cluster: "c".into(),
            namespace: "ns".into(),
            pod: "p".into(),
            pod_uid: "u".into(),
            container: "app".into(),
            restart: 3,
            stream: "stderr".into(),
            level: Some("error".into()),
            message: "quote \" and \u{1} and é".into(),
            node: None,
            line_id: "id".into(),
            byte_offset: Some(42),
            file_fingerprint: Some(-7),
        };
        for _ in 0..2 {
            let mut out = Vec::new();
            r.write_json(&mut out).unwrap();
            let back: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, r.to_json());
            assert_eq!(PodLogRecord::from_json(&back).unwrap(), r);
            r.level = None;
            r.byte_offset = None;
            r.file_fingerprint = None;
            r.node = Some("n1".into());
        }
    }

    /// What `write_json` wrote through serde before it was written by hand.
    fn serde_json_of(r: &PodLogRecord) -> Vec<u8> {
        #[derive(serde::Serialize)]
        struct Doc<'a> {
            ts: String,
            cluster: &'a str,
            namespace: &'a str,
            pod: &'a str,
            pod_uid: &'a str,
            container: &'a str,
            restart: i32,
            stream: &'a str,
            message: &'a str,
            line_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            level: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            node: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            byte_offset: Option<i64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            file_fingerprint: Option<i64>,
        }
        serde_json::to_vec(&Doc {
            ts: format_micros(r.ts),
            cluster: &r.cluster,
            namespace: &r.namespace,
            pod: &r.pod,
            pod_uid: &r.pod_uid,
            container: &r.container,
            restart: r.restart,
            stream: &r.stream,
            message: &r.message,
            line_id: &r.line_id,
            level: r.level.as_deref(),
            node: r.node.as_deref(),
            byte_offset: r.byte_offset,
            file_fingerprint: r.file_fingerprint,
        })
        .unwrap()
    }

    proptest::proptest! {
        #[test]
        fn pod_log_json_is_byte_for_byte_serdes(
            ts in proptest::num::i64::ANY,
            names in proptest::collection::vec("\\PC{0,12}", 6),
            message in "(\\PC|[\\x00-\\x1f\\x7f\"\\\\]){0,80}",
            level in proptest::option::of("[a-z\"\\\\\\n]{0,6}"),
            node in proptest::option::of("\\PC{0,8}"),
            restart in proptest::num::i32::ANY,
            byte_offset in proptest::option::of(proptest::num::i64::ANY),
            file_fingerprint in proptest::option::of(proptest::num::i64::ANY),
        ) {
            let r = PodLogRecord {
                ts,
                cluster: names[0].clone(),
                namespace: names[1].clone(),
                pod: names[2].clone(),
                pod_uid: names[3].clone(),
                container: names[4].clone(),
                restart,
                stream: "stdout".into(),
                level,
                message,
                node,
                line_id: names[5].clone(),
                byte_offset,
                file_fingerprint,
            };
            let mut out = Vec::new();
            r.write_json(&mut out).unwrap();
            proptest::prop_assert_eq!(
                String::from_utf8(out).unwrap(),
                String::from_utf8(serde_json_of(&r)).unwrap()
            );
        }
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let v = json!({
            "event_id": "",
            "occurred_at": "yesterday",
            "action": 7,
            "success": "yes",
            "status_code": 42,
            "client_ip": "10.0.0.300",
            "latency_ms": -1,
        });
        let err = RawEvent::from_json(&v).unwrap_err();
        let text: Vec<String> = err.problems().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            text,
            vec![
                "event_id: must not be empty",
                "occurred_at: not a timestamp: \"yesterday\"",
                "service: required field is missing",
                "action: expected a string, got a number: 7",
                "success: expected a boolean, got a string: \"yes\"",
                "status_code: 42 is out of range 100..=599",
                "latency_ms: -1 is out of range 0..=1000000000",
                "client_ip: not an IP address: \"10.0.0.300\"",
            ]
        );
    }

    #[test]
    fn keeps_unknown_fields_as_attributes() {
        let v = json!({
            "event_id": "e1", "occurred_at": 1_795_264_328_500_i64, "service": "iom-core",
            "action": "a", "success": true, "user_id": null,
            "region": "eu-west-1", "org": {"id": 7}, "tier": 3,
        });
        let e = RawEvent::from_json(&v).unwrap();
        assert_eq!(e.user_id, None);
        assert_eq!(e.attributes["region"], "eu-west-1");
        assert_eq!(e.attributes["org"], "{\"id\":7}");
        assert_eq!(e.attributes["tier"], "3");
    }

    #[test]
    fn non_object_and_non_json_are_errors_not_panics() {
        assert!(RawEvent::from_json(&json!([1, 2])).is_err());
        assert!(RawEvent::from_json_bytes(b"{not json").is_err());
        assert!(PodLogRecord::from_json_bytes(b"null").is_err());
        assert!(LifecycleEvent::from_json_bytes(b"").is_err());
    }

    #[test]
    fn lifecycle_type_is_checked() {
        let v = json!({
            "event_id": "k1", "occurred_at": "2026-11-21T14:32:08Z", "cluster": "c",
            "namespace": "n", "kind": "Pod", "name": "p", "reason": "OOMKilled", "type": "Fatal",
        });
        let err = LifecycleEvent::from_json(&v).unwrap_err().to_string();
        assert_eq!(err, "type: must be one of Normal|Warning, got \"Fatal\"");
    }
}
