//! Progress for long work: a bar on a terminal, a line every few seconds
//! otherwise (CI logs, `kubectl logs`), so long runs never look hung.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{HumanCount, ProgressBar, ProgressStyle};

pub struct Progress {
    what: String,
    bar: Option<ProgressBar>,
    total: AtomicU64,
    done: AtomicU64,
    last_line: Mutex<Instant>,
    started: Instant,
}

const PLAIN_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    /// `what` names the unit counted, e.g. "lines+events".
    pub fn new(what: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} {msg} ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message(what.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            what: what.to_string(),
            bar,
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            last_line: Mutex::new(Instant::now()),
            started: Instant::now(),
        }
    }

    pub fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    pub fn add(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(bar) = &self.bar {
            // The total is an estimate; never let the bar overflow it.
            if done > bar.length().unwrap_or(0) {
                bar.set_length(done);
            }
            bar.set_position(done);
            return;
        }
        if let Ok(mut last) = self.last_line.try_lock()
            && last.elapsed() >= PLAIN_EVERY
        {
            *last = Instant::now();
            let total = self.total.load(Ordering::Relaxed).max(done);
            eprintln!(
                "{} / ~{} {} ({:.0}%, {:.0}s)",
                HumanCount(done),
                HumanCount(total),
                self.what,
                done as f64 * 100.0 / total.max(1) as f64,
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
