//! `sluice sql`, `sluice attribution`, `sluice guardrails`: against a running
//! server (`--server URL`) or, without one, the configured catalog directly.

use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use sluice_query::attribution::{self, AttributionQuery, AttributionReport};
use sluice_query::encode::{self, ColumnInfo};
use sluice_query::engine::Engine;
use sluice_query::guardrails::{self, PeaksParams, PeaksReport, SimulateReport, SimulateRequest};
use sluice_query::logsearch::restarts::Restarts;
use sluice_query::logsearch::search::SearchResult;
use sluice_query::logsearch::{LogIndex, SearchParams};

use crate::config::Config;
use crate::output::{DataTable, Datum, OutputFormat};

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// URL of a running `sluice serve`; without it the configured catalog is opened directly
    #[arg(long, env = "SLUICE_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Bearer token for --server
    #[arg(
        long,
        env = "SLUICE_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// Where queries run.
pub enum Backend {
    Remote(Server),
    Local {
        engine: Arc<Engine>,
        guardrails: sluice_query::config::GuardrailsConfig,
        logs: Arc<LogIndex>,
    },
}

/// A running `sluice serve`.
pub struct Server {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
}

/// An SQL answer: columns and rows as JSON objects.
#[derive(Debug, serde::Deserialize)]
pub struct SqlAnswer {
    pub columns: Vec<ColumnInfo>,
    pub rows: Vec<Map<String, Value>>,
}

fn pairs_to_params<T: DeserializeOwned>(pairs: &[(String, String)]) -> anyhow::Result<T> {
    let map: Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    serde_json::from_value(Value::Object(map)).context("invalid arguments")
}

impl Server {
    fn get(&self, path: &str, pairs: &[(String, String)]) -> reqwest::RequestBuilder {
        self.client.get(format!("{}{path}", self.base)).query(pairs)
    }

    fn post<B: Serialize>(&self, path: &str, body: &B) -> reqwest::RequestBuilder {
        self.client.post(format!("{}{path}", self.base)).json(body)
    }

    /// Sends a request to `path`; the body of a 2xx answer, else the
    /// server's error.
    async fn send(&self, request: reqwest::RequestBuilder, path: &str) -> anyhow::Result<String> {
        let what = format!("the server's {path}");
        let request = match &self.token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("calling {what}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("reading the answer of {what}"))?;
        if !status.is_success() {
            let detail = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_string))
                .unwrap_or(text);
            anyhow::bail!("{what} answered {status}: {detail}");
        }
        Ok(text)
    }

    /// Opens a streamed answer of `path` (its body read as it comes).
    pub async fn open_stream(
        &self,
        path: &str,
        pairs: &[(String, String)],
    ) -> anyhow::Result<reqwest::Response> {
        let request = match &self.token {
            Some(t) => self.get(path, pairs).bearer_auth(t),
            None => self.get(path, pairs),
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("calling the server's {path}"))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let detail = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_string))
                .unwrap_or(text);
            anyhow::bail!("the server's {path} answered {status}: {detail}");
        }
        Ok(response)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        path: &str,
    ) -> anyhow::Result<T> {
        let text = self.send(request, path).await?;
        serde_json::from_str(&text)
            .with_context(|| format!("reading the answer of the server's {path}"))
    }
}

impl Backend {
    pub async fn open(
        config: &Config,
        server: Option<String>,
        token: Option<String>,
    ) -> anyhow::Result<Self> {
        match server {
            Some(url) => Ok(Backend::Remote(Server {
                base: url.trim_end_matches('/').to_string(),
                token,
                client: reqwest::Client::builder()
                    .build()
                    .context("starting the HTTP client")?,
            })),
            None => {
                let engine = crate::commands::serve::open_engine(config).await?;
                // Memory only: a server may own the data directory's cache.
                let cache = config.search.cache(None, Default::default())?;
                let logs = Arc::new(LogIndex::new(
                    engine.catalog().clone(),
                    engine.stores().clone(),
                    Arc::new(cache),
                    config.search.columns_mib << 20,
                ));
                Ok(Backend::Local {
                    engine,
                    guardrails: config.guardrails.clone(),
                    logs,
                })
            }
        }
    }

    pub async fn sql(&self, sql: &str) -> anyhow::Result<SqlAnswer> {
        const PATH: &str = "/v1/sql";
        match self {
            Backend::Remote(s) => {
                let body = serde_json::json!({ "sql": sql });
                s.call(s.post(PATH, &body), PATH).await
            }
            Backend::Local { engine, .. } => {
                let out = engine.sql(sql, Vec::new()).await?;
                Ok(SqlAnswer {
                    columns: encode::columns(&out.schema),
                    rows: encode::json_rows(&out.batches)?,
                })
            }
        }
    }

    pub async fn log_search(&self, pairs: &[(String, String)]) -> anyhow::Result<SearchResult> {
        const PATH: &str = "/v1/logs/search";
        match self {
            Backend::Remote(s) => s.call(s.get(PATH, pairs), PATH).await,
            Backend::Local { logs, engine, .. } => {
                let params: SearchParams = pairs_to_params(pairs)?;
                let request = params.request(Utc::now())?;
                let logs = logs.clone();
                // On the query threads, within the time limit, as the
                // service runs it.
                let search = async move { logs.search(request).await };
                Ok(engine
                    .executor()
                    .run(sluice_query::isolation::ANONYMOUS, search)
                    .await?)
            }
        }
    }

    pub async fn log_restarts(&self, namespace: &str, pod: &str) -> anyhow::Result<Restarts> {
        const PATH: &str = "/v1/logs/restarts";
        match self {
            Backend::Remote(s) => {
                let pairs = [
                    ("namespace".to_string(), namespace.to_string()),
                    ("pod".to_string(), pod.to_string()),
                ];
                s.call(s.get(PATH, &pairs), PATH).await
            }
            Backend::Local { engine, .. } => {
                Ok(sluice_query::logsearch::restarts::restarts(engine, namespace, pod).await?)
            }
        }
    }

    pub async fn attribution(
        &self,
        pairs: &[(String, String)],
    ) -> anyhow::Result<AttributionReport> {
        const PATH: &str = "/v1/attribution";
        match self {
            Backend::Remote(s) => s.call(s.get(PATH, pairs), PATH).await,
            Backend::Local { engine, .. } => {
                let q = AttributionQuery::from_params(&pairs_to_params(pairs)?, Utc::now())?;
                Ok(attribution::attribution(engine, &q).await?)
            }
        }
    }

    pub async fn peaks(&self, pairs: &[(String, String)]) -> anyhow::Result<PeaksReport> {
        const PATH: &str = "/v1/guardrails/peaks";
        match self {
            Backend::Remote(s) => s.call(s.get(PATH, pairs), PATH).await,
            Backend::Local {
                engine, guardrails, ..
            } => {
                let p: PeaksParams = pairs_to_params(pairs)?;
                Ok(p.peaks(engine, guardrails, Utc::now()).await?)
            }
        }
    }

    pub async fn simulate(&self, request: &SimulateRequest) -> anyhow::Result<SimulateReport> {
        const PATH: &str = "/v1/guardrails/simulate";
        match self {
            Backend::Remote(s) => s.call(s.post(PATH, request), PATH).await,
            Backend::Local { engine, .. } => {
                Ok(guardrails::simulate(engine, request, Utc::now()).await?)
            }
        }
    }

    pub async fn export(&self, pairs: &[(String, String)]) -> anyhow::Result<String> {
        const PATH: &str = "/v1/guardrails/export";
        match self {
            Backend::Remote(s) => s.send(s.get(PATH, pairs), PATH).await,
            Backend::Local {
                engine, guardrails, ..
            } => {
                let p: PeaksParams = pairs_to_params(pairs)?;
                Ok(p.export(engine, guardrails, Utc::now()).await?)
            }
        }
    }
}

fn datum(v: &Value) -> Datum {
    match v {
        Value::Null => Datum::Null,
        Value::Bool(b) => Datum::Text(b.to_string()),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Datum::Int(i),
            None => n.as_f64().map_or(Datum::Null, Datum::Float),
        },
        Value::String(s) => Datum::Text(s.clone()),
        other => Datum::Text(other.to_string()),
    }
}

/// Rows of JSON objects as a table with the given columns.
pub fn table_of(columns: &[&str], rows: &[Map<String, Value>]) -> DataTable {
    let mut t = DataTable::new(columns);
    for row in rows {
        t.push(
            columns
                .iter()
                .map(|c| row.get(*c).map_or(Datum::Null, datum))
                .collect(),
        );
    }
    t
}

fn rows_of<T: Serialize>(items: &[T]) -> anyhow::Result<Vec<Map<String, Value>>> {
    items
        .iter()
        .map(|i| match serde_json::to_value(i)? {
            Value::Object(m) => Ok(m),
            _ => anyhow::bail!("a row is not an object"),
        })
        .collect()
}

fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub fn print_sql(answer: &SqlAnswer, format: OutputFormat) -> anyhow::Result<()> {
    let names: Vec<&str> = answer.columns.iter().map(|c| c.name.as_str()).collect();
    table_of(&names, &answer.rows).print(format)?;
    if format == OutputFormat::Table {
        eprintln!("{} row(s)", answer.rows.len());
    }
    Ok(())
}

/// A table of rows, then (for people) a summary line on stderr.
fn print_rows(
    columns: &[&str],
    rows: &[Map<String, Value>],
    format: OutputFormat,
    summary: &str,
) -> anyhow::Result<()> {
    table_of(columns, rows).print(format)?;
    if format == OutputFormat::Table {
        eprintln!("{summary}");
    }
    Ok(())
}

/// `--show-sql`: what ran, with its bound values.
fn print_sql_ran(sql: &str, params: &[Value]) {
    eprintln!("{sql}\n-- params: {}", Value::from(params.to_vec()));
}

pub fn print_attribution(
    report: &AttributionReport,
    format: OutputFormat,
    show_sql: bool,
) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return print_json(report);
    }
    let columns = [
        "principal",
        "requests",
        "pct_of_total",
        "success",
        "failed",
        "last_seen",
        "p50_latency_ms",
        "p90_latency_ms",
        "p99_latency_ms",
    ];
    let summary = format!(
        "{} requests by {} from {} to {}",
        report.total,
        report.by.name(),
        report.from,
        report.to
    );
    print_rows(&columns, &rows_of(&report.rows)?, format, &summary)?;
    show_sql.then(|| print_sql_ran(&report.sql, &report.params));
    Ok(())
}

pub fn print_peaks(
    report: &PeaksReport,
    format: OutputFormat,
    show_sql: bool,
) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return print_json(report);
    }
    let columns = [
        "principal",
        "peak",
        "peak_at",
        "p99",
        "p95",
        "mean",
        "windows",
        "recommended_cap",
    ];
    let summary = format!(
        "peak requests per {} window by {} from {} to {}; cap = max(ceil(peak x {}), {})",
        serde_json::to_value(report.window)?.as_str().unwrap_or("?"),
        report.by.name(),
        report.from,
        report.to,
        report.headroom,
        report.floor
    );
    print_rows(&columns, &rows_of(&report.rows)?, format, &summary)?;
    show_sql.then(|| print_sql_ran(&report.sql, &report.params));
    Ok(())
}

pub fn print_simulation(report: &SimulateReport, format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return print_json(report);
    }
    let mut t = DataTable::new(&[
        "cap",
        "limit",
        "principal",
        "breach_windows",
        "limited_requests",
        "first_breach",
        "last_breach",
    ]);
    for outcome in &report.caps {
        let cap = outcome
            .cap
            .principal
            .clone()
            .unwrap_or_else(|| "(default)".into());
        t.push(vec![
            cap.clone().into(),
            outcome.cap.limit.into(),
            "(all)".into(),
            outcome.breach_windows.into(),
            outcome.limited_requests.into(),
            outcome
                .first_breach
                .clone()
                .map_or(Datum::Null, Datum::Text),
            outcome.last_breach.clone().map_or(Datum::Null, Datum::Text),
        ]);
        for b in &outcome.principals {
            t.push(vec![
                cap.clone().into(),
                outcome.cap.limit.into(),
                b.principal.clone().map_or(Datum::Null, Datum::Text),
                b.breach_windows.into(),
                b.limited_requests.into(),
                b.first_breach.clone().into(),
                b.last_breach.clone().into(),
            ]);
        }
    }
    t.print(format)?;
    Ok(())
}
