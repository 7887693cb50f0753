//! The services behind the `backup` commands: backup tasks in the CCS, runs recorded
//! before they start and after they end (the CCS lock is not held while a run streams),
//! run locks so that runs of a task never overlap, retention, and the repository read
//! alone. Each returns a typed result for the command to render.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    check_repository, claimed_task_of, is_due, new_run_id, now_ms, prune_plan, sweep_interrupted,
    take, Codec, Compression, Manifest, ManifestError, Recipients, Repository, RunLock, RunSpec,
    RunsError, DEFAULT_MAX_PAUSE_MS,
};
use crate::ccs::StoreLock;
use crate::ccs::{
    BackupRun, BackupTask, Cluster, DbState, Id, RestoreState, RunStatus, Store, StoreError,
};
use crate::error::{DomainError, ErrorKind};
use crate::lang::{DbRef, NoSuchDatabase};
use crate::progress::Progress;

/// Why a backup command could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum BackupTaskError {
    #[error("cannot resolve `{}`: {error}", .path.display())]
    Resolve {
        path: PathBuf,
        error: std::io::Error,
    },
    /// An age recipients file that does not open or holds no key.
    #[error(transparent)]
    Recipients(crate::backup::KeyFileError),
    /// A repository path that cannot be used (the message of
    /// [`check_repository`] or [`Repository::open`]).
    #[error("{0}")]
    Repository(String),
    #[error("there is already a backup task `{0}`")]
    TaskExists(String),
    #[error("there is no backup task `{name}` ({})", known_tasks(.known))]
    NoSuchTask { name: String, known: Vec<String> },
    #[error("backup task `{0}` is already running")]
    AlreadyRunning(String),
    #[error("backup task `{0}` is running: delete it when the run ends")]
    TaskBusy(String),
    /// A run lock that could not be taken or read.
    #[error("{0}")]
    Lock(String),
    #[error(
        "backup task `{task}` keeps {}: delete {} first, or delete `{task}` without `purge` (its runs stay)",
        .needed.iter().map(|(run, by)| format!("run `{run}`, which restore task `{by}` restores")).collect::<Vec<_>>().join(", "),
        .needed.iter().map(|(_, by)| format!("`restore task delete {by}`")).collect::<Vec<_>>().join(", ")
    )]
    RestoresNeed {
        task: String,
        /// (run, the restore task not yet succeeded that restores it)
        needed: Vec<(String, String)>,
    },
    #[error("run `{0}` is locked by another shell")]
    RunLocked(String),
    #[error("{}", gone(*.id, .task.as_ref(), .name.as_deref(), *.named_now))]
    DbGone {
        id: Id,
        /// The backup task naming it, and its repository.
        task: Option<(String, PathBuf)>,
        /// Its name as the task's runs recorded it.
        name: Option<String>,
        /// The database of that name now (recreated under a new id by a restore).
        named_now: Option<Id>,
    },
    /// A restore task of the database is claimed by another shell: its data is fenced
    /// and half-restored, which a run would keep as a good restore point.
    #[error(
        "db:{id} `{name}` is being restored by restore task `{task}` in another shell: nothing was backed up; see `restore task show {task}`, and run this again once it is done"
    )]
    Restoring { id: Id, name: String, task: String },
    /// A restore task of the database was cut short (its shell died): its data may be
    /// half-restored until the task is retried or deleted.
    #[error(
        "db:{id} `{name}` has restore task `{task}` cut short (its shell died mid-restore): its data may be half restored, which a run would keep as a good restore point; nothing was backed up: `restore task retry {task}` finishes the restore, `restore task delete {task}` puts the old data back"
    )]
    RestoreCutShort { id: Id, name: String, task: String },
    #[error("db:{id} `{name}` is pending recovery: recover it before backing it up")]
    PendingRecovery { id: Id, name: String },
    #[error("run `{0}` vanished from the configuration")]
    RunVanished(String),
    #[error("backup run `{id}` of db:{db} `{db_name}` failed: {error}")]
    RunFailed {
        id: String,
        db: Id,
        db_name: String,
        error: String,
    },
    /// Runs that could not be removed, one message each.
    #[error("{}", .0.join("; "))]
    NotRemoved(Vec<String>),
    #[error("there is no backup run `{id}` ({})", recent_runs(.recent))]
    NoSuchRun { id: String, recent: Vec<String> },
    /// `latest` named no run: none succeeded with a valid manifest (of `db`, when named).
    #[error("there is no succeeded backup run{} with a valid manifest", .db.as_ref().map(|d| format!(" of `{d}`")).unwrap_or_default())]
    NoGoodRun { db: Option<String> },
    #[error("backup run `{id}` is not a restore point ({status}): {error}")]
    NotRestorePoint {
        id: String,
        status: RunStatus,
        error: crate::backup::ManifestError,
    },
    #[error(transparent)]
    Runs(#[from] RunsError),
    #[error(transparent)]
    NoSuchDatabase(#[from] NoSuchDatabase),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn known_tasks(known: &[String]) -> String {
    listed(
        "tasks",
        known,
        "there are none: make one with `backup task create`",
    )
}

/// Why database `id` is gone, and what to do, for the backup task naming it.
fn gone(
    id: Id,
    task: Option<&(String, PathBuf)>,
    name: Option<&str>,
    named_now: Option<Id>,
) -> String {
    let db = match name {
        Some(name) => format!("db:{id} `{name}`"),
        None => format!("db:{id}"),
    };
    let Some((task, path)) = task else {
        return format!("{db} no longer exists");
    };
    let path = path.display();
    let again = match (name, named_now) {
        (Some(name), Some(now)) => format!(
            "db:{now} `{name}` has its name now (a restore or a create made it again under a new id): make the task again for it, `backup task delete {task}` then `backup task create name {task} db {name} path {path}`"
        ),
        _ => format!(
            "`backup task delete {task}`, or delete it and make it again for another database, `backup task create name {task} db <db> path {path}`"
        ),
    };
    format!("backup task `{task}` backs up {db}, which no longer exists: {again} (its runs stay)")
}

fn recent_runs(recent: &[String]) -> String {
    listed("recent runs", recent, "there are none")
}

/// `label: `a`, `b`` naming what there is, or `none` when there is nothing.
pub(crate) fn listed(label: &str, names: &[String], none: &str) -> String {
    if names.is_empty() {
        return none.to_string();
    }
    let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    format!("{label}: {}", names.join(", "))
}

impl DomainError for BackupTaskError {
    fn kind(&self) -> ErrorKind {
        use BackupTaskError as E;
        match self {
            E::Resolve { .. } | E::Lock(_) | E::NotRemoved(_) => ErrorKind::Io,
            E::NoSuchTask { .. } | E::DbGone { .. } | E::NoSuchRun { .. } | E::NoGoodRun { .. } => {
                ErrorKind::NotFound
            }
            E::Recipients(e) => e.kind(),
            // Inside shard data or a recovery path; the rest is the file system's refusal.
            E::Repository(why) if why.contains(" is inside ") => ErrorKind::Conflict,
            E::Repository(_) => ErrorKind::Io,
            E::TaskExists(_)
            | E::AlreadyRunning(_)
            | E::TaskBusy(_)
            | E::RunLocked(_)
            | E::RestoresNeed { .. }
            | E::Restoring { .. }
            | E::RestoreCutShort { .. }
            | E::PendingRecovery { .. } => ErrorKind::Conflict,
            E::RunVanished(_) => ErrorKind::Internal,
            E::RunFailed { .. } => ErrorKind::Unavailable,
            E::NotRestorePoint { error, .. } => error.kind(),
            E::Runs(e) => e.kind(),
            E::NoSuchDatabase(e) => e.kind(),
            E::Store(e) => e.kind(),
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            BackupTaskError::NoSuchDatabase(e) => e.hints(),
            BackupTaskError::Store(e) => e.hints(),
            _ => Vec::new(),
        }
    }
}

type Result<T, E = BackupTaskError> = std::result::Result<T, E>;

/// What `backup task create` asks.
pub struct TaskRequest {
    pub name: String,
    pub db: DbRef,
    pub path: PathBuf,
    pub keep: Option<u32>,
    /// Seconds between runs (`every`).
    pub every: Option<u64>,
    pub max_pause_ms: Option<u64>,
    pub compress: Compression,
    /// An age recipients file.
    pub encrypt: Option<PathBuf>,
}

/// `backup task create`: the task saved; with the name of its database.
pub async fn create_task(store: &Store, req: TaskRequest) -> Result<(BackupTask, String)> {
    let encrypt = recipients_file(req.encrypt)?;
    let (lock, mut cluster) = locked(store).await?;
    if cluster.backups.tasks.contains_key(&req.name) {
        return Err(BackupTaskError::TaskExists(req.name));
    }
    let db = req.db.resolve(&cluster)?.id;
    let path = check_repository(&cluster, &req.path).map_err(BackupTaskError::Repository)?;
    let task = BackupTask {
        name: req.name.clone(),
        db,
        path,
        keep: req.keep,
        every: req.every,
        max_pause_ms: req.max_pause_ms.unwrap_or(DEFAULT_MAX_PAUSE_MS),
        created: now_ms() / 1000,
        compress: req.compress,
        encrypt,
    };
    cluster.backups.tasks.insert(req.name, task.clone());
    lock.save(&mut cluster)?;
    let db_name = cluster.databases[&db].config.name.clone();
    Ok((task, db_name))
}

/// `backup task run`: one run of the task now (not while another of it runs).
pub async fn run_task(store: &Store, progress: &dyn Progress, name: &str) -> Result<BackupRun> {
    let cluster = store.cluster()?;
    let t = find_task(&cluster, name)?.clone();
    let Some(_task_lock) = RunLock::task(store.home(), name).map_err(BackupTaskError::Lock)? else {
        return Err(BackupTaskError::AlreadyRunning(name.to_string()));
    };
    let run = Run::of_task(&t);
    run.once(store, progress, t.db, false).await
}

/// `backup db`: a run by hand of `db` into `path`.
pub async fn run_db(
    store: &Store,
    progress: &dyn Progress,
    db: &DbRef,
    path: &Path,
    max_pause_ms: Option<u64>,
    codec: Codec,
) -> Result<BackupRun> {
    let codec = Codec {
        encrypt: recipients_file(codec.encrypt)?,
        ..codec
    };
    let cluster = store.cluster()?;
    let id = db.resolve(&cluster)?.id;
    let path = check_repository(&cluster, path).map_err(BackupTaskError::Repository)?;
    let run = Run {
        origin: Origin::Once,
        path: &path,
        max_pause_ms: max_pause_ms.unwrap_or(DEFAULT_MAX_PAUSE_MS),
        codec,
    };
    run.once(store, progress, id, false).await
}

/// The recipients file made absolute, checked to hold at least one age public key.
fn recipients_file(path: Option<PathBuf>) -> Result<Option<PathBuf>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let abs = std::path::absolute(&path).map_err(|error| BackupTaskError::Resolve {
        path: path.clone(),
        error,
    })?;
    Recipients::load(&abs).map_err(BackupTaskError::Recipients)?;
    Ok(Some(abs))
}

/// The CCS lock, waiting a while for another shell (a run finishing) to let it go; runs
/// found dead are marked `interrupted` on the way.
pub async fn locked(store: &Store) -> Result<(StoreLock, Cluster)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match store.lock().and_then(|lock| Ok((lock.cluster()?, lock))) {
            Ok((mut cluster, lock)) => {
                if sweep_interrupted(&mut cluster, store.home()) {
                    lock.save(&mut cluster)?;
                }
                return Ok((lock, cluster));
            }
            Err(e) if e.kind() == ErrorKind::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn find_task<'a>(cluster: &'a Cluster, name: &str) -> Result<&'a BackupTask> {
    cluster
        .backups
        .tasks
        .get(name)
        .ok_or_else(|| BackupTaskError::NoSuchTask {
            name: name.to_string(),
            known: cluster.backups.tasks.keys().cloned().collect(),
        })
}

/// A one-off run of a database into `path` (a directory or URL): the safety backup a
/// forced restore takes of the data it is about to replace. Compressed; encrypted to the
/// public keys of the task's `identity` when it has one (the run restored was encrypted),
/// else to the recipients of an encrypting backup task of the database.
pub async fn safety_run(
    store: &Store,
    progress: &dyn Progress,
    restore_task: &str,
    db_id: Id,
    path: &Path,
    identity: Option<&Path>,
) -> Result<BackupRun> {
    let (path, encrypt) = {
        let cluster = store.cluster()?;
        // Encrypted to the identity that opens the run restored (its public keys), else
        // as the database's own backups are: never in the clear where they are not.
        let encrypt = identity.map(Path::to_path_buf).or_else(|| {
            cluster
                .backups
                .tasks
                .values()
                .filter(|t| t.db == db_id)
                .find_map(|t| t.encrypt.clone())
        });
        let path = check_repository(&cluster, path).map_err(BackupTaskError::Repository)?;
        (path, encrypt)
    };
    let run = Run {
        origin: Origin::Safety(restore_task),
        path: &path,
        max_pause_ms: DEFAULT_MAX_PAUSE_MS,
        codec: Codec {
            compress: Default::default(),
            encrypt,
        },
    };
    run.once(store, progress, db_id, false).await
}

/// Why a run is taken.
#[derive(Clone, Copy)]
enum Origin<'a> {
    /// A backup task's run.
    Task(&'a BackupTask),
    /// `backup db`: a run by hand.
    Once,
    /// The safety backup of a restore task's forced start.
    Safety(&'a str),
}

impl<'a> Origin<'a> {
    fn task(self) -> Option<&'a BackupTask> {
        match self {
            Origin::Task(t) => Some(t),
            _ => None,
        }
    }

    fn safety_for(self) -> Option<String> {
        match self {
            Origin::Safety(restore_task) => Some(restore_task.to_string()),
            _ => None,
        }
    }
}

/// One run to take: why, where, and how.
struct Run<'a> {
    origin: Origin<'a>,
    path: &'a Path,
    max_pause_ms: u64,
    codec: Codec,
}

impl<'a> Run<'a> {
    fn of_task(t: &'a BackupTask) -> Run<'a> {
        Run {
            origin: Origin::Task(t),
            path: &t.path,
            max_pause_ms: t.max_pause_ms,
            codec: Codec {
                compress: t.compress,
                encrypt: t.encrypt.clone(),
            },
        }
    }

    /// The run of `db_id`: recorded `running` first, taken without the CCS lock,
    /// recorded again at the end with its outcome. With `apply_keep` (scheduled runs,
    /// `backup due`) the task's `keep` is applied after a success; runs by hand leave
    /// that to `backup task prune`.
    async fn once(
        self,
        store: &Store,
        progress: &dyn Progress,
        db_id: Id,
        apply_keep: bool,
    ) -> Result<BackupRun> {
        let home = store.home().to_path_buf();
        let (cluster, db, id, run_lock) = self.record_start(store, db_id).await?;
        let spec = RunSpec {
            run: id.clone(),
            task: self.origin.task().map(|t| t.name.clone()),
            safety_for: self.origin.safety_for(),
            repo: Repository::open(self.path).map_err(BackupTaskError::Repository)?,
            max_pause: Duration::from_millis(self.max_pause_ms),
            codec: self.codec.clone(),
        };
        let clock = Instant::now();
        let outcome = take(&cluster, &db, &spec, progress).await;
        let took = clock.elapsed().as_millis() as u64;
        let outcome = outcome.map_err(|e| e.to_string());
        let run = self
            .record_end(store, &id, took, &outcome, apply_keep)
            .await?;
        drop(run_lock);
        let _ = std::fs::remove_file(home.join("locks").join(format!("run-{id}.lock")));
        match outcome {
            Ok(_) => Ok(run),
            Err(error) => Err(BackupTaskError::RunFailed {
                id,
                db: db.id,
                db_name: db.config.name,
                error,
            }),
        }
    }

    /// The run recorded `running` under a new id and its lock taken: the cluster as
    /// saved, the database, the id and the lock.
    async fn record_start(
        &self,
        store: &Store,
        db_id: Id,
    ) -> Result<(Cluster, crate::ccs::Database, String, RunLock)> {
        let (lock, mut cluster) = locked(store).await?;
        let Some(db) = cluster.databases.get(&db_id).cloned() else {
            return Err(self.gone(&cluster, db_id));
        };
        if db.state == DbState::PendingRecovery {
            return Err(BackupTaskError::PendingRecovery {
                id: db.id,
                name: db.config.name,
            });
        }
        // Asked under the CCS lock, as `delete db` and `restart db` ask. A safety backup
        // is its own restore task's (that task holds its lock): it backs up the data
        // before any is replaced.
        let own = self.origin.safety_for();
        let except: Vec<&str> = own.iter().map(String::as_str).collect();
        if let Some(task) = claimed_task_of(store.home(), &cluster, &db.config.name, &except) {
            return Err(BackupTaskError::Restoring {
                id: db.id,
                name: db.config.name,
                task,
            });
        }
        // Nor one whose shell died mid-restore (`running` with no shell holding it, or
        // found `interrupted`): until it is retried or deleted its data may be half
        // restored.
        let cut_short = cluster.backups.restores.values().find(|t| {
            t.db == db.config.name
                && !except.contains(&t.name.as_str())
                && matches!(t.state, RestoreState::Running | RestoreState::Interrupted)
        });
        if let Some(t) = cut_short {
            return Err(BackupTaskError::RestoreCutShort {
                id: db.id,
                name: db.config.name.clone(),
                task: t.name.clone(),
            });
        }
        let id = new_run_id(&mut cluster);
        let run_lock = RunLock::run(store.home(), &id)
            .map_err(BackupTaskError::Lock)?
            .ok_or_else(|| BackupTaskError::RunLocked(id.clone()))?;
        cluster.backups.runs.push(BackupRun {
            id: id.clone(),
            task: self.origin.task().map(|t| t.name.clone()),
            db: db.id,
            db_name: db.config.name.clone(),
            path: self.path.to_path_buf(),
            started: now_ms(),
            took_ms: None,
            status: RunStatus::Running,
            reason: None,
            keys: 0,
            bytes: 0,
            server_version: None,
            pause_us: None,
            safety_for: self.origin.safety_for(),
        });
        lock.save(&mut cluster)?;
        Ok((cluster, db, id, run_lock))
    }

    /// [`BackupTaskError::DbGone`] for db `id`: for a task's run, with the database's
    /// name as the task's runs recorded it and the database of that name now, if any.
    fn gone(&self, cluster: &Cluster, id: Id) -> BackupTaskError {
        let task = self.origin.task();
        let name = task.and_then(|task| {
            cluster
                .backups
                .runs
                .iter()
                .rev()
                .find(|r| r.db == id && r.task.as_ref() == Some(&task.name))
                .map(|r| r.db_name.clone())
        });
        let named_now = name
            .as_deref()
            .and_then(|n| cluster.database_by_name(n))
            .map(|d| d.id);
        BackupTaskError::DbGone {
            id,
            task: task.map(|t| (t.name.clone(), t.path.clone())),
            name,
            named_now,
        }
    }

    /// The run's outcome recorded (and the task's `keep` applied after a success, with
    /// `apply_keep`); the run as saved.
    async fn record_end(
        &self,
        store: &Store,
        id: &str,
        took: u64,
        outcome: &std::result::Result<Manifest, String>,
        apply_keep: bool,
    ) -> Result<BackupRun> {
        let (lock, mut cluster) = locked(store).await?;
        let Some(run) = cluster.backups.run_mut(id) else {
            return Err(BackupTaskError::RunVanished(id.to_string()));
        };
        run.took_ms = Some(took);
        match outcome {
            Ok(m) => {
                run.status = RunStatus::Succeeded;
                run.keys = m.keys();
                run.bytes = m.bytes();
                run.server_version = m
                    .shards
                    .first()
                    .map(|s| format!("{} {}", s.engine, s.server_version));
                run.pause_us = Some((m.pause_ms * 1000.0) as u64);
            }
            Err(e) => {
                run.status = RunStatus::Failed;
                run.reason = Some(e.clone());
            }
        }
        let run = run.clone();
        if let (Some(t), Ok(_), true) = (self.origin.task(), outcome, apply_keep) {
            if let Some(current) = cluster.backups.tasks.get(&t.name).cloned() {
                let gone = prune_plan(&current, &cluster.backups);
                remove_runs(&mut cluster, &gone);
            }
        }
        lock.save(&mut cluster)?;
        Ok(run)
    }
}

/// Removes runs' directories and their records; what could not be removed, one message
/// each.
fn remove_runs(cluster: &mut Cluster, ids: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    for id in ids {
        if let Some(run) = cluster.backups.run(id) {
            let removed = Repository::open(&run.path).and_then(|repo| {
                repo.remove_own(id, cluster.cluster_id)
                    .map_err(|e| format!("cannot remove `{}`: {e}", repo.run_shown(id)))
            });
            if let Err(e) = removed {
                problems.push(e);
                continue;
            }
        }
        cluster.backups.runs.retain(|r| &r.id != id);
    }
    problems
}

/// A run as history shows it: a succeeded run whose manifest is gone or damaged is no
/// restore point, so it is shown failed, with why.
fn effective(run: &BackupRun) -> BackupRun {
    let mut run = run.clone();
    if run.status != RunStatus::Succeeded {
        return run;
    }
    let manifest = Repository::open(&run.path)
        .map_err(|e| e.to_string())
        .and_then(|repo| repo.manifest(&run.id).map_err(|e| e.to_string()));
    (run.status, run.reason) = match manifest {
        Ok(_) => (RunStatus::Succeeded, None),
        Err(e) => (RunStatus::Failed, Some(e)),
    };
    run
}

/// A backup task as `backup task list` shows it.
pub struct TaskState {
    pub task: BackupTask,
    /// Its database (`db:N name`, or `db:N (deleted)`).
    pub db: String,
    /// Its newest run, as history shows it.
    pub last_run: Option<BackupRun>,
    pub due: bool,
}

/// `backup task list`: every task with its newest run and whether it is due.
pub async fn tasks(store: &Store) -> Result<Vec<TaskState>> {
    let cluster = swept(store).await?;
    let now = now_ms();
    let mut rows = Vec::new();
    for t in cluster.backups.tasks.values() {
        let last_run = cluster
            .backups
            .runs
            .iter()
            .filter(|r| r.task.as_deref() == Some(&t.name))
            .max_by_key(|r| r.started)
            .map(effective);
        let db = cluster
            .databases
            .get(&t.db)
            .map(|d| format!("db:{} {}", d.id, d.config.name))
            .unwrap_or_else(|| format!("db:{} (deleted)", t.db));
        rows.push(TaskState {
            task: t.clone(),
            db,
            last_run,
            due: is_due(t, &cluster.backups.runs, now),
        });
    }
    Ok(rows)
}

/// The stored cluster with dead runs marked `interrupted` (saved when any were).
async fn swept(store: &Store) -> Result<Cluster> {
    let cluster = store.cluster()?;
    let dead = cluster
        .backups
        .runs
        .iter()
        .any(|r| r.status == RunStatus::Running);
    if !dead {
        return Ok(cluster);
    }
    let (_lock, cluster) = locked(store).await?;
    Ok(cluster)
}

/// `backup task history`: the runs of task `name` (also of a task deleted since), as
/// history shows them.
pub async fn history(store: &Store, name: &str) -> Result<Vec<BackupRun>> {
    let cluster = swept(store).await?;
    let known_task = cluster.backups.tasks.contains_key(name);
    let runs: Vec<&BackupRun> = cluster
        .backups
        .runs
        .iter()
        .filter(|r| r.task.as_deref() == Some(name))
        .collect();
    if !known_task && runs.is_empty() {
        find_task(&cluster, name)?;
    }
    Ok(runs.into_iter().map(effective).collect())
}

/// What `backup task prune` removes (or would, with `dry_run`).
pub struct Pruning {
    pub runs: Vec<BackupRun>,
    pub keep: Option<u32>,
}

/// `backup task prune`: the runs beyond the task's `keep` removed, directories and
/// records.
pub async fn prune(store: &Store, name: &str, dry_run: bool) -> Result<Pruning> {
    let (lock, mut cluster) = locked(store).await?;
    let task = find_task(&cluster, name)?.clone();
    let gone = prune_plan(&task, &cluster.backups);
    let runs = gone
        .iter()
        .filter_map(|id| cluster.backups.run(id))
        .cloned()
        .collect();
    if !dry_run && !gone.is_empty() {
        let problems = remove_runs(&mut cluster, &gone);
        lock.save(&mut cluster)?;
        if !problems.is_empty() {
            return Err(BackupTaskError::NotRemoved(problems));
        }
    }
    Ok(Pruning {
        runs,
        keep: task.keep,
    })
}

/// `backup task delete`: the task removed (not while it runs), its runs' directories
/// too with `purge`. The ids of its runs.
pub async fn delete_task(store: &Store, name: &str, purge: bool) -> Result<Vec<String>> {
    let Some(_task_lock) = RunLock::task(store.home(), name).map_err(BackupTaskError::Lock)? else {
        return Err(BackupTaskError::TaskBusy(name.to_string()));
    };
    let (lock, mut cluster) = locked(store).await?;
    find_task(&cluster, name)?;
    let ids: Vec<String> = cluster
        .backups
        .runs
        .iter()
        .filter(|r| r.task.as_deref() == Some(name))
        .map(|r| r.id.clone())
        .collect();
    // `purge` never takes away the restore point a pending restore task was given: the
    // operator chose it, and it may be the only copy of that data.
    let needed: Vec<(String, String)> = ids
        .iter()
        .filter_map(|id| {
            let by = cluster.backups.restoring(id)?;
            Some((id.clone(), by.name.clone()))
        })
        .collect();
    if purge && !needed.is_empty() {
        return Err(BackupTaskError::RestoresNeed {
            task: name.to_string(),
            needed,
        });
    }
    cluster.backups.tasks.remove(name);
    let mut problems = Vec::new();
    if purge {
        problems = remove_runs(&mut cluster, &ids);
    }
    lock.save(&mut cluster)?;
    if !problems.is_empty() {
        return Err(BackupTaskError::NotRemoved(problems));
    }
    Ok(ids)
}

/// `backup show`: the manifest of one of this cluster's runs.
/// `backup show <run|latest>`: the run's manifest.
pub fn show(store: &Store, name: &str) -> Result<Manifest> {
    let cluster = store.cluster()?;
    let run = own_run(&cluster, name, None)?;
    let repo = Repository::open(&run.path).map_err(BackupTaskError::Repository)?;
    repo.manifest(&run.id)
        .map_err(|error| BackupTaskError::NotRestorePoint {
            id: run.id.clone(),
            status: run.status,
            error,
        })
}

/// A run of this cluster's own backups as an operator names it, the one reading of such
/// a name (`backup show`, `verify db ... against`, `restore task create ... backup`): its
/// id, or `latest`, the newest succeeded run whose manifest is valid (never a safety
/// backup: it holds what a restore replaced, not a chosen restore point), of database
/// `db` when one is named (by its name, or its id when it exists).
pub fn own_run<'a>(
    cluster: &'a Cluster,
    name: &str,
    db: Option<(&str, Option<Id>)>,
) -> Result<&'a BackupRun> {
    let runs = &cluster.backups.runs;
    if name != LATEST {
        return cluster
            .backups
            .run(name)
            .ok_or_else(|| BackupTaskError::NoSuchRun {
                id: name.to_string(),
                recent: runs.iter().rev().take(5).map(|r| r.id.clone()).collect(),
            });
    }
    runs.iter()
        .filter(|r| r.status == RunStatus::Succeeded)
        .filter(|r| r.safety_for.is_none())
        .filter(|r| db.is_none_or(|(n, id)| r.is_of(n, id)))
        .filter(|r| Repository::open(&r.path).is_ok_and(|repo| repo.manifest(&r.id).is_ok()))
        .max_by_key(|r| r.started)
        .ok_or_else(|| BackupTaskError::NoGoodRun {
            db: db.map(|(n, _)| n.to_string()),
        })
}

/// The name of the newest restore point, wherever a run is named.
pub const LATEST: &str = "latest";

/// One run directory of a repository as `backup list path` shows it: its manifest, or
/// why it is not restorable.
pub struct StoredRun {
    pub run: String,
    pub manifest: Option<Manifest>,
    pub problem: Option<String>,
    /// Not a run: a repository of its own nested in this one, holding this many
    /// entries (one of them a run at least).
    pub nested: Option<usize>,
}

/// Every run directory of a repository, read from the repository alone (no cluster
/// needed): its manifest, or why it is not restorable (no or a bad manifest, a file
/// missing or of the wrong size); with `db`, that database's runs and those whose
/// database is unknown.
pub fn repository_runs(path: &Path, db: Option<&str>) -> Result<Vec<StoredRun>> {
    let repo = Repository::open(path).map_err(BackupTaskError::Repository)?;
    let mut rows = Vec::new();
    for run in repo.runs()? {
        let row = match repo.manifest(&run) {
            Ok(m) => {
                if db.is_some_and(|d| d != m.db.name) {
                    continue;
                }
                let problem = missing_file(&repo, &run, &m);
                StoredRun {
                    run,
                    manifest: Some(m),
                    problem,
                    nested: None,
                }
            }
            // No manifest of its own, but runs inside: a repository, not an unfinished run.
            Err(ManifestError::Missing(_)) if let Some(n) = repo.nested(&run) => StoredRun {
                run,
                manifest: None,
                problem: None,
                nested: Some(n),
            },
            // Which database it held is unknown: listed whatever `db` asks.
            Err(e) => StoredRun {
                run,
                manifest: None,
                problem: Some(e.to_string()),
                nested: None,
            },
        };
        rows.push(row);
    }
    Ok(rows)
}

/// A file of the manifest missing from the run, or of another size.
fn missing_file(repo: &Repository, run: &str, m: &Manifest) -> Option<String> {
    let found = match repo.objects(run) {
        Err(e) => return Some(e),
        Ok(found) => found,
    };
    m.shards.iter().find_map(|s| {
        let f = repo.file(run, &s.file);
        match found.get(&s.file) {
            None => Some(format!("`{f}` is missing")),
            Some(&len) if len != s.stored_size() => Some(format!(
                "`{f}` has {len} bytes, the manifest says {}",
                s.stored_size()
            )),
            Some(_) => None,
        }
    })
}

/// What `backup due` did with one task.
pub struct DueOutcome {
    pub task: String,
    /// `succeeded`, `not due`, `skipped: ...`, `failed: ...`.
    pub outcome: String,
    pub run: Option<BackupRun>,
    pub ok: bool,
}

impl DueOutcome {
    fn of(task: String, outcome: impl Into<String>, run: Option<BackupRun>, ok: bool) -> Self {
        DueOutcome {
            task,
            outcome: outcome.into(),
            run,
            ok,
        }
    }
}

/// `backup due`: runs every due task, different tasks at once; a task another shell is
/// running is skipped, and whether a task is due is decided again once its lock is
/// held. Sorted by task.
pub async fn due(store: &Store, progress: Arc<dyn Progress>) -> Result<Vec<DueOutcome>> {
    let cluster = swept(store).await?;
    let now = now_ms();
    let mut set = tokio::task::JoinSet::new();
    let mut rows = Vec::new();
    for t in cluster.backups.tasks.values() {
        if !is_due(t, &cluster.backups.runs, now) {
            rows.push(DueOutcome::of(t.name.clone(), "not due", None, true));
            continue;
        }
        let (store, progress, name) = (store.clone(), progress.clone(), t.name.clone());
        set.spawn(async move { run_due(&store, &*progress, name).await });
    }
    while let Some(res) = set.join_next().await {
        match res {
            Ok(row) => rows.push(row),
            Err(e) => rows.push(DueOutcome::of(
                "?".into(),
                format!("failed: {e}"),
                None,
                false,
            )),
        }
    }
    rows.sort_by(|a, b| a.task.cmp(&b.task));
    Ok(rows)
}

/// One due task's run, under its task lock.
async fn run_due(store: &Store, progress: &dyn Progress, name: String) -> DueOutcome {
    let lock = match RunLock::task(store.home(), &name) {
        Ok(Some(l)) => l,
        Ok(None) => return DueOutcome::of(name, "skipped: running in another shell", None, true),
        Err(e) => return DueOutcome::of(name, format!("failed: {e}"), None, false),
    };
    // Fresh: another shell may have just finished a run of it.
    let fresh = match store.cluster() {
        Ok(c) => c,
        Err(e) => return DueOutcome::of(name, format!("failed: {e}"), None, false),
    };
    let Some(t) = fresh.backups.tasks.get(&name).cloned() else {
        return DueOutcome::of(name, "skipped: deleted meanwhile", None, true);
    };
    if !is_due(&t, &fresh.backups.runs, now_ms()) {
        return DueOutcome::of(name, "not due (ran meanwhile)", None, true);
    }
    let res = Run::of_task(&t).once(store, progress, t.db, true).await;
    drop(lock);
    match res {
        Ok(run) => DueOutcome::of(name, "succeeded", Some(run), true),
        Err(e) => DueOutcome::of(name, format!("failed: {e}"), None, false),
    }
}
