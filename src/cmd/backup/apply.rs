//! What the `backup` commands do: tasks in the CCS, runs recorded before they start and
//! after they end (the CCS lock is not held while a run streams), locks so that runs of a
//! task never overlap.

use std::time::{Duration, Instant};

use super::BackupCommand;
use crate::backup::{
    self, is_due, prune_plan, sweep_interrupted, Codec, Manifest, Recipients, Repository, RunLock,
    RunSpec, DEFAULT_MAX_PAUSE_MS,
};
use crate::ccs::{BackupRun, BackupTask, Cluster, DbState, Id, RunStatus, StoreLock};
use crate::cmd::{CommandError, Context, Reply};

use super::view::{
    Deleted, Due, DueRow, History, ManifestView, Pruned, PrunedRun, RepoList, RepoRun, RunView,
    TaskCreated, TaskList, TaskRow,
};
use crate::error::ErrorKind;

impl BackupCommand {
    pub async fn apply(self, ctx: &Context) -> Result<Reply, CommandError> {
        match self {
            BackupCommand::TaskCreate {
                name,
                db,
                path,
                keep,
                every,
                max_pause,
                compress,
                encrypt,
            } => {
                let encrypt = recipients_file(encrypt)?;
                let (lock, mut cluster) = locked(ctx).await?;
                if cluster.backups.tasks.contains_key(&name) {
                    return Err(CommandError::conflict(format!(
                        "there is already a backup task `{name}`"
                    )));
                }
                let db = db.resolve(&cluster)?.id;
                let path = backup::check_repository(&cluster, &path).map_err(repo_error)?;
                let task = BackupTask {
                    name: name.clone(),
                    db,
                    path,
                    keep,
                    every: every.map(|e| e.secs()),
                    max_pause_ms: max_pause.map_or(DEFAULT_MAX_PAUSE_MS, |p| p.ms),
                    created: backup::now_ms() / 1000,
                    compress,
                    encrypt,
                };
                cluster.backups.tasks.insert(name.clone(), task.clone());
                lock.save(&mut cluster)?;
                let db_name = cluster.databases[&db].config.name.clone();
                Reply::of(&TaskCreated { task, db_name })
            }
            BackupCommand::TaskRun { task } => {
                let cluster = ctx.cluster()?;
                let t = find_task(&cluster, &task)?.clone();
                let Some(_task_lock) =
                    RunLock::task(ctx.store.home(), &task).map_err(CommandError::io)?
                else {
                    return Err(CommandError::conflict(format!(
                        "backup task `{task}` is already running"
                    )));
                };
                let run = run_once(
                    ctx,
                    Origin::Task(&t),
                    t.db,
                    &t.path,
                    t.max_pause_ms,
                    codec(&t),
                    false,
                )
                .await?;
                Reply::of(&RunView::new(run))
            }
            BackupCommand::Db {
                db,
                path,
                max_pause,
                compress,
                encrypt,
            } => {
                let encrypt = recipients_file(encrypt)?;
                let cluster = ctx.cluster()?;
                let id = db.resolve(&cluster)?.id;
                let path = backup::check_repository(&cluster, &path).map_err(repo_error)?;
                let pause = max_pause.map_or(DEFAULT_MAX_PAUSE_MS, |p| p.ms);
                let codec = Codec { compress, encrypt };
                let run = run_once(ctx, Origin::Once, id, &path, pause, codec, false).await?;
                Reply::of(&RunView::new(run))
            }
            BackupCommand::TaskList => list(ctx).await,
            BackupCommand::TaskHistory { task } => history(ctx, &task).await,
            BackupCommand::TaskPrune { task, dry_run } => prune(ctx, &task, dry_run).await,
            BackupCommand::TaskDelete { task, purge } => delete(ctx, &task, purge).await,
            BackupCommand::Show { run } => show(ctx, &run),
            BackupCommand::List { path, db } => repository_list(&path, db.as_deref()),
            BackupCommand::Due => due(ctx).await,
        }
    }
}

/// The recipients file made absolute, checked to hold at least one age public key.
fn recipients_file(
    path: Option<std::path::PathBuf>,
) -> Result<Option<std::path::PathBuf>, CommandError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let abs = std::path::absolute(&path)
        .map_err(|e| CommandError::io(format!("cannot resolve `{}`: {e}", path.display())))?;
    Recipients::load(&abs).map_err(CommandError::not_found)?;
    Ok(Some(abs))
}

fn codec(t: &BackupTask) -> Codec {
    Codec {
        compress: t.compress,
        encrypt: t.encrypt.clone(),
    }
}

/// The CCS lock, waiting a while for another shell (a run finishing) to let it go; runs
/// found dead are marked `interrupted` on the way.
async fn locked(ctx: &Context) -> Result<(StoreLock, Cluster), CommandError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match ctx.lock_cluster() {
            Ok((lock, mut cluster)) => {
                if sweep_interrupted(&mut cluster, ctx.store.home()) {
                    lock.save(&mut cluster)?;
                }
                return Ok((lock, cluster));
            }
            Err(e) if e.kind() == ErrorKind::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A repository path that cannot be used: inside shard data or a recovery path is a
/// conflict, the rest the file system's refusal.
fn repo_error(why: String) -> CommandError {
    if why.contains(" is inside ") {
        CommandError::conflict(why)
    } else {
        CommandError::io(why)
    }
}

fn find_task<'a>(cluster: &'a Cluster, name: &str) -> Result<&'a BackupTask, CommandError> {
    cluster.backups.tasks.get(name).ok_or_else(|| {
        let known: Vec<String> = cluster
            .backups
            .tasks
            .keys()
            .map(|k| format!("`{k}`"))
            .collect();
        CommandError::not_found(format!(
            "there is no backup task `{name}` ({})",
            if known.is_empty() {
                "there are none: make one with `backup task create`".to_string()
            } else {
                format!("tasks: {}", known.join(", "))
            }
        ))
    })
}

/// A one-off run of a database into `path` (a directory or URL): the safety backup a
/// forced restore takes of the data it is about to replace. Compressed; encrypted to the
/// public keys of the task's `identity` when it has one (the run restored was encrypted),
/// else to the recipients of an encrypting backup task of the database.
pub(crate) async fn safety_run(
    ctx: &Context,
    restore_task: &str,
    db_id: Id,
    path: &std::path::Path,
    identity: Option<&std::path::Path>,
) -> Result<BackupRun, CommandError> {
    let (path, encrypt) = {
        let cluster = ctx.cluster()?;
        // Encrypted to the identity that opens the run restored (its public keys), else
        // as the database's own backups are: never in the clear where they are not.
        let encrypt = identity.map(std::path::Path::to_path_buf).or_else(|| {
            cluster
                .backups
                .tasks
                .values()
                .filter(|t| t.db == db_id)
                .find_map(|t| t.encrypt.clone())
        });
        let path = backup::check_repository(&cluster, path).map_err(repo_error)?;
        (path, encrypt)
    };
    let codec = Codec {
        compress: Default::default(),
        encrypt,
    };
    let origin = Origin::Safety(restore_task);
    run_once(
        ctx,
        origin,
        db_id,
        &path,
        DEFAULT_MAX_PAUSE_MS,
        codec,
        false,
    )
    .await
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

/// One run: recorded `running` first, taken without the CCS lock, recorded again at the
/// end with its outcome. With `apply_keep` (scheduled runs, `backup due`) the task's
/// `keep` is applied after a success; runs by hand leave that to `backup task prune`.
async fn run_once(
    ctx: &Context,
    origin: Origin<'_>,
    db_id: Id,
    path: &std::path::Path,
    max_pause_ms: u64,
    codec: Codec,
    apply_keep: bool,
) -> Result<BackupRun, CommandError> {
    let task = origin.task();
    let home = ctx.store.home().to_path_buf();
    let (lock, mut cluster) = locked(ctx).await?;
    let db = cluster
        .databases
        .get(&db_id)
        .cloned()
        .ok_or_else(|| CommandError::not_found(format!("db:{db_id} no longer exists")))?;
    if db.state == DbState::PendingRecovery {
        return Err(CommandError::conflict(format!(
            "db:{} `{}` is pending recovery: recover it before backing it up",
            db.id, db.config.name
        )));
    }
    let id = backup::new_run_id(&mut cluster);
    let run_lock = RunLock::run(&home, &id)
        .map_err(CommandError::io)?
        .ok_or_else(|| CommandError::conflict(format!("run `{id}` is locked by another shell")))?;
    let started = backup::now_ms();
    cluster.backups.runs.push(BackupRun {
        id: id.clone(),
        task: task.map(|t| t.name.clone()),
        db: db.id,
        db_name: db.config.name.clone(),
        path: path.to_path_buf(),
        started,
        took_ms: None,
        status: RunStatus::Running,
        reason: None,
        keys: 0,
        bytes: 0,
        server_version: None,
        pause_us: None,
        safety_for: origin.safety_for(),
    });
    lock.save(&mut cluster)?;
    drop(lock);

    let repo = Repository::open(path).map_err(repo_error)?;
    let spec = RunSpec {
        run: id.clone(),
        task: task.map(|t| t.name.clone()),
        safety_for: origin.safety_for(),
        repo,
        max_pause: Duration::from_millis(max_pause_ms),
        codec,
    };
    let clock = Instant::now();
    let outcome = backup::take(&cluster, &db, &spec, ctx.progress.as_ref()).await;
    let took = clock.elapsed().as_millis() as u64;

    let (lock, mut cluster) = locked(ctx).await?;
    let Some(run) = cluster.backups.run_mut(&id) else {
        return Err(CommandError::internal(format!(
            "run `{id}` vanished from the configuration"
        )));
    };
    run.took_ms = Some(took);
    match &outcome {
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
            run.reason = Some(e.to_string());
        }
    }
    let run = run.clone();
    if let (Some(t), Ok(_), true) = (task, &outcome, apply_keep) {
        if let Some(current) = cluster.backups.tasks.get(&t.name).cloned() {
            let gone = prune_plan(&current, &cluster.backups.runs);
            remove_runs(&mut cluster, &gone);
        }
    }
    lock.save(&mut cluster)?;
    drop(run_lock);
    let _ = std::fs::remove_file(home.join("locks").join(format!("run-{id}.lock")));
    match outcome {
        Ok(_) => Ok(run),
        Err(e) => Err(CommandError::unavailable(format!(
            "backup run `{id}` of db:{} `{}` failed: {e}",
            db.id, db.config.name
        ))),
    }
}

/// Removes runs' directories and their records.
fn remove_runs(cluster: &mut Cluster, ids: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    for id in ids {
        if let Some(run) = cluster.backups.run(id) {
            let removed = Repository::open(&run.path).and_then(|repo| {
                repo.remove(id)
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

/// A succeeded run whose manifest is gone or damaged is no restore point: history shows
/// it as failed, with why.
fn effective(run: &BackupRun) -> (RunStatus, Option<String>) {
    if run.status != RunStatus::Succeeded {
        return (run.status, run.reason.clone());
    }
    match Repository::open(&run.path)
        .map_err(|e| e.to_string())
        .and_then(|repo| repo.manifest(&run.id).map_err(|e| e.to_string()))
    {
        Ok(_) => (RunStatus::Succeeded, None),
        Err(e) => (RunStatus::Failed, Some(e)),
    }
}

async fn list(ctx: &Context) -> Result<Reply, CommandError> {
    let cluster = swept(ctx).await?;
    let now = backup::now_ms();
    let mut rows = Vec::new();
    for t in cluster.backups.tasks.values() {
        let last = cluster
            .backups
            .runs
            .iter()
            .filter(|r| r.task.as_deref() == Some(&t.name))
            .max_by_key(|r| r.started)
            .map(|r| {
                let mut r = r.clone();
                (r.status, r.reason) = effective(&r);
                RunView::new(r)
            });
        let db = cluster
            .databases
            .get(&t.db)
            .map(|d| format!("db:{} {}", d.id, d.config.name))
            .unwrap_or_else(|| format!("db:{} (deleted)", t.db));
        rows.push(TaskRow {
            task: t.clone(),
            db,
            last_run: last,
            due: is_due(t, &cluster.backups.runs, now),
        });
    }
    Reply::of(&TaskList(rows))
}

/// The stored cluster with dead runs marked `interrupted` (saved when any were).
async fn swept(ctx: &Context) -> Result<Cluster, CommandError> {
    let cluster = ctx.cluster()?;
    let dead = cluster
        .backups
        .runs
        .iter()
        .any(|r| r.status == RunStatus::Running);
    if !dead {
        return Ok(cluster);
    }
    let (_lock, cluster) = locked(ctx).await?;
    Ok(cluster)
}

async fn history(ctx: &Context, name: &str) -> Result<Reply, CommandError> {
    let cluster = swept(ctx).await?;
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
    let runs = runs
        .into_iter()
        .map(|r| {
            let mut r = r.clone();
            (r.status, r.reason) = effective(&r);
            RunView::new(r)
        })
        .collect();
    Reply::of(&History {
        runs,
        task: name.to_string(),
    })
}

async fn prune(ctx: &Context, name: &str, dry_run: bool) -> Result<Reply, CommandError> {
    let (lock, mut cluster) = locked(ctx).await?;
    let task = find_task(&cluster, name)?.clone();
    let gone = prune_plan(&task, &cluster.backups.runs);
    let runs = gone
        .iter()
        .filter_map(|id| cluster.backups.run(id))
        .map(|r| PrunedRun {
            id: r.id.clone(),
            run_dir: r.path.join(&r.id),
            status: r.status,
            started: r.started,
        })
        .collect();
    if !dry_run && !gone.is_empty() {
        let problems = remove_runs(&mut cluster, &gone);
        lock.save(&mut cluster)?;
        if !problems.is_empty() {
            return Err(CommandError::io(problems.join("; ")));
        }
    }
    Reply::of(&Pruned {
        task: name.to_string(),
        dry_run,
        runs,
        keep: task.keep,
    })
}

async fn delete(ctx: &Context, name: &str, purge: bool) -> Result<Reply, CommandError> {
    let Some(_task_lock) = RunLock::task(ctx.store.home(), name).map_err(CommandError::io)? else {
        return Err(CommandError::conflict(format!(
            "backup task `{name}` is running: delete it when the run ends"
        )));
    };
    let (lock, mut cluster) = locked(ctx).await?;
    find_task(&cluster, name)?;
    cluster.backups.tasks.remove(name);
    let ids: Vec<String> = cluster
        .backups
        .runs
        .iter()
        .filter(|r| r.task.as_deref() == Some(name))
        .map(|r| r.id.clone())
        .collect();
    let mut problems = Vec::new();
    if purge {
        problems = remove_runs(&mut cluster, &ids);
    }
    lock.save(&mut cluster)?;
    if !problems.is_empty() {
        return Err(CommandError::io(problems.join("; ")));
    }
    Reply::of(&Deleted {
        deleted: name.to_string(),
        purged: purge,
        runs: ids,
    })
}

fn show(ctx: &Context, id: &str) -> Result<Reply, CommandError> {
    let cluster = ctx.cluster()?;
    let Some(run) = cluster.backups.run(id) else {
        let recent: Vec<String> = cluster
            .backups
            .runs
            .iter()
            .rev()
            .take(5)
            .map(|r| format!("`{}`", r.id))
            .collect();
        return Err(CommandError::not_found(format!(
            "there is no backup run `{id}` ({})",
            if recent.is_empty() {
                "there are none".to_string()
            } else {
                format!("latest: {}", recent.join(", "))
            }
        )));
    };
    let repo = Repository::open(&run.path).map_err(repo_error)?;
    let m: Manifest = repo.manifest(id).map_err(|e| {
        CommandError::damaged(format!(
            "backup run `{id}` is not a restore point ({}): {e}",
            run.status
        ))
    })?;
    Reply::of(&ManifestView(m))
}

/// Every run directory of a repository, read from the repository alone (no cluster
/// needed): its manifest's summary, or why it is not restorable (no or a bad manifest, a
/// file missing or of the wrong size).
fn repository_list(path: &std::path::Path, db: Option<&str>) -> Result<Reply, CommandError> {
    let repo = Repository::open(path).map_err(repo_error)?;
    let runs = repo.runs().map_err(CommandError::from)?;
    let mut rows = Vec::new();
    for run in runs {
        let row = match repo.manifest(&run) {
            Ok(m) => {
                if db.is_some_and(|d| d != m.db.name) {
                    continue;
                }
                let problem = match repo.objects(&run) {
                    Err(e) => Some(e),
                    Ok(found) => m.shards.iter().find_map(|s| {
                        let f = repo.file(&run, &s.file);
                        match found.get(&s.file) {
                            None => Some(format!("`{f}` is missing")),
                            Some(&len) if len != s.stored_size() => Some(format!(
                                "`{f}` has {len} bytes, the manifest says {}",
                                s.stored_size()
                            )),
                            Some(_) => None,
                        }
                    }),
                };
                RepoRun::of(run, Some(&m), problem)
            }
            // Which database it held is unknown: listed whatever `db` asks.
            Err(e) => RepoRun::of(run, None, Some(e.to_string())),
        };
        rows.push(row);
    }
    Reply::of(&RepoList {
        path: path.to_path_buf(),
        runs: rows,
    })
}

/// Runs every due task, different tasks at once; a task another shell is running is
/// skipped, and whether a task is due is decided again once its lock is held.
async fn due(ctx: &Context) -> Result<Reply, CommandError> {
    let cluster = swept(ctx).await?;
    let now = backup::now_ms();
    let mut set = tokio::task::JoinSet::new();
    let mut rows = Vec::new();
    for t in cluster.backups.tasks.values() {
        if !is_due(t, &cluster.backups.runs, now) {
            rows.push((t.name.clone(), "not due".to_string(), None, true));
            continue;
        }
        let (ctx, name) = (ctx.clone(), t.name.clone());
        set.spawn(async move {
            let home = ctx.store.home().to_path_buf();
            let lock = match RunLock::task(&home, &name) {
                Ok(Some(l)) => l,
                Ok(None) => return (name, "skipped: running in another shell".into(), None, true),
                Err(e) => return (name, format!("failed: {e}"), None, false),
            };
            // Fresh: another shell may have just finished a run of it.
            let fresh = match ctx.cluster() {
                Ok(c) => c,
                Err(e) => return (name, format!("failed: {e}"), None, false),
            };
            let Some(t) = fresh.backups.tasks.get(&name).cloned() else {
                return (name, "skipped: deleted meanwhile".into(), None, true);
            };
            if !is_due(&t, &fresh.backups.runs, backup::now_ms()) {
                return (name, "not due (ran meanwhile)".into(), None, true);
            }
            let res = run_once(
                &ctx,
                Origin::Task(&t),
                t.db,
                &t.path,
                t.max_pause_ms,
                codec(&t),
                true,
            )
            .await;
            drop(lock);
            match res {
                Ok(run) => (name, "succeeded".into(), Some(run), true),
                Err(e) => (name, format!("failed: {e}"), None, false),
            }
        });
    }
    while let Some(res) = set.join_next().await {
        match res {
            Ok(row) => rows.push(row),
            Err(e) => rows.push(("?".into(), format!("failed: {e}"), None, false)),
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| !r.3)
        .map(|r| format!("`{}`", r.0))
        .collect();
    let rows = rows
        .into_iter()
        .map(|(task, outcome, run, ok)| DueRow {
            task,
            outcome,
            ok,
            run: run.map(RunView::new),
        })
        .collect();
    let reply = Reply::of(&Due(rows))?;
    if failed.is_empty() {
        Ok(reply)
    } else {
        Ok(reply.failed(CommandError::unavailable(format!(
            "backup task{} {} failed",
            if failed.len() == 1 { "" } else { "s" },
            failed.join(", ")
        ))))
    }
}
