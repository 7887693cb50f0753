//! Progress for long commands: indicatif bars on a terminal, plain lines otherwise.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cmd::{Progress, ProgressTask};

/// Bars on stderr, one per task.
pub struct Bars {
    multi: MultiProgress,
}

impl Bars {
    pub fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
        }
    }
}

impl Default for Bars {
    fn default() -> Self {
        Bars::new()
    }
}

impl Progress for Bars {
    fn task(&self, label: &str, total: u64) -> Box<dyn ProgressTask> {
        // Join the group before anything draws: a bar draws on its own (to stderr) at its
        // first prefix or tick, and that frame would stay behind on the screen.
        let bar = self.multi.add(if total == 0 {
            ProgressBar::new_spinner()
        } else {
            ProgressBar::new(total)
        });
        let style = if total == 0 {
            ProgressStyle::with_template("{spinner} {prefix} {msg}")
        } else {
            ProgressStyle::with_template(
                "{prefix:20} [{bar:30}] {percent:>3}% {msg} {elapsed_precise}",
            )
        };
        if let Ok(style) = style {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        Box::new(BarTask {
            bar,
            spinner: total == 0,
        })
    }
}

struct BarTask {
    bar: ProgressBar,
    /// A spinner only says that work is going on; the reply says how it ended, so it goes
    /// when done. A bar's last line (counts, elapsed time) stays as the record.
    spinner: bool,
}

impl ProgressTask for BarTask {
    fn set_position(&self, done: u64) {
        self.bar.set_position(done);
    }
    fn set_message(&self, message: &str) {
        self.bar.set_message(message.to_string());
    }
    fn finish(&self, verdict: &str) {
        if self.spinner {
            self.bar.finish_and_clear();
        } else {
            self.bar.finish_with_message(verdict.to_string());
        }
    }
}

/// `label: verdict` lines on stderr, for scripts and logs.
pub struct Lines;

impl Progress for Lines {
    fn task(&self, label: &str, _total: u64) -> Box<dyn ProgressTask> {
        Box::new(LineTask(Mutex::new(label.to_string())))
    }
}

struct LineTask(Mutex<String>);

impl ProgressTask for LineTask {
    fn set_position(&self, _done: u64) {}
    fn set_message(&self, _message: &str) {}
    fn finish(&self, verdict: &str) {
        let label = self.0.lock().map(|l| l.clone()).unwrap_or_default();
        let _ = writeln!(std::io::stderr(), "{label}: {verdict}");
    }
}
