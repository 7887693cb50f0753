//! Restore tasks of several databases (`restore task create ... db a,b|all`): one task
//! per database, named `<task>.<db>`, each taking its database's newest run. Nothing
//! starts until every database not yet restored passes verify; they then start one at a
//! time, and `retry` resumes the ones not done. Each database's task is an ordinary
//! restore task (its own state, lock, progress and proof), so `show` and `retry` work on
//! one of them alone too.

use std::collections::BTreeSet;

use serde::Serialize;

use super::apply::{
    absolute_flags, create_locked, find, lock_task, locked, name_free, new_task, open_location,
    pick, running, start as start_one, verify_one, Deleted,
};
use super::CreateFlags;
use crate::ccs::{Cluster, RestoreState, RestoreTask, RunStatus};
use crate::cmd::{CommandError, Context, Render, Reply, Table, Text};
use crate::lang::{DbRef, DbSet};

/// A task of several databases as shown: each database's task, with its state and its
/// last verify's checks.
#[derive(Serialize)]
pub struct GroupView {
    pub task: String,
    pub tasks: Vec<RestoreTask>,
    #[serde(skip)]
    pub headline: Option<String>,
}

impl GroupView {
    pub fn of(cluster: &Cluster, group: &str, headline: Option<String>) -> GroupView {
        GroupView {
            task: group.to_string(),
            tasks: cluster
                .backups
                .restore_group(group)
                .into_iter()
                .cloned()
                .collect(),
            headline,
        }
    }
}

impl Render for GroupView {
    fn render(&self, text: &mut Text) {
        if let Some(h) = &self.headline {
            text.line(h.clone());
        }
        let mut table = Table::new(["TASK", "DB", "BACKUP", "STATE", "DETAIL"]);
        for t in &self.tasks {
            let detail = match (&t.reason, &t.content, &t.step) {
                (Some(reason), _, _) => reason.clone(),
                (None, Some(c), _) if t.state == RestoreState::Succeeded => c.line.clone(),
                (None, _, Some(step)) => step.to_string(),
                _ => String::new(),
            };
            table.row([
                t.name.clone(),
                t.db.clone(),
                format!("{} in `{}`", t.run, t.path.display()),
                t.state.to_string(),
                detail,
            ]);
        }
        text.table(table);
        for t in &self.tasks {
            for c in &t.checks {
                text.line(format!("{}: {c}", t.name));
            }
        }
    }
}

/// The names of the databases with a restorable run: in the repository of
/// `<repository>/latest`, or among this cluster's runs for `latest`.
fn databases_with_runs(cluster: &Cluster, backup: &str) -> Result<Vec<String>, CommandError> {
    let mut names = BTreeSet::new();
    let place = match backup.rsplit_once('/') {
        Some((location, _)) => {
            let (path, repo) = open_location(location)?;
            for run in repo.runs().map_err(CommandError::from)? {
                if let Ok(m) = repo.manifest(&run) {
                    if m.safety_for.is_none() {
                        names.insert(m.db.name);
                    }
                }
            }
            format!("`{}`", path.display())
        }
        None => {
            for r in &cluster.backups.runs {
                if r.status == RunStatus::Succeeded && r.safety_for.is_none() {
                    names.insert(r.db_name.clone());
                }
            }
            "this cluster's backups".to_string()
        }
    };
    if names.is_empty() {
        return Err(CommandError::not_found(format!(
            "{place} holds no restorable run of any database"
        )));
    }
    Ok(names.into_iter().collect())
}

/// `restore task create name <task> db a,b|all backup latest|<repository>/latest`.
pub(super) async fn create(
    ctx: &Context,
    name: String,
    dbs: &DbSet,
    backup: &str,
    flags: CreateFlags,
    identity: Option<std::path::PathBuf>,
) -> Result<Reply, CommandError> {
    let (flags, identity) = absolute_flags(flags, identity)?;
    let flags = &flags;
    if backup != "latest" && !backup.ends_with("/latest") {
        return Err(CommandError::usage(format!(
            "`backup {backup}` is one run of one database: several databases take `latest` or `<repository>/latest` (each database's newest run)"
        )));
    }
    let (lock, mut cluster, made) = create_locked(ctx, backup).await?;
    name_free(&cluster, &name)?;
    let refs: Vec<DbRef> = match dbs {
        DbSet::Some(refs) => refs.clone(),
        DbSet::All => databases_with_runs(&cluster, backup)?
            .into_iter()
            .map(DbRef::Name)
            .collect(),
    };
    let mut tasks: Vec<RestoreTask> = Vec::new();
    for r in &refs {
        let p = pick(&cluster, r, backup, flags.from_other_cluster)?;
        if tasks.iter().any(|t| t.db == p.db_name) {
            return Err(CommandError::usage(format!(
                "db `{}` is named twice",
                p.db_name
            )));
        }
        let member = format!("{name}.{}", p.db_name);
        crate::ccs::rules::check_cluster_name(&member).map_err(|e| {
            CommandError::usage(format!(
                "the task of db `{}` would be `{member}`: {e}; choose a shorter task name",
                p.db_name
            ))
        })?;
        name_free(&cluster, &member)?;
        tasks.push(new_task(
            member,
            p,
            flags,
            identity.clone(),
            Some(name.clone()),
        ));
    }
    let parts: Vec<String> = tasks
        .iter()
        .map(|t| format!("`{}` (db `{}` to run `{}`)", t.name, t.db, t.run))
        .collect();
    for t in tasks {
        cluster.backups.restores.insert(t.name.clone(), t);
    }
    lock.save(&mut cluster)?;
    let headline = format!(
        "Created restore task `{name}` of {} databases, all verified before any starts: {}.",
        parts.len(),
        parts.join(", ")
    );
    Ok(Reply::of(&GroupView::of(&cluster, &name, Some(headline)))?.note(made))
}

/// The tasks of `group` as stored now.
async fn tasks_of(ctx: &Context, group: &str) -> Result<Vec<RestoreTask>, CommandError> {
    let (_, cluster) = locked(ctx).await?;
    Ok(cluster
        .backups
        .restore_group(group)
        .into_iter()
        .cloned()
        .collect())
}

/// Verifies every task of `group` not yet restored; `Err` lists those that failed.
async fn verify_all(
    ctx: &Context,
    tasks: &[RestoreTask],
    only: impl Fn(&RestoreTask) -> bool,
) -> Result<Result<(), String>, CommandError> {
    let mut failed = Vec::new();
    for t in tasks.iter().filter(|t| only(t)) {
        let (t, v) = verify_one(ctx, &t.name).await?;
        if !v.ok() {
            failed.push(format!("`{}`: {}", t.name, v.reason().unwrap_or_default()));
        }
    }
    Ok(if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    })
}

/// `restore task verify <group>`.
pub(super) async fn verify(ctx: &Context, group: &str) -> Result<Reply, CommandError> {
    let Some(_l) = lock_task(ctx, group)? else {
        return Err(running(group));
    };
    let tasks = tasks_of(ctx, group).await?;
    let verdict = verify_all(ctx, &tasks, |t| t.state != RestoreState::Succeeded).await?;
    let (_, cluster) = locked(ctx).await?;
    let reply = Reply::of(&GroupView::of(&cluster, group, None))?;
    Ok(match verdict {
        Ok(()) => reply,
        Err(why) => reply.failed(CommandError::damaged(format!(
            "restore task `{group}` failed verify: {why}"
        ))),
    })
}

fn broken(t: &RestoreTask) -> bool {
    matches!(t.state, RestoreState::Failed | RestoreState::Interrupted)
}

/// `restore task start|retry <group>`: every database not yet restored (and not being
/// retried) passes verify first, or none starts; then each starts in turn, a failed or
/// interrupted one by its retry. It stops at the first that fails.
pub(super) async fn start(
    ctx: &Context,
    group: &str,
    retry: bool,
    counts_only: bool,
) -> Result<Reply, CommandError> {
    let Some(_l) = lock_task(ctx, group)? else {
        return Err(running(group));
    };
    let tasks = tasks_of(ctx, group).await?;
    if tasks.iter().all(|t| t.state == RestoreState::Succeeded) {
        return Err(CommandError::conflict(format!(
            "restore task `{group}` already succeeded: create a new task to restore again"
        )));
    }
    let stopped: Vec<&str> = tasks
        .iter()
        .filter(|t| broken(t))
        .map(|t| t.name.as_str())
        .collect();
    if retry && stopped.is_empty() {
        return Err(CommandError::conflict(format!(
            "restore task `{group}` has no failed or interrupted database: `retry` follows a failed or interrupted start (use `restore task start {group}`)"
        )));
    }
    if !retry && !stopped.is_empty() {
        return Err(CommandError::conflict(format!(
            "restore task `{group}` stopped at `{}`: use `restore task retry {group}`",
            stopped.join("`, `")
        )));
    }
    // A database being retried is verified by its retry, once its old data is back.
    let fresh = |t: &RestoreTask| t.state != RestoreState::Succeeded && !broken(t);
    if let Err(why) = verify_all(ctx, &tasks, fresh).await? {
        let (_, cluster) = locked(ctx).await?;
        return Ok(Reply::of(&GroupView::of(&cluster, group, None))?.failed(
            CommandError::damaged(format!(
                "restore task `{group}` failed verify, so none of its databases started: {why}"
            )),
        ));
    }
    for (i, t) in tasks.iter().enumerate() {
        if t.state == RestoreState::Succeeded {
            continue;
        }
        let error = match start_one(ctx, &t.name, broken(t), counts_only).await {
            Ok(reply) => reply.failure().cloned(),
            Err(e) => Some(e),
        };
        if let Some(e) = error {
            let left: Vec<&str> = tasks[i + 1..]
                .iter()
                .filter(|t| t.state != RestoreState::Succeeded)
                .map(|t| t.name.as_str())
                .collect();
            let left = if left.is_empty() {
                String::new()
            } else {
                format!("; not started: `{}`", left.join("`, `"))
            };
            return Err(CommandError::new(
                e.kind(),
                format!("restore task `{group}` stopped at `{}`: {e}{left}", t.name),
            )
            .hinted(format!(
                "fix the cause and run `restore task retry {group}`"
            )));
        }
    }
    let (_, cluster) = locked(ctx).await?;
    let headline = format!(
        "Restored the {} databases of restore task `{group}`; clients can connect again.",
        tasks.len()
    );
    Reply::of(&GroupView::of(&cluster, group, Some(headline)))
}

/// `restore task delete <group>`: every database's task, none running.
pub(super) async fn delete(ctx: &Context, group: &str) -> Result<Reply, CommandError> {
    let Some(_l) = lock_task(ctx, group)? else {
        return Err(running(group));
    };
    let (lock, mut cluster) = locked(ctx).await?;
    let names: Vec<String> = cluster
        .backups
        .restore_group(group)
        .iter()
        .map(|t| t.name.clone())
        .collect();
    let mut held = Vec::new();
    for n in &names {
        find(&cluster, n)?;
        match lock_task(ctx, n)? {
            Some(l) => held.push(l),
            None => return Err(running(n)),
        }
    }
    for n in &names {
        cluster.backups.restores.remove(n);
    }
    lock.save(&mut cluster)?;
    Reply::of(&Deleted {
        deleted: group.to_string(),
    })
}
