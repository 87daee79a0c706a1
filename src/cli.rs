//! The command line: every role of sluice behind one binary.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
pub use sluice::commands::logs::LogsAction;
pub use sluice::commands::query::ServerArgs;
use sluice::config::LogFormat;
use sluice::output::OutputFormat;

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "Log and event pipeline with analytics for Kubernetes platforms",
    long_about = "Log and event pipeline with analytics for Kubernetes platforms.\n\n\
        collector → Kafka → writer → Iceberg → query service; a tantivy index serves log search.\n\
        With no configuration every role uses the embedded default under ./.sluice \
        (SQLite Iceberg catalog, local warehouse).",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every role takes, each with its environment twin.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Configuration file [default: ./sluice.toml when present]
    #[arg(long, global = true, env = "SLUICE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory of the embedded default [default: ./.sluice]
    #[arg(long, global = true, env = "SLUICE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Kafka bootstrap servers (host:port,…); without it roles run embedded
    #[arg(long, global = true, env = "SLUICE_KAFKA", value_name = "BROKERS")]
    pub kafka: Option<String>,
    /// Address of the role's HTTP server (API, /healthz, /readyz, /metrics)
    #[arg(long, global = true, env = "SLUICE_HTTP", value_name = "ADDR:PORT")]
    pub http: Option<String>,
    /// Format of sluice's own logs [default: text]
    #[arg(long, global = true, env = "SLUICE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole pipeline in one process (collect → write → index → serve)
    Up(UpArgs),
    /// Collect pod logs, lifecycle events and platform events into Kafka
    Collect(CollectArgs),
    /// Consume Kafka and append to the Iceberg tables, exactly once
    Write,
    /// Load history (NDJSON events, a /var/log/pods tree) straight into the tables
    Import(ImportArgs),
    /// Follow the pod_logs table and maintain the log search index
    Index(IndexArgs),
    /// Serve SQL, attribution, guardrails, log search and the console over HTTP
    Serve,
    /// Table maintenance: retention, compaction, snapshot expiry, cleanup
    Maintain(MaintainArgs),
    /// Run a read-only SQL query
    Sql(SqlArgs),
    /// Search pod logs across container restarts, or tail an instance
    Logs(LogsArgs),
    /// Who drives API load: requests, share, success/failed, latency percentiles
    Attribution(AttributionArgs),
    /// Historical peaks per principal, cap simulation and export
    Guardrails(GuardrailsArgs),
    /// Generate a deterministic synthetic cluster: pod logs, API events, lifecycle events
    Gen(GenArgs),
    /// Print the effective configuration (defaults, file, environment, flags)
    Config,
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Up(_) => "up",
            Command::Collect(_) => "collect",
            Command::Write => "write",
            Command::Import(_) => "import",
            Command::Index(_) => "index",
            Command::Serve => "serve",
            Command::Maintain(_) => "maintain",
            Command::Sql(_) => "sql",
            Command::Logs(_) => "logs",
            Command::Attribution(_) => "attribution",
            Command::Guardrails(_) => "guardrails",
            Command::Gen(_) => "gen",
            Command::Config => "config",
        }
    }
}

#[derive(Debug, Args)]
pub struct CollectArgs {
    /// Root of the kubelet log tree [default: /var/log/pods]
    #[arg(long, value_name = "DIR")]
    pub pods_root: Option<PathBuf>,
    /// Node name stamped on every line [env: NODE_NAME, or SLUICE_NODE]
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Do not tail pod log files (HTTP intake and the Kubernetes watcher only)
    #[arg(long)]
    pub no_pod_logs: bool,
    /// Watch Pods and Events in the Kubernetes API (lifecycle events)
    #[arg(long)]
    pub kubernetes: bool,
    /// Kubeconfig for --kubernetes [default: in-cluster, else $KUBECONFIG]
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MaintainArgs {
    /// One pass over every table with progress, a JSON report, and exit
    /// (default: run every [maintenance] interval_secs and serve /metrics)
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Replace the index with one built from the table's current files
    #[arg(long)]
    pub rebuild: bool,
    /// With --rebuild: only lines from this time (RFC 3339 or a span like 7d)
    #[arg(long, value_name = "TIME", requires = "rebuild")]
    pub from: Option<String>,
    /// Index what is new once and exit (default: follow the table)
    #[arg(long)]
    pub once: bool,
    /// Seconds between looks at the table
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Merge a day's small splits once there are this many
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(2..))]
    pub merge_at: u16,
    /// Memory the splits being built may hold together, in MiB
    #[arg(long, value_name = "MIB", default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..))]
    pub memory_mib: u32,
    /// Splits of one day built side by side in a big round (a backlog, a
    /// rebuild), each on a core; 0: one per core
    #[arg(long, default_value_t = 0)]
    pub threads: u16,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Also run a live demo cluster: pods writing logs (with OOM restarts and
    /// rotations), gateway events with a periodic spike, lifecycle events
    #[arg(long)]
    pub demo: bool,
    /// The demo's load as a multiple of its default (about 50 log lines/s and 600 events/min)
    #[arg(long, default_value_t = 1.0, value_name = "FACTOR", requires = "demo")]
    pub demo_load: f64,
    /// The minute of the demo its first request spike starts in (then one
    /// every 10 minutes); a later start gives a spike rule a quiet baseline
    #[arg(long, default_value_t = 0, value_name = "MINUTE", requires = "demo")]
    pub demo_spike_minute: usize,
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// Output directory
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Number of pods
    #[arg(long, default_value_t = 20)]
    pub pods: usize,
    /// Number of platform API events in the whole window
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    /// Days of history, ending at --until
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// End of the window (RFC 3339) [default: now]
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Random seed: the same seed and --until give the same bytes
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Cluster name written into lifecycle events
    #[arg(long, default_value = "demo")]
    pub cluster: String,
    /// Average log lines per pod per day
    #[arg(long, default_value_t = 2000)]
    pub lines_per_pod_day: u64,
    /// Rotate a container log file at this size, in bytes (kubelet's default is 10 MiB)
    #[arg(long, default_value_t = 1 << 20)]
    pub rotate_bytes: u64,
    /// Replace generated data already in --out
    #[arg(long)]
    pub force: bool,
    /// Summary format
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Directory to import: events/*.ndjson, var/log/pods/…, k8s-events.ndjson (as `sluice gen` writes)
    pub dir: PathBuf,
    /// Principal directory for team/domain enrichment [default: DIR/directory.yaml when present, else [enrich] directory]
    #[arg(long, value_name = "FILE")]
    pub directory: Option<PathBuf>,
    /// Summary format
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// Where a query command runs.

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// A read-only statement, e.g. "SELECT count(*) FROM platform_event_logs"
    pub sql: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// The time range and service every analytics command takes.
#[derive(Debug, Args)]
pub struct RangeArgs {
    /// Start: RFC 3339 or a span back from now (24h, 7d)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// End: RFC 3339 or a span back from now [default: now]
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Only requests handled by this service
    #[arg(long)]
    pub service: Option<String>,
}

impl RangeArgs {
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        push(&mut p, "since", &self.since);
        push(&mut p, "to", &self.to);
        push(&mut p, "service", &self.service);
        p
    }
}

/// Adds `name=value` when the value is given.
pub fn push(pairs: &mut Vec<(String, String)>, name: &str, value: &Option<String>) {
    if let Some(v) = value {
        pairs.push((name.to_string(), v.clone()));
    }
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(subcommand)]
    pub action: LogsAction,
}

#[derive(Debug, Args)]
pub struct AttributionArgs {
    /// Group by: user, team, domain, endpoint, caller_type, service
    #[arg(long, default_value = "user")]
    pub by: String,
    #[command(flatten)]
    pub range: RangeArgs,
    /// Only this action, e.g. spark.jobs.runs.list
    #[arg(long)]
    pub action: Option<String>,
    /// Only this endpoint template, e.g. spark/jobs/{id}/runs
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Only internal, external or unknown callers
    #[arg(long)]
    pub caller_type: Option<String>,
    /// Rows to show
    #[arg(long)]
    pub limit: Option<String>,
    /// Print the SQL that ran (to stderr)
    #[arg(long)]
    pub show_sql: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct GuardrailsArgs {
    #[command(subcommand)]
    pub action: GuardrailsAction,
}

/// What is counted: per whom, in which windows.
#[derive(Debug, Args)]
pub struct PeaksScopeArgs {
    /// Per: user, team, domain, endpoint
    #[arg(long, default_value = "user")]
    pub by: String,
    /// Window length: 1m, 5m, 1h
    #[arg(long, default_value = "1m")]
    pub window: String,
    #[command(flatten)]
    pub range: RangeArgs,
}

impl PeaksScopeArgs {
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut p = vec![
            ("by".to_string(), self.by.clone()),
            ("window".to_string(), self.window.clone()),
        ];
        p.extend(self.range.pairs());
        p
    }
}

#[derive(Debug, Subcommand)]
pub enum GuardrailsAction {
    /// Peak requests per window per principal, with recommended caps
    Peaks {
        #[command(flatten)]
        scope: PeaksScopeArgs,
        /// Rows to show
        #[arg(long)]
        limit: Option<String>,
        /// Print the SQL that ran (to stderr)
        #[arg(long)]
        show_sql: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// What candidate caps would have limited over the history (monitor mode)
    Simulate {
        #[command(flatten)]
        scope: PeaksScopeArgs,
        /// A cap: LIMIT (the default for every principal) or PRINCIPAL=LIMIT; repeatable
        #[arg(long = "cap", value_name = "[PRINCIPAL=]LIMIT", required = true)]
        caps: Vec<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The recommended caps as an Envoy rate-limit service configuration (YAML)
    Export {
        #[command(flatten)]
        scope: PeaksScopeArgs,
        /// Envoy rate-limit domain
        #[arg(long, default_value = "sluice")]
        domain: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}
