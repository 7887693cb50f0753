//! What the `backup` commands do: each calls one service of [`crate::backup::service`]
//! and renders its result.

use super::BackupCommand;
use crate::backup::service::{self, TaskRequest};
use crate::backup::Codec;
use crate::cmd::{CommandError, Context, Reply};

use super::view::{
    Deleted, Due, DueRow, History, ManifestView, NestedRepo, Pruned, PrunedRun, RepoList, RepoRun,
    RunView, TaskCreated, TaskList, TaskRow,
};

impl BackupCommand {
    pub async fn apply(self, ctx: &Context) -> Result<Reply, CommandError> {
        let (store, progress) = (&ctx.store, ctx.progress.as_ref());
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
                let req = TaskRequest {
                    name,
                    db,
                    path,
                    keep,
                    every: every.map(|e| e.secs()),
                    max_pause_ms: max_pause.map(|p| p.ms),
                    compress,
                    encrypt,
                };
                let (task, db_name) = service::create_task(store, req).await?;
                Reply::of(&TaskCreated { task, db_name })
            }
            BackupCommand::TaskRun { task } => {
                let run = service::run_task(store, progress, &task).await?;
                Reply::of(&RunView::new(run))
            }
            BackupCommand::Db {
                db,
                path,
                max_pause,
                compress,
                encrypt,
            } => {
                let codec = Codec { compress, encrypt };
                let pause = max_pause.map(|p| p.ms);
                let run = service::run_db(store, progress, &db, &path, pause, codec).await?;
                Reply::of(&RunView::new(run))
            }
            BackupCommand::TaskList => {
                let rows = service::tasks(store).await?.into_iter().map(|t| TaskRow {
                    task: t.task,
                    db: t.db,
                    last_run: t.last_run.map(RunView::new),
                    due: t.due,
                });
                Reply::of(&TaskList(rows.collect()))
            }
            BackupCommand::TaskHistory { task } => {
                let runs = service::history(store, &task).await?;
                Reply::of(&History {
                    runs: runs.into_iter().map(RunView::new).collect(),
                    task,
                })
            }
            BackupCommand::TaskPrune { task, dry_run } => {
                let pruning = service::prune(store, &task, dry_run).await?;
                let runs = pruning.runs.into_iter().map(|r| PrunedRun {
                    run_dir: r.path.join(&r.id),
                    id: r.id,
                    status: r.status,
                    started: r.started,
                });
                Reply::of(&Pruned {
                    task,
                    dry_run,
                    runs: runs.collect(),
                    keep: pruning.keep,
                })
            }
            BackupCommand::TaskDelete { task, purge } => {
                let runs = service::delete_task(store, &task, purge).await?;
                Reply::of(&Deleted {
                    deleted: task,
                    purged: purge,
                    runs,
                })
            }
            BackupCommand::Show { run } => Reply::of(&ManifestView(service::show(store, &run)?)),
            BackupCommand::List { path, db } => {
                let found = service::repository_runs(&path, db.as_deref())?;
                let (nested, runs): (Vec<_>, Vec<_>) =
                    found.into_iter().partition(|r| r.nested.is_some());
                let runs = runs
                    .into_iter()
                    .map(|r| RepoRun::of(r.run, r.manifest.as_ref(), r.problem));
                let repositories = nested
                    .into_iter()
                    .map(|r| NestedRepo {
                        path: path.join(&r.run),
                        entries: r.nested.unwrap_or(0),
                    })
                    .collect();
                Reply::of(&RepoList {
                    path,
                    runs: runs.collect(),
                    repositories,
                })
            }
            BackupCommand::Due => due(ctx).await,
        }
    }
}

/// `backup due`: every due task run; the reply fails when one did.
async fn due(ctx: &Context) -> Result<Reply, CommandError> {
    let rows = service::due(&ctx.store, ctx.progress.clone()).await?;
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| !r.ok)
        .map(|r| format!("`{}`", r.task))
        .collect();
    let rows = rows
        .into_iter()
        .map(|r| DueRow {
            task: r.task,
            outcome: r.outcome,
            ok: r.ok,
            run: r.run.map(RunView::new),
        })
        .collect();
    let reply = Reply::of(&Due(rows))?;
    if failed.is_empty() {
        return Ok(reply);
    }
    Ok(reply.failed(CommandError::unavailable(format!(
        "backup task{} {} failed",
        if failed.len() == 1 { "" } else { "s" },
        failed.join(", ")
    ))))
}
