//! What applications write: ordinary lines in five styles, the occasional
//! oversized line, and the last lines of a crashing instance.

use std::fmt::Write;

use chrono::DateTime;
use rand::Rng;

use super::cluster::{LogStyle, Termination};
use super::rng::{self, GenRng};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn lower(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
    fn upper(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
    fn klog(self) -> char {
        match self {
            Level::Debug | Level::Info => 'I',
            Level::Warn => 'W',
            Level::Error => 'E',
        }
    }
}

/// One line an application printed.
#[derive(Debug, Clone)]
pub struct AppLine {
    pub stderr: bool,
    pub text: String,
}

const PATHS: &[&str] = &[
    "/api/v1/spark/jobs/{n}/runs",
    "/api/v1/sql/queries/{u}/results",
    "/api/v1/catalogs/lakehouse/tables",
    "/api/v1/clusters/{u}/status",
    "/healthz",
];
const UPSTREAMS: &[&str] = &[
    "iom-catalog",
    "iom-identity",
    "postgres",
    "typesense",
    "minio",
];
const USERS: &[&str] = &[
    "alice.chen",
    "svc-airflow",
    "bob.kumar",
    "svc-spark-operator",
    "dana.ortiz",
];

fn pick<'a>(r: &mut GenRng, xs: &[&'a str]) -> &'a str {
    xs[r.random_range(0..xs.len())]
}

fn fill(r: &mut GenRng, template: &str) -> String {
    template
        .replace("{n}", &r.random_range(1000..99_999).to_string())
        .replace("{u}", &rng::uuid(r))
}

fn message(r: &mut GenRng, level: Level) -> String {
    let req = format!("req-{}", rng::hex(r, 6));
    match level {
        Level::Debug => match r.random_range(0..3) {
            0 => format!(
                "gc pause {}ms heap={}MiB",
                r.random_range(1..40),
                r.random_range(300..3800)
            ),
            1 => format!(
                "evaluating policy for user={} action=read request_id={req}",
                pick(r, USERS)
            ),
            _ => format!(
                "cache hit ratio={:.2} entries={}",
                r.random_range(0.5..0.99),
                r.random_range(100..9000)
            ),
        },
        Level::Info => match r.random_range(0..6) {
            0 | 1 => {
                let template = pick(r, PATHS);
                let path = fill(r, template);
                format!(
                    "request completed method=GET path={path} status=200 duration_ms={} request_id={req} client=10.{}.{}.{}",
                    r.random_range(2..400),
                    r.random_range(0..4),
                    r.random_range(0..255),
                    r.random_range(1..255)
                )
            }
            2 => format!(
                "spark job submitted job_id={} app=spark-etl-daily user={}",
                r.random_range(1000..99_999),
                pick(r, USERS)
            ),
            3 => format!(
                "heartbeat ok peers={} lag_ms={}",
                r.random_range(1..5),
                r.random_range(0..50)
            ),
            4 => format!(
                "connected to {} pool={} latency_ms={}",
                pick(r, UPSTREAMS),
                r.random_range(4..32),
                r.random_range(1..9)
            ),
            _ => format!(
                "cache refresh finished entries={} took={}ms",
                r.random_range(100..50_000),
                r.random_range(3..900)
            ),
        },
        Level::Warn => match r.random_range(0..3) {
            0 => format!(
                "slow query took {}ms query_id={} request_id={req}",
                r.random_range(1500..9000),
                rng::uuid(r)
            ),
            1 => format!(
                "retrying request to {} attempt={} request_id={req}",
                pick(r, UPSTREAMS),
                r.random_range(2..5)
            ),
            _ => format!("memory usage at {}% of limit", r.random_range(80..92)),
        },
        Level::Error => match r.random_range(0..3) {
            0 => format!(
                "failed to fetch table metadata from {}: connection reset by peer request_id={req}",
                pick(r, UPSTREAMS)
            ),
            1 => format!(
                "request failed status=503 upstream={} request_id={req}",
                pick(r, UPSTREAMS)
            ),
            _ => format!(
                "token validation failed for user={}: token expired",
                pick(r, USERS)
            ),
        },
    }
}

fn random_level(r: &mut GenRng) -> Level {
    match r.random_range(0..100) {
        0..5 => Level::Debug,
        5..87 => Level::Info,
        87..96 => Level::Warn,
        _ => Level::Error,
    }
}

fn json_escape(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Renders `msg` at `level` in `style`.
pub fn render(style: LogStyle, ts_ns: i64, level: Level, msg: &str, logger: &str) -> AppLine {
    let t = DateTime::from_timestamp(
        ts_ns.div_euclid(1_000_000_000),
        ts_ns.rem_euclid(1_000_000_000) as u32,
    )
    .unwrap_or_default();
    let mut text = String::with_capacity(msg.len() + 80);
    let stderr = match style {
        LogStyle::Json => {
            let _ = write!(
                text,
                "{{\"ts\":\"{}\",\"level\":\"{}\",\"logger\":\"{logger}\",\"msg\":{}}}",
                t.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                level.lower(),
                json_escape(msg)
            );
            false
        }
        LogStyle::Logfmt => {
            let _ = write!(
                text,
                "time={} level={} msg={}",
                t.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                level.lower(),
                json_escape(msg)
            );
            false
        }
        LogStyle::Java => {
            let _ = write!(
                text,
                "{} {:>5} 1 --- [http-nio-8080-exec-{}] {logger} : {msg}",
                t.format("%Y-%m-%d %H:%M:%S%.3f"),
                level.upper(),
                ts_ns.rem_euclid(9) + 1
            );
            matches!(level, Level::Error)
        }
        LogStyle::Klog => {
            let _ = write!(
                text,
                "{}{}       1 controller.go:{}] {msg}",
                level.klog(),
                t.format("%m%d %H:%M:%S%.6f"),
                118 + ts_ns.rem_euclid(200)
            );
            true
        }
        LogStyle::Plain => {
            let _ = write!(
                text,
                "{:<5} {} {msg}",
                level.upper(),
                t.format("%Y/%m/%d %H:%M:%S")
            );
            matches!(level, Level::Warn | Level::Error)
        }
    };
    AppLine { stderr, text }
}

/// An ordinary line: mostly info, some debug, warnings and errors.
pub fn normal_line(r: &mut GenRng, style: LogStyle, ts_ns: i64, logger: &str) -> AppLine {
    let level = random_level(r);
    let msg = message(r, level);
    render(style, ts_ns, level, &msg, logger)
}

/// A line far longer than the runtime's 16 KiB limit, so it is written as
/// partial (`P`) parts: a query plan or payload dump.
pub fn oversized_line(r: &mut GenRng, style: LogStyle, ts_ns: i64, logger: &str) -> AppLine {
    let target = r.random_range(20_000..48_000);
    let mut msg = String::with_capacity(target + 64);
    msg.push_str("query plan dump: ");
    let mut op = 0;
    while msg.len() < target {
        let _ = write!(
            msg,
            "#{op} Project [col_{}#{}L, col_{}#{}] <- Filter (isnotnull(id#{}) AND (ts#{} >= 1795264328)) ",
            r.random_range(0..99),
            r.random_range(0..9999),
            r.random_range(0..99),
            r.random_range(0..9999),
            r.random_range(0..9999),
            r.random_range(0..9999)
        );
        op += 1;
    }
    render(style, ts_ns, Level::Debug, &msg, logger)
}

/// The first lines of a new instance; after a crash the app reports how its
/// previous instance ended (from the downward API / restart bookkeeping).
pub fn startup_lines(
    style: LogStyle,
    ts_ns: i64,
    container: &str,
    restart: i32,
    previous: Option<Termination>,
    logger: &str,
) -> Vec<AppLine> {
    let mut out = vec![render(
        style,
        ts_ns,
        Level::Info,
        &format!("starting {container} version=4.2.1 restart={restart}"),
        logger,
    )];
    if let Some(t) = previous {
        out.push(render(
            style,
            ts_ns + 1_000_000,
            Level::Warn,
            &format!(
                "previous instance terminated: reason={} exit_code={} restart={}",
                t.as_str(),
                t.exit_code(),
                restart - 1
            ),
            logger,
        ));
    }
    out
}

/// What a crashing instance leaves as its last lines.
pub fn crash_tail(
    r: &mut GenRng,
    style: LogStyle,
    ts_ns: i64,
    why: Termination,
    logger: &str,
) -> Vec<AppLine> {
    let plain = |text: &str| AppLine {
        stderr: true,
        text: text.to_string(),
    };
    let mut out = Vec::new();
    let step = 2_000_000; // 2 ms apart
    let mut t = ts_ns;
    let mut next = || {
        t += step;
        t
    };
    match why {
        Termination::OOMKilled => {
            out.push(render(
                style,
                next(),
                Level::Warn,
                "memory usage at 96% of limit (3.9GiB/4.0GiB)",
                logger,
            ));
            out.push(render(
                style,
                next(),
                Level::Warn,
                "GC overhead limit exceeded, heap=3.8GiB",
                logger,
            ));
            if style == LogStyle::Java {
                out.push(plain("Exception in thread \"dispatcher-event-loop-1\" java.lang.OutOfMemoryError: Java heap space"));
                out.push(plain(
                    "\tat java.base/java.util.Arrays.copyOf(Arrays.java:3537)",
                ));
                out.push(plain("\tat org.apache.spark.util.collection.PartitionedPairBuffer.growArray(PartitionedPairBuffer.scala:67)"));
                out.push(plain(
                    "\tat org.apache.spark.scheduler.Task.run(Task.scala:141)",
                ));
            } else {
                out.push(render(
                    style,
                    next(),
                    Level::Error,
                    "allocation failed: out of memory",
                    logger,
                ));
                out.push(plain("fatal error: runtime: out of memory"));
                out.push(plain(""));
                out.push(plain("runtime stack:"));
                out.push(plain("runtime.throw({0x1a2b3c0?, 0x0?})"));
                out.push(plain("\t/usr/local/go/src/runtime/panic.go:1047 +0x5d"));
            }
        }
        Termination::Error => {
            let addr = rng::hex(r, 6);
            out.push(render(
                style,
                next(),
                Level::Error,
                "unexpected nil catalog client, aborting",
                logger,
            ));
            out.push(plain(
                "panic: runtime error: invalid memory address or nil pointer dereference",
            ));
            out.push(plain(&format!(
                "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x{addr}]"
            )));
            out.push(plain(""));
            out.push(plain(&format!(
                "goroutine {} [running]:",
                r.random_range(20..400)
            )));
            out.push(plain("github.com/iomete/platform/pkg/catalog.(*Client).Table(0x0, {0x1d3e2a0, 0xc000412000})"));
            out.push(plain("\t/src/pkg/catalog/client.go:142 +0x1c"));
            out.push(plain("main.main()"));
            out.push(plain("\t/src/cmd/server/main.go:88 +0x2f5"));
        }
    }
    out
}

/// What the operator (a klog controller) logs when it sees another pod's
/// container terminate.
pub fn operator_saw_termination(
    ts_ns: i64,
    namespace: &str,
    pod: &str,
    container: &str,
    why: Termination,
    restart_count: i32,
) -> AppLine {
    render(
        LogStyle::Klog,
        ts_ns,
        Level::Warn,
        &format!(
            "pod {namespace}/{pod} container {container} terminated: {} exit_code={} restartCount={restart_count}",
            why.as_str(),
            why.exit_code()
        ),
        "operator",
    )
}
