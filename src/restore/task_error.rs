//! Why a restore task's service could not do what it was asked, each with its kind.

use std::path::PathBuf;

use crate::backup::service::BackupTaskError;
use crate::backup::RunsError;
use crate::ccs::{Id, RestoreState, StoreError};
use crate::error::{DomainError, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum RestoreTaskError {
    #[error("restore task `{0}` is running in another shell: see `restore task show {0}`")]
    Running(String),
    #[error(
        "db `{db}` is being restored by restore task `{task}` in another shell: see `restore task show {task}`, and run this again once it is done"
    )]
    DbClaimed { db: String, task: String },
    /// A backup run of the database streams in another shell: the restore would stop,
    /// fence and swap the shards it streams from.
    #[error(
        "db `{db}` is being backed up by run `{run}`{} in another shell: nothing was changed; run this again once the run is done",
        .task.as_ref().map(|t| format!(" of backup task `{t}`")).unwrap_or_default()
    )]
    DbBackingUp {
        db: String,
        run: String,
        task: Option<String>,
    },
    /// A task lock that could not be taken.
    #[error("{0}")]
    Lock(String),
    #[error("there is no restore task `{name}` ({})", known_tasks(.known))]
    NoSuchTask { name: String, known: Vec<String> },
    #[error("restore task `{0}` was deleted")]
    Deleted(String),
    #[error("cannot resolve `{}`: {error}", .path.display())]
    Resolve {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A repository that does not open (the message of `Repository::open`).
    #[error("{0}")]
    Repository(String),
    /// A local repository that is not there.
    #[error("{0}")]
    NoRepository(String),
    /// An age identity file that does not open.
    #[error(transparent)]
    Identity(crate::backup::KeyFileError),
    #[error("`{repo}` holds no restorable run of `{db}` (see `backup list path {path}`)")]
    NoRunIn {
        repo: String,
        db: String,
        /// The repository as the command takes it (quoted when it must be).
        path: String,
    },
    #[error("`{run}` is not a restore point: {error}")]
    NotRestorePoint {
        run: String,
        error: crate::backup::ManifestError,
    },
    #[error("there is no db:{0}; to recreate a deleted database, name it")]
    NoSuchDb(Id),
    /// The message of [`crate::ccs::rules::check_db_name`].
    #[error("{0}")]
    BadDbName(String),
    #[error(
        "run `{run}` was written by cluster `{from}` (id {from_id}), not by this cluster `{here}` (id {here_id}): add `from_other_cluster` to restore it here"
    )]
    OtherCluster {
        run: String,
        from: String,
        from_id: u64,
        here: String,
        here_id: u64,
    },
    #[error(
        "run `{run}` is a backup of {of}, not of {target}: add `from_other_db` to restore another database's run into it"
    )]
    OtherDb {
        run: String,
        /// The run's database (`db:7 `o2``).
        of: String,
        /// The database restored (`db:3 `orders``, or a name to create).
        target: String,
    },
    #[error(
        "run `{0}` is encrypted: give the age identity file that opens it with `identity <file>`"
    )]
    NeedsIdentity(String),
    #[error("there is no succeeded backup run of `{0}` with a valid manifest")]
    NoGoodRun(String),
    #[error("there is no backup run `{0}` (see `backup task history <task>`)")]
    NoSuchRun(String),
    #[error("there is already a restore task `{0}`")]
    NameTaken(String),
    /// Options that contradict each other (`replay` writes into an empty database, so not
    /// with `force`).
    #[error("{0}")]
    FlagsConflict(String),
    /// No `redis-server` for the nodes.
    #[error("{0}")]
    NoServer(String),
    #[error("restore task `{0}` already succeeded: create a new task to restore again")]
    AlreadySucceeded(String),
    #[error(
        "restore task `{name}` is {state}: `retry` follows a failed or interrupted start (use `restore task start {name}`)"
    )]
    NotRetryable { name: String, state: RestoreState },
    #[error("restore task `{name}` is {state}: use `restore task retry {name}`")]
    MustRetry { name: String, state: RestoreState },
    /// `kind`: the first failed check's.
    #[error("restore task `{name}` failed verify: {reason}")]
    VerifyFailed {
        name: String,
        reason: String,
        kind: ErrorKind,
    },
    #[error("restore task `{name}`: putting the old data back failed: {error}")]
    PutBackFailed { name: String, error: String },
    #[error(
        "restore task `{name}`: removing what is left of the old data failed (the restored data stays; `restore task retry {name}` tries again): {error}"
    )]
    FinishFailed { name: String, error: String },
    #[error(
        "the safety backup into `{}` failed, nothing was changed (`no_safety_backup` skips it): {error}",
        .to.display()
    )]
    SafetyBackupFailed { to: PathBuf, error: BackupTaskError },
    #[error("creating db `{db}` failed: {error}")]
    CreateDbFailed { db: String, error: String },
    #[error("db `{0}` vanished")]
    DbVanished(String),
    #[error("restore task `{name}` failed: {error}")]
    Failed { name: String, error: String },
    #[error("restore task `{task}` is part of `{group}`: delete `{group}`")]
    PartOfGroup { task: String, group: String },
    #[error(
        "`backup {0}` is one run of one database: several databases take `latest` or `<repository>/latest` (each database's newest run)"
    )]
    OneRunForSeveral(String),
    #[error("db `{0}` is named twice")]
    NamedTwice(String),
    #[error("the task of db `{db}` would be `{member}`: {error}; choose a shorter task name")]
    MemberName {
        db: String,
        member: String,
        error: String,
    },
    /// `place`: a repository (quoted) or "this cluster's backups".
    #[error("{0} holds no restorable run of any database")]
    NoRuns(String),
    #[error(
        "restore task `{0}` has no failed or interrupted database: `retry` follows a failed or interrupted start (use `restore task start {0}`)"
    )]
    NothingToRetry(String),
    #[error("restore task `{group}` stopped at `{}`: use `restore task retry {group}`", .at.join("`, `"))]
    StoppedAt { group: String, at: Vec<String> },
    #[error("restore task `{group}` failed verify, so none of its databases started: {why}")]
    GroupVerifyFailed {
        group: String,
        why: String,
        /// The first failed check's.
        kind: ErrorKind,
    },
    #[error("restore task `{group}` stopped at `{task}`: {error}{}", not_started(.left))]
    GroupStopped {
        group: String,
        task: String,
        error: Box<RestoreTaskError>,
        /// The tasks not started after it.
        left: Vec<String>,
    },
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
    #[error(transparent)]
    Runs(#[from] RunsError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn known_tasks(known: &[String]) -> String {
    crate::backup::service::listed("tasks", known, "there are none")
}

fn not_started(left: &[String]) -> String {
    match left.is_empty() {
        true => String::new(),
        false => format!("; not started: `{}`", left.join("`, `")),
    }
}

impl DomainError for RestoreTaskError {
    fn kind(&self) -> ErrorKind {
        use RestoreTaskError as E;
        match self {
            E::Lock(_) | E::Resolve { .. } => ErrorKind::Io,
            E::Repository(_)
            | E::BadDbName(_)
            | E::OneRunForSeveral(_)
            | E::NamedTwice(_)
            | E::MemberName { .. } => ErrorKind::Usage,
            E::NoSuchTask { .. }
            | E::Deleted(_)
            | E::NoRepository(_)
            | E::NoRunIn { .. }
            | E::NoSuchDb(_)
            | E::NoGoodRun(_)
            | E::NoSuchRun(_)
            | E::NoRuns(_) => ErrorKind::NotFound,
            E::FlagsConflict(_) | E::NeedsIdentity(_) => ErrorKind::Usage,
            E::Running(_)
            | E::DbClaimed { .. }
            | E::DbBackingUp { .. }
            | E::OtherCluster { .. }
            | E::OtherDb { .. }
            | E::NameTaken(_)
            | E::AlreadySucceeded(_)
            | E::NotRetryable { .. }
            | E::MustRetry { .. }
            | E::PartOfGroup { .. }
            | E::NothingToRetry(_)
            | E::StoppedAt { .. } => ErrorKind::Conflict,
            // Missing (`not_found`) or damaged, as the manifest is.
            E::NotRestorePoint { error, .. } => error.kind(),
            E::VerifyFailed { kind, .. } | E::GroupVerifyFailed { kind, .. } => *kind,
            E::NoServer(_)
            | E::PutBackFailed { .. }
            | E::FinishFailed { .. }
            | E::SafetyBackupFailed { .. }
            | E::CreateDbFailed { .. }
            | E::Failed { .. } => ErrorKind::Unavailable,
            E::DbVanished(_) => ErrorKind::Internal,
            E::GroupStopped { error, .. } => error.kind(),
            E::Identity(e) => e.kind(),
            E::Server(e) => e.kind(),
            E::Runs(e) => e.kind(),
            E::Store(e) => e.kind(),
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            RestoreTaskError::Failed { name, .. } => {
                vec![format!("fix the cause and run `restore task retry {name}`")]
            }
            RestoreTaskError::GroupStopped { group, .. } => {
                vec![format!(
                    "fix the cause and run `restore task retry {group}`"
                )]
            }
            RestoreTaskError::Server(e) => e.hints(),
            RestoreTaskError::Store(e) => e.hints(),
            _ => Vec::new(),
        }
    }
}
