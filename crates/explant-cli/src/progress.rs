//! Progress on the terminal: the run's and the sweep's observers as `indicatif` bars.

use explant_run::Observer;
use indicatif::{ProgressBar, ProgressStyle};

fn bar(len: u64, quiet: bool, template: &str) -> ProgressBar {
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(len) };
    bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar
}

/// A run's notes on stderr and a bar of its ticks.
pub struct RunProgress {
    quiet: bool,
    bar: Option<ProgressBar>,
}

impl RunProgress {
    /// A bar, hidden when `quiet`.
    pub fn new(quiet: bool) -> Self {
        Self { quiet, bar: None }
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
        self.bar =
            Some(bar(total, self.quiet, "{bar:40} {pos}/{len} ticks  t = {msg} min  elapsed {elapsed}  ETA {eta}"));
    }

    fn progress(&mut self, tick: u64, time_min: f64) {
        if let Some(b) = &self.bar {
            b.set_position(tick);
            b.set_message(format!("{time_min:.1}"));
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
