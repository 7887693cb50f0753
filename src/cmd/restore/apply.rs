//! What the `restore task` commands do. A task's state lives in the CCS; `start` holds the
//! task's lock (`<home>/locks/restore-<task>.lock`) while it runs, so a task found
//! `running` with its lock free was cut short (`interrupted`).

use std::time::{Duration, Instant};

use serde::Serialize;

use super::CreateFlags;
use crate::backup::{now_ms, Manifest, Repository, RunLock};
use crate::ccs::{
    Cluster, ContentCheck, RestoreState, RestoreStep, RestoreTask, RunStatus, StoreLock,
};
use crate::cmd::{CommandError, Context, Render, Reply, Table, Text};
use crate::error::ErrorKind;
use crate::lang::DbRef;
use crate::restore::{self, RestoreSpec, VerifyReport};
use crate::server::Servers;

/// A restore task as shown, with its last verify's checks.
#[derive(Serialize)]
#[serde(transparent)]
pub struct TaskView {
    pub task: RestoreTask,
    #[serde(skip)]
    pub headline: Option<String>,
}

impl Render for TaskView {
    fn render(&self, text: &mut Text) {
        let t = &self.task;
        if let Some(h) = &self.headline {
            text.line(h.clone());
        }
        let mut fields = vec![
            ("task", t.name.clone()),
            ("database", t.db.clone()),
            ("backup", format!("{} in `{}`", t.run, t.path.display())),
            (
                "target path",
                t.target_path.as_ref().map_or_else(
                    || "the shard directories".to_string(),
                    |p| format!("`{}` (staging)", p.display()),
                ),
            ),
            ("force", t.force.to_string()),
            ("state", t.state.to_string()),
        ];
        if let Some(step) = &t.step {
            fields.push(("step", step.to_string()));
        }
        if let Some(at) = &t.safety_backup {
            fields.push(("safety backup", at.clone()));
        }
        if let Some(r) = &t.reason {
            fields.push(("reason", r.clone()));
        }
        text.table(Table::fields(fields));
        for c in &t.checks {
            text.line(c.clone());
        }
    }
}

#[derive(Serialize)]
#[serde(transparent)]
pub struct TaskList(pub Vec<RestoreTask>);

impl Render for TaskList {
    fn render(&self, text: &mut Text) {
        if self.0.is_empty() {
            text.line("No restore tasks (make one with `restore task create`).");
            return;
        }
        let mut t = Table::new(["TASK", "DB", "BACKUP", "STATE", "REASON"]);
        for r in &self.0 {
            t.row([
                r.name.clone(),
                r.db.clone(),
                r.run.clone(),
                r.state.to_string(),
                r.reason.clone().unwrap_or_default(),
            ]);
        }
        text.table(t);
    }
}

#[derive(Serialize)]
pub struct Deleted {
    pub deleted: String,
}

impl Render for Deleted {
    fn render(&self, text: &mut Text) {
        text.line(format!("Deleted restore task `{}`.", self.deleted));
    }
}

pub(super) fn running(task: &str) -> CommandError {
    CommandError::conflict(format!(
        "restore task `{task}` is running in another shell: see `restore task show {task}`"
    ))
}

pub(super) fn lock_task(ctx: &Context, task: &str) -> Result<Option<RunLock>, CommandError> {
    RunLock::try_take(ctx.store.home(), &format!("restore-{task}")).map_err(CommandError::io)
}

/// The CCS lock (waiting while another shell holds it briefly), with restore tasks whose
/// shell died marked `interrupted`.
pub(super) async fn locked(ctx: &Context) -> Result<(StoreLock, Cluster), CommandError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match ctx.lock_cluster() {
            Ok((lock, mut cluster)) => {
                let mut changed = crate::backup::sweep_interrupted(&mut cluster, ctx.store.home());
                for t in cluster.backups.restores.values_mut() {
                    if t.state != RestoreState::Running {
                        continue;
                    }
                    if let Ok(Some(_l)) =
                        RunLock::try_take(ctx.store.home(), &format!("restore-{}", t.name))
                    {
                        t.state = RestoreState::Interrupted;
                        t.reason = Some(format!(
                            "the shell running it died while {}; `restore task retry {}` puts the old data back and starts again",
                            t.step.unwrap_or(RestoreStep::Starting),
                            t.name
                        ));
                        changed = true;
                    }
                }
                if changed {
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

pub(super) fn find<'a>(cluster: &'a Cluster, name: &str) -> Result<&'a RestoreTask, CommandError> {
    cluster.backups.restores.get(name).ok_or_else(|| {
        let known: Vec<String> = cluster
            .backups
            .restores
            .keys()
            .map(|k| format!("`{k}`"))
            .collect();
        CommandError::not_found(format!(
            "there is no restore task `{name}` ({})",
            if known.is_empty() {
                "there are none".into()
            } else {
                format!("tasks: {}", known.join(", "))
            }
        ))
    })
}

/// The repository at `location` (a URL, or a directory made absolute).
pub(super) fn open_location(
    location: &str,
) -> Result<(std::path::PathBuf, Repository), CommandError> {
    let mut path = std::path::PathBuf::from(location);
    if !crate::backup::is_url(&path) {
        path = std::path::absolute(&path)
            .map_err(|e| CommandError::io(format!("cannot resolve `{location}`: {e}")))?;
    }
    let repo = Repository::open(&path).map_err(CommandError::usage)?;
    Ok((path, repo))
}

/// `<location>/<run>` or `<location>/latest` of any repository: the run id and the
/// repository, its manifest read (the newest restorable run of `db_name` for `latest`).
pub(crate) fn run_in_repository(
    location: &str,
    run: &str,
    db_name: &str,
) -> Result<(String, std::path::PathBuf, Manifest), CommandError> {
    let (path, repo) = open_location(location)?;
    if run == "latest" {
        let runs = repo.runs().map_err(CommandError::from)?;
        // A safety backup holds the data a restore replaced, not a chosen restore point.
        let newest = runs.iter().rev().find_map(|r| {
            let m = repo.manifest(r).ok()?;
            (m.db.name == db_name && m.safety_for.is_none()).then(|| (r.clone(), m))
        });
        let Some((run, m)) = newest else {
            return Err(CommandError::not_found(format!(
                "`{}` holds no restorable run of `{db_name}` (see `backup list path {}`)",
                repo,
                quote_path(&path)
            )));
        };
        return Ok((run, path, m));
    }
    let m = repo.manifest(run).map_err(|e| {
        CommandError::damaged(format!(
            "`{}` is not a restore point: {e}",
            repo.run_shown(run)
        ))
    })?;
    Ok((run.to_string(), path, m))
}

fn quote_path(p: &std::path::Path) -> String {
    crate::lang::quote(&p.to_string_lossy())
}

/// The paths `restore task create` was given, made absolute (the task may be started
/// from another directory); the identity file is checked to open.
pub(super) fn absolute_flags(
    mut flags: CreateFlags,
    identity: Option<std::path::PathBuf>,
) -> Result<(CreateFlags, Option<std::path::PathBuf>), CommandError> {
    let abs = |p: &std::path::Path| {
        std::path::absolute(p)
            .map_err(|e| CommandError::io(format!("cannot resolve `{}`: {e}", p.display())))
    };
    if let Some(p) = flags.safety_path.take() {
        flags.safety_path = Some(if crate::backup::is_url(&p) {
            p
        } else {
            abs(&p)?
        });
    }
    // Where the run's files are staged; checked by verify (a writable directory, apart
    // from the backups and every recovery path).
    if let Some(p) = flags.target_path.take() {
        flags.target_path = Some(abs(&p)?);
    }
    let identity = match identity {
        Some(p) => {
            let abs = abs(&p)?;
            crate::backup::Identities::load(&abs).map_err(CommandError::not_found)?;
            Some(abs)
        }
        None => None,
    };
    Ok((flags, identity))
}

/// The database one task restores and the run it restores it to.
pub(super) struct Pick {
    pub db_name: String,
    /// The database's id when it exists (else `start` recreates it).
    pub existing: Option<crate::ccs::Id>,
    pub run: String,
    pub path: std::path::PathBuf,
}

/// Resolves `db` and `backup` (a run id or `latest` of this cluster's runs, or
/// `<repository>/<run|latest>`) for one task.
pub(super) fn pick(
    cluster: &Cluster,
    db: &DbRef,
    backup: &str,
    from_other_cluster: bool,
) -> Result<Pick, CommandError> {
    let (db_name, existing) = match db {
        DbRef::Id(id) => match cluster.databases.get(id) {
            Some(d) => (d.config.name.clone(), Some(d.id)),
            None => {
                return Err(CommandError::not_found(format!(
                    "there is no db:{id}; to recreate a deleted database, name it"
                )))
            }
        },
        DbRef::Name(n) => (n.clone(), cluster.database_by_name(n).map(|d| d.id)),
    };
    if existing.is_none() {
        crate::ccs::rules::check_db_name(&db_name).map_err(CommandError::usage)?;
    }
    let (run, path) = if let Some((location, run)) = backup.rsplit_once('/') {
        let (run, path, m) = run_in_repository(location, run, &db_name)?;
        if m.cluster_id != cluster.cluster_id && !from_other_cluster {
            return Err(CommandError::conflict(format!(
                "run `{run}` was written by cluster `{}` (id {}), not by this cluster `{}` (id {}): add `from_other_cluster` to restore it here",
                m.cluster_name, m.cluster_id, cluster.name, cluster.cluster_id
            )));
        }
        (run, path)
    } else {
        let run = own_run(cluster, backup, &db_name, existing)?;
        (run.id.clone(), run.path.clone())
    };
    Ok(Pick {
        db_name,
        existing,
        run,
        path,
    })
}

/// A new task restoring `pick`, in `group` when it is one of several.
pub(super) fn new_task(
    name: String,
    pick: Pick,
    flags: &CreateFlags,
    identity: Option<std::path::PathBuf>,
    group: Option<String>,
) -> RestoreTask {
    RestoreTask {
        name,
        db: pick.db_name,
        run: pick.run,
        path: pick.path,
        target_path: flags.target_path.clone(),
        force: flags.force,
        allow_newer_server: flags.allow_newer_server,
        replay: flags.replay,
        state: RestoreState::Created,
        reason: None,
        checks: Vec::new(),
        created_db: false,
        step: None,
        created: now_ms() / 1000,
        finished: None,
        identity,
        content: None,
        from_other_cluster: flags.from_other_cluster,
        safety_path: flags.safety_path.clone(),
        no_safety_backup: flags.no_safety_backup,
        safety_backup: None,
        group,
    }
}

/// The CCS to create a task in. A task taking its run from a repository may be created
/// in a home with no cluster at all (the new machine after a disaster): the default local
/// cluster is made for it, saved only with the task; the line saying so comes back.
pub(super) async fn create_locked(
    ctx: &Context,
    backup: &str,
) -> Result<(StoreLock, Cluster, Option<String>), CommandError> {
    if backup.contains('/') && ctx.store.load()?.is_none() {
        return ctx.lock_or_default_cluster();
    }
    let (lock, cluster) = locked(ctx).await?;
    Ok((lock, cluster, None))
}

/// Refuses a task name already taken by a task or by a task of several databases.
pub(super) fn name_free(cluster: &Cluster, name: &str) -> Result<(), CommandError> {
    if cluster.backups.restores.contains_key(name)
        || !cluster.backups.restore_group(name).is_empty()
    {
        return Err(CommandError::conflict(format!(
            "there is already a restore task `{name}`"
        )));
    }
    Ok(())
}

pub(super) async fn create(
    ctx: &Context,
    name: String,
    db: &DbRef,
    backup: String,
    flags: CreateFlags,
    identity: Option<std::path::PathBuf>,
) -> Result<Reply, CommandError> {
    let (flags, identity) = absolute_flags(flags, identity)?;
    let (lock, mut cluster, made) = create_locked(ctx, &backup).await?;
    name_free(&cluster, &name)?;
    let pick = pick(&cluster, db, &backup, flags.from_other_cluster)?;
    let existing = pick.existing;
    let task = new_task(name.clone(), pick, &flags, identity, None);
    cluster.backups.restores.insert(name.clone(), task.clone());
    lock.save(&mut cluster)?;
    Ok(Reply::of(&TaskView {
        headline: Some(format!(
            "Created restore task `{name}`: db `{}` to backup run `{}`{}.",
            task.db,
            task.run,
            if existing.is_none() {
                " (the database does not exist: `start` recreates it)"
            } else {
                ""
            }
        )),
        task,
    })?
    .note(made))
}

/// A run of this cluster's own tasks: its id, or `latest` of the database.
pub(crate) fn own_run<'a>(
    cluster: &'a Cluster,
    backup: &str,
    db_name: &str,
    existing: Option<crate::ccs::Id>,
) -> Result<&'a crate::ccs::BackupRun, CommandError> {
    let succeeded = |r: &&crate::ccs::BackupRun| r.status == RunStatus::Succeeded;
    let run = if backup == "latest" {
        cluster
            .backups
            .runs
            .iter()
            .filter(succeeded)
            .filter(|r| r.safety_for.is_none())
            .filter(|r| r.db_name == db_name || Some(r.db) == existing)
            .filter(|r| Repository::open(&r.path).is_ok_and(|repo| repo.manifest(&r.id).is_ok()))
            .max_by_key(|r| r.started)
            .ok_or_else(|| {
                CommandError::not_found(format!(
                    "there is no succeeded backup run of `{db_name}` with a valid manifest"
                ))
            })?
    } else {
        cluster.backups.run(backup).ok_or_else(|| {
            CommandError::not_found(format!(
                "there is no backup run `{backup}` (see `backup task history <task>`)"
            ))
        })?
    };
    Ok(run)
}

pub(super) fn spec(t: &RestoreTask) -> Result<RestoreSpec, CommandError> {
    Ok(RestoreSpec {
        repo: Repository::open(&t.path).map_err(CommandError::usage)?,
        run: t.run.clone(),
        force: t.force,
        allow_newer_server: t.allow_newer_server,
        replay: t.replay,
        identity: t.identity.clone(),
        counts_only: false,
        defer_file_checks: false,
        from_other_cluster: t.from_other_cluster,
        target_path: t.target_path.clone(),
    })
}

fn server(ctx: &Context, cluster: &Cluster) -> Result<Servers, CommandError> {
    cluster
        .servers(ctx.redis_server.as_deref())
        .map_err(|e| CommandError::unavailable(e.to_string()))
}

pub(super) async fn run_verify(
    ctx: &Context,
    cluster: &Cluster,
    t: &RestoreTask,
    spec: &RestoreSpec,
) -> Result<(VerifyReport, Option<Manifest>), CommandError> {
    let db = cluster.database_by_name(&t.db);
    let server = server(ctx, cluster)?;
    Ok(restore::verify(cluster, db, spec, &server).await)
}

fn check_lines(v: &VerifyReport) -> Vec<String> {
    v.checks
        .iter()
        .map(|c| {
            format!(
                "{:<6} {}: {}",
                if c.ok { "ok" } else { "FAILED" },
                c.check,
                c.detail
            )
        })
        .collect()
}

/// Records a verify on the task; returns the task as stored.
pub(super) async fn record_verify(
    ctx: &Context,
    name: &str,
    v: &VerifyReport,
) -> Result<RestoreTask, CommandError> {
    let (lock, mut cluster) = locked(ctx).await?;
    let t = cluster
        .backups
        .restores
        .get_mut(name)
        .ok_or_else(|| CommandError::not_found(format!("restore task `{name}` was deleted")))?;
    t.checks = check_lines(v);
    if v.ok() {
        t.state = RestoreState::Verified;
        t.reason = None;
    } else {
        t.state = RestoreState::VerifyFailed;
        t.reason = v.reason();
    }
    let t = t.clone();
    lock.save(&mut cluster)?;
    Ok(t)
}

pub(super) fn refuse_done(t: &RestoreTask) -> Result<(), CommandError> {
    match t.state {
        RestoreState::Succeeded => Err(CommandError::conflict(format!(
            "restore task `{}` already succeeded: create a new task to restore again",
            t.name
        ))),
        _ => Ok(()),
    }
}

/// Verifies task `name` under its lock and records the verdict on it.
pub(super) async fn verify_one(
    ctx: &Context,
    name: &str,
) -> Result<(RestoreTask, VerifyReport), CommandError> {
    let Some(_l) = lock_task(ctx, name)? else {
        return Err(running(name));
    };
    let (_, cluster) = locked(ctx).await?;
    let t = find(&cluster, name)?.clone();
    refuse_done(&t)?;
    let (v, _) = run_verify(ctx, &cluster, &t, &spec(&t)?).await?;
    let t = record_verify(ctx, name, &v).await?;
    Ok((t, v))
}

pub(super) async fn verify(ctx: &Context, name: &str) -> Result<Reply, CommandError> {
    let (t, v) = verify_one(ctx, name).await?;
    let reply = Reply::of(&TaskView {
        headline: None,
        task: t,
    })?;
    Ok(if v.ok() {
        reply
    } else {
        reply.failed(CommandError::damaged(format!(
            "restore task `{name}` failed verify: {}",
            v.reason().unwrap_or_default()
        )))
    })
}

async fn record_content(
    ctx: &Context,
    name: &str,
    content: Option<ContentCheck>,
) -> Result<RestoreTask, CommandError> {
    let (lock, mut cluster) = locked(ctx).await?;
    let t = cluster
        .backups
        .restores
        .get_mut(name)
        .ok_or_else(|| CommandError::not_found(format!("restore task `{name}` was deleted")))?;
    t.content = content;
    let t = t.clone();
    lock.save(&mut cluster)?;
    Ok(t)
}

/// Records the safety backup on the task, and marks the run as one (`latest` passes
/// it over: it holds the data the restore replaced, not a chosen restore point).
async fn record_safety(ctx: &Context, name: &str, run: &str, at: &str) -> Result<(), CommandError> {
    let (lock, mut cluster) = locked(ctx).await?;
    if let Some(r) = cluster.backups.run_mut(run) {
        r.safety_for = Some(name.to_string());
    }
    if let Some(t) = cluster.backups.restores.get_mut(name) {
        t.safety_backup = Some(at.to_string());
    }
    lock.save(&mut cluster)?;
    Ok(())
}

/// Records the task `failed` with `reason`, and the error that says so (or the error
/// of recording it).
async fn failed(ctx: &Context, name: &str, reason: String, message: String) -> CommandError {
    match set_state(ctx, name, RestoreState::Failed, None, Some(reason), None).await {
        Ok(_) => CommandError::unavailable(message),
        Err(e) => e,
    }
}

async fn set_state(
    ctx: &Context,
    name: &str,
    state: RestoreState,
    step: Option<RestoreStep>,
    reason: Option<String>,
    created_db: Option<bool>,
) -> Result<RestoreTask, CommandError> {
    let (lock, mut cluster) = locked(ctx).await?;
    let t = cluster
        .backups
        .restores
        .get_mut(name)
        .ok_or_else(|| CommandError::not_found(format!("restore task `{name}` was deleted")))?;
    t.state = state;
    t.step = step;
    t.reason = reason;
    if let Some(c) = created_db {
        t.created_db = c;
    }
    if matches!(state, RestoreState::Succeeded | RestoreState::Failed) {
        t.finished = Some(now_ms() / 1000);
    }
    let t = t.clone();
    lock.save(&mut cluster)?;
    Ok(t)
}

pub(super) async fn start(
    ctx: &Context,
    name: &str,
    retry: bool,
    counts_only: bool,
) -> Result<Reply, CommandError> {
    let Some(_l) = lock_task(ctx, name)? else {
        return Err(running(name));
    };
    let (_, cluster) = locked(ctx).await?;
    let t = find(&cluster, name)?.clone();
    refuse_done(&t)?;
    let retrying = matches!(t.state, RestoreState::Failed | RestoreState::Interrupted);
    if retry && !retrying {
        return Err(CommandError::conflict(format!(
            "restore task `{name}` is {}: `retry` follows a failed or interrupted start (use `restore task start {name}`)",
            t.state
        )));
    }
    if !retry && retrying {
        return Err(CommandError::conflict(format!(
            "restore task `{name}` is {}: use `restore task retry {name}`",
            t.state
        )));
    }
    let server = server(ctx, &cluster)?;
    if retry {
        if let Some(db) = cluster.database_by_name(&t.db) {
            let restart = t.step.is_some_and(RestoreStep::may_have_stopped);
            set_state(
                ctx,
                name,
                RestoreState::Running,
                Some(RestoreStep::PuttingBack),
                None,
                None,
            )
            .await?;
            if let Err(e) = restore::roll_back(&cluster, db, &server, restart).await {
                let why = format!("putting the old data back failed: {e}");
                return Err(failed(
                    ctx,
                    name,
                    why.clone(),
                    format!("restore task `{name}`: {why}"),
                )
                .await);
            }
        }
    }

    // Into the same shard layout, each file is hashed and read once, as it is staged.
    let spec = RestoreSpec {
        counts_only,
        defer_file_checks: true,
        ..spec(&t)?
    };
    let (v, manifest) = run_verify(ctx, &cluster, &t, &spec).await?;
    let recorded = record_verify(ctx, name, &v).await?;
    let Some(m) = manifest.filter(|_| v.ok()) else {
        let reply = Reply::of(&TaskView {
            headline: None,
            task: recorded,
        })?;
        return Ok(reply.failed(CommandError::damaged(format!(
            "restore task `{name}` failed verify: {}",
            v.reason().unwrap_or_default()
        ))));
    };

    // Live data about to be replaced is backed up first, or nothing starts.
    let mut safety_line = String::new();
    if let (Some(db), true) = (cluster.database_by_name(&t.db), v.keys_now > 0) {
        if t.no_safety_backup {
            safety_line = format!(
                "\nno safety backup of the {} keys replaced (`no_safety_backup`)",
                v.keys_now
            );
        } else if let Some(done) = &t.safety_backup {
            safety_line = format!("\nsafety backup (taken by an earlier start): {done}");
        } else {
            let to = t.safety_path.clone().unwrap_or_else(|| t.path.clone());
            set_state(
                ctx,
                name,
                RestoreState::Running,
                Some(RestoreStep::SafetyBackup(v.keys_now)),
                None,
                None,
            )
            .await?;
            let (store, progress) = (&ctx.store, ctx.progress.as_ref());
            let identity = t.identity.as_deref();
            match crate::backup::service::safety_run(store, progress, name, db.id, &to, identity)
                .await
            {
                Ok(run) => {
                    let at = format!("{}/{}", to.display(), run.id);
                    record_safety(ctx, name, &run.id, &at).await?;
                    safety_line = format!("\nsafety backup of the data replaced: {at}");
                }
                Err(e) => {
                    let why = format!(
                        "the safety backup into `{}` failed, nothing was changed (`no_safety_backup` skips it): {e}",
                        to.display(),
                    );
                    return Err(failed(ctx, name, why.clone(), why).await);
                }
            }
        }
    }

    // A database that no longer exists is recreated from the manifest first.
    let mut created_db = t.created_db;
    if cluster.database_by_name(&t.db).is_none() {
        set_state(
            ctx,
            name,
            RestoreState::Running,
            Some("creating the database".into()),
            None,
            None,
        )
        .await?;
        let (lock, mut c) = locked(ctx).await?;
        let mut config = m.db.clone();
        config.name = t.db.clone();
        config.password = None;
        let req = crate::db::CreateDb { config, port: None };
        match crate::db::create_db_with(&mut c, &server, req, &ctx.cancel).await {
            Ok(id) => {
                lock.save(&mut c)?;
                crate::db::mark_created(&c, id)?;
                created_db = true;
            }
            Err(e) => {
                drop(lock);
                let why = format!("creating db `{}` failed: {e}", t.db);
                return Err(failed(ctx, name, why.clone(), why).await);
            }
        }
    }
    let cluster = ctx.cluster()?;
    let db = cluster
        .database_by_name(&t.db)
        .cloned()
        .ok_or_else(|| CommandError::internal(format!("db `{}` vanished", t.db)))?;

    set_state(
        ctx,
        name,
        RestoreState::Running,
        Some(RestoreStep::Starting),
        None,
        Some(created_db),
    )
    .await?;
    let progress = ctx
        .progress
        .task(&format!("restore {} to {}", t.db, t.run), 0);
    let store = ctx.store.clone();
    let task_name = name.to_string();
    let step = move |s: RestoreStep| {
        progress.set_message(&s.to_string());
        // Best effort, so `restore task show` in another shell sees the step.
        if let Ok(lock) = store.lock() {
            if let Ok(Some(mut c)) = lock.load() {
                if let Some(t) = c.backups.restores.get_mut(&task_name) {
                    t.step = Some(s);
                    let _ = lock.save(&mut c);
                }
            }
        }
    };
    let res = restore::start(&cluster, &db, &m, &spec, &server, &step).await;
    match res {
        Ok(restored) => {
            // What each master took, so that a later recovery refuses older files.
            {
                let (lock, mut c) = locked(ctx).await?;
                restore::record_loaded(&mut c, db.id, &restored.loaded_ns);
                lock.save(&mut c)?;
            }
            let content = restored.content.as_ref().map(|c| ContentCheck {
                keys: c.server.keys,
                digest: c.server.hex(),
                expired: c.expired,
                line: c.verdict(),
            });
            set_state(ctx, name, RestoreState::Succeeded, None, None, None).await?;
            let t = record_content(ctx, name, content).await?;
            let proof = match &t.content {
                Some(c) => c.line.clone(),
                None => "content not verified: `verify counts` checked the key counts only".into(),
            };
            Reply::of(&TaskView {
                headline: Some(format!(
                    "Restored db:{} `{}` to backup run `{}`: {} keys; clients can connect again.\n{proof}{safety_line}",
                    db.id, db.config.name, t.run, restored.keys
                )),
                task: t,
            })
        }
        Err(e) => {
            set_state(ctx, name, RestoreState::Failed, None, Some(e.clone()), None).await?;
            Err(
                CommandError::unavailable(format!("restore task `{name}` failed: {e}"))
                    .hinted(format!("fix the cause and run `restore task retry {name}`")),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cmd::render_tests::both;

    #[test]
    fn restore_results() {
        let task = RestoreTask {
            name: "undo".into(),
            db: "orders".into(),
            run: "20261204-035012-17".into(),
            path: "/backups/orders".into(),
            target_path: None,
            force: false,
            allow_newer_server: false,
            replay: false,
            state: RestoreState::VerifyFailed,
            reason: Some("target: db:3 `orders` holds 12 keys: `force` would replace them".into()),
            checks: vec![
                "ok     manifest: `/backups/orders/20261204-035012-17` is complete and matches its checksum".into(),
                "FAILED target: db:3 `orders` holds 12 keys: `force` would replace them".into(),
            ],
            created_db: false,
            step: None,
            identity: None,
            from_other_cluster: false,
            safety_path: None,
            no_safety_backup: false,
            safety_backup: None,
            group: None,
            created: 1_796_356_212,
            finished: None,
            content: None,
        };
        insta::assert_snapshot!(
            "task",
            both(&TaskView {
                task: task.clone(),
                headline: None
            })
        );
        insta::assert_snapshot!("list", both(&TaskList(vec![task])));
    }
}
