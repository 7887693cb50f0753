//! The services behind `restore task ...`: a task's state lives in the CCS; `start` holds
//! the task's lock (`<home>/locks/restore-<task>.lock`) while it runs, so a task found
//! `running` with its lock free was cut short (`interrupted`). A name may also be a task
//! of several databases ([`super::group`]): each action finds which in the one read of
//! the CCS it makes anyway.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::pick::{pick, Pick};
use super::{start, verify, RestoreSpec, RestoreTaskError, VerifyReport};
use crate::backup::{
    claimed_task_of, now_ms, restore_task_lock as task_lock_name, Manifest, Repository, RunLock,
};
use crate::ccs::{
    Cluster, ContentCheck, Id, RestoreState, RestoreStep, RestoreTask, Store, StoreLock,
};
use crate::db::Cancel;
use crate::error::{DomainError, ErrorKind};
use crate::lang::DbRef;
use crate::progress::Progress;
use crate::server::Servers;

type Result<T, E = RestoreTaskError> = std::result::Result<T, E>;

/// The options of `restore task create` that the task keeps as given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateFlags {
    pub target_path: Option<PathBuf>,
    pub force: bool,
    pub allow_newer_server: bool,
    pub replay: bool,
    /// The age identity file for an encrypted run.
    pub identity: Option<PathBuf>,
    pub from_other_cluster: bool,
    /// The run may be another database's (a clone).
    pub from_other_db: bool,
    pub safety_path: Option<PathBuf>,
    pub no_safety_backup: bool,
}

/// What the restore task services run against: the store (locked and saved step by
/// step: a restore runs without the CCS lock), `--redis-server`, progress and Ctrl-C.
pub struct Tasks<'a> {
    pub store: &'a Store,
    pub redis_server: Option<&'a Path>,
    pub progress: &'a dyn Progress,
    pub cancel: &'a Cancel,
}

/// A task, or a task of several databases, as stored after an action.
pub enum Shown {
    One(Box<RestoreTask>),
    Group {
        group: String,
        tasks: Vec<RestoreTask>,
    },
}

/// The safety backup of a start that replaced live data.
pub enum Safety {
    /// Nothing was replaced.
    None,
    /// `no_safety_backup`: the keys replaced without one.
    Skipped(u64),
    /// Taken by an earlier start of the task, at this run; that start was cut short
    /// while the data was fenced, so no client wrote since.
    Earlier(String),
    /// Taken now, at this run.
    Taken(String),
    /// Taken now, at `at`: the old data served clients again after an earlier start took
    /// `earlier` (it failed and put the data back), so `earlier` may miss their writes.
    Retaken { at: String, earlier: String },
}

/// What one database's restore brought back.
pub struct RestoredDb {
    pub db: Id,
    pub db_name: String,
    pub keys: u64,
    pub safety: Safety,
}

/// What `start` / `retry` did: the task(s) as stored; `restored` for one database that
/// came back; `failure` when verify stopped it before anything changed.
pub struct Started {
    pub shown: Shown,
    pub restored: Option<RestoredDb>,
    pub failure: Option<RestoreTaskError>,
    /// `retry` of a start cut short after the restored data served clients: it removed
    /// what was left of the old data and marked the task succeeded, restoring nothing.
    pub finished: bool,
}

/// A created task (or the tasks of several databases), with the line saying the default
/// local cluster was made for it when it was.
pub struct Created {
    pub shown: Shown,
    /// The tasks made, in the order their databases were named.
    pub tasks: Vec<RestoreTask>,
    /// The database does not exist: `start` recreates it.
    pub recreates: bool,
    pub made: Option<String>,
}

impl Tasks<'_> {
    /// `restore task create` of one database.
    pub async fn create(
        &self,
        name: String,
        db: &DbRef,
        backup: &str,
        flags: CreateFlags,
    ) -> Result<Created> {
        let flags = absolute_flags(flags)?;
        let (lock, mut cluster, made) = self.create_locked(backup).await?;
        name_free(&cluster, &name)?;
        let pick = pick(&cluster, db, backup, &flags)?;
        let recreates = pick.existing.is_none();
        let task = new_task(name.clone(), pick, &flags, None);
        cluster.backups.restores.insert(name, task.clone());
        lock.save(&mut cluster)?;
        Ok(Created {
            shown: Shown::One(Box::new(task.clone())),
            tasks: vec![task],
            recreates,
            made,
        })
    }

    /// `restore task list`.
    pub async fn list(&self) -> Result<Vec<RestoreTask>> {
        let (_, cluster) = self.locked().await?;
        Ok(cluster.backups.restores.values().cloned().collect())
    }

    /// `restore task show`.
    pub async fn show(&self, name: &str) -> Result<Shown> {
        let (_, cluster) = self.locked().await?;
        shown(&cluster, name)
    }

    /// `restore task verify`: the checks recorded on the task (on every task of a group
    /// not yet restored); `failure` says which failed.
    pub async fn verify(&self, name: &str) -> Result<(Shown, Option<RestoreTaskError>)> {
        let (_l, _, cluster) = self.claim(name).await?;
        match shown(&cluster, name)? {
            Shown::One(t) => {
                let (t, v) = self.verify_locked(&cluster, *t).await?;
                let failure = verify_failure(name, &v);
                Ok((Shown::One(Box::new(t)), failure))
            }
            Shown::Group { tasks, .. } => self.verify_group(name, &tasks).await,
        }
    }

    /// `restore task start` / `retry` (`retry`: after a failed or interrupted start, the
    /// old data put back first).
    pub async fn start(&self, name: &str, retry: bool, counts_only: bool) -> Result<Started> {
        let (_l, _, cluster) = self.claim(name).await?;
        match shown(&cluster, name)? {
            Shown::One(t) => {
                self.start_locked(&cluster, *t, retry, counts_only, false)
                    .await
            }
            Shown::Group { tasks, .. } => self.start_group(name, tasks, retry, counts_only).await,
        }
    }

    /// `restore task delete`: the task (or every task of a group), none running. A task
    /// cut short (`interrupted`), or whose old data is still set aside, is rolled back
    /// first: its old data put back in place and serving (deleted, it could never be);
    /// when that fails the task stays, `failed` with the reason. Returns the databases
    /// put back. The task's lock files go with it, each removed while this shell holds
    /// it (so never one another shell holds).
    pub async fn delete(&self, name: &str) -> Result<Vec<String>> {
        let (task_lock, lock, cluster) = self.claim(name).await?;
        // The put-back records its steps under the CCS lock.
        drop(lock);
        let mut held = Vec::new();
        let tasks = match shown(&cluster, name)? {
            Shown::One(t) => match t.group {
                Some(group) => {
                    return Err(RestoreTaskError::PartOfGroup {
                        task: name.to_string(),
                        group,
                    })
                }
                None => vec![*t],
            },
            Shown::Group { tasks, .. } => {
                for t in &tasks {
                    match self.lock_task(&t.name)? {
                        Some(l) => held.push(l),
                        None => return Err(RestoreTaskError::Running(t.name.clone())),
                    }
                }
                tasks
            }
        };
        let mut put_back = Vec::new();
        for t in &tasks {
            if served(t) {
                let server = self.servers(&cluster)?;
                self.finish_removal(&cluster, t, &server).await?;
            } else if t.state == RestoreState::Interrupted || self.set_aside_by(&cluster, t).await {
                let server = self.servers(&cluster)?;
                self.put_back(&cluster, t, &server).await?;
                if cluster.database_by_name(&t.db).is_some() {
                    put_back.push(t.db.clone());
                }
            }
        }
        let (lock, mut cluster) = self.locked().await?;
        for t in &tasks {
            cluster.backups.restores.remove(&t.name);
        }
        lock.save(&mut cluster)?;
        drop(lock);
        task_lock.remove();
        held.into_iter().for_each(RunLock::remove);
        Ok(put_back)
    }

    /// Whether data task `t` set aside (and did not put back) lies in a shard directory
    /// of its database.
    async fn set_aside_by(&self, cluster: &Cluster, t: &RestoreTask) -> bool {
        let Some(db) = cluster.database_by_name(&t.db) else {
            return false;
        };
        let hosts = cluster.hosts().unwrap_or_default();
        crate::db::set_aside(cluster, db, &hosts)
            .await
            .iter()
            .any(|(_, a)| a.task.as_deref() == Some(t.name.as_str()))
    }

    pub(super) fn lock_task(&self, task: &str) -> Result<Option<RunLock>> {
        RunLock::try_take(self.store.home(), &task_lock_name(task)).map_err(RestoreTaskError::Lock)
    }

    /// Task `name`'s lock (refused while another shell holds it), then the CCS as
    /// [`Self::locked`] gives it, with the task itself marked `interrupted` when it is
    /// found `running`: holding its lock, no shell runs it, so the one that did died.
    /// (The sweep of `locked` alone cannot see that: the lock it tries is the one held
    /// here.) Every action on one task starts here.
    pub(super) async fn claim(&self, name: &str) -> Result<(RunLock, StoreLock, Cluster)> {
        let Some(task_lock) = self.lock_task(name)? else {
            return Err(RestoreTaskError::Running(name.to_string()));
        };
        let (lock, cluster) = self.locked_holding(Some(name)).await?;
        // Another task of the same database claimed by another shell (asked under the
        // CCS lock, after taking this task's: of two claims at once, the later always
        // sees the earlier) would stop, fence and swap the same shards as this one.
        let mine: Vec<&RestoreTask> = match cluster.backups.restores.get(name) {
            Some(t) => vec![t],
            None => cluster.backups.restore_group(name),
        };
        let names: Vec<&str> = mine.iter().map(|t| t.name.as_str()).collect();
        for t in &mine {
            if let Some(other) = claimed_task_of(self.store.home(), &cluster, &t.db, &names) {
                return Err(RestoreTaskError::DbClaimed {
                    db: t.db.clone(),
                    task: other,
                });
            }
            // Nor a backup run streaming from its shards (a restart or delete is refused
            // the same way).
            let home = self.store.home();
            let streaming = cluster
                .database_by_name(&t.db)
                .and_then(|d| crate::backup::streaming_run_of(home, &cluster, d.id));
            if let Some(run) = streaming {
                return Err(RestoreTaskError::DbBackingUp {
                    db: t.db.clone(),
                    run: run.id,
                    task: run.task,
                });
            }
        }
        Ok((task_lock, lock, cluster))
    }

    /// The CCS lock (waiting while another shell holds it briefly), with backup runs and
    /// restore tasks whose shell died marked `interrupted`.
    pub(super) async fn locked(&self) -> Result<(StoreLock, Cluster)> {
        self.locked_holding(None).await
    }

    /// [`Self::locked`], this shell holding task `held`'s lock (its state then says
    /// whether a shell died running it).
    async fn locked_holding(&self, held: Option<&str>) -> Result<(StoreLock, Cluster)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.store.lock().and_then(|l| Ok((l.cluster()?, l))) {
                Ok((mut cluster, lock)) => {
                    let home = self.store.home();
                    let swept = crate::backup::sweep_interrupted(&mut cluster, home);
                    if mark_interrupted(&mut cluster, home, held) || swept {
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

    /// The CCS to create a task in. A task taking its run from a repository may be
    /// created in a home with no cluster at all (the new machine after a disaster): the
    /// default local cluster is made for it, saved only with the task; the line saying
    /// so comes back.
    pub(super) async fn create_locked(
        &self,
        backup: &str,
    ) -> Result<(StoreLock, Cluster, Option<String>)> {
        if backup.contains('/') && self.store.load()?.is_none() {
            let lock = self.store.lock()?;
            let (cluster, made) = lock.cluster_or_default()?;
            return Ok((lock, cluster, made));
        }
        let (lock, cluster) = self.locked().await?;
        Ok((lock, cluster, None))
    }

    fn servers(&self, cluster: &Cluster) -> Result<Servers> {
        cluster
            .servers(self.redis_server)
            .map_err(|e| RestoreTaskError::NoServer(e.to_string()))
    }

    /// Verifies task `t` (its lock held, not yet succeeded) and records the verdict.
    pub(super) async fn verify_locked(
        &self,
        cluster: &Cluster,
        t: RestoreTask,
    ) -> Result<(RestoreTask, VerifyReport)> {
        refuse_done(&t)?;
        // Its old data may be set aside and its shards fenced: nothing to verify before
        // `retry` puts it back (and a verdict would hide that it was cut short).
        if t.state == RestoreState::Interrupted {
            let (name, state) = (t.name, t.state);
            return Err(RestoreTaskError::MustRetry { name, state });
        }
        let (v, _) = self.run_verify(cluster, &t, &spec(&t)?).await?;
        let t = self.record_verify(&t.name, &v).await?;
        Ok((t, v))
    }

    /// Verifies task `name` under its own lock and records the verdict.
    pub(super) async fn verify_one(&self, name: &str) -> Result<(RestoreTask, VerifyReport)> {
        let (_l, _, cluster) = self.claim(name).await?;
        let t = find(&cluster, name)?.clone();
        self.verify_locked(&cluster, t).await
    }

    async fn run_verify(
        &self,
        cluster: &Cluster,
        t: &RestoreTask,
        spec: &RestoreSpec,
    ) -> Result<(VerifyReport, Option<Manifest>)> {
        let db = cluster.database_by_name(&t.db);
        let server = self.servers(cluster)?;
        Ok(verify(cluster, db, spec, &server).await)
    }

    /// Starts task `name` under its own lock. `files_read`: this command's verify (a
    /// group's, before any of its databases started) has just read its run's files
    /// through, so its start's verify does not read them again.
    pub(super) async fn start_one(
        &self,
        name: &str,
        retry: bool,
        counts_only: bool,
        files_read: bool,
    ) -> Result<Started> {
        let (_l, _, cluster) = self.claim(name).await?;
        let t = find(&cluster, name)?.clone();
        self.start_locked(&cluster, t, retry, counts_only, files_read)
            .await
    }

    /// Starts task `t`, its lock held: the old data put back first on `retry`, verified,
    /// the live data backed up, the database recreated when it is gone, then restored.
    async fn start_locked(
        &self,
        cluster: &Cluster,
        t: RestoreTask,
        retry: bool,
        counts_only: bool,
        files_read: bool,
    ) -> Result<Started> {
        refuse_done(&t)?;
        // Its old data still set aside, whatever its state says (a verify since, say):
        // only `retry` puts it back.
        let own_set_aside = self.set_aside_by(cluster, &t).await;
        check_retry(&t, retry, own_set_aside)?;
        // Decided before the put-back changes the step: an earlier safety backup still
        // holds the data only when the start retried was cut short while it was fenced.
        let earlier_holds =
            t.state == RestoreState::Interrupted && t.step.is_some_and(RestoreStep::fenced);
        let server = self.servers(cluster)?;
        if retry && served(&t) {
            return self.finish(cluster, &t, &server).await;
        }
        if retry {
            self.put_back(cluster, &t, &server).await?;
        }
        // Into the same shard layout, each file is hashed and read once, as it is staged.
        let spec = RestoreSpec {
            counts_only,
            defer_file_checks: true,
            files_read,
            ..spec(&t)?
        };
        let (mut v, manifest) = self.run_verify(cluster, &t, &spec).await?;
        let kept = kept_safety(cluster, &t, v.keys_now, earlier_holds);
        if let (Some(m), None, true) = (&manifest, &kept, v.ok()) {
            // A new safety backup is work the staging's checks would come too late for.
            let db = cluster.database_by_name(&t.db);
            super::verify::stored_files_first(&spec, db, m, &mut v).await;
        }
        let recorded = self.record_verify(&t.name, &v).await?;
        let Some(m) = manifest.filter(|_| v.ok()) else {
            return Ok(Started {
                shown: Shown::One(Box::new(recorded)),
                restored: None,
                failure: verify_failure(&t.name, &v),
                finished: false,
            });
        };
        let safety = match kept {
            Some(safety) => safety,
            None => self.safety_backup(cluster, &t, v.keys_now).await?,
        };
        let created_db = self.recreate(cluster, &t, &m, &server).await?;
        self.restore(&t, &m, &spec, &server, created_db, safety)
            .await
    }

    /// `retry` of a start cut short after its restored data served clients: what is left
    /// of the old data removed, the task succeeded. Nothing is restored again (that would
    /// drop the writes made since); a failure leaves the task as it was, for a retry.
    async fn finish(
        &self,
        cluster: &Cluster,
        t: &RestoreTask,
        server: &Servers,
    ) -> Result<Started> {
        self.finish_removal(cluster, t, server).await?;
        let done = self
            .update(&t.name, |t| {
                (t.state, t.step, t.reason) = (RestoreState::Succeeded, None, None);
                t.finished = Some(now_ms() / 1000);
            })
            .await?;
        Ok(Started {
            shown: Shown::One(Box::new(done)),
            restored: None,
            failure: None,
            finished: true,
        })
    }

    /// What a start cut short after its data served clients left of the old data,
    /// removed; the task is left as it is when that fails.
    async fn finish_removal(
        &self,
        cluster: &Cluster,
        t: &RestoreTask,
        server: &Servers,
    ) -> Result<()> {
        let Some(db) = cluster.database_by_name(&t.db) else {
            return Ok(());
        };
        super::finish_removal(cluster, db, server)
            .await
            .map_err(|error| RestoreTaskError::FinishFailed {
                name: t.name.clone(),
                error,
            })
    }

    /// `retry`: the old data of a failed or interrupted start back in place and serving.
    async fn put_back(&self, cluster: &Cluster, t: &RestoreTask, server: &Servers) -> Result<()> {
        let Some(db) = cluster.database_by_name(&t.db) else {
            return Ok(());
        };
        let restart = t.step.is_some_and(RestoreStep::may_have_stopped);
        // A key-by-key start writes into an empty database and sets nothing aside: what
        // it wrote goes, while the masters are still fenced.
        let wrote_keys = match t.step {
            Some(RestoreStep::RestoringKeys(_) | RestoreStep::Emptying) => true,
            Some(RestoreStep::CheckingCounts | RestoreStep::Proving) => {
                !self.set_aside_by(cluster, t).await
            }
            _ => false,
        };
        if wrote_keys {
            // On failure the task stays as it is, for a retry to empty it again.
            super::by_key::empty_cut_short(cluster, db, server)
                .await
                .map_err(|error| RestoreTaskError::PutBackFailed {
                    name: t.name.clone(),
                    error,
                })?;
        }
        self.set_running(&t.name, RestoreStep::PuttingBack).await?;
        let rolled_back = super::roll_back(cluster, db, server, restart).await;
        self.record_pids(db.id).await?;
        if let Err(error) = rolled_back {
            let error = RestoreTaskError::PutBackFailed {
                name: t.name.clone(),
                error,
            };
            return Err(self.failed(&t.name, error).await);
        }
        Ok(())
    }

    /// Live data about to be replaced is backed up first, or nothing starts (a new
    /// safety backup: [`kept_safety`] found none standing for it).
    async fn safety_backup(
        &self,
        cluster: &Cluster,
        t: &RestoreTask,
        keys_now: u64,
    ) -> Result<Safety> {
        let Some(db) = cluster.database_by_name(&t.db) else {
            return Ok(Safety::None);
        };
        let to = t.safety_path.clone().unwrap_or_else(|| t.path.clone());
        self.set_running(&t.name, RestoreStep::SafetyBackup(keys_now))
            .await?;
        let identity = t.identity.as_deref();
        let run = crate::backup::service::safety_run(
            self.store,
            self.progress,
            &t.name,
            db.id,
            &to,
            identity,
        )
        .await;
        match run {
            Ok(run) => {
                let at = format!("{}/{}", to.display(), run.id);
                self.record_safety(&t.name, &run.id, &at).await?;
                Ok(match t.safety_backup.clone() {
                    Some(earlier) => Safety::Retaken { at, earlier },
                    None => Safety::Taken(at),
                })
            }
            Err(error) => {
                let error = RestoreTaskError::SafetyBackupFailed { to, error };
                Err(self.failed(&t.name, error).await)
            }
        }
    }

    /// A database that no longer exists is recreated from the manifest first. Whether
    /// the task created its database (now or in an earlier start).
    async fn recreate(
        &self,
        cluster: &Cluster,
        t: &RestoreTask,
        m: &Manifest,
        server: &Servers,
    ) -> Result<bool> {
        if cluster.database_by_name(&t.db).is_some() {
            return Ok(t.created_db);
        }
        self.set_running(&t.name, "creating the database".into())
            .await?;
        let (lock, mut c) = self.locked().await?;
        let mut config = m.db.clone();
        config.name = t.db.clone();
        config.password = None;
        let req = crate::db::CreateDb { config, port: None };
        match crate::db::create_db_with(&mut c, server, req, self.cancel).await {
            Ok(id) => {
                lock.save(&mut c)?;
                crate::db::mark_created(&c, id)?;
                Ok(true)
            }
            Err(e) => {
                drop(lock);
                let error = RestoreTaskError::CreateDbFailed {
                    db: t.db.clone(),
                    error: e.to_string(),
                };
                Err(self.failed(&t.name, error).await)
            }
        }
    }

    /// The restore itself, its steps recorded on the task as it goes; the outcome (and
    /// the content proof) recorded at the end.
    async fn restore(
        &self,
        t: &RestoreTask,
        m: &Manifest,
        spec: &RestoreSpec,
        server: &Servers,
        created_db: bool,
        safety: Safety,
    ) -> Result<Started> {
        let name = &t.name;
        let cluster = self.store.cluster()?;
        let db = cluster
            .database_by_name(&t.db)
            .cloned()
            .ok_or_else(|| RestoreTaskError::DbVanished(t.db.clone()))?;
        let step = Some(RestoreStep::Starting);
        self.set_state(name, RestoreState::Running, step, None, Some(created_db))
            .await?;
        let progress = self
            .progress
            .task(&format!("restore {} to {}", t.db, t.run), 0);
        let store = self.store.clone();
        let task_name = name.clone();
        let step = move |s: RestoreStep| {
            progress.set_message(&s.to_string());
            record_step(&store, &task_name, s);
        };
        match start(&cluster, &db, m, spec, server, &step).await {
            Ok(restored) => {
                // What each master took, so that a later recovery refuses older files.
                let (lock, mut c) = self.locked().await?;
                super::record_loaded(&mut c, db.id, &restored.loaded_ns);
                let hosts = c.hosts().unwrap_or_default();
                crate::db::record_pids(&mut c, &hosts, db.id).await;
                lock.save(&mut c)?;
                drop(lock);
                let content = restored.content.as_ref().map(|c| ContentCheck {
                    keys: c.server.keys,
                    digest: c.server.hex(),
                    expired: c.expired,
                    line: c.verdict(),
                });
                self.set_state(name, RestoreState::Succeeded, None, None, None)
                    .await?;
                let t = self.record_content(name, content).await?;
                Ok(Started {
                    shown: Shown::One(Box::new(t)),
                    restored: Some(RestoredDb {
                        db: db.id,
                        db_name: db.config.name.clone(),
                        keys: restored.keys,
                        safety,
                    }),
                    failure: None,
                    finished: false,
                })
            }
            Err(error) => {
                // Its shards were stopped and started again (the old data put back).
                self.record_pids(db.id).await?;
                // A start that failed once shards were unfenced keeps its step: `retry`
                // and `delete` finish it forward, never put the old data back.
                self.update(name, |t| {
                    (t.state, t.reason) = (RestoreState::Failed, Some(error.clone()));
                    if !t.step.is_some_and(RestoreStep::served) {
                        t.step = None;
                    }
                    t.finished = Some(now_ms() / 1000);
                })
                .await?;
                Err(RestoreTaskError::Failed {
                    name: name.clone(),
                    error,
                })
            }
        }
    }

    /// Changes task `name` as stored (under the CCS lock); the task as saved.
    async fn update(
        &self,
        name: &str,
        change: impl FnOnce(&mut RestoreTask),
    ) -> Result<RestoreTask> {
        let (lock, mut cluster) = self.locked().await?;
        let t = cluster
            .backups
            .restores
            .get_mut(name)
            .ok_or_else(|| RestoreTaskError::Deleted(name.to_string()))?;
        change(t);
        let t = t.clone();
        lock.save(&mut cluster)?;
        Ok(t)
    }

    /// The pids of database `id`'s shards as they run now, saved: a restore stops and
    /// starts them.
    async fn record_pids(&self, id: Id) -> Result<()> {
        let (lock, mut c) = self.locked().await?;
        let hosts = c.hosts().unwrap_or_default();
        crate::db::record_pids(&mut c, &hosts, id).await;
        lock.save(&mut c)?;
        Ok(())
    }

    async fn record_verify(&self, name: &str, v: &VerifyReport) -> Result<RestoreTask> {
        self.update(name, |t| {
            t.checks = check_lines(v);
            (t.state, t.reason) = match v.ok() {
                true => (RestoreState::Verified, None),
                false => (RestoreState::VerifyFailed, v.reason()),
            };
        })
        .await
    }

    async fn record_content(
        &self,
        name: &str,
        content: Option<ContentCheck>,
    ) -> Result<RestoreTask> {
        self.update(name, |t| t.content = content).await
    }

    /// Records the safety backup on the task, and marks the run as one (`latest` passes
    /// it over: it holds the data the restore replaced, not a chosen restore point).
    async fn record_safety(&self, name: &str, run: &str, at: &str) -> Result<()> {
        let (lock, mut cluster) = self.locked().await?;
        if let Some(r) = cluster.backups.run_mut(run) {
            r.safety_for = Some(name.to_string());
        }
        if let Some(t) = cluster.backups.restores.get_mut(name) {
            t.safety_backup = Some(at.to_string());
        }
        lock.save(&mut cluster)?;
        Ok(())
    }

    async fn set_running(&self, name: &str, step: RestoreStep) -> Result<RestoreTask> {
        self.set_state(name, RestoreState::Running, Some(step), None, None)
            .await
    }

    async fn set_state(
        &self,
        name: &str,
        state: RestoreState,
        step: Option<RestoreStep>,
        reason: Option<String>,
        created_db: Option<bool>,
    ) -> Result<RestoreTask> {
        self.update(name, |t| {
            (t.state, t.step, t.reason) = (state, step, reason);
            if let Some(c) = created_db {
                t.created_db = c;
            }
            if matches!(state, RestoreState::Succeeded | RestoreState::Failed) {
                t.finished = Some(now_ms() / 1000);
            }
        })
        .await
    }

    /// Records the task `failed` with `error` as its reason, and returns the error (or
    /// the error of recording it).
    async fn failed(&self, name: &str, error: RestoreTaskError) -> RestoreTaskError {
        // The reason is the cause alone, without the task's name before it.
        let reason = match &error {
            RestoreTaskError::PutBackFailed { error, .. } => {
                format!("putting the old data back failed: {error}")
            }
            e => e.to_string(),
        };
        match self
            .set_state(name, RestoreState::Failed, None, Some(reason), None)
            .await
        {
            Ok(_) => error,
            Err(e) => e,
        }
    }
}

/// Best effort, so `restore task show` in another shell sees the step.
fn record_step(store: &Store, task: &str, s: RestoreStep) {
    if let Ok(lock) = store.lock() {
        if let Ok(Some(mut c)) = lock.load() {
            if let Some(t) = c.backups.restores.get_mut(task) {
                t.step = Some(s);
                let _ = lock.save(&mut c);
            }
        }
    }
}

/// The restore tasks another shell is running now (`running`, their lock held by a
/// live process), by the name of the database each restores. A task `running` whose
/// lock is free is not among them: its shell died. The locks are asked, never taken
/// ([`RunLock::is_held`]): `status` must not turn away a shell claiming a task.
pub fn running_tasks(home: &Path, cluster: &Cluster) -> BTreeMap<String, String> {
    cluster
        .backups
        .restores
        .values()
        .filter(|t| t.state == RestoreState::Running)
        .filter(|t| RunLock::is_held(home, &task_lock_name(&t.name)))
        .map(|t| (t.db.clone(), t.name.clone()))
        .collect()
}

/// Marks `running` tasks whose lock is free, or is `held` by the caller, `interrupted`
/// (their shell died); whether any was.
fn mark_interrupted(cluster: &mut Cluster, home: &Path, held: Option<&str>) -> bool {
    let mut changed = false;
    for t in cluster.backups.restores.values_mut() {
        if t.state != RestoreState::Running {
            continue;
        }
        // Asked without taking it: taken for a moment, it would turn away a shell
        // claiming the task at that instant.
        let free = || !RunLock::is_held(home, &task_lock_name(&t.name));
        if held == Some(t.name.as_str()) || free() {
            t.state = RestoreState::Interrupted;
            if let Some(step) = t.step.filter(|s| s.served()) {
                t.reason = Some(format!(
                    "the shell running it died while {step}, after the restored data served clients: `restore task retry {}` unfences the shards still fenced and removes what is left of the old data (the restored data stays, with every write made since)",
                    t.name
                ));
                changed = true;
                continue;
            }
            t.reason = Some(format!(
                "the shell running it died while {}; `restore task retry {}` puts the old data back and starts again",
                t.step.unwrap_or(RestoreStep::Starting),
                t.name
            ));
            changed = true;
        }
    }
    changed
}

/// Task `name` as stored, or the tasks of group `name`.
fn shown(cluster: &Cluster, name: &str) -> Result<Shown> {
    if let Some(t) = cluster.backups.restores.get(name) {
        return Ok(Shown::One(Box::new(t.clone())));
    }
    let tasks: Vec<RestoreTask> = cluster
        .backups
        .restore_group(name)
        .into_iter()
        .cloned()
        .collect();
    if tasks.is_empty() {
        return Err(no_such_task(cluster, name));
    }
    Ok(Shown::Group {
        group: name.to_string(),
        tasks,
    })
}

fn no_such_task(cluster: &Cluster, name: &str) -> RestoreTaskError {
    RestoreTaskError::NoSuchTask {
        name: name.to_string(),
        known: cluster.backups.restores.keys().cloned().collect(),
    }
}

pub(super) fn find<'a>(cluster: &'a Cluster, name: &str) -> Result<&'a RestoreTask> {
    cluster
        .backups
        .restores
        .get(name)
        .ok_or_else(|| no_such_task(cluster, name))
}

/// What stands for a safety backup without taking a new one: none needed (no database,
/// no keys), skipped (`no_safety_backup`), or the task's earlier one when `earlier_holds`
/// (no client can have written since it was taken). `None`: a new one is taken.
fn kept_safety(
    cluster: &Cluster,
    t: &RestoreTask,
    keys_now: u64,
    earlier_holds: bool,
) -> Option<Safety> {
    if cluster.database_by_name(&t.db).is_none() || keys_now == 0 {
        return Some(Safety::None);
    }
    if t.no_safety_backup {
        return Some(Safety::Skipped(keys_now));
    }
    match &t.safety_backup {
        Some(done) if earlier_holds => Some(Safety::Earlier(done.clone())),
        _ => None,
    }
}

fn verify_failure(name: &str, v: &VerifyReport) -> Option<RestoreTaskError> {
    (!v.ok()).then(|| RestoreTaskError::VerifyFailed {
        name: name.to_string(),
        reason: v.reason().unwrap_or_default(),
        kind: v.failure_kind().unwrap_or(ErrorKind::Damaged),
    })
}

/// Whether task `t` is a start cut short after its restored data served clients: to be
/// finished, never undone.
fn served(t: &RestoreTask) -> bool {
    matches!(t.state, RestoreState::Interrupted | RestoreState::Failed)
        && t.step.is_some_and(RestoreStep::served)
}

fn refuse_done(t: &RestoreTask) -> Result<()> {
    match t.state {
        RestoreState::Succeeded => Err(RestoreTaskError::AlreadySucceeded(t.name.clone())),
        _ => Ok(()),
    }
}

/// `retry` follows a failed or interrupted start (or one that left its old data set
/// aside), and only it does.
fn check_retry(t: &RestoreTask, retry: bool, own_set_aside: bool) -> Result<()> {
    let retrying =
        own_set_aside || matches!(t.state, RestoreState::Failed | RestoreState::Interrupted);
    let (name, state) = (t.name.clone(), t.state);
    match (retry, retrying) {
        (true, false) => Err(RestoreTaskError::NotRetryable { name, state }),
        (false, true) => Err(RestoreTaskError::MustRetry { name, state }),
        _ => Ok(()),
    }
}

/// Refuses a task name already taken by a task or by a task of several databases.
pub(super) fn name_free(cluster: &Cluster, name: &str) -> Result<()> {
    if cluster.backups.restores.contains_key(name)
        || !cluster.backups.restore_group(name).is_empty()
    {
        return Err(RestoreTaskError::NameTaken(name.to_string()));
    }
    Ok(())
}

/// The paths `restore task create` was given, made absolute (the task may be started
/// from another directory); the identity file is checked to open. Options that
/// contradict each other are refused first.
pub(super) fn absolute_flags(mut flags: CreateFlags) -> Result<CreateFlags> {
    if flags.replay && flags.force {
        return Err(RestoreTaskError::FlagsConflict(
            "`replay` writes the run's keys into an empty database, so not with `force`: \
             empty the target first, or restore without `replay`"
                .into(),
        ));
    }
    if flags.no_safety_backup && flags.safety_path.is_some() {
        return Err(RestoreTaskError::FlagsConflict(
            "`no_safety_backup` takes no safety backup: `safety_path` says where one goes".into(),
        ));
    }
    let abs = |p: &Path| {
        std::path::absolute(p).map_err(|error| RestoreTaskError::Resolve {
            path: p.to_path_buf(),
            error,
        })
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
    if let Some(p) = flags.identity.take() {
        let abs = abs(&p)?;
        crate::backup::Identities::load(&abs).map_err(RestoreTaskError::Identity)?;
        flags.identity = Some(abs);
    }
    Ok(flags)
}

/// A new task restoring `pick`, in `group` when it is one of several.
pub(super) fn new_task(
    name: String,
    pick: Pick,
    flags: &CreateFlags,
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
        identity: flags.identity.clone(),
        content: None,
        from_other_cluster: flags.from_other_cluster,
        from_other_db: flags.from_other_db,
        safety_path: flags.safety_path.clone(),
        no_safety_backup: flags.no_safety_backup,
        safety_backup: None,
        group,
    }
}

fn spec(t: &RestoreTask) -> Result<RestoreSpec> {
    Ok(RestoreSpec {
        task: t.name.clone(),
        repo: Repository::open(&t.path).map_err(RestoreTaskError::Repository)?,
        run: t.run.clone(),
        force: t.force,
        allow_newer_server: t.allow_newer_server,
        replay: t.replay,
        identity: t.identity.clone(),
        counts_only: false,
        defer_file_checks: false,
        files_read: false,
        from_other_cluster: t.from_other_cluster,
        from_other_db: t.from_other_db,
        db: t.db.clone(),
        target_path: t.target_path.clone(),
    })
}

fn check_lines(v: &VerifyReport) -> Vec<String> {
    v.checks
        .iter()
        .map(|c| {
            let verdict = if c.ok { "ok" } else { "FAILED" };
            format!("{verdict:<6} {}: {}", c.check, c.detail)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(name: &str) -> RestoreTask {
        serde_json::from_value(serde_json::json!({
            "name": name, "db": "sales", "run": "r1", "path": "/backups",
            "state": "running", "created": 0,
        }))
        .unwrap()
    }

    /// `status` asks which tasks run: a task `running` whose lock nobody holds is not
    /// (its shell died), one whose lock is held is. (That the ask never takes the lock,
    /// so a claim at the same instant is never turned away, is tests/task_lock.rs: a
    /// process of its own, where no other test forks while holding copies of the lock's
    /// file.)
    #[test]
    fn asking_which_tasks_run_tells_a_held_lock_from_a_free_one() {
        let home = tempfile::tempdir().unwrap();
        let mut cluster = crate::ccs::fixtures::cluster(7, 10, Vec::new());
        cluster.backups.restores.insert("t".into(), running("t"));
        // No shell holds it: its shell died.
        assert!(running_tasks(home.path(), &cluster).is_empty());
        let held = RunLock::try_take(home.path(), &task_lock_name("t"))
            .unwrap()
            .unwrap();
        assert_eq!(
            running_tasks(home.path(), &cluster),
            BTreeMap::from([("sales".to_string(), "t".to_string())])
        );
        drop(held);
    }
}
