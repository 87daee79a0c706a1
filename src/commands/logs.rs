//! `sluice logs search` and `sluice logs tail`: the log index from the
//! command line, through a server or straight from the warehouse.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sluice_query::logsearch::search::{Hit, LogLine, SearchResult};

use clap::{Args, Subcommand};

use crate::commands::query::{Backend, ServerArgs};
use crate::config::Config;
use crate::output::OutputFormat;

/// Which container instance of a pod: a restart number, `current` (the
/// newest) or `previous` (the one before it, e.g. the instance that was
/// OOMKilled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartChoice {
    Number(i64),
    Current,
    Previous,
}

impl std::str::FromStr for RestartChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "current" => Ok(Self::Current),
            "previous" => Ok(Self::Previous),
            n => n
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(Self::Number)
                .ok_or_else(|| format!("{n:?} is neither a restart number, current nor previous")),
        }
    }
}

/// Which lines: the pod filters both log commands take.
#[derive(Debug, Args)]
pub struct LogFilterArgs {
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    #[arg(long, short = 'p')]
    pub pod: Option<String>,
    #[arg(long, short = 'c')]
    pub container: Option<String>,
    /// A restart number, `current` or `previous` (needs --pod)
    #[arg(long, value_name = "N|current|previous")]
    pub restart: Option<RestartChoice>,
    /// stdout or stderr
    #[arg(long)]
    pub stream: Option<String>,
    #[arg(long)]
    pub level: Option<String>,
    #[arg(long)]
    pub node: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum LogsAction {
    /// Search every line of every container instance, newest first
    Search {
        /// Terms, "phrases", AND/OR/NOT, field:value; empty or * for every line
        #[arg(default_value = "")]
        query: String,
        #[command(flatten)]
        filters: LogFilterArgs,
        /// Start: RFC 3339 or a span back from now (24h, 7d)
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// End: RFC 3339 or a span back from now [default: now]
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        /// Lines to show
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Oldest first instead of newest first
        #[arg(long)]
        oldest_first: bool,
        /// Lines of context before and after each hit (same instance)
        #[arg(long, short = 'C', default_value_t = 0)]
        context: usize,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The last lines of one container instance (also one that no longer runs)
    Tail {
        #[command(flatten)]
        filters: LogFilterArgs,
        /// Lines to show
        #[arg(long, default_value_t = 50)]
        lines: usize,
        /// Keep printing new lines: live, as the pipeline reads them, through
        /// --server (restarts and terminations shown as they happen);
        /// without it, as the index gets them (a second or two later)
        #[arg(long, short = 'f')]
        follow: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

fn push(pairs: &mut Vec<(String, String)>, name: &str, value: &Option<String>) {
    if let Some(v) = value {
        pairs.push((name.to_string(), v.clone()));
    }
}

pub async fn run(action: LogsAction, config: &Config) -> anyhow::Result<()> {
    match action {
        LogsAction::Search {
            query,
            filters,
            since,
            to,
            limit,
            oldest_first,
            context,
            server,
        } => {
            let backend =
                Backend::open(config, server.server.clone(), server.token.clone()).await?;
            let mut pairs = filter_pairs(&backend, &filters).await?;
            pairs.push(("q".into(), query));
            push(&mut pairs, "from", &since);
            push(&mut pairs, "to", &to);
            pairs.push(("limit".into(), limit.to_string()));
            if oldest_first {
                pairs.push(("order".into(), "asc".into()));
            }
            if context > 0 {
                pairs.push(("context".into(), context.to_string()));
            }
            let result = backend.log_search(&pairs).await?;
            print_result(&result, server.format)?;
            if server.format == OutputFormat::Table {
                let more = if result.next_cursor.is_some() {
                    " (raise --limit or narrow the search for more)"
                } else {
                    ""
                };
                eprintln!(
                    "{} of {} matching lines{more}",
                    result.hits.len(),
                    result.total
                );
            }
            Ok(())
        }
        LogsAction::Tail {
            filters,
            lines,
            follow,
            server,
        } => tail(config, &filters, lines, follow, &server).await,
    }
}

/// The filters as search parameters; `--restart current|previous` resolved
/// to a number from the pod's instances.
async fn filter_pairs(
    backend: &Backend,
    f: &LogFilterArgs,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    push(&mut pairs, "pod", &f.pod);
    push(&mut pairs, "container", &f.container);
    push(&mut pairs, "stream", &f.stream);
    push(&mut pairs, "level", &f.level);
    push(&mut pairs, "node", &f.node);
    let mut namespace = f.namespace.clone();
    let restart = match &f.restart {
        None => None,
        Some(RestartChoice::Number(n)) => Some(*n),
        Some(choice) => {
            let pod = f
                .pod
                .as_deref()
                .context("--restart current/previous needs --pod")?;
            let ns = match &namespace {
                Some(ns) => ns.clone(),
                None => find_namespace(backend, pod).await?,
            };
            let mut instances = backend.log_restarts(&ns, pod).await?.instances;
            if let Some(c) = &f.container {
                instances.retain(|i| &i.container == c);
            }
            let containers: std::collections::BTreeSet<&str> =
                instances.iter().map(|i| i.container.as_str()).collect();
            if containers.len() > 1 {
                anyhow::bail!(
                    "pod {ns}/{pod} has several containers ({}); choose one with --container",
                    containers.into_iter().collect::<Vec<_>>().join(", ")
                );
            }
            let mut numbers: Vec<i64> = instances.iter().map(|i| i.restart).collect();
            numbers.sort_unstable();
            numbers.dedup();
            namespace = Some(ns.clone());
            let picked = match choice {
                RestartChoice::Current => numbers.last().copied(),
                _ => numbers.len().checked_sub(2).map(|i| numbers[i]),
            };
            Some(picked.with_context(|| {
                format!(
                    "pod {ns}/{pod} has {} indexed instance(s): no {} one",
                    numbers.len(),
                    if *choice == RestartChoice::Current {
                        "current"
                    } else {
                        "previous"
                    }
                )
            })?)
        }
    };
    push(&mut pairs, "namespace", &namespace);
    if let Some(r) = restart {
        pairs.push(("restart".into(), r.to_string()));
    }
    Ok(pairs)
}

/// The namespace of a pod name, from its newest indexed line.
async fn find_namespace(backend: &Backend, pod: &str) -> anyhow::Result<String> {
    let pairs = vec![
        ("pod".to_string(), pod.to_string()),
        ("limit".to_string(), "1".to_string()),
    ];
    let found = backend.log_search(&pairs).await?;
    found
        .hits
        .first()
        .map(|h| h.line.namespace.clone())
        .with_context(|| {
            format!("no indexed lines of a pod named {pod:?}; check --pod or pass --namespace")
        })
}

async fn tail(
    config: &Config,
    f: &LogFilterArgs,
    lines: usize,
    follow: bool,
    server: &ServerArgs,
) -> anyhow::Result<()> {
    if f.pod.is_none() && f.namespace.is_none() {
        anyhow::bail!("say whose logs to tail: --pod (and --namespace, --container, --restart)");
    }
    let backend = Backend::open(config, server.server.clone(), server.token.clone()).await?;
    let mut base = filter_pairs(&backend, f).await?;
    if follow && let Backend::Remote(s) = &backend {
        // Following the current instance follows the next ones too.
        if matches!(f.restart, None | Some(RestartChoice::Current)) {
            base.retain(|(k, _)| k != "restart");
        }
        return follow_live(s, base, lines, server.format).await;
    }
    let mut pairs = base.clone();
    pairs.push(("limit".into(), lines.to_string()));
    let mut result = backend.log_search(&pairs).await?;
    result.hits.reverse();
    print_result(&result, server.format)?;
    if !follow {
        return Ok(());
    }
    // New lines: oldest first from just after the last one shown.
    let mut last = result
        .hits
        .last()
        .map(|h| (h.line.ts, h.line.line_id.clone()));
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut pairs = base.clone();
        pairs.push(("order".into(), "asc".into()));
        pairs.push(("limit".into(), "1000".into()));
        if let Some((ts, id)) = &last {
            pairs.push((
                "cursor".into(),
                sluice_query::logsearch::search::Cursor {
                    ts: *ts,
                    line_id: id.clone(),
                }
                .encode(),
            ));
        }
        let page = backend.log_search(&pairs).await?;
        if let Some(h) = page.hits.last() {
            last = Some((h.line.ts, h.line.line_id.clone()));
        }
        print_result(&page, server.format)?;
    }
}

/// `tail -f` through a server: its live stream (`/v1/logs/tail`), lines
/// as the pipeline reads them, restarts and terminations as notices.
async fn follow_live(
    server: &crate::commands::query::Server,
    mut pairs: Vec<(String, String)>,
    lines: usize,
    format: OutputFormat,
) -> anyhow::Result<()> {
    pairs.push(("lines".into(), lines.to_string()));
    let mut response = server.open_stream("/v1/logs/tail", &pairs).await?;
    if format == OutputFormat::Csv {
        let mut w = csv::Writer::from_writer(std::io::stdout());
        w.write_record(CSV_HEADER)?;
        w.flush()?;
    }
    let mut buf = Vec::new();
    while let Some(chunk) = response.chunk().await.context("reading the live tail")? {
        buf.extend_from_slice(&chunk);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let event: Vec<u8> = buf.drain(..=i).collect();
            print_event(&event[..i], format)?;
        }
    }
    anyhow::bail!("the server ended the live tail (did it stop?)")
}

fn ending(t: &serde_json::Value) -> String {
    let reason = t["reason"].as_str().unwrap_or("ended");
    match t["exit_code"].as_i64() {
        Some(code) => format!("{reason}, exit code {code}"),
        None => reason.to_string(),
    }
}

/// One event of the live stream, printed; `closed` ends the command.
fn print_event(event: &[u8], format: OutputFormat) -> anyhow::Result<()> {
    let v: serde_json::Value =
        serde_json::from_slice(event).context("reading an event of the live tail")?;
    let kind = v["type"].as_str().unwrap_or_default();
    let notice = |text: String| -> anyhow::Result<()> {
        match format {
            OutputFormat::Table => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "── {text}")?;
                out.flush()?;
            }
            // JSON prints every event as it came; CSV keeps to lines.
            OutputFormat::Json => {}
            OutputFormat::Csv => eprintln!("── {text}"),
        }
        Ok(())
    };
    if format == OutputFormat::Json && kind != "heartbeat" {
        let mut out = std::io::stdout().lock();
        out.write_all(event)?;
        writeln!(out)?;
        out.flush()?;
    }
    match kind {
        "lines" if format != OutputFormat::Json => {
            let lines: Vec<LogLine> = serde_json::from_value(v["lines"].clone())
                .context("reading the lines of the live tail")?;
            let hits: Vec<Hit> = lines
                .into_iter()
                .map(|line| Hit {
                    line,
                    context: None,
                })
                .collect();
            print_lines(&hits, format)?;
        }
        "restart" => {
            let mut text = format!(
                "{}/{} {}: restart {} started",
                v["namespace"].as_str().unwrap_or_default(),
                v["pod"].as_str().unwrap_or_default(),
                v["container"].as_str().unwrap_or_default(),
                v["restart"]
            );
            if v["previous"].is_object() {
                text.push_str(&format!(
                    " (the previous instance ended: {})",
                    ending(&v["previous"])
                ));
            }
            notice(text)?;
        }
        "ended" => notice(format!(
            "{}/{} {}{}: ended: {}",
            v["namespace"].as_str().unwrap_or_default(),
            v["pod"].as_str().unwrap_or_default(),
            v["container"].as_str().unwrap_or_default(),
            v["restart"]
                .as_i64()
                .map(|r| format!("#{r}"))
                .unwrap_or_default(),
            ending(&v)
        ))?,
        "dropped" => eprintln!(
            "sluice: {} lines were dropped: this terminal did not keep up with the stream",
            v["count"]
        ),
        "behind" => eprintln!(
            "sluice: the server's tail fell behind the live stream ({} messages skipped)",
            v["skipped_messages"]
        ),
        "closed" => anyhow::bail!(
            "the server closed the live tail: {}",
            v["reason"].as_str().unwrap_or("no reason given")
        ),
        _ => {}
    }
    Ok(())
}

fn time(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_else(|| us.to_string())
}

fn line_text(l: &LogLine) -> String {
    format!(
        "{} {}/{} {}#{} {:<5} {}",
        time(l.ts),
        l.namespace,
        l.pod,
        l.container,
        l.restart,
        l.level.as_deref().unwrap_or("-"),
        l.message
    )
}

fn print_hit(out: &mut dyn Write, h: &Hit) -> std::io::Result<()> {
    if let Some(c) = &h.context {
        for l in &c.before {
            writeln!(out, "  {}", line_text(l))?;
        }
    }
    writeln!(out, "{}", line_text(&h.line))?;
    if let Some(c) = &h.context {
        for l in &c.after {
            writeln!(out, "  {}", line_text(l))?;
        }
        writeln!(out, "--")?;
    }
    Ok(())
}

const CSV_HEADER: [&str; 9] = [
    "ts",
    "namespace",
    "pod",
    "container",
    "restart",
    "stream",
    "level",
    "message",
    "line_id",
];

fn print_result(result: &SearchResult, format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Csv {
        let mut w = csv::Writer::from_writer(std::io::stdout().lock());
        w.write_record(CSV_HEADER)?;
        w.flush()?;
    }
    print_lines(&result.hits, format)
}

/// Hits in `format` (CSV without its header), flushed.
fn print_lines(hits: &[Hit], format: OutputFormat) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match format {
        OutputFormat::Table => {
            for h in hits {
                print_hit(&mut out, h)?;
            }
            out.flush()?;
        }
        OutputFormat::Json => {
            serde_json::to_writer(&mut out, hits)?;
            writeln!(out)?;
            out.flush()?;
        }
        OutputFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            for h in hits {
                let l = &h.line;
                w.write_record([
                    time(l.ts),
                    l.namespace.clone(),
                    l.pod.clone(),
                    l.container.clone(),
                    l.restart.to_string(),
                    l.stream.clone(),
                    l.level.clone().unwrap_or_default(),
                    l.message.clone(),
                    l.line_id.clone(),
                ])?;
            }
            w.flush()?;
        }
    }
    Ok(())
}
