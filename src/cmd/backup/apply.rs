//! What the `backup` commands do: tasks in the CCS, runs recorded before they start and
//! after they end (the CCS lock is not held while a run streams), locks so that runs of a
//! task never overlap.

use std::time::{Duration, Instant};

use serde_json::json;

use super::BackupCommand;
use crate::backup::{
    self, format_time, is_due, prune_plan, sweep_interrupted, Manifest, Repository, RunLock,
    RunSpec, DEFAULT_MAX_PAUSE_MS,
};
use crate::ccs::{BackupRun, BackupTask, Cluster, DbState, Id, RunStatus, StoreLock};
use crate::cmd::{CommandError, Context, Reply, Table};
use crate::error::ErrorKind;
use crate::lang::DbRef;

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
            } => {
                let (lock, mut cluster) = locked(ctx).await?;
                if cluster.backups.tasks.contains_key(&name) {
                    return Err(CommandError::conflict(format!(
                        "there is already a backup task `{name}`"
                    )));
                }
                let db = resolve_db(&cluster, &db)?;
                let path = backup::check_repository(&cluster, &path).map_err(repo_error)?;
                let task = BackupTask {
                    name: name.clone(),
                    db,
                    path,
                    keep,
                    every: every.map(|e| e.secs()),
                    max_pause_ms: max_pause.map_or(DEFAULT_MAX_PAUSE_MS, |p| p.ms),
                    created: backup::now_ms() / 1000,
                };
                cluster.backups.tasks.insert(name.clone(), task.clone());
                lock.save(&mut cluster)?;
                Ok(Reply::message(format!(
                    "Created backup task `{name}`: db:{} `{}` to `{}`.",
                    db,
                    cluster.databases[&db].config.name,
                    task.path.display()
                ))
                .data(task))
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
                let run = run_once(ctx, Some(&t), t.db, &t.path, t.max_pause_ms, false).await?;
                run_reply(run)
            }
            BackupCommand::Db {
                db,
                path,
                max_pause,
            } => {
                let cluster = ctx.cluster()?;
                let id = resolve_db(&cluster, &db)?;
                let path = backup::check_repository(&cluster, &path).map_err(repo_error)?;
                let pause = max_pause.map_or(DEFAULT_MAX_PAUSE_MS, |p| p.ms);
                let run = run_once(ctx, None, id, &path, pause, false).await?;
                run_reply(run)
            }
            BackupCommand::TaskList => list(ctx).await,
            BackupCommand::TaskHistory { task } => history(ctx, &task).await,
            BackupCommand::TaskPrune { task, dry_run } => prune(ctx, &task, dry_run).await,
            BackupCommand::TaskDelete { task, purge } => delete(ctx, &task, purge).await,
            BackupCommand::Show { run } => show(ctx, &run),
            BackupCommand::Due => due(ctx).await,
        }
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

fn resolve_db(cluster: &Cluster, r: &DbRef) -> Result<Id, CommandError> {
    let text = match r {
        DbRef::Id(id) => format!("db:{id}"),
        DbRef::Name(n) => n.clone(),
    };
    crate::db::resolve(cluster, &text)
        .map(|d| d.id)
        .map_err(|_| {
            let known: Vec<String> = cluster
                .databases
                .values()
                .map(|d| format!("db:{} `{}`", d.id, d.config.name))
                .collect();
            CommandError::not_found(format!(
                "there is no database {r} ({})",
                if known.is_empty() {
                    "there are none".to_string()
                } else {
                    format!("databases: {}", known.join(", "))
                }
            ))
        })
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

/// One run: recorded `running` first, taken without the CCS lock, recorded again at the
/// end with its outcome. With `apply_keep` (scheduled runs, `backup due`) the task's
/// `keep` is applied after a success; runs by hand leave that to `backup task prune`.
async fn run_once(
    ctx: &Context,
    task: Option<&BackupTask>,
    db_id: Id,
    path: &std::path::Path,
    max_pause_ms: u64,
    apply_keep: bool,
) -> Result<BackupRun, CommandError> {
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
    });
    lock.save(&mut cluster)?;
    drop(lock);

    let spec = RunSpec {
        run: id.clone(),
        task: task.map(|t| t.name.clone()),
        repo: Repository::local(path),
        max_pause: Duration::from_millis(max_pause_ms),
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
            if let Err(e) = Repository::local(&run.path).remove(id) {
                problems.push(format!(
                    "cannot remove `{}`: {e}",
                    run.path.join(id).display()
                ));
                continue;
            }
        }
        cluster.backups.runs.retain(|r| &r.id != id);
    }
    problems
}

fn run_json(run: &BackupRun) -> serde_json::Value {
    let mut v = serde_json::to_value(run).unwrap_or_default();
    v["run_dir"] = json!(run.path.join(&run.id));
    v
}

fn run_reply(run: BackupRun) -> Result<Reply, CommandError> {
    let pause = run
        .pause_us
        .map(|us| format!(", write pause {:.1} ms", us as f64 / 1000.0))
        .unwrap_or_default();
    Ok(Reply::message(format!(
        "Backup run `{}` of db:{} `{}` succeeded: {} key{}, {} bytes in {:.1}s{pause}, in `{}`.",
        run.id,
        run.db,
        run.db_name,
        run.keys,
        if run.keys == 1 { "" } else { "s" },
        run.bytes,
        run.took_ms.unwrap_or(0) as f64 / 1000.0,
        run.path.join(&run.id).display()
    ))
    .data(run_json(&run)))
}

/// A succeeded run whose manifest is gone or damaged is no restore point: history shows
/// it as failed, with why.
fn effective(run: &BackupRun) -> (RunStatus, Option<String>) {
    if run.status != RunStatus::Succeeded {
        return (run.status, run.reason.clone());
    }
    match Repository::local(&run.path).manifest(&run.id) {
        Ok(_) => (RunStatus::Succeeded, None),
        Err(e) => (RunStatus::Failed, Some(e.to_string())),
    }
}

async fn list(ctx: &Context) -> Result<Reply, CommandError> {
    let cluster = swept(ctx).await?;
    let now = backup::now_ms();
    let mut table = Table::new([
        "TASK", "DB", "PATH", "KEEP", "EVERY", "LAST RUN", "STATUS", "DUE",
    ]);
    let mut data = Vec::new();
    for t in cluster.backups.tasks.values() {
        let last = cluster
            .backups
            .runs
            .iter()
            .filter(|r| r.task.as_deref() == Some(&t.name))
            .max_by_key(|r| r.started);
        let db = cluster
            .databases
            .get(&t.db)
            .map(|d| format!("db:{} {}", d.id, d.config.name))
            .unwrap_or_else(|| format!("db:{} (deleted)", t.db));
        let due = is_due(t, &cluster.backups.runs, now);
        table.row([
            t.name.clone(),
            db,
            t.path.display().to_string(),
            t.keep.map_or("all".into(), |k| k.to_string()),
            t.every
                .map_or("-".into(), |s| super::Interval { ms: s * 1000 }.to_string()),
            last.map_or("-".into(), |r| {
                format!("{} {}", r.id, format_time(r.started))
            }),
            last.map_or("-".into(), |r| effective(r).0.to_string()),
            if t.every.is_none() {
                "-".into()
            } else if due {
                "now".into()
            } else {
                "no".into()
            },
        ]);
        data.push(json!({
            "task": t, "last_run": last.map(run_json), "due": due,
        }));
    }
    if data.is_empty() {
        return Ok(
            Reply::message("No backup tasks (make one with `backup task create`).").data(json!([])),
        );
    }
    Ok(Reply::new().table(table).data(data))
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
    let mut table = Table::new([
        "RUN", "STARTED", "TOOK", "STATUS", "KEYS", "BYTES", "SERVER", "PATH",
    ]);
    let mut data = Vec::new();
    for r in &runs {
        let (status, reason) = effective(r);
        let shown = match &reason {
            Some(why) if status != RunStatus::Succeeded => format!("{status}: {why}"),
            _ => status.to_string(),
        };
        table.row([
            r.id.clone(),
            format_time(r.started),
            r.took_ms
                .map_or("-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0)),
            shown,
            r.keys.to_string(),
            r.bytes.to_string(),
            r.server_version.clone().unwrap_or_else(|| "-".into()),
            r.path.join(&r.id).display().to_string(),
        ]);
        let mut v = run_json(r);
        v["status"] = json!(status);
        v["reason"] = json!(reason);
        data.push(v);
    }
    if runs.is_empty() {
        return Ok(
            Reply::message(format!("Backup task `{name}` has no runs yet.")).data(json!([])),
        );
    }
    Ok(Reply::new()
        .table(table.titled(format!("backup task `{name}`")))
        .data(data))
}

async fn prune(ctx: &Context, name: &str, dry_run: bool) -> Result<Reply, CommandError> {
    let (lock, mut cluster) = locked(ctx).await?;
    let task = find_task(&cluster, name)?.clone();
    let gone = prune_plan(&task, &cluster.backups.runs);
    if gone.is_empty() {
        return Ok(Reply::message(format!(
            "Nothing to prune: backup task `{name}` keeps {}.",
            task.keep
                .map_or("every run".into(), |k| format!("{k} succeeded run(s)"))
        ))
        .data(json!({"dry_run": dry_run, "runs": []})));
    }
    let mut reply = Reply::new();
    for id in &gone {
        if let Some(r) = cluster.backups.run(id) {
            reply = reply.line(format!(
                "{} `{}` ({}, {})",
                if dry_run { "Would remove" } else { "Removed" },
                r.path.join(id).display(),
                r.status,
                format_time(r.started)
            ));
        }
    }
    if !dry_run {
        let problems = remove_runs(&mut cluster, &gone);
        lock.save(&mut cluster)?;
        if !problems.is_empty() {
            return Err(CommandError::io(problems.join("; ")));
        }
    }
    Ok(reply.data(json!({"dry_run": dry_run, "runs": gone})))
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
    let mut reply = Reply::message(format!("Deleted backup task `{name}`."));
    let mut problems = Vec::new();
    if purge {
        problems = remove_runs(&mut cluster, &ids);
        reply = reply.line(format!("Removed its {} run(s).", ids.len()));
    } else if !ids.is_empty() {
        reply = reply.line(format!(
            "Kept its {} run(s) (`backup show <run>`; `purge` removes them).",
            ids.len()
        ));
    }
    lock.save(&mut cluster)?;
    if !problems.is_empty() {
        return Err(CommandError::io(problems.join("; ")));
    }
    Ok(reply.data(json!({"deleted": name, "purged": purge, "runs": ids})))
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
    let m: Manifest = Repository::local(&run.path).manifest(id).map_err(|e| {
        CommandError::damaged(format!(
            "backup run `{id}` is not a restore point ({}): {e}",
            run.status
        ))
    })?;
    let fields = Table::fields([
        ("run", m.run.clone()),
        ("task", m.task.clone().unwrap_or_else(|| "-".into())),
        ("cluster", format!("{} ({})", m.cluster_name, m.cluster_id)),
        ("database", format!("db:{} `{}`", m.db_id, m.db.name)),
        (
            "configuration",
            format!(
                "{} shard(s), replication {}, persistence {}",
                m.db.shards,
                if m.db.replication {
                    "enabled"
                } else {
                    "disabled"
                },
                m.db.persistence
            ),
        ),
        ("started", format_time(m.started)),
        ("finished", format_time(m.finished)),
        (
            "write pause",
            format!("{:.2} ms (bound {} ms)", m.pause_ms, m.max_pause_ms),
        ),
        ("keys", m.keys().to_string()),
        ("bytes", m.bytes().to_string()),
        ("manifest checksum", m.checksum.clone()),
    ]);
    let mut shards = Table::new([
        "SHARD", "FROM", "SLOTS", "FILE", "BYTES", "SHA256", "RDB", "SERVER", "KEYS", "EXPIRES",
    ]);
    for s in &m.shards {
        shards.row([
            format!("redis:{}", s.shard),
            format!("redis:{}", s.taken_from),
            s.slots.map_or("all".into(), |r| r.to_string()),
            s.file.clone(),
            s.bytes.to_string(),
            s.sha256.clone(),
            s.rdb_version.to_string(),
            format!("{} {}", s.engine, s.server_version),
            s.keys.to_string(),
            s.expires.to_string(),
        ]);
    }
    Ok(Reply::new().table(fields).table(shards).data(&m))
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
            let res = run_once(&ctx, Some(&t), t.db, &t.path, t.max_pause_ms, true).await;
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
    let mut table = Table::new(["TASK", "OUTCOME", "RUN"]);
    let mut data = Vec::new();
    let mut failed = Vec::new();
    for (name, outcome, run, ok) in &rows {
        table.row([
            name.clone(),
            outcome.clone(),
            run.as_ref().map_or("-".into(), |r| r.id.clone()),
        ]);
        data.push(
            json!({"task": name, "outcome": outcome, "ok": ok, "run": run.as_ref().map(run_json)}),
        );
        if !ok {
            failed.push(name.clone());
        }
    }
    if rows.is_empty() {
        return Ok(Reply::message("No backup tasks.").data(json!([])));
    }
    let reply = Reply::new().table(table).data(data);
    if failed.is_empty() {
        Ok(reply)
    } else {
        Ok(reply.failed(CommandError::unavailable(format!(
            "backup task{} {} failed",
            if failed.len() == 1 { "" } else { "s" },
            failed
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))))
    }
}
