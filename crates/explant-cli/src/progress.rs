//! Progress on the terminal: the run's and the sweep's observers as `indicatif` bars; when
//! stderr is not a terminal (a batch job's log), a plain line every tenth of a run instead.

use std::io::IsTerminal as _;
use std::time::Instant;

use explant_run::Observer;
use indicatif::{ProgressBar, ProgressStyle};

fn bar(len: u64, quiet: bool, template: &str) -> ProgressBar {
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(len) };
    bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar
}

/// A run's notes on stderr and a bar of its ticks (or plain lines in a log).
pub struct RunProgress {
    quiet: bool,
    bar: Option<ProgressBar>,
    /// Plain progress lines: stderr is not a terminal (and not `quiet`).
    plain: Option<PlainLines>,
}

/// Progress as a line per tenth of the run, for logs where a bar draws nothing.
struct PlainLines {
    total: u64,
    next_tenth: u64,
    started: Instant,
}

impl RunProgress {
    /// A bar, hidden when `quiet`; plain lines when stderr is not a terminal.
    pub fn new(quiet: bool) -> Self {
        Self { quiet, bar: None, plain: None }
    }
}

impl Observer for RunProgress {
    fn note(&mut self, text: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    fn started(&mut self, total: u64) {
        if !self.quiet && !std::io::stderr().is_terminal() {
            self.plain = Some(PlainLines { total, next_tenth: 1, started: Instant::now() });
            return;
        }
        self.bar =
            Some(bar(total, self.quiet, "{bar:40} {pos}/{len} ticks  t = {msg} min  elapsed {elapsed}  ETA {eta}"));
    }

    fn progress(&mut self, tick: u64, time_min: f64) {
        if let Some(b) = &self.bar {
            b.set_position(tick);
            b.set_message(format!("{time_min:.1}"));
        }
        if let Some(p) = &mut self.plain
            && p.total > 0
            && tick * 10 >= p.next_tenth * p.total
        {
            let done = tick * 10 / p.total;
            eprintln!(
                "progress: tick {tick}/{} ({}%), t = {time_min:.1} min, {:.1} s elapsed",
                p.total,
                tick * 100 / p.total,
                p.started.elapsed().as_secs_f64()
            );
            p.next_tenth = done + 1;
        }
    }

    fn finished(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

/// A sweep's notes on stderr and a bar of its runs.
pub struct SweepProgress {
    bar: ProgressBar,
}

impl SweepProgress {
    /// A bar, hidden when `quiet`.
    pub fn new(quiet: bool) -> Self {
        Self { bar: bar(0, quiet, "{bar:40} {pos}/{len} runs  elapsed {elapsed}  ETA {eta}  {msg}") }
    }
}

impl explant_sweep::runner::Progress for SweepProgress {
    fn note(&self, text: &str) {
        self.bar.suspend(|| eprintln!("{text}"));
    }

    fn start(&self, total: u64) {
        self.bar.set_length(total);
    }

    fn done(&self, failed: Option<&str>) {
        if let Some(id) = failed {
            self.bar.set_message(format!("{id} failed"));
        }
        self.bar.inc(1);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
