mod cli;

use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Parser;
use sluice::config::{Config, LogFormat, Overrides};
use sluice::generator::{self, GenConfig};
use sluice::output::{DataTable, Datum};
use sluice::progress::Progress;

use cli::{Cli, Command, GenArgs, GuardrailsAction};
use sluice::commands;
use sluice::commands::query::{self, Backend};

/// jemalloc, not glibc's malloc: see `sluice::memory` for why (RSS that
/// grows with freed memory kept in per-thread arenas) and the figures it
/// reports.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2 (0 for --help/--version).
    let cli = Cli::parse();
    let overrides = Overrides {
        config: cli.common.config.clone(),
        data_dir: cli.common.data_dir.clone(),
        kafka: cli.common.kafka.clone(),
        http: cli.common.http.clone(),
        log_format: cli.common.log_format,
    };
    let config = match Config::load(&overrides, std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            return ExitCode::from(2);
        }
    };
    init_tracing(config.log_format);
    match run(cli.command, &config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, outermost first.
            eprintln!("sluice: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn run(command: Command, config: &Config) -> anyhow::Result<()> {
    tracing::debug!(role = command.name(), data_dir = %config.data_dir.display(), "starting");
    match command {
        Command::Gen(args) => gen_command(args),
        Command::Write => runtime()?.block_on(commands::write::run(config)),
        Command::Collect(args) => {
            let mut config = config.clone();
            let c = &mut config.collector;
            if let Some(root) = args.pods_root {
                c.pods_root = root;
            }
            c.pod_logs &= !args.no_pod_logs;
            c.kubernetes |= args.kubernetes;
            if args.kubeconfig.is_some() {
                c.kubeconfig = args.kubeconfig;
            }
            if let Some(node) = args.node.or_else(|| std::env::var("NODE_NAME").ok()) {
                config.node = Some(node);
            }
            runtime()?.block_on(commands::collect::run(&config))
        }
        Command::Import(args) => runtime()?.block_on(commands::import::run(
            config,
            commands::import::ImportOptions {
                dir: args.dir,
                directory: args.directory,
                format: args.format,
            },
        )),
        Command::Serve => runtime()?.block_on(commands::serve::run(config)),
        Command::Maintain(args) => runtime()?.block_on(commands::maintain::run(config, args.once)),
        Command::Up(args) => runtime()?.block_on(commands::up::run(
            config,
            commands::up::UpOptions {
                demo: args.demo,
                demo_load: args.demo_load,
                demo_spike_minute: args.demo_spike_minute,
                index_interval: std::time::Duration::from_secs(1),
            },
        )),
        Command::Index(args) => runtime()?.block_on(commands::index::run(
            config,
            commands::index::IndexOptions {
                rebuild: args.rebuild,
                from: args.from,
                once: args.once,
                interval: std::time::Duration::from_secs_f64(args.interval.clamp(0.05, 3600.0)),
                merge_at: usize::from(args.merge_at),
                memory_budget: (args.memory_mib as usize) << 20,
                threads: usize::from(args.threads),
            },
        )),
        Command::Sql(args) => runtime()?.block_on(async {
            let backend = Backend::open(config, args.server.server, args.server.token).await?;
            let answer = backend.sql(&args.sql).await?;
            query::print_sql(&answer, args.server.format)
        }),
        Command::Attribution(args) => runtime()?.block_on(async {
            let mut pairs = vec![("by".to_string(), args.by.clone())];
            pairs.extend(args.range.pairs());
            cli::push(&mut pairs, "action", &args.action);
            cli::push(&mut pairs, "endpoint", &args.endpoint);
            cli::push(&mut pairs, "caller_type", &args.caller_type);
            cli::push(&mut pairs, "limit", &args.limit);
            let backend = Backend::open(config, args.server.server, args.server.token).await?;
            let report = backend.attribution(&pairs).await?;
            query::print_attribution(&report, args.server.format, args.show_sql)
        }),
        Command::Guardrails(args) => runtime()?.block_on(guardrails_command(args.action, config)),
        Command::Logs(args) => runtime()?.block_on(commands::logs::run(args.action, config)),
        Command::Config => {
            // Secrets stay out of terminals, logs and support tickets.
            let text =
                toml::to_string_pretty(&config.redacted()).context("rendering configuration")?;
            print!("{text}");
            Ok(())
        }
    }
}

async fn guardrails_command(action: GuardrailsAction, config: &Config) -> anyhow::Result<()> {
    match action {
        GuardrailsAction::Peaks {
            scope,
            limit,
            show_sql,
            server,
        } => {
            let mut pairs = scope.pairs();
            cli::push(&mut pairs, "limit", &limit);
            let backend = Backend::open(config, server.server, server.token).await?;
            let report = backend.peaks(&pairs).await?;
            query::print_peaks(&report, server.format, show_sql)
        }
        GuardrailsAction::Simulate {
            scope,
            caps,
            server,
        } => {
            let caps = caps
                .iter()
                .map(|c| parse_cap(c))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let request = sluice_query::guardrails::SimulateRequest {
                by: Some(scope.by.clone()),
                window: Some(scope.window.clone()),
                since: scope.range.since.clone(),
                from: None,
                to: scope.range.to.clone(),
                service: scope.range.service.clone(),
                caps,
            };
            let backend = Backend::open(config, server.server, server.token).await?;
            let report = backend.simulate(&request).await?;
            query::print_simulation(&report, server.format)
        }
        GuardrailsAction::Export {
            scope,
            domain,
            server,
        } => {
            let mut pairs = scope.pairs();
            pairs.push(("format".into(), "envoy".into()));
            pairs.push(("domain".into(), domain));
            let backend = Backend::open(config, server.server, server.token).await?;
            print!("{}", backend.export(&pairs).await?);
            Ok(())
        }
    }
}

/// `100` (the default cap) or `alice=100`.
fn parse_cap(text: &str) -> anyhow::Result<sluice_query::guardrails::Cap> {
    let (principal, limit) = match text.rsplit_once('=') {
        Some((p, l)) => (Some(p.to_string()), l),
        None => (None, text),
    };
    let limit = limit.trim().parse().with_context(|| {
        format!("--cap {text:?}: expected LIMIT or PRINCIPAL=LIMIT with a whole number")
    })?;
    Ok(sluice_query::guardrails::Cap { principal, limit })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn gen_command(args: GenArgs) -> anyhow::Result<()> {
    let until = match &args.until {
        Some(t) => DateTime::parse_from_rfc3339(t)
            .with_context(|| format!("--until {t:?} is not an RFC 3339 time"))?
            .with_timezone(&Utc),
        None => Utc::now(),
    };
    let cfg = GenConfig {
        out: args.out.clone(),
        pods: args.pods,
        events: args.events,
        days: args.days,
        until,
        seed: args.seed,
        cluster: args.cluster.clone(),
        lines_per_pod_day: args.lines_per_pod_day,
        rotate_bytes: args.rotate_bytes,
        force: args.force,
        events_part: 0,
    };
    let progress = Progress::new("lines+events");
    let started = std::time::Instant::now();
    let manifest = generator::generate(&cfg, &|n| progress.add(n), &|t| progress.set_total(t));
    progress.finish();
    let manifest = manifest?;
    let t = &manifest.totals;
    let mut table = DataTable::new(&["item", "count"]);
    let rows: [(&str, Datum); 13] = [
        ("pods", t.pods.into()),
        ("container instances", t.instances.into()),
        ("restarts", t.restarts.into()),
        ("log files", t.log_files.into()),
        (
            "rotated files (gzipped)",
            format!("{} ({})", t.rotated_files, t.gzipped_files).into(),
        ),
        ("log lines", t.log_lines.into()),
        ("partial lines", t.partial_lines.into()),
        ("log bytes", t.log_bytes.into()),
        ("events", t.events.into()),
        ("event bytes", t.event_bytes.into()),
        ("lifecycle events", t.lifecycle_events.into()),
        ("spikes", manifest.spikes.len().to_string().into()),
        (
            "seconds",
            format!("{:.1}", started.elapsed().as_secs_f64()).into(),
        ),
    ];
    for (item, count) in rows {
        table.push(vec![item.into(), count]);
    }
    table.print(args.format)?;
    if args.format == sluice::output::OutputFormat::Table {
        eprintln!(
            "window {} .. {}; wrote {}",
            manifest.window_start,
            manifest.until,
            args.out.join("manifest.json").display()
        );
    }
    Ok(())
}
