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
    pub step: Option<String>,
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
