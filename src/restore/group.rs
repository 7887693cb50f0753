//! Restore tasks of several databases (`restore task create ... db a,b|all`): one task
//! per database, named `<task>.<db>`, each taking its database's newest run. Nothing
//! starts until every database not yet restored passes verify; they then start one at a
//! time, and `retry` resumes the ones not done. Each database's task is an ordinary
//! restore task (its own state, lock, progress and proof), so `show` and `retry` work on
//! one of them alone too.

use super::pick::{databases_with_runs, pick};
use super::task::{absolute_flags, name_free, new_task, CreateFlags, Created, Shown, Started};
use super::{RestoreTaskError, Tasks};
use crate::ccs::{Cluster, RestoreState, RestoreTask};
use crate::error::ErrorKind;
use crate::lang::{DbRef, DbSet};

type Result<T, E = RestoreTaskError> = std::result::Result<T, E>;

/// The tasks of `group` as stored in `cluster`.
fn tasks_in(cluster: &Cluster, group: &str) -> Vec<RestoreTask> {
    cluster
        .backups
        .restore_group(group)
        .into_iter()
        .cloned()
        .collect()
}

fn broken(t: &RestoreTask) -> bool {
    matches!(t.state, RestoreState::Failed | RestoreState::Interrupted)
}

impl Tasks<'_> {
    /// `restore task create name <task> db a,b|all backup latest|<repository>/latest`.
    pub async fn create_group(
        &self,
        name: String,
        dbs: &DbSet,
        backup: &str,
        flags: CreateFlags,
    ) -> Result<Created> {
        let flags = absolute_flags(flags)?;
        if backup != "latest" && !backup.ends_with("/latest") {
            return Err(RestoreTaskError::OneRunForSeveral(backup.to_string()));
        }
        let (lock, mut cluster, made) = self.create_locked(backup).await?;
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
            let p = pick(&cluster, r, backup, &flags)?;
            if tasks.iter().any(|t| t.db == p.db_name) {
                return Err(RestoreTaskError::NamedTwice(p.db_name));
            }
            let member = format!("{name}.{}", p.db_name);
            if let Err(error) = crate::ccs::rules::check_cluster_name(&member) {
                let db = p.db_name;
                return Err(RestoreTaskError::MemberName { db, member, error });
            }
            name_free(&cluster, &member)?;
            tasks.push(new_task(member, p, &flags, Some(name.clone())));
        }
        for t in &tasks {
            cluster.backups.restores.insert(t.name.clone(), t.clone());
        }
        lock.save(&mut cluster)?;
        Ok(Created {
            shown: Shown::Group {
                tasks: tasks_in(&cluster, &name),
                group: name,
            },
            tasks,
            recreates: false,
            made,
        })
    }

    /// The tasks of `group` as stored now.
    async fn group_now(&self, group: &str) -> Result<Shown> {
        let (_, cluster) = self.locked().await?;
        Ok(Shown::Group {
            group: group.to_string(),
            tasks: tasks_in(&cluster, group),
        })
    }

    /// Verifies every task of `tasks` that `only` picks; `Err` lists those that failed,
    /// with the kind of the first failed check.
    async fn verify_all(
        &self,
        tasks: &[RestoreTask],
        only: impl Fn(&RestoreTask) -> bool,
    ) -> Result<std::result::Result<(), (ErrorKind, String)>> {
        let mut failed = Vec::new();
        let mut kind = None;
        for t in tasks.iter().filter(|t| only(t)) {
            let (t, v) = self.verify_one(&t.name).await?;
            if !v.ok() {
                kind = kind.or(v.failure_kind());
                failed.push(format!("`{}`: {}", t.name, v.reason().unwrap_or_default()));
            }
        }
        Ok(match failed.is_empty() {
            true => Ok(()),
            false => Err((kind.unwrap_or(ErrorKind::Damaged), failed.join("; "))),
        })
    }

    /// `restore task verify <group>` (its lock held): every task not yet restored.
    pub(super) async fn verify_group(
        &self,
        group: &str,
        tasks: &[RestoreTask],
    ) -> Result<(Shown, Option<RestoreTaskError>)> {
        let verdict = self
            .verify_all(tasks, |t| t.state != RestoreState::Succeeded)
            .await?;
        let failure = verdict
            .err()
            .map(|(kind, reason)| RestoreTaskError::VerifyFailed {
                name: group.to_string(),
                reason,
                kind,
            });
        Ok((self.group_now(group).await?, failure))
    }

    /// `restore task start|retry <group>` (its lock held): every database not yet
    /// restored (and not being retried) passes verify first, or none starts; then each
    /// starts in turn, a failed or interrupted one by its retry. It stops at the first
    /// that fails.
    pub(super) async fn start_group(
        &self,
        group: &str,
        tasks: Vec<RestoreTask>,
        retry: bool,
        counts_only: bool,
    ) -> Result<Started> {
        check_group_retry(group, &tasks, retry)?;
        // A database being retried is verified by its retry, once its old data is back.
        let fresh = |t: &RestoreTask| t.state != RestoreState::Succeeded && !broken(t);
        if let Err((kind, why)) = self.verify_all(&tasks, fresh).await? {
            return Ok(Started {
                shown: self.group_now(group).await?,
                restored: None,
                failure: Some(RestoreTaskError::GroupVerifyFailed {
                    group: group.to_string(),
                    why,
                    kind,
                }),
                finished: false,
            });
        }
        for (i, t) in tasks.iter().enumerate() {
            if t.state == RestoreState::Succeeded {
                continue;
            }
            // A database verified above is not read again by its own start's verify.
            let started = self.start_one(&t.name, broken(t), counts_only, fresh(t));
            let error = match started.await {
                Ok(started) => started.failure,
                Err(e) => Some(e),
            };
            if let Some(error) = error {
                let left = tasks[i + 1..]
                    .iter()
                    .filter(|t| t.state != RestoreState::Succeeded)
                    .map(|t| t.name.clone())
                    .collect();
                return Err(RestoreTaskError::GroupStopped {
                    group: group.to_string(),
                    task: t.name.clone(),
                    error: Box::new(error),
                    left,
                });
            }
        }
        Ok(Started {
            shown: self.group_now(group).await?,
            restored: None,
            failure: None,
            finished: false,
        })
    }
}

/// A group that already succeeded does not start again; `retry` needs a failed or
/// interrupted database, and `start` none.
fn check_group_retry(group: &str, tasks: &[RestoreTask], retry: bool) -> Result<()> {
    if tasks.iter().all(|t| t.state == RestoreState::Succeeded) {
        return Err(RestoreTaskError::AlreadySucceeded(group.to_string()));
    }
    let stopped: Vec<String> = tasks
        .iter()
        .filter(|t| broken(t))
        .map(|t| t.name.clone())
        .collect();
    match (retry, stopped.is_empty()) {
        (true, true) => Err(RestoreTaskError::NothingToRetry(group.to_string())),
        (false, false) => Err(RestoreTaskError::StoppedAt {
            group: group.to_string(),
            at: stopped,
        }),
        _ => Ok(()),
    }
}
