//! The fault-injection suite (`scripts/chaos`; docs/faults.md).
//!
//! A distributed deployment — the collector tailing a generated cluster's
//! pod logs and taking events over HTTP, two writers in one consumer group,
//! the indexer and the maintainer, on a broker of its own (nisshi on SQLite
//! storage) and an S3 warehouse of its own (SeaweedFS) — and beside it a
//! `sluice up --demo`, all under live writes, take faults at random
//! moments: `kill -9` of any role (some writers started to die exactly
//! between their data files and their commit), broker restarts and an
//! outage, an object-store outage, a zombie writer frozen past its session
//! and thawed, and sluice's own disk (a tmpfs: mounting it needs root, as
//! CI runs the suite) filled to the last byte. Then every table is held against the ground truth: every
//! line on disk and every acknowledged event exactly once (by id and
//! count), the index count equal to the table's, dead letters equal to the
//! invalid records injected, and `up`'s tables equal to what its demo wrote.
//!
//! Settings (environment): `SLUICE_CHAOS_KILLS` (default 12: the CI mode;
//! `scripts/chaos --long` runs 120), `SLUICE_CHAOS_OUTAGE_SECS` (default 6;
//! long: 30), `SLUICE_CHAOS_SEED` (default: the clock; printed, so a run
//! can be replayed), `SLUICE_CHAOS_REPORT` (a file for the verdict).
//! The run prints its fault history as it goes and keeps its directory —
//! every process's log — when it fails.

mod common;
#[path = "chaos/feed.rs"]
mod feed;
#[path = "chaos/procs.rs"]
mod procs;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use sluice::generator::{self, GenConfig};
use sluice_testkit::TestTopic;
use sluice_warehouse::append::ABORT_BEFORE_COMMIT_ENV;

use common::up::{catch_up_exactly, count, logical_lines, wait_for};
use procs::Role;

/// Events produced straight to the topic, and the invalid ones among them.
const DIRECT_GOOD: usize = 400;
const DIRECT_BAD: usize = 25;
/// The writers' consumer-group session: a frozen writer is out after it.
const SESSION: Duration = Duration::from_secs(6);

struct Settings {
    kills: usize,
    outage: Duration,
    seed: u64,
}

impl Settings {
    fn from_env() -> Settings {
        let num = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .map(|v| v.parse().unwrap_or_else(|e| panic!("{name}={v}: {e}")))
                .unwrap_or(default)
        };
        let clock = Utc::now().timestamp_micros() as u64;
        Settings {
            kills: num("SLUICE_CHAOS_KILLS", 12) as usize,
            outage: Duration::from_secs(num("SLUICE_CHAOS_OUTAGE_SECS", 6)),
            seed: num("SLUICE_CHAOS_SEED", clock),
        }
    }
}

/// xorshift64*: reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

/// The run's directory: removed when the run passes, kept (with every
/// process's log and the history) when it fails.
struct RunDir(PathBuf);

impl Drop for RunDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "chaos: FAILED — the history and every process's log are kept in {}",
                self.0.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The fault history, printed as it happens and kept in `history.txt`.
struct History {
    start: Instant,
    file: std::fs::File,
}

impl History {
    fn note(&mut self, what: impl AsRef<str>) {
        let line = format!(
            "{:>8.1}s  {}",
            self.start.elapsed().as_secs_f64(),
            what.as_ref()
        );
        eprintln!("chaos {line}");
        let _ = writeln!(self.file, "{line}");
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Special {
    BrokerRestart,
    BrokerOutage,
    S3Outage,
    Zombie,
    FullDisk,
}

#[test]
fn random_faults_lose_and_duplicate_nothing() {
    let settings = Settings::from_env();
    let mut rng = Rng(settings.seed | 1);
    let run = RunDir(
        tempfile::Builder::new()
            .prefix("sluice-chaos-")
            .tempdir()
            .unwrap()
            .keep(),
    );
    let dir = run.0.clone();
    let mut history = History {
        start: Instant::now(),
        file: std::fs::File::create(dir.join("history.txt")).unwrap(),
    };
    history.note(format!(
        "seed {} ({} kills, outages of {:?}) in {}",
        settings.seed,
        settings.kills,
        settings.outage,
        dir.display()
    ));

    // The services of the run's own, on fixed ports.
    let mut broker = procs::broker(&dir);
    broker.start();
    let bootstrap = format!("127.0.0.1:{}", broker.port);
    let mut s3 = procs::s3(&dir);
    s3.role.start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let topics: Vec<TestTopic> = rt.block_on(async {
        let mut t = Vec::new();
        for (name, partitions) in [("events", 2), ("podlogs", 2), ("k8s", 1), ("dlq", 1)] {
            t.push(TestTopic::create_on(&bootstrap, name, partitions).await);
        }
        t
    });
    let (events, podlogs, k8s, dlq) = (&topics[0], &topics[1], &topics[2], &topics[3]);

    // The cluster: a day of generated pod logs, and events straight to
    // Kafka with invalid ones among them.
    let gen_dir = dir.join("gen");
    let manifest = generator::generate(
        &GenConfig {
            out: gen_dir.clone(),
            pods: 3,
            events: 10,
            days: 1,
            until: Utc::now(),
            seed: settings.seed,
            cluster: "chaos".into(),
            lines_per_pod_day: 2000,
            rotate_bytes: 256 << 10,
            force: false,
            events_part: 0,
        },
        &|_| {},
        &|_| {},
    )
    .unwrap();
    let pods_root = gen_dir.join("var/log/pods");
    let direct = dir.join("direct.ndjson");
    feed::direct_events(&direct, DIRECT_GOOD, DIRECT_BAD);
    let produced = common::produce_lines(&bootstrap, &events.name, &[direct]);
    assert_eq!(produced as usize, DIRECT_GOOD + DIRECT_BAD);
    history.note(format!(
        "generated {} pod log lines; produced {DIRECT_GOOD} events and {DIRECT_BAD} invalid ones to Kafka",
        manifest.totals.log_lines
    ));

    // The roles.
    let config = dir.join("writer.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka.properties]\n\"session.timeout.ms\" = \"{}\"\n\"heartbeat.interval.ms\" = \"500\"\n\
             [writer]\nmax_age_ms = 200\nmax_rows = 1000\n",
            SESSION.as_millis()
        ),
    )
    .unwrap();
    let mut env: Vec<(&'static str, String)> = vec![
        ("SLUICE_KAFKA__TOPICS__EVENTS", events.name.clone()),
        ("SLUICE_KAFKA__TOPICS__PODLOGS", podlogs.name.clone()),
        ("SLUICE_KAFKA__TOPICS__K8S", k8s.name.clone()),
        ("SLUICE_KAFKA__TOPICS__DLQ", dlq.name.clone()),
        ("SLUICE_KAFKA__GROUP_ID", "chaos-writers".into()),
        (
            "SLUICE_ENRICH__DIRECTORY",
            gen_dir.join("directory.yaml").display().to_string(),
        ),
        ("SLUICE_MAINTENANCE__INTERVAL_SECS", "10".into()),
        ("SLUICE_LOG", "info".into()),
    ];
    env.extend(s3.warehouse_env());
    // sluice's own disk — the writers' catalog and index work, the
    // collector's checkpoints, all of `up` — a tmpfs the run fills; the
    // node's pod logs and the object store live elsewhere, as on a node.
    let disk = common::disk::Tmpfs::mount(&dir.join("disk"), "2g");
    let data_dir = disk.0.join("data");
    let sluice = |data: PathBuf, args: Vec<String>, config: Option<PathBuf>| {
        let (env, bootstrap) = (env.clone(), bootstrap.clone());
        move || {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
            cmd.arg("--data-dir")
                .arg(&data)
                .args(["--kafka", &bootstrap])
                .args(&args)
                .env_remove("SLUICE_CONFIG")
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
            if let Some(c) = &config {
                cmd.env("SLUICE_CONFIG", c);
            }
            cmd
        }
    };
    let role = |name: &'static str, data: &Path, args: &[&str], config: Option<PathBuf>| {
        let port = procs::free_port();
        let mut all = vec!["--http".to_string(), format!("127.0.0.1:{port}")];
        all.extend(args.iter().map(|a| a.to_string()));
        Role::new(name, &dir, port, sluice(data.to_path_buf(), all, config))
    };
    let pods_arg = pods_root.display().to_string();
    let collector_dir = disk.0.join("collector");
    let up_dir = disk.0.join("up");
    let mut roles = vec![
        role("writer-a", &data_dir, &["write"], Some(config.clone())),
        role("writer-b", &data_dir, &["write"], Some(config.clone())),
        role(
            "collector",
            &collector_dir,
            &["collect", "--node", "chaos-node", "--pods-root", &pods_arg],
            None,
        ),
        role("indexer", &data_dir, &["index", "--interval", "0.5"], None),
        role("maintainer", &data_dir, &["maintain"], None),
    ];
    let up_port = procs::free_port();
    let up_addr = format!("127.0.0.1:{up_port}");
    {
        let (up_dir, up_addr) = (up_dir.clone(), up_addr.clone());
        roles.push(Role::new("up", &dir, up_port, move || {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
            cmd.arg("--data-dir")
                .arg(&up_dir)
                .args(["--http", &up_addr, "up", "--demo"])
                .env_remove("SLUICE_CONFIG")
                .env("SLUICE_LOG", "info");
            cmd
        }));
    }
    for r in &mut roles {
        r.start();
    }
    let intake_addr = format!("127.0.0.1:{}", roles[2].port);
    history.note("every role up: writer-a, writer-b, collector, indexer, maintainer, up --demo");

    // Live writes until the faults are over.
    let stop = Arc::new(AtomicBool::new(false));
    let lines = feed::pod_log_writer(&pods_root, 5, stop.clone());
    let poster = feed::intake_poster(intake_addr, 40, stop.clone());

    // The faults.
    let mut specials = vec![
        Special::BrokerRestart,
        Special::BrokerOutage,
        Special::S3Outage,
        Special::Zombie,
        Special::FullDisk,
    ];
    for i in (1..specials.len()).rev() {
        specials.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let special_every = (settings.kills / (specials.len() + 1)).max(1);
    let mut next_special = special_every;
    let mut kills: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failpoints = 0usize;
    let mut exits = Exits::default();
    let mut done = Vec::new();
    loop {
        exits.look(&mut roles, &mut history);
        let total: usize = kills.values().sum();
        if total >= settings.kills && specials.is_empty() {
            break;
        }
        std::thread::sleep(rng.millis(300, 2500));
        if total >= next_special
            && let Some(special) = specials.pop()
        {
            next_special += special_every;
            match special {
                Special::BrokerRestart => {
                    broker.kill9();
                    history.note("kill -9 broker; started again at once");
                    broker.start();
                }
                Special::BrokerOutage => {
                    broker.kill9();
                    history.note(format!("kill -9 broker: down for {:?}", settings.outage));
                    std::thread::sleep(settings.outage);
                    broker.start();
                    history.note("broker back");
                }
                Special::S3Outage => {
                    s3.role.kill9();
                    history.note(format!(
                        "kill -9 the object store (SeaweedFS): down for {:?}",
                        settings.outage
                    ));
                    std::thread::sleep(settings.outage);
                    s3.role.start();
                    history.note("object store back");
                }
                Special::FullDisk => {
                    let filler = common::disk::fill(&disk.0);
                    history.note(format!(
                        "sluice's disk (catalog, checkpoints, index work, up's WAL and warehouse) full for {:?}",
                        settings.outage
                    ));
                    std::thread::sleep(settings.outage);
                    std::fs::remove_file(&filler).unwrap();
                    history.note("disk space back");
                }
                Special::Zombie => {
                    let w = rng.below(2) as usize;
                    if !roles[w].running() {
                        roles[w].start();
                    }
                    roles[w].signal("STOP");
                    let frozen = SESSION + Duration::from_secs(6);
                    history.note(format!(
                        "SIGSTOP {} for {frozen:?} (its group session is {SESSION:?})",
                        roles[w].name
                    ));
                    std::thread::sleep(frozen);
                    roles[w].signal("CONT");
                    history.note(format!("SIGCONT {}: a zombie now", roles[w].name));
                }
            }
            done.push(special);
            continue;
        }
        let r = rng.below(roles.len() as u64) as usize;
        let pid = roles[r].pid();
        roles[r].kill9();
        exits.failpointed.remove(roles[r].name);
        *kills.entry(roles[r].name).or_default() += 1;
        history.note(format!(
            "kill -9 {} (pid {})",
            roles[r].name,
            pid.map_or("-".into(), |p| p.to_string())
        ));
        std::thread::sleep(rng.millis(0, 1500));
        // Some writers start to die at their n-th commit, between writing
        // its data files and committing them.
        if roles[r].name.starts_with("writer") && rng.below(3) == 0 {
            let at = 1 + rng.below(4);
            roles[r].spawn_with(&[(ABORT_BEFORE_COMMIT_ENV, at.to_string())]);
            exits.failpointed.insert(roles[r].name);
            failpoints += 1;
            history.note(format!(
                "{} started to die at its commit {at}, after its data files are written",
                roles[r].name
            ));
        } else {
            roles[r].spawn_with(&[]);
        }
    }

    // Quiet: everything running, the live writes stopped and counted.
    exits.look(&mut roles, &mut history);
    for r in &mut roles {
        if !r.running() {
            r.spawn_with(&[]);
        }
        r.wait_listening(Duration::from_secs(120));
    }
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let lines_written = lines.join().expect("the pod log writer");
    let posted = poster.join().expect("the intake poster");
    let total_kills: usize = kills.values().sum();
    let (failpoint_deaths, own_exits) = (exits.failpoint_deaths, exits.own_exits);
    history.note(format!(
        "faults over: {total_kills} kill -9 ({kills:?}), {failpoints} writers started to die mid-commit ({failpoint_deaths} did), \
         {done:?}; {lines_written} live lines written, {} events acknowledged by the intake after {} retries",
        posted.events, posted.retries
    ));

    // `up`: its demo's files and write-ahead logs against its tables.
    let up_index = roles.iter().position(|r| r.name == "up").unwrap();
    roles[up_index].kill9();
    let mut up = catch_up_exactly(&up_dir, &up_addr);
    assert!(up.terminate().success());
    history.note("up --demo: every line, event and lifecycle event on its disk exactly once");

    // The distributed tables against the ground truth.
    let want_lines = logical_lines(&pods_root);
    let want_events = posted.events + DIRECT_GOOD as u64;
    let (_serve, addr) =
        common::spawn_role(&data_dir, &["--kafka", bootstrap.as_str()], "serve", &env);
    let count_of = |q: &str| count(&addr, q);
    let search_total = || {
        let r = common::up::get_json(&addr, "/v1/logs/search?q=&limit=1");
        r["total"].as_u64().unwrap_or(0)
    };
    wait_for(
        "the tables and the index to catch up",
        Duration::from_secs(300),
        || {
            count_of("SELECT count(*) AS n FROM pod_logs") >= want_lines
                && count_of("SELECT count(*) AS n FROM platform_event_logs") >= want_events
                && search_total() >= want_lines
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    let rows = count_of("SELECT count(*) AS n FROM pod_logs");
    let distinct_lines = count_of("SELECT count(DISTINCT line_id) AS n FROM pod_logs");
    let event_rows = count_of("SELECT count(*) AS n FROM platform_event_logs");
    let distinct_events = count_of("SELECT count(DISTINCT event_id) AS n FROM platform_event_logs");
    let indexed = search_total();
    let dead = dead_letter_payloads(&dlq.bootstrap, &dlq.name);
    for r in &mut roles {
        r.kill9();
    }
    let verdict = format!(
        "chaos verdict (seed {}): {} faults — {total_kills} kill -9 ({}), {failpoint_deaths} writers died mid-commit at the failpoint, {}\n\
         pod_logs: {rows} rows, {distinct_lines} distinct line_id; {want_lines} complete lines on disk\n\
         platform_event_logs: {event_rows} rows, {distinct_events} distinct event_id; {want_events} acknowledged \
         ({} by the intake after {} retries, {DIRECT_GOOD} straight to Kafka)\n\
         index: {indexed} lines searchable; dead letters: {} distinct, {DIRECT_BAD} invalid records injected; \
         the intake refused {} invalid records by name\n\
         up --demo: exact (every line, event and lifecycle event on its disk once)\n\
         roles that exited on their own: {}",
        settings.seed,
        total_kills + failpoint_deaths + done.len(),
        kills
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        done.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", "),
        posted.events,
        posted.retries,
        dead.len(),
        posted.refused,
        if own_exits.is_empty() {
            "none".to_string()
        } else {
            own_exits.join("; ")
        },
    );
    history.note(&verdict);
    if let Ok(path) = std::env::var("SLUICE_CHAOS_REPORT") {
        std::fs::write(&path, format!("{verdict}\n")).unwrap();
    }
    assert_eq!(rows, want_lines, "pod_logs rows = lines on disk\n{verdict}");
    assert_eq!(distinct_lines, rows, "a line written twice\n{verdict}");
    assert_eq!(event_rows, want_events, "events = acknowledged\n{verdict}");
    assert_eq!(
        distinct_events, event_rows,
        "an event written twice\n{verdict}"
    );
    assert_eq!(indexed, rows, "index count = table count\n{verdict}");
    assert_eq!(dead.len(), DIRECT_BAD, "dead letters = injected\n{verdict}");
    assert!(
        own_exits.is_empty(),
        "roles exited on their own:\n{verdict}"
    );
    assert!(total_kills >= settings.kills);
}

/// What the roles did on their own: writers started with the commit
/// failpoint die at it (expected); any other exit is a finding.
#[derive(Default)]
struct Exits {
    failpointed: BTreeSet<&'static str>,
    failpoint_deaths: usize,
    own_exits: Vec<String>,
}

impl Exits {
    /// Restarts the roles that exited since the last look, noting why.
    fn look(&mut self, roles: &mut [Role], history: &mut History) {
        for r in roles.iter_mut() {
            let Some(status) = r.exited() else { continue };
            if self.failpointed.remove(r.name) {
                self.failpoint_deaths += 1;
                history.note(format!(
                    "{} died at its failpoint ({status}); started again",
                    r.name
                ));
            } else {
                let tail = r.log_tail(5);
                history.note(format!("{} EXITED ON ITS OWN ({status}):\n{tail}", r.name));
                self.own_exits.push(format!("{} ({status})", r.name));
            }
            r.spawn_with(&[]);
        }
    }
}

/// The distinct payloads in the dead-letter topic: a dead letter sent again
/// after a writer died before its commit is the same letter.
fn dead_letter_payloads(bootstrap: &str, topic: &str) -> BTreeSet<Vec<u8>> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "chaos-verdict")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(30))
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut seen = BTreeSet::new();
    let mut read = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while read < high {
        assert!(
            Instant::now() < deadline,
            "read {read} of {high} dead letters"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            let m = m.unwrap();
            seen.insert(m.payload().unwrap_or_default().to_vec());
            read = m.offset() + 1;
        }
    }
    seen
}
