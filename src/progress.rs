//! How long-running library work reports progress without printing: a [`Progress`] the
//! caller provides (the binary draws bars on a terminal, lines otherwise; tests and
//! `--json` discard it). Below every layer that reports, so none imports upward.

/// Reports long-running work (the binary draws bars on a terminal, lines otherwise).
pub trait Progress: Send + Sync {
    /// Starts a piece of work named `label` with `total` steps (0 when unknown).
    fn task(&self, label: &str, total: u64) -> Box<dyn ProgressTask>;
}

pub trait ProgressTask: Send + Sync {
    fn set_position(&self, done: u64);
    fn set_message(&self, message: &str);
    /// Ends the task with a short verdict (`recovered`, `failed: ...`).
    fn finish(&self, verdict: &str);
}

/// Discards progress: for tests and `--json`.
pub struct NoProgress;

impl Progress for NoProgress {
    fn task(&self, _label: &str, _total: u64) -> Box<dyn ProgressTask> {
        Box::new(NoProgress)
    }
}

impl ProgressTask for NoProgress {
    fn set_position(&self, _done: u64) {}
    fn set_message(&self, _message: &str) {}
    fn finish(&self, _verdict: &str) {}
}
