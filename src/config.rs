//! One configuration for every role: built-in defaults, then `sluice.toml`
//! (or the file `--config`/`SLUICE_CONFIG` names), then `SLUICE_…`
//! environment variables (`__` separates sections:
//! `SLUICE_KAFKA__TOPICS__EVENTS=…`), then command-line flags. With nothing
//! configured, everything points at the embedded default under `./.sluice`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Format, Toml};
use serde::{Deserialize, Serialize};
use sluice_ingest::enrich::EnrichConfig;
use sluice_query::config::{GuardrailsConfig, QueryConfig, SearchConfig, TailConfig};
use sluice_warehouse::catalog::{CatalogConfig, WarehouseConfig};
use sluice_warehouse::maintain::{MaintenanceConfig, RetentionConfig};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for production log pipelines).
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    /// Raw platform events (the public raw event contract).
    pub events: String,
    /// Pod log records from the collector.
    pub podlogs: String,
    /// Kubernetes lifecycle events.
    pub k8s: String,
    /// Records that failed validation, with the reason in headers.
    pub dlq: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            events: "sluice.events".into(),
            podlogs: "sluice.podlogs".into(),
            k8s: "sluice.k8s".into(),
            dlq: "sluice.dlq".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers (`host:port,…`). Unset: the embedded in-process
    /// pipeline is used instead of Kafka.
    pub bootstrap: Option<String>,
    /// Consumer group of the writers.
    pub group_id: String,
    pub topics: Topics,
    /// Extra librdkafka properties for every client (`security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `ssl.ca.location`, …).
    pub properties: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap: None,
            group_id: "sluice-writer".into(),
            topics: Topics::default(),
            properties: Default::default(),
        }
    }
}

/// `[collector]`: what `sluice collect` reads and how it produces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// Root of the kubelet log tree (`<ns>_<pod>_<uid>/<container>/<n>.log`).
    pub pods_root: PathBuf,
    /// Tail the pod log files (off for a collector that only runs intake).
    pub pod_logs: bool,
    /// Log lines per Kafka message (a JSON array of one container's lines;
    /// 1 = one JSON object per message).
    pub batch_lines: usize,
    /// Threads that parse and encode log files side by side (a file stays
    /// on one thread at a time, so its lines keep their order).
    pub read_threads: usize,
    /// Longest logical line kept; the rest is cut and counted.
    pub max_line_bytes: usize,
    /// Memory bound: bytes the producer may hold unacknowledged before
    /// reading pauses (the rest of the budget is read buffers).
    pub memory_limit_bytes: usize,
    /// `lz4`, `zstd`, `gzip`, `snappy` or `none`.
    pub compression: String,
    /// Milliseconds between listings of the log tree (new restarts, rotations).
    pub scan_interval_ms: u64,
    /// Largest `POST /v1/events` body (compressed or decoded).
    pub intake_max_body_bytes: usize,
    /// Largest record of a body, attributes included (rejected by index
    /// past it). Must stay under the broker's `message.max.bytes`.
    pub intake_max_record_bytes: usize,
    /// Most records in one body (413 past it).
    pub intake_max_records: usize,
    /// Intake requests handled at once (429 past it).
    pub intake_max_concurrent: usize,
    /// Bearer tokens `POST /v1/events` accepts; empty (and no
    /// `intake_tenant_tokens`) = no authentication.
    pub intake_tokens: Vec<String>,
    /// Tenants' intake tokens: each sends only its tenant's services'
    /// events, at the tenant's rate (docs/tenants.md).
    pub intake_tenant_tokens: Vec<IntakeTenantToken>,
    /// Events per second a tenant's intake tokens may send together, unless
    /// the tenant says otherwise (HTTP 429 past it).
    pub intake_tenant_events_per_sec: u64,
    /// A file gone from disk and read to its end is forgotten this long
    /// after (its position kept for a late gzipped copy of the same bytes);
    /// under `sluice up` its key then leaves the table's positions too.
    pub forget_after_secs: u64,
    /// Watch Pods and Events in the Kubernetes API.
    pub kubernetes: bool,
    /// Kubeconfig for the watcher [default: in-cluster, else $KUBECONFIG, else ~/.kube/config].
    pub kubeconfig: Option<PathBuf>,
}

/// `[[collector.intake_tenant_tokens]]`: an intake token of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeTenantToken {
    pub token: String,
    pub tenant: String,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            pods_root: PathBuf::from("/var/log/pods"),
            pod_logs: true,
            batch_lines: 500,
            read_threads: 2,
            max_line_bytes: 256 * 1024,
            memory_limit_bytes: 256 << 20,
            compression: "lz4".into(),
            scan_interval_ms: 250,
            intake_max_body_bytes: 8 << 20,
            intake_max_record_bytes: sluice_ingest::collect::intake::DEFAULT_MAX_RECORD_BYTES,
            intake_max_records: 10_000,
            intake_max_concurrent: 16,
            intake_tokens: Vec::new(),
            intake_tenant_tokens: Vec::new(),
            intake_tenant_events_per_sec: 1000,
            forget_after_secs: 3600,
            kubernetes: false,
            kubeconfig: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address the role's HTTP server (API, health, metrics) listens on.
    pub addr: String,
    /// Host names the server answers to besides loopback ones (on loopback)
    /// or at all (elsewhere; empty: any). Protects against DNS rebinding.
    pub allowed_hosts: Vec<String>,
    /// Origins (`https://grafana.example`) whose pages may call the API
    /// from a browser (CORS). Empty: none.
    pub cors_origins: Vec<String>,
    /// Connections open at once; more are closed at once.
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers (slowloris).
    pub header_timeout_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:7878".into(),
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
            max_connections: 1024,
            header_timeout_secs: 10,
        }
    }
}

/// `[writer]`: how `sluice write` batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriterConfig {
    /// Commit a table's batch at this many Kafka records (a pod-log record
    /// may carry many lines; `max_bytes` bounds those)…
    pub max_rows: usize,
    /// …or this many bytes of buffered input (bounds memory for large records)…
    pub max_bytes: usize,
    /// …or when its oldest record has waited this long (end-to-end freshness).
    pub max_age_ms: u64,
    /// Committed record ids remembered per table to drop replays.
    pub dedup_window: usize,
    /// On every partition assignment (start, rebalance) the window is
    /// refilled with the ids of the table's appends from this many seconds
    /// before its newest snapshot: replays after a restart are dropped too.
    pub dedup_horizon_secs: u64,
    /// `sluice up`'s write-ahead logs start a new segment past this size;
    /// a segment is deleted once its table's committed position passed it.
    pub wal_segment_mib: u64,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            max_rows: 250_000,
            max_bytes: 128 << 20,
            max_age_ms: 2000,
            dedup_window: 1_000_000,
            dedup_horizon_secs: 900,
            wal_segment_mib: 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the embedded catalog, warehouse, checkpoints and index live.
    pub data_dir: PathBuf,
    /// Name of the cluster this deployment collects from.
    pub cluster: String,
    /// Node name (the collector reads it from the downward API's env).
    pub node: Option<String>,
    pub log_format: LogFormat,
    pub http: HttpConfig,
    pub kafka: KafkaConfig,
    pub catalog: CatalogConfig,
    pub warehouse: WarehouseConfig,
    pub enrich: EnrichConfig,
    pub writer: WriterConfig,
    pub collector: CollectorConfig,
    pub query: QueryConfig,
    pub search: SearchConfig,
    /// The live tail (`[tail]`).
    pub tail: TailConfig,
    pub guardrails: GuardrailsConfig,
    pub maintenance: MaintenanceConfig,
    pub retention: RetentionConfig,
    pub alerts: sluice_alerts::AlertsConfig,
    /// Customers and what is theirs (`[[tenants]]`); reloaded without a
    /// restart, with the query tokens.
    pub tenants: Vec<sluice_query::tenancy::TenantConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".sluice"),
            cluster: "default".into(),
            node: None,
            log_format: LogFormat::Text,
            http: HttpConfig::default(),
            kafka: KafkaConfig::default(),
            catalog: CatalogConfig::default(),
            warehouse: WarehouseConfig::default(),
            enrich: EnrichConfig::default(),
            writer: WriterConfig::default(),
            collector: CollectorConfig::default(),
            query: QueryConfig::default(),
            search: SearchConfig::default(),
            tail: TailConfig::default(),
            guardrails: GuardrailsConfig::default(),
            maintenance: MaintenanceConfig::default(),
            retention: RetentionConfig::default(),
            alerts: sluice_alerts::AlertsConfig::default(),
            tenants: Vec::new(),
        }
    }
}

/// The common flags every role takes (each also read from its env twin by clap).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub kafka: Option<String>,
    pub http: Option<String>,
    pub log_format: Option<LogFormat>,
}

/// Top-level settings that have a plain `SLUICE_<NAME>` variable of their own
/// (besides the common flags' twins, which clap reads).
const ENV_SETTINGS: [&str; 2] = ["CLUSTER", "NODE"];

/// The file looked for when neither `--config` nor `SLUICE_CONFIG` is given.
pub const DEFAULT_CONFIG_FILE: &str = "sluice.toml";

/// The flags the process loaded its configuration with, for a reload.
static LOADED_WITH: std::sync::OnceLock<Overrides> = std::sync::OnceLock::new();

impl Config {
    /// Resolves the configuration; `env` is the process environment (passed in
    /// so tests need not mutate global state).
    pub fn load(
        overrides: &Overrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let _ = LOADED_WITH.set(overrides.clone());
        // No defaults layer: every section is `#[serde(default)]`, and merging
        // a default `[catalog]` into a configured one would mix variants.
        let mut figment = Figment::new();
        match &overrides.config {
            Some(path) => {
                if !path.is_file() {
                    anyhow::bail!("config file {} does not exist", path.display());
                }
                figment = figment.merge(Toml::file_exact(path));
            }
            None if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
            }
            None => {}
        }
        // Nested settings come from SLUICE_SECTION__KEY variables; the flat
        // ones (SLUICE_KAFKA, SLUICE_HTTP, …) are the flags' twins, read by clap.
        let mut env: Vec<(String, String)> = env.into_iter().collect();
        env.sort();
        for (name, raw) in env {
            let Some(key) = name.strip_prefix("SLUICE_") else {
                continue;
            };
            if !(key.contains("__") || ENV_SETTINGS.contains(&key)) {
                continue;
            }
            let path = key.to_ascii_lowercase().replace("__", ".");
            // Parsed like figment's own Env provider: numbers and booleans typed.
            let value: figment::value::Value = raw
                .parse()
                .unwrap_or_else(|_| figment::value::Value::from(raw.clone()));
            figment = figment.merge((path, value));
        }
        let mut config: Config = figment.extract().context("invalid configuration")?;
        if let Some(d) = &overrides.data_dir {
            config.data_dir = d.clone();
        }
        if let Some(k) = &overrides.kafka {
            config.kafka.bootstrap = Some(k.clone());
        }
        if let Some(h) = &overrides.http {
            config.http.addr = h.clone();
        }
        if let Some(f) = overrides.log_format {
            config.log_format = f;
        }
        config.check_tokens()?;
        config.check_tenants()?;
        config.check_intake_limits()?;
        sluice_ingest::kafka_properties::check(&config.kafka.properties)
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        config
            .retention
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        Ok(config)
    }

    /// An accepted record must always be writable: the intake's record cap
    /// stays under the largest message the producer may send.
    fn check_intake_limits(&self) -> anyhow::Result<()> {
        let max_message = self
            .kafka
            .properties
            .get("message.max.bytes")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(KAFKA_DEFAULT_MESSAGE_MAX_BYTES);
        // Room for the key, headers and the record batch's framing.
        let cap = self.collector.intake_max_record_bytes;
        if cap + 16 * 1024 > max_message {
            anyhow::bail!(
                "[collector] intake_max_record_bytes = {cap} does not fit in a Kafka message of \
                 {max_message} bytes (message.max.bytes, minus 16 KiB for key and headers): \
                 lower it, or raise message.max.bytes in [kafka.properties] and on the broker"
            );
        }
        Ok(())
    }

    /// The configuration as the process's flags and the current environment
    /// and file give it now (tokens and tenants are reloaded from it).
    pub fn reload() -> anyhow::Result<Self> {
        let overrides = LOADED_WITH.get().cloned().unwrap_or_default();
        Self::load(&overrides, std::env::vars())
    }

    /// The file the configuration comes from, if any.
    pub fn source_file() -> Option<PathBuf> {
        match LOADED_WITH.get().and_then(|o| o.config.clone()) {
            Some(p) => Some(p),
            None => Path::new(DEFAULT_CONFIG_FILE)
                .is_file()
                .then(|| PathBuf::from(DEFAULT_CONFIG_FILE)),
        }
    }

    /// Tenants own disjoint namespaces, and a token's tenant is one of them.
    fn check_tenants(&self) -> anyhow::Result<()> {
        let tenants = sluice_query::tenancy::check(&self.tenants, &self.query.tokens)
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        for (i, t) in self.collector.intake_tenant_tokens.iter().enumerate() {
            if tenants.get(&t.tenant).is_none() {
                anyhow::bail!(
                    "invalid configuration: [[collector.intake_tenant_tokens]] #{}: tenant {:?} is not one of [[tenants]]",
                    i + 1,
                    t.tenant
                );
            }
        }
        if let Some(jwt) = &self.query.jwt {
            jwt.validate()
                .map_err(|e| anyhow::anyhow!("invalid configuration: [query.jwt]: {e}"))?;
        }
        Ok(())
    }

    /// The intake's tenant tokens, each with its tenant's services, rate and
    /// metric label.
    pub fn intake_tenants(&self) -> Vec<sluice_ingest::collect::intake_tenants::TenantIntake> {
        // Checked at load ([`Self::check_tenants`]).
        let labelled = sluice_query::tenancy::Tenants::new(&self.tenants)
            .map(|t| t.labelled(self.query.tenant_metric_labels))
            .unwrap_or_default();
        self.collector
            .intake_tenant_tokens
            .iter()
            .filter_map(|t| {
                let tenant = self.tenants.iter().find(|c| c.name == t.tenant)?;
                Some(sluice_ingest::collect::intake_tenants::TenantIntake {
                    token: t.token.clone(),
                    tenant: tenant.name.clone(),
                    services: tenant.services.clone(),
                    events_per_sec: tenant
                        .intake_events_per_sec
                        .unwrap_or(self.collector.intake_tenant_events_per_sec)
                        as f64,
                    metric_label: if labelled.contains(&tenant.name) {
                        tenant.name.clone()
                    } else {
                        "other".to_string()
                    },
                })
            })
            .collect()
    }

    /// Bearer tokens must be long enough not to be guessed: an empty or
    /// short one is a configuration error, not an open door.
    fn check_tokens(&self) -> anyhow::Result<()> {
        let short = |t: &str| t.trim().len() < MIN_TOKEN_CHARS;
        if self.query.tokens.iter().any(|t| short(&t.token)) {
            anyhow::bail!(
                "[query] tokens: every token needs at least {MIN_TOKEN_CHARS} characters \
                 (e.g. `openssl rand -hex 24`)"
            );
        }
        if self.collector.intake_tokens.iter().any(|t| short(t))
            || self
                .collector
                .intake_tenant_tokens
                .iter()
                .any(|t| short(&t.token))
        {
            anyhow::bail!(
                "[collector] intake_tokens: every token needs at least {MIN_TOKEN_CHARS} \
                 characters (e.g. `openssl rand -hex 24`)"
            );
        }
        Ok(())
    }

    /// The configuration with every secret replaced, for printing
    /// (`sluice config`): tokens, the S3 secret key, the REST catalog's
    /// token and credential, a password in the Postgres URI, and Kafka
    /// properties that hold passwords or keys.
    pub fn redacted(&self) -> Config {
        const HIDDEN: &str = "<redacted>";
        let mut c = self.clone();
        for t in &mut c.query.tokens {
            t.token = HIDDEN.into();
        }
        for t in &mut c.collector.intake_tokens {
            *t = HIDDEN.into();
        }
        for t in &mut c.collector.intake_tenant_tokens {
            t.token = HIDDEN.into();
        }
        if c.warehouse.s3.secret_access_key.is_some() {
            c.warehouse.s3.secret_access_key = Some(HIDDEN.into());
        }
        match &mut c.catalog {
            CatalogConfig::Rest {
                token, credential, ..
            } => {
                for secret in [token, credential].into_iter().flatten() {
                    *secret = HIDDEN.into();
                }
            }
            CatalogConfig::Postgres { uri } => {
                // postgres://user:password@host/db
                if let Some((scheme, rest)) = uri.split_once("://")
                    && let Some((userinfo, host)) = rest.split_once('@')
                    && let Some((user, _)) = userinfo.split_once(':')
                {
                    *uri = format!("{scheme}://{user}:{HIDDEN}@{host}");
                }
            }
            CatalogConfig::Sqlite { .. } => {}
        }
        for (key, value) in &mut c.kafka.properties {
            if ["password", "secret", "key.pem", "token"]
                .iter()
                .any(|s| key.contains(s))
            {
                *value = HIDDEN.into();
            }
        }
        c
    }
}

/// librdkafka's default `message.max.bytes`.
const KAFKA_DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// The shortest bearer token accepted.
pub const MIN_TOKEN_CHARS: usize = 16;

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn secrets_are_redacted_and_short_tokens_refused() {
        let c = Config::load(
            &Overrides::default(),
            env(&[
                (
                    "SLUICE_QUERY__TOKENS",
                    r#"[{token="analyst-token-0123456789", role="analyst"}]"#,
                ),
                (
                    "SLUICE_COLLECTOR__INTAKE_TOKENS",
                    r#"["intake-token-0123456789"]"#,
                ),
                ("SLUICE_WAREHOUSE__S3__SECRET_ACCESS_KEY", "s3-secret"),
            ]),
        )
        .unwrap();
        let mut c = c;
        c.kafka
            .properties
            .insert("sasl.password".into(), "kafka-secret".into());
        let text = toml::to_string_pretty(&c.redacted()).unwrap();
        for secret in [
            "analyst-token-0123456789",
            "intake-token-0123456789",
            "s3-secret",
            "kafka-secret",
        ] {
            assert!(!text.contains(secret), "{secret} printed:\n{text}");
        }
        assert!(text.contains("<redacted>"));
        let pg = Config {
            catalog: CatalogConfig::Postgres {
                uri: "postgres://sluice:hunter2@db:5432/iceberg".into(),
            },
            ..Config::default()
        };
        let text = toml::to_string_pretty(&pg.redacted()).unwrap();
        assert!(
            text.contains("postgres://sluice:<redacted>@db:5432/iceberg"),
            "{text}"
        );

        let e = Config::load(
            &Overrides::default(),
            env(&[("SLUICE_COLLECTOR__INTAKE_MAX_RECORD_BYTES", "2000000")]),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("message.max.bytes"), "{e:#}");
        let mut big = Config::default();
        big.collector.intake_max_record_bytes = 2_000_000;
        big.kafka
            .properties
            .insert("message.max.bytes".into(), "4000000".into());
        big.check_intake_limits().unwrap();
        for (name, value) in [
            ("SLUICE_QUERY__TOKENS", r#"[{token="", role="admin"}]"#),
            ("SLUICE_QUERY__TOKENS", r#"[{token="short", role="admin"}]"#),
            ("SLUICE_COLLECTOR__INTAKE_TOKENS", r#"["  "]"#),
        ] {
            let e = Config::load(&Overrides::default(), env(&[(name, value)])).unwrap_err();
            assert!(format!("{e:#}").contains("at least 16 characters"), "{e:#}");
        }
    }

    /// The shipped example loads as it is, and so do its commented tenant
    /// settings once uncommented; overlapping tenants and tokens of unknown
    /// tenants are refused with the reason.
    #[test]
    fn the_example_and_tenants_load() {
        let dir = tempfile::tempdir().unwrap();
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/sluice.example.toml");
        let load = |text: &str| {
            let path = dir.path().join("t.toml");
            std::fs::write(&path, text).unwrap();
            Config::load(
                &Overrides {
                    config: Some(path),
                    ..Default::default()
                },
                env(&[]),
            )
        };
        let text = std::fs::read_to_string(example).unwrap();
        load(&text).unwrap();
        let tenants = "[[query.tokens]]\ntoken = \"acme-token-0000000001\"\nrole = \"operator\"\ntenant = \"acme\"\n\
                       [[collector.intake_tenant_tokens]]\ntoken = \"acme-intake-00000001\"\ntenant = \"acme\"\n\
                       [[tenants]]\nname = \"acme\"\nnamespaces = [\"acme-*\"]\nservices = [\"gw\"]\nintake_events_per_sec = 7\n\
                       [[tenants]]\nname = \"globex\"\nnamespaces = [\"globex\"]\n";
        let c = load(tenants).unwrap();
        let intake = c.intake_tenants();
        assert_eq!(intake.len(), 1);
        assert_eq!(intake[0].services, ["gw"]);
        assert_eq!(intake[0].events_per_sec, 7.0);
        assert_eq!(intake[0].metric_label, "acme");
        let e = load(&tenants.replace("[\"globex\"]", "[\"*-prod\", \"acme-x\"]")).unwrap_err();
        assert!(format!("{e:#}").contains("at most one tenant"), "{e:#}");
        let e = load(&tenants.replacen("tenant = \"acme\"", "tenant = \"nobody\"", 1)).unwrap_err();
        assert!(
            format!("{e:#}").contains("is not one of [[tenants]]"),
            "{e:#}"
        );
        let e = load(&tenants.replace(
            "tenant = \"acme\"\n[[tenants]]",
            "tenant = \"nobody\"\n[[tenants]]",
        ))
        .unwrap_err();
        assert!(format!("{e:#}").contains("intake_tenant_tokens"), "{e:#}");
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_the_embedded_setup() {
        let c = Config::load(&Overrides::default(), env(&[])).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.data_dir, PathBuf::from(".sluice"));
        assert_eq!(c.kafka.bootstrap, None);
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(
            f,
            "cluster = \"prod-eu\"\ndata_dir = \"/var/lib/sluice\"\n[kafka]\nbootstrap = \"k1:9092\"\n[kafka.topics]\nevents = \"gw.events\""
        )
        .unwrap();
        let overrides = Overrides {
            config: Some(path.clone()),
            ..Default::default()
        };
        let c = Config::load(&overrides, env(&[])).unwrap();
        assert_eq!(c.cluster, "prod-eu");
        assert_eq!(c.kafka.bootstrap.as_deref(), Some("k1:9092"));
        assert_eq!(c.kafka.topics.events, "gw.events");
        assert_eq!(c.kafka.topics.dlq, "sluice.dlq");

        let vars = env(&[
            ("SLUICE_KAFKA__TOPICS__EVENTS", "env.events"),
            ("SLUICE_CLUSTER", "prod-us"),
            ("SLUICE_TEST_KAFKA", "ignored:1"),
            ("SLUICE_KAFKA", "read-by-clap-not-here"),
        ]);
        let c = Config::load(&overrides, vars.clone()).unwrap();
        assert_eq!(c.kafka.topics.events, "env.events");
        assert_eq!(c.cluster, "prod-us");
        assert_eq!(c.kafka.bootstrap.as_deref(), Some("k1:9092"));

        let flags = Overrides {
            config: Some(path),
            data_dir: Some("/tmp/x".into()),
            kafka: Some("k9:9092".into()),
            log_format: Some(LogFormat::Json),
            ..Default::default()
        };
        let c = Config::load(&flags, vars).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.kafka.bootstrap.as_deref(), Some("k9:9092"));
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn catalog_and_warehouse_sections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(
            &path,
            "[catalog]\nkind = \"postgres\"\nuri = \"postgres://u@h/db\"\n[warehouse]\nlocation = \"s3://wh/sluice\"\n[warehouse.s3]\nendpoint = \"http://127.0.0.1:8333\"\npath_style = true\n",
        )
        .unwrap();
        let o = Overrides {
            config: Some(path),
            ..Default::default()
        };
        let vars = env(&[("SLUICE_WAREHOUSE__S3__SECRET_ACCESS_KEY", "shh")]);
        let c = Config::load(&o, vars).unwrap();
        assert_eq!(
            c.catalog,
            CatalogConfig::Postgres {
                uri: "postgres://u@h/db".into()
            }
        );
        assert_eq!(c.warehouse.location.as_deref(), Some("s3://wh/sluice"));
        assert!(c.warehouse.s3.path_style);
        assert_eq!(c.warehouse.s3.secret_access_key.as_deref(), Some("shh"));
        assert_eq!(
            Config::default().catalog,
            CatalogConfig::Sqlite { path: None }
        );
    }

    #[test]
    fn query_limits_and_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(
            &path,
            "[query]\nrow_cap = 10\n[[query.tokens]]\ntoken = \"t1-operator-token-0001\"\nrole = \"operator\"\n[guardrails]\nheadroom = 2.0\n",
        )
        .unwrap();
        let o = Overrides {
            config: Some(path),
            ..Default::default()
        };
        let c = Config::load(&o, env(&[("SLUICE_QUERY__TIMEOUT_SECS", "5")])).unwrap();
        assert_eq!(c.query.row_cap, 10);
        assert_eq!(c.query.timeout_secs, 5);
        assert_eq!(c.query.tokens.len(), 1);
        assert_eq!(c.query.tokens[0].role, sluice_query::config::Role::Operator);
        assert_eq!(c.guardrails.headroom, 2.0);
        assert_eq!(c.guardrails.floor, 10);
        // Tokens from the environment, so they stay out of files.
        let c = Config::load(
            &Overrides::default(),
            env(&[(
                "SLUICE_QUERY__TOKENS",
                "[{token=\"s3cret-analyst-token\", role=\"analyst\"}, {token=\"root-admin-token-01\", role=\"admin\"}]",
            )]),
        )
        .unwrap();
        assert_eq!(c.query.tokens.len(), 2);
        assert_eq!(c.query.tokens[1].role, sluice_query::config::Role::Admin);
        let bad = Config::load(
            &Overrides::default(),
            env(&[("SLUICE_QUERY__TOKENS", "[{token=\"x\", role=\"root\"}]")]),
        );
        assert!(format!("{:#}", bad.unwrap_err()).contains("root"));
    }

    #[test]
    fn typos_and_missing_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[kafka]\nbootstrp = \"x\"\n").unwrap();
        let o = Overrides {
            config: Some(path),
            ..Default::default()
        };
        let err = format!("{:#}", Config::load(&o, env(&[])).unwrap_err());
        assert!(err.contains("bootstrp"), "{err}");
        let o = Overrides {
            config: Some(dir.path().join("nope.toml")),
            ..Default::default()
        };
        assert!(Config::load(&o, env(&[])).is_err());
    }
}
