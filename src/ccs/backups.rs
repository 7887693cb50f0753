//! The CCS's record of backups: named backup tasks, the history of every run, and restore
//! tasks. Plain data like the rest of the model; the runs' files and manifests live in
//! their repositories (`crate::backup`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::model::Id;

/// Everything the CCS knows about backups and restores. Absent in documents written
/// before backups existed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Backups {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tasks: BTreeMap<String, BackupTask>,
    /// Every run, oldest first: of tasks and one-off `backup db` runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<BackupRun>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub restores: BTreeMap<String, RestoreTask>,
}

impl Backups {
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty() && self.runs.is_empty() && self.restores.is_empty()
    }

    pub fn run(&self, id: &str) -> Option<&BackupRun> {
        self.runs.iter().find(|r| r.id == id)
    }

    pub fn run_mut(&mut self, id: &str) -> Option<&mut BackupRun> {
        self.runs.iter_mut().find(|r| r.id == id)
    }

    /// The restore task not yet succeeded that restores run `id`, if any: the run is
    /// the restore point an operator chose, which retention must not take away.
    pub fn restoring(&self, id: &str) -> Option<&RestoreTask> {
        self.restores
            .values()
            .find(|t| t.run == id && t.state != RestoreState::Succeeded)
    }

    /// The tasks of the restore task `group` (one per database, in name order); empty
    /// when no task has that group.
    pub fn restore_group(&self, group: &str) -> Vec<&RestoreTask> {
        self.restores
            .values()
            .filter(|t| t.group.as_deref() == Some(group))
            .collect()
    }
}

/// `backup task create name <task> db <db> path <dir> [keep <n>] [every <interval>]`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BackupTask {
    pub name: String,
    pub db: Id,
    /// The repository its runs go to.
    pub path: PathBuf,
    /// How many succeeded runs to keep; `None` keeps all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
    /// Seconds between runs, for `backup due`; `None`: only when run by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    /// The longest write pause a run may take, in milliseconds.
    pub max_pause_ms: u64,
    /// Unix seconds.
    pub created: i64,
    /// How run files are compressed; tasks made before compression existed: zstd.
    #[serde(default, skip_serializing_if = "Compression::is_zstd")]
    pub compress: Compression,
    /// The age recipients file runs are encrypted to (public keys only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypt: Option<PathBuf>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    /// Found `running` after the shell that ran it died.
    Interrupted,
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        })
    }
}

/// One backup run, as history shows it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BackupRun {
    /// `<yyyymmdd>-<hhmmss>-<n>`: sorts by time, unique in the cluster; also the name of
    /// the run's directory in its repository.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    pub db: Id,
    pub db_name: String,
    /// The repository (the run's files are in `<path>/<id>/`).
    pub path: PathBuf,
    /// Unix milliseconds.
    pub started: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took_ms: Option<u64>,
    pub status: RunStatus,
    /// Why a run failed or was interrupted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub keys: u64,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_us: Option<u64>,
    /// The restore task this run is the safety backup of: `latest` passes it over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_for: Option<String>,
}

impl BackupRun {
    /// Whether this run is a backup of database `name` (`existing`: its id, when it
    /// exists): the same name (a deleted database recreated), or the same database (ids
    /// are never reused). Another database's run is restored only with `from_other_db`.
    pub fn is_of(&self, name: &str, existing: Option<Id>) -> bool {
        self.db_name == name || Some(self.db) == existing
    }
}

/// A restore task's state: created → verified | verify failed → running → succeeded |
/// failed | interrupted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RestoreState {
    Created,
    Verified,
    VerifyFailed,
    Running,
    Succeeded,
    Failed,
    Interrupted,
}

impl fmt::Display for RestoreState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RestoreState::Created => "created",
            RestoreState::Verified => "verified",
            RestoreState::VerifyFailed => "verify failed",
            RestoreState::Running => "running",
            RestoreState::Succeeded => "succeeded",
            RestoreState::Failed => "failed",
            RestoreState::Interrupted => "interrupted",
        })
    }
}

/// The step a restore's `start` (or `retry`) is at: recorded in the CCS for `restore task
/// show` from another shell and for `retry`, which must know whether a shard may already
/// have been stopped. Stored as its text (what `show` prints); a text no step reads back as
/// (written by another version) is [`RestoreStep::Unrecognised`], which `retry` treats as
/// the worst case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreStep {
    Starting,
    /// A safety backup of the keys a forced start replaces (taken before anything
    /// changes).
    SafetyBackup(u64),
    Staging,
    Decoding,
    Fencing,
    Stopping,
    Swapping,
    /// Masters loading the staged files: MB loaded of the total, once known.
    Loading(Option<(u64, u64)>),
    /// Keys written by `RESTORE` (another shard layout): done of the total, once known.
    RestoringKeys(Option<(u64, u64)>),
    CheckingCounts,
    Reforming,
    Proving,
    Unfencing,
    RemovingOld,
    PuttingBack,
    Emptying,
    Unrecognised,
}

impl RestoreStep {
    /// Whether a start that reached this step may have stopped a shard (or sent it the
    /// SIGTERM it may still be answering through): its retry then restarts every shard
    /// rather than trust one that answers. The steps before `Stopping` leave every shard
    /// running, fenced at most; a restore into another shard layout never stops one.
    pub fn may_have_stopped(self) -> bool {
        match self {
            RestoreStep::Starting
            | RestoreStep::SafetyBackup(_)
            | RestoreStep::Staging
            | RestoreStep::Decoding
            | RestoreStep::Fencing
            | RestoreStep::RestoringKeys(_)
            | RestoreStep::Emptying => false,
            RestoreStep::Stopping
            | RestoreStep::Swapping
            | RestoreStep::Loading(_)
            | RestoreStep::CheckingCounts
            | RestoreStep::Reforming
            | RestoreStep::Proving
            | RestoreStep::Unfencing
            | RestoreStep::RemovingOld
            | RestoreStep::PuttingBack
            | RestoreStep::Unrecognised => true,
        }
    }

    /// Whether the old data has served no client since a start reached this step: from
    /// `Stopping` until `Unfencing` its shards are stopped or fenced. A retry of a start
    /// cut short at such a step may take the start's safety backup as the data's copy;
    /// at any other step clients may have written since it was taken.
    pub fn fenced(self) -> bool {
        matches!(
            self,
            RestoreStep::Stopping
                | RestoreStep::Swapping
                | RestoreStep::Loading(_)
                | RestoreStep::CheckingCounts
                | RestoreStep::Reforming
                | RestoreStep::Proving
        )
    }

    /// Whether the restored data may have served clients once a start reached this step:
    /// from `Unfencing` on, some shards may be unfenced (the restored data loaded, counted
    /// and proved) and taking writes, so what the start set aside is no longer the
    /// database's data. A start cut short here is finished (the shards still fenced
    /// unfenced, what is left of the old data removed), never undone: putting the old
    /// data back would drop every write an unfenced shard took since.
    pub fn served(self) -> bool {
        matches!(self, RestoreStep::Unfencing | RestoreStep::RemovingOld)
    }

    /// Every step without its figures, in the order a start goes through them.
    const NAMED: [RestoreStep; 17] = [
        RestoreStep::Starting,
        RestoreStep::SafetyBackup(0),
        RestoreStep::Staging,
        RestoreStep::Decoding,
        RestoreStep::Fencing,
        RestoreStep::Stopping,
        RestoreStep::Swapping,
        RestoreStep::Loading(None),
        RestoreStep::RestoringKeys(None),
        RestoreStep::CheckingCounts,
        RestoreStep::Reforming,
        RestoreStep::Proving,
        RestoreStep::Unfencing,
        RestoreStep::RemovingOld,
        RestoreStep::PuttingBack,
        RestoreStep::Emptying,
        RestoreStep::Unrecognised,
    ];

    fn name(self) -> &'static str {
        match self {
            RestoreStep::Starting => "starting",
            RestoreStep::SafetyBackup(_) => "safety backup",
            RestoreStep::Staging => "staging the run's files beside the data",
            RestoreStep::Decoding => "decoding the run's files",
            RestoreStep::Fencing => "fencing clients",
            RestoreStep::Stopping => "stopping the shards",
            RestoreStep::Swapping => "swapping the data",
            RestoreStep::Loading(_) => "loading",
            RestoreStep::RestoringKeys(_) => "restoring keys",
            RestoreStep::CheckingCounts => "checking key counts",
            RestoreStep::Reforming => "re-forming replicas and the cluster",
            RestoreStep::Proving => "proving content",
            RestoreStep::Unfencing => "unfencing",
            RestoreStep::RemovingOld => "removing the old data",
            RestoreStep::PuttingBack => "putting the old data back",
            RestoreStep::Emptying => "emptying the database again",
            RestoreStep::Unrecognised => "a step this version does not know",
        }
    }
}

impl fmt::Display for RestoreStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let RestoreStep::SafetyBackup(keys) = self {
            return write!(f, "safety backup of the {keys} keys it replaces");
        }
        f.write_str(self.name())?;
        match self {
            RestoreStep::Loading(Some((done, total))) => write!(f, ": {done} of {total} MB"),
            RestoreStep::RestoringKeys(Some((done, total))) => write!(f, ": {done} of {total}"),
            _ => Ok(()),
        }
    }
}

impl From<&str> for RestoreStep {
    fn from(text: &str) -> RestoreStep {
        if let Some(keys) = text
            .strip_prefix("safety backup of the ")
            .and_then(|t| t.strip_suffix(" keys it replaces"))
            .and_then(|n| n.parse().ok())
        {
            return RestoreStep::SafetyBackup(keys);
        }
        let (name, figures) = text.split_once(": ").unwrap_or((text, ""));
        let Some(step) = RestoreStep::NAMED.into_iter().find(|s| s.name() == name) else {
            return RestoreStep::Unrecognised;
        };
        let pair = || {
            let (done, total) = figures.trim_end_matches(" MB").split_once(" of ")?;
            Some((done.parse().ok()?, total.parse().ok()?))
        };
        match step {
            RestoreStep::Loading(_) => RestoreStep::Loading(pair()),
            RestoreStep::RestoringKeys(_) => RestoreStep::RestoringKeys(pair()),
            s => s,
        }
    }
}

impl Serialize for RestoreStep {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RestoreStep {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RestoreStep, D::Error> {
        Ok(RestoreStep::from(String::deserialize(d)?.as_str()))
    }
}

/// `restore task create name <task> db <db> backup <run|latest> [target_path <dir>]
/// [force]`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RestoreTask {
    pub name: String,
    /// The database's name: it may no longer exist (then the restore recreates it).
    pub db: String,
    /// The run id (`latest` resolved when the task was created).
    pub run: String,
    /// The repository the run is in.
    pub path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_path: Option<PathBuf>,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub allow_newer_server: bool,
    /// Files of an RDB version the target's server cannot load are replayed (every key
    /// written as `RESTORE`) instead of refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
    pub state: RestoreState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The last verify's checks, one line each (`ok manifest: ...`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
    /// Whether `start` created the database (it did not exist).
    #[serde(default)]
    pub created_db: bool,
    /// The step a running (or stopped) restore is at, for `show` and `retry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<RestoreStep>,
    /// Unix seconds.
    pub created: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<i64>,
    /// The age identity file that opens encrypted runs (its path; never its contents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<PathBuf>,
    /// The content proof of the last successful start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ContentCheck>,
    /// The run was written by another cluster, and the operator said so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_other_cluster: bool,
    /// The run is of another database than the one restored, and the operator said so
    /// (a clone, never by mistake).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_other_db: bool,
    /// Where the safety backup of a forced restore goes (the task's repository when
    /// absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_path: Option<PathBuf>,
    /// The operator asked for no safety backup.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_safety_backup: bool,
    /// `<repository>/<run>` of the safety backup `start` took of the data it replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_backup: Option<String>,
    /// The task restoring several databases this one is part of (`<group>.<db>` is this
    /// task's name): verified with the others before any starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// A restore's content proof: the digest of the run's files equals the live database's.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ContentCheck {
    pub keys: u64,
    pub digest: String,
    /// Keys of the run that expired before the check (counted apart).
    #[serde(default)]
    pub expired: u64,
    /// `content verified: N keys, digest <hex>`.
    pub line: String,
}

/// How a backup run's files are compressed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    Zstd,
    None,
}

impl Compression {
    pub fn is_none(&self) -> bool {
        *self == Compression::None
    }

    pub fn is_zstd(&self) -> bool {
        *self == Compression::Zstd
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compression::Zstd => "zstd",
            Compression::None => "none",
        })
    }
}

#[cfg(test)]
mod step_tests {
    use super::RestoreStep;

    #[test]
    fn every_step_reads_back_from_its_text() {
        for step in RestoreStep::NAMED
            .into_iter()
            .filter(|s| *s != RestoreStep::SafetyBackup(0))
            .chain([
                RestoreStep::SafetyBackup(12),
                RestoreStep::Loading(Some((3, 10))),
                RestoreStep::RestoringKeys(Some((7, 9))),
            ])
        {
            assert_eq!(RestoreStep::from(step.to_string().as_str()), step, "{step}");
            let json = serde_json::to_string(&step).unwrap();
            assert_eq!(serde_json::from_str::<RestoreStep>(&json).unwrap(), step);
        }
        assert_eq!(
            RestoreStep::from("loading: 3 of 10 MB"),
            RestoreStep::Loading(Some((3, 10)))
        );
        assert_eq!(RestoreStep::from("warming up"), RestoreStep::Unrecognised);
    }

    #[test]
    fn a_start_cut_short_after_fencing_restarts_every_shard_on_retry() {
        for step in [
            RestoreStep::Starting,
            RestoreStep::Staging,
            RestoreStep::Fencing,
            RestoreStep::RestoringKeys(None),
        ] {
            assert!(!step.may_have_stopped(), "{step}");
        }
        for step in [
            RestoreStep::Stopping,
            RestoreStep::Loading(Some((3, 10))),
            RestoreStep::Unfencing,
            RestoreStep::PuttingBack,
            RestoreStep::Unrecognised,
        ] {
            assert!(step.may_have_stopped(), "{step}");
        }
    }
}
