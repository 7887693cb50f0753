//! The services behind `create db`, `restart db` / `restart all` and `delete db`: each
//! works under the store's lock the command holds for the whole action, reports through
//! a [`Progress`] (and stops on a [`Cancel`] where the action can), saves the
//! configuration, and returns a typed result for the command to render.

use std::collections::BTreeMap;
use std::path::Path;

use crate::ccs::{Cluster, DbState, Id, StoreLock};
use crate::progress::Progress;

use super::cancel::Cancel;
use super::create::{create_db_with, mark_created, roll_back_unsaved, CreateDb};
use super::lifecycle::{delete_db, not_running, restart_db, DeleteOutcome};
use super::{database, Busy, DbError};

/// `create db`: the database brought up and saved; on a failed save its shards go down
/// again (unrecorded shards would run unseen). Once saved, the identity files lose their
/// `creating` mark; failing that the database stands, and the error says a rebuild from
/// identity files alone would leave it out. Returns its id.
pub async fn create(
    lock: &StoreLock,
    cluster: &mut Cluster,
    redis_server: Option<&Path>,
    req: CreateDb,
    progress: &dyn Progress,
    cancel: &Cancel,
) -> Result<Id, DbError> {
    let server = cluster.servers(redis_server)?;
    let task = progress.task(&format!("create db {}", req.config.name), 0);
    task.set_message("starting shards");
    let id = match create_db_with(cluster, &server, req, cancel).await {
        Ok(id) => id,
        Err(e) => {
            task.finish("failed");
            return Err(e);
        }
    };
    if let Err(e) = lock.save(cluster) {
        roll_back_unsaved(cluster, &server, id).await;
        task.finish("failed");
        return Err(e.into());
    }
    let unmarked = mark_created(cluster, id);
    task.finish("created");
    unmarked?;
    Ok(id)
}

/// `delete db`: its shards stopped, its directories kept (or removed with `purge`), the
/// configuration saved without it. The configuration as it is is saved first: one that
/// cannot be (the home's or a node's `ccs/` on a full or read-only disk, an immutable
/// `ccs.json`) refuses the delete before any shard stops, as stopped, marked deleted and
/// still configured, the database would be neither deleted nor serving.
pub async fn delete(
    lock: &StoreLock,
    cluster: &mut Cluster,
    id: Id,
    purge: bool,
) -> Result<DeleteOutcome, DbError> {
    database(cluster, id)?;
    lock.save(cluster)?;
    let out = delete_db(cluster, id, purge).await?;
    lock.save(cluster)?;
    Ok(out)
}

/// `restart db`: the database restarted and saved with its new pids. A restart that did
/// not finish is saved too (the configuration then says which shards run) and returned
/// as [`DbError::RestartIncomplete`].
pub async fn restart(
    lock: &StoreLock,
    cluster: &mut Cluster,
    redis_server: Option<&Path>,
    id: Id,
    progress: &dyn Progress,
) -> Result<Id, DbError> {
    let name = database(cluster, id)?.config.name.clone();
    let server = cluster.servers(redis_server)?;
    let task = progress.task(&format!("restart db {name}"), 0);
    let res = restart_db(cluster, &server, id).await;
    task.finish(if res.is_ok() { "restarted" } else { "failed" });
    if matches!(res, Ok(_) | Err(DbError::RestartIncomplete { .. })) {
        lock.save(cluster)?;
    }
    res
}

/// What `restart <db> ...` / `restart all` did.
#[derive(Debug, Default)]
pub struct RestartRun {
    /// Every database tried, in order.
    pub tried: Vec<Id>,
    /// Those restarted.
    pub restarted: Vec<Id>,
    /// With `all`: active databases all of whose shards run (left alone), by name.
    pub running: Vec<String>,
    /// With `all`: databases pending recovery (`recover` brings them back), by name.
    pub pending_recovery: Vec<String>,
    /// Those that failed, and why.
    pub failed: Vec<(Id, String, DbError)>,
}

/// Restarts `which` (resolved by the command), or with `None` every active database with
/// a shard not running; one after another, each saved as it is done (a partial restart
/// too: the configuration then says which shards run). One failing does not stop the
/// others. A database in `busy` (its id, what another shell is doing with it: a restore
/// task claimed, a backup run streaming) is not touched: it fails with
/// [`Busy::refusal`].
pub async fn restart_several(
    lock: &StoreLock,
    cluster: &mut Cluster,
    redis_server: Option<&Path>,
    which: Option<Vec<Id>>,
    busy: &BTreeMap<Id, Busy>,
    progress: &dyn Progress,
) -> Result<RestartRun, DbError> {
    let mut run = RestartRun::default();
    run.tried = match which {
        Some(ids) => ids,
        None => {
            let down = not_running(cluster);
            for d in cluster.databases.values() {
                match d.state {
                    DbState::PendingRecovery => run.pending_recovery.push(d.config.name.clone()),
                    DbState::Active if !down.contains(&d.id) => {
                        run.running.push(d.config.name.clone())
                    }
                    DbState::Active => {}
                }
            }
            down
        }
    };
    let server = cluster.servers(redis_server)?;
    let overall = progress.task("restarting", run.tried.len() as u64);
    for (n, &id) in run.tried.iter().enumerate() {
        let name = cluster.databases[&id].config.name.clone();
        overall.set_message(&format!("db:{id} {name}"));
        if let Some(busy) = busy.get(&id) {
            run.failed.push((id, name.clone(), busy.refusal(id, name)));
            overall.set_position(n as u64 + 1);
            continue;
        }
        let res = restart_db(cluster, &server, id).await;
        if matches!(res, Ok(_) | Err(DbError::RestartIncomplete { .. })) {
            lock.save(cluster)?;
        }
        match res {
            Ok(_) => run.restarted.push(id),
            Err(e) => run.failed.push((id, name, e)),
        }
        overall.set_position(n as u64 + 1);
    }
    overall.finish("done");
    Ok(run)
}
