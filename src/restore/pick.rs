//! Which run a restore task restores: a run of this cluster's own backups (its id, or
//! `latest` of a database), or `<repository>/<run|latest>` of any repository.

use std::path::PathBuf;

use super::task::CreateFlags;
use super::RestoreTaskError;
use crate::backup::{Manifest, Repository};
use crate::ccs::{BackupRun, Cluster, Id, RunStatus};
use crate::lang::DbRef;

/// The repository at `location` (a URL, or a directory made absolute).
pub(super) fn open_location(location: &str) -> Result<(PathBuf, Repository), RestoreTaskError> {
    let mut path = PathBuf::from(location);
    if !crate::backup::is_url(&path) {
        path = std::path::absolute(&path).map_err(|error| RestoreTaskError::Resolve {
            path: PathBuf::from(location),
            error,
        })?;
    }
    let repo = Repository::open(&path).map_err(RestoreTaskError::Repository)?;
    Ok((path, repo))
}

/// `<location>/<run>` or `<location>/latest` of any repository: the run id and the
/// repository, its manifest read. For `latest`: the newest restorable run of `db_name`
/// written by cluster `own` when the repository holds any (several clusters may keep
/// databases of one name there, and another cluster's run is not this database's
/// data), else the newest of any cluster.
pub fn run_in_repository(
    location: &str,
    run: &str,
    db_name: &str,
    own: Option<u64>,
) -> Result<(String, PathBuf, Manifest), RestoreTaskError> {
    let (path, repo) = open_location(location)?;
    // The whole repository gone (moved, unmounted, a wrong URL): said so, whatever kind.
    let gone = || repo.missing().map(RestoreTaskError::NoRepository);
    if run == "latest" {
        let runs = match repo.runs() {
            Ok(runs) => runs,
            Err(e) => return Err(gone().unwrap_or_else(|| e.into())),
        };
        let mut newest = None;
        for r in runs.iter().rev() {
            let Ok(m) = repo.manifest(r) else { continue };
            // A safety backup holds the data a restore replaced, not a chosen restore
            // point.
            if m.db.name != db_name || m.safety_for.is_some() {
                continue;
            }
            let mine = own.is_none_or(|id| id == m.cluster_id);
            if mine || newest.is_none() {
                newest = Some((r.clone(), m));
            }
            if mine {
                break;
            }
        }
        let Some((run, m)) = newest else {
            if let Some(gone) = gone() {
                return Err(gone);
            }
            return Err(RestoreTaskError::NoRunIn {
                repo: repo.to_string(),
                db: db_name.to_string(),
                path: crate::lang::quote(&path.to_string_lossy()),
            });
        };
        return Ok((run, path, m));
    }
    let m = repo.manifest(run).map_err(|error| {
        gone().unwrap_or_else(|| RestoreTaskError::NotRestorePoint {
            run: repo.run_shown(run),
            error,
        })
    })?;
    Ok((run.to_string(), path, m))
}

/// A run of this cluster's own backups: its id, or `latest` of the database
/// ([`crate::backup::service::own_run`] reads the name), as a restore's error.
pub fn own_run<'a>(
    cluster: &'a Cluster,
    backup: &str,
    db_name: &str,
    existing: Option<Id>,
) -> Result<&'a BackupRun, RestoreTaskError> {
    use crate::backup::service::BackupTaskError as E;
    crate::backup::service::own_run(cluster, backup, Some((db_name, existing))).map_err(|e| match e
    {
        E::NoSuchRun { id, .. } => RestoreTaskError::NoSuchRun(id),
        _ => RestoreTaskError::NoGoodRun(db_name.to_string()),
    })
}

/// The database one task restores and the run it restores it to.
pub(super) struct Pick {
    pub db_name: String,
    /// The database's id when it exists (else `start` recreates it).
    pub existing: Option<Id>,
    pub run: String,
    pub path: PathBuf,
}

/// Resolves `db` and `backup` (a run id or `latest` of this cluster's runs, or
/// `<repository>/<run|latest>`) for one task. Another cluster's run needs
/// `from_other_cluster`, another database's `from_other_db`.
pub(super) fn pick(
    cluster: &Cluster,
    db: &DbRef,
    backup: &str,
    flags: &CreateFlags,
) -> Result<Pick, RestoreTaskError> {
    let (db_name, existing) = match db {
        DbRef::Id(id) => match cluster.databases.get(id) {
            Some(d) => (d.config.name.clone(), Some(d.id)),
            None => return Err(RestoreTaskError::NoSuchDb(*id)),
        },
        DbRef::Name(n) => (n.clone(), cluster.database_by_name(n).map(|d| d.id)),
    };
    if existing.is_none() {
        crate::ccs::rules::check_db_name(&db_name).map_err(RestoreTaskError::BadDbName)?;
    }
    let (run, path) = if let Some((location, run)) = backup.rsplit_once('/') {
        // `from_other_cluster` asks for another cluster's run: `latest` is then the newest
        // of any.
        let own = (!flags.from_other_cluster).then_some(cluster.cluster_id);
        let (run, path, m) = run_in_repository(location, run, &db_name, own)?;
        if m.cluster_id != cluster.cluster_id && !flags.from_other_cluster {
            return Err(RestoreTaskError::OtherCluster {
                run,
                from: m.cluster_name,
                from_id: m.cluster_id,
                here: cluster.name.clone(),
                here_id: cluster.cluster_id,
            });
        }
        let of = RunOf {
            cluster_id: m.cluster_id,
            db: m.db_id,
            db_name: &m.db.name,
        };
        refuse_other_db(cluster, &of, &run, &db_name, existing, flags.from_other_db)?;
        refuse_sealed(&run, m.encrypted(), flags)?;
        (run, path)
    } else {
        let run = own_run(cluster, backup, &db_name, existing)?;
        let of = RunOf {
            cluster_id: cluster.cluster_id,
            db: run.db,
            db_name: &run.db_name,
        };
        refuse_other_db(
            cluster,
            &of,
            &run.id,
            &db_name,
            existing,
            flags.from_other_db,
        )?;
        // The manifest says whether the run is encrypted; a repository that cannot be
        // read now is left to verify, which says why.
        let encrypted = Repository::open(&run.path)
            .ok()
            .and_then(|repo| repo.manifest(&run.id).ok())
            .is_some_and(|m| m.encrypted());
        refuse_sealed(&run.id, encrypted, flags)?;
        (run.id.clone(), run.path.clone())
    };
    Ok(Pick {
        db_name,
        existing,
        run,
        path,
    })
}

/// An encrypted run with no `identity` to open it is refused when the task is made, not
/// at its verify.
fn refuse_sealed(run: &str, encrypted: bool, flags: &CreateFlags) -> Result<(), RestoreTaskError> {
    if encrypted && flags.identity.is_none() {
        return Err(RestoreTaskError::NeedsIdentity(run.to_string()));
    }
    Ok(())
}

/// The database a run was taken of.
pub(super) struct RunOf<'a> {
    pub cluster_id: u64,
    pub db: Id,
    pub db_name: &'a str,
}

impl RunOf<'_> {
    /// Whether the run is a backup of database `db_name` (`existing`: its id, when it
    /// exists): the same name (a deleted database recreated, or the same database in
    /// another cluster), or the same database of this cluster (ids are never reused).
    pub fn is_of(&self, cluster: &Cluster, db_name: &str, existing: Option<Id>) -> bool {
        self.db_name == db_name
            || (self.cluster_id == cluster.cluster_id && Some(self.db) == existing)
    }

    /// `db:7 `o2``, as the run names its database.
    pub fn shown(&self) -> String {
        format!("db:{} `{}`", self.db, self.db_name)
    }
}

/// The database restored, as named: `db:3 `orders`` when it exists, else the name to
/// recreate.
pub(super) fn target_shown(db_name: &str, existing: Option<Id>) -> String {
    match existing {
        Some(id) => format!("db:{id} `{db_name}`"),
        None => format!("`{db_name}` (to be created)"),
    }
}

/// A run of another database than the one restored is refused without `from_other_db`:
/// restoring the wrong run replaces live data.
fn refuse_other_db(
    cluster: &Cluster,
    of: &RunOf,
    run: &str,
    db_name: &str,
    existing: Option<Id>,
    from_other_db: bool,
) -> Result<(), RestoreTaskError> {
    if from_other_db || of.is_of(cluster, db_name, existing) {
        return Ok(());
    }
    Err(RestoreTaskError::OtherDb {
        run: run.to_string(),
        of: of.shown(),
        target: target_shown(db_name, existing),
    })
}

/// The names of the databases with a restorable run: in the repository of
/// `<repository>/latest`, or among this cluster's runs for `latest`.
pub(super) fn databases_with_runs(
    cluster: &Cluster,
    backup: &str,
) -> Result<Vec<String>, RestoreTaskError> {
    let mut names = std::collections::BTreeSet::new();
    let place = match backup.rsplit_once('/') {
        Some((location, _)) => {
            let (path, repo) = open_location(location)?;
            for run in repo.runs()? {
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
        return Err(RestoreTaskError::NoRuns(place));
    }
    Ok(names.into_iter().collect())
}
