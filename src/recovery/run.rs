//! The service behind `recover all` / `recover db` (and `recover list`'s adoption):
//! under the store's lock, databases found live are adopted, every target is recovered
//! in parallel ([`super::apply::recover_db`]), and each success is recorded at once
//! (active, its pids, masters that came back EMPTY marked, recovery paths no longer
//! needed cleared), saved, and its recovery markers removed. Ctrl-C (`cancel`) stops
//! every database not yet back where it is: its own servers stopped, its shard
//! directories keeping recovery's marker, its state pending recovery, so running it
//! again finishes it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::apply::{
    clear_markers, recover_db, stop_leftovers, Proof, RecoverError, Recovered, Recovery,
};
use super::live::{self, Adopted, DbAnswers};
use super::ports::{move_endpoint, move_taken, taken_ports, MoveError, PortMove};
use crate::ccs::{Cluster, DbState, Id, Role, StoreError, StoreLock};
use crate::db::Cancel;
use crate::error::{DomainError, ErrorKind};
use crate::progress::Progress;
use crate::server::ServerError;

/// Why one database of a run did not come back, or why the run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Recover(#[from] RecoverError),
    #[error("recovered, but the configuration could not be saved: {0}")]
    NotSaved(StoreError),
    #[error(
        "interrupted before it finished: it stays pending recovery; run `recover` again to resume"
    )]
    Interrupted,
    #[error("cannot reach the nodes' hosts: {0}")]
    Hosts(String),
    #[error(transparent)]
    Move(#[from] MoveError),
    #[error(transparent)]
    Server(#[from] ServerError),
    /// A replica whose node's server cannot load its master's RDB
    /// ([`crate::db::check_replica_engines`]).
    #[error(transparent)]
    Engines(crate::db::DbError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl DomainError for RunError {
    fn kind(&self) -> ErrorKind {
        match self {
            RunError::Recover(e) => e.kind(),
            RunError::NotSaved(e) | RunError::Store(e) => e.kind(),
            RunError::Interrupted => ErrorKind::Interrupted,
            RunError::Hosts(_) => ErrorKind::Io,
            RunError::Move(e) => e.kind(),
            RunError::Server(e) => e.kind(),
            RunError::Engines(e) => e.kind(),
            RunError::Internal(_) => ErrorKind::Internal,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            RunError::Recover(e) => e.hints(),
            RunError::NotSaved(e) | RunError::Store(e) => e.hints(),
            RunError::Move(e) => e.hints(),
            RunError::Server(e) => e.hints(),
            RunError::Engines(e) => e.hints(),
            _ => Vec::new(),
        }
    }
}

/// A node's recovery path, cleared once the recovery that used it completed: a later
/// incident must not bring its old files back.
#[derive(Serialize, Clone, Debug)]
pub struct ClearedPath {
    pub node: Id,
    pub recovery_path: std::path::PathBuf,
}

/// What `recover all` / `recover db` asks (the database resolved by the command).
#[derive(Clone, Debug, Default)]
pub struct RecoverRequest {
    /// One database, or every database pending recovery.
    pub db: Option<Id>,
    /// `port <n>`: the database's endpoint moves there first.
    pub port: Option<u16>,
    /// `free_port`: shards whose stored port another program holds move to free ones.
    pub free_port: bool,
    pub only_configuration: bool,
    pub proof: Proof,
    pub replay: bool,
    pub allow_empty: bool,
    pub allow_stale: bool,
    /// `--redis-server`: overrides the nodes' and the CCS's binary.
    pub redis_server: Option<std::path::PathBuf>,
}

/// What a `recover` did.
pub enum RecoverOutcome {
    /// The database asked for answered as itself: adopted, not recovered.
    Adopted(Adopted),
    AlreadyActive {
        id: Id,
        name: String,
    },
    /// Nothing was pending (once the live ones were adopted). `down`: the active
    /// databases with a shard not running (`restart all` brings them back).
    NothingPending {
        adopted: Vec<Adopted>,
        down: Vec<String>,
    },
    Ran {
        adopted: Vec<Adopted>,
        /// Ports moved before the recovery, one line each.
        moved: Vec<String>,
        run: RecoverRun,
    },
}

/// One database of a run.
pub struct DbOutcome {
    pub id: Id,
    pub name: String,
    pub result: Result<Recovered, RunError>,
    /// When it failed: its shards whose stored port another program holds (recovery
    /// never touches that program; `port` or `free_port` moves the database).
    pub taken: Vec<PortMove>,
}

/// What one run did, database by database.
pub struct RecoverRun {
    /// Every target, in the order they finished (interrupted ones last).
    pub outcomes: Vec<DbOutcome>,
    /// Recovery paths forgotten because every database that read from them is back.
    pub cleared: Vec<ClearedPath>,
    pub elapsed: Duration,
}

/// The databases pending recovery.
pub fn pending(cluster: &Cluster) -> Vec<Id> {
    cluster
        .databases
        .values()
        .filter(|db| db.state == DbState::PendingRecovery)
        .map(|db| db.id)
        .collect()
}

/// `recover list`: the plan of databases `ids` against their files, validated in
/// parallel (each is a full read of its files).
pub async fn plan(
    cluster: &Cluster,
    ids: &[Id],
    redis_server: Option<&std::path::Path>,
    progress: &dyn Progress,
) -> Result<super::plan::RecoveryPlan, RunError> {
    let rec = Arc::new(Recovery::new(cluster.servers(redis_server)?, false));
    let task = progress.task("validating files", ids.len() as u64);
    let shared = Arc::new(cluster.clone());
    // One disk for the whole command: each remote node is scanned and its candidates
    // checked in one batch, not once per database.
    let disk = Arc::new(rec.disk(cluster));
    disk.prefetch(cluster, ids).await;
    let mut set = tokio::task::JoinSet::new();
    for &id in ids {
        let (rec, cluster, disk) = (rec.clone(), shared.clone(), disk.clone());
        set.spawn_blocking(move || rec.plan_on(&disk, &cluster, &cluster.databases[&id]));
    }
    let mut plan = super::plan::RecoveryPlan::default();
    while let Some(joined) = set.join_next().await {
        plan.databases
            .push(joined.map_err(|e| RunError::Internal(e.to_string()))?);
        task.set_position(plan.databases.len() as u64);
    }
    task.finish("done");
    plan.databases.sort_by_key(|d| d.id);
    Ok(plan)
}

/// Names of the active databases with a shard not running: their data is in place,
/// `restart all` brings them back.
pub fn down(cluster: &Cluster) -> Vec<String> {
    crate::db::not_running(cluster)
        .iter()
        .map(|id| cluster.databases[id].config.name.clone())
        .collect()
}

/// What the shards of the databases pending recovery answered, when any answered as
/// itself (read without the lock: nothing changes yet).
pub async fn live_answers(cluster: &Cluster) -> Result<Option<BTreeMap<Id, DbAnswers>>, RunError> {
    let ids = pending(cluster);
    if ids.is_empty() {
        return Ok(None);
    }
    let hosts = cluster
        .hosts()
        .map_err(|e| RunError::Hosts(e.to_string()))?;
    let answers = live::probe(&hosts, cluster, &ids).await;
    Ok(answers.values().any(|a| a.live()).then_some(answers))
}

/// Adopts the databases of `answers` that are live (see [`live::adopt`]), saving the
/// configuration when any is; `cluster` changes only when the save succeeds.
pub fn adopt(
    lock: &StoreLock,
    cluster: &mut Cluster,
    answers: &BTreeMap<Id, DbAnswers>,
) -> Result<Vec<Adopted>, StoreError> {
    let mut next = cluster.clone();
    let adopted = live::adopt(&mut next, answers, &mut Vec::new());
    if !adopted.is_empty() {
        lock.save(&mut next)?;
        *cluster = next;
    }
    Ok(adopted)
}

/// [`live_answers`] then [`adopt`], under the lock the caller holds.
pub async fn adopt_live(lock: &StoreLock, cluster: &mut Cluster) -> Result<Vec<Adopted>, RunError> {
    match live_answers(cluster).await? {
        Some(answers) => Ok(adopt(lock, cluster, &answers)?),
        None => Ok(Vec::new()),
    }
}

/// `recover all` / `recover db`, under `lock`: adopts what is live, moves ports as asked
/// (each move saved), then recovers the targets ([`recover_all`]).
pub async fn recover(
    lock: &StoreLock,
    cluster: &mut Cluster,
    req: RecoverRequest,
    progress: &dyn Progress,
    cancel: &Cancel,
) -> Result<RecoverOutcome, RunError> {
    let adopted = adopt_live(lock, cluster).await?;
    let targets = match req.db {
        None => pending(cluster),
        Some(id) => {
            if let Some(a) = adopted.iter().find(|a| a.id == id) {
                return Ok(RecoverOutcome::Adopted(a.clone()));
            }
            let db = cluster
                .databases
                .get(&id)
                .ok_or_else(|| RunError::Internal(format!("db:{id} vanished")))?;
            if db.state == DbState::Active {
                return Ok(RecoverOutcome::AlreadyActive {
                    id,
                    name: db.config.name.clone(),
                });
            }
            vec![id]
        }
    };
    if targets.is_empty() {
        let down = down(cluster);
        return Ok(RecoverOutcome::NothingPending { adopted, down });
    }
    let server = cluster.servers(req.redis_server.as_deref())?;
    // A replica whose node's server cannot load its master's RDB would wait for ever for
    // its first sync: refused before any port moves or any shard starts, as create and
    // restart refuse it.
    // So is a TLS database on a binary built without TLS (`--redis-server`, say).
    for id in &targets {
        let db = &cluster.databases[id];
        crate::db::check_replica_engines(db, &server).map_err(RunError::Engines)?;
        crate::db::check_tls_servers(db, &server)
            .await
            .map_err(RunError::Engines)?;
    }
    let mut moved = Vec::new();
    if let (Some(id), Some(port)) = (req.db, req.port) {
        moved.push(move_endpoint(lock, cluster, id, port)?);
    }
    if req.free_port {
        for &id in &targets {
            moved.extend(move_taken(lock, cluster, id)?);
        }
    }
    let mut rec = Recovery::new(server, req.only_configuration);
    rec.proof = req.proof;
    rec.replay = req.replay;
    rec.allow_empty = req.allow_empty;
    rec.allow_stale = req.allow_stale;
    let run = recover_all(lock, cluster, Arc::new(rec), &targets, progress, cancel).await?;
    Ok(RecoverOutcome::Ran {
        adopted,
        moved,
        run,
    })
}

/// Recovers `targets` of `cluster` in parallel, under `lock`: each success recorded and
/// saved at once (a shell killed later keeps it) and its markers removed; on `cancel`
/// every database not yet back is stopped where it is and reported
/// [`RunError::Interrupted`]. `progress` shows one bar per database and the tally.
pub async fn recover_all(
    lock: &StoreLock,
    cluster: &mut Cluster,
    rec: Arc<Recovery>,
    targets: &[Id],
    progress: &dyn Progress,
    cancel: &Cancel,
) -> Result<RecoverRun, RunError> {
    let shared = Arc::new(cluster.clone());
    let started = Instant::now();
    let overall = progress.task("recovering", targets.len() as u64);
    overall.set_message(&tally(0, 0));

    let mut set = tokio::task::JoinSet::new();
    for id in targets {
        let task = progress.task(&format!("db:{id} {}", cluster.databases[id].config.name), 0);
        let (rec, shared, id) = (rec.clone(), shared.clone(), *id);
        set.spawn(async move {
            let result = recover_db(rec, shared, id, &|stage| task.set_message(stage)).await;
            (id, result.map_err(RunError::from), task)
        });
    }

    let mut outcomes: Vec<(Id, Result<Recovered, RunError>)> = Vec::new();
    let mut cleared = Vec::new();
    let (mut ok, mut failed) = (0, 0);
    let mut remaining: BTreeSet<Id> = targets.iter().copied().collect();
    loop {
        let joined = tokio::select! {
            joined = set.join_next() => match joined {
                Some(joined) => joined,
                None => break,
            },
            // Dropping the recoveries stops each at the step it was at.
            _ = cancel.tripped() => {
                set.abort_all();
                while set.join_next().await.is_some() {}
                break;
            }
        };
        let (id, result, task) = joined.map_err(|e| RunError::Internal(e.to_string()))?;
        remaining.remove(&id);
        let result = result.and_then(|r| {
            cleared.extend(activate(lock, cluster, &r)?);
            Ok(r)
        });
        if let Ok(r) = &result {
            clear_markers(rec.server.hosts(), cluster, &cluster.databases[&r.id]).await;
        }
        match &result {
            Ok(_) => {
                ok += 1;
                task.finish("recovered");
            }
            Err(_) => {
                failed += 1;
                // Why is the summary's to say, once (a script's progress lines and its
                // summary both reach the log).
                task.finish("failed");
            }
        }
        overall.set_position((ok + failed) as u64);
        overall.set_message(&tally(ok, failed));
        outcomes.push((id, result));
    }
    for id in &remaining {
        stop_leftovers(rec.server.hosts(), &shared, *id).await;
        outcomes.push((*id, Err(RunError::Interrupted)));
    }
    overall.finish(&tally(ok, failed));
    let outcomes = outcomes
        .into_iter()
        .map(|(id, result)| DbOutcome {
            id,
            name: cluster.databases[&id].config.name.clone(),
            taken: match result {
                Ok(_) => Vec::new(),
                Err(_) => taken_ports(cluster, id),
            },
            result,
        })
        .collect();
    Ok(RecoverRun {
        outcomes,
        cleared,
        elapsed: started.elapsed(),
    })
}

fn tally(ok: usize, failed: usize) -> String {
    format!("[ {ok} recovered | {failed} failed ]")
}

/// Marks a recovered database active, with its shards' pids, and clears the recovery
/// path of every node no database pending recovery still has shards on; saves the CCS.
/// Left unchanged when saving fails. Returns the recovery paths cleared.
fn activate(
    lock: &StoreLock,
    cluster: &mut Cluster,
    r: &Recovered,
) -> Result<Vec<ClearedPath>, RunError> {
    let mut next = cluster.clone();
    let db = next.databases.get_mut(&r.id).ok_or_else(|| {
        RunError::Internal(format!("db:{} vanished from the configuration", r.id))
    })?;
    db.state = DbState::Active;
    // Masters that came back EMPTY are marked, so that the files found later can still
    // be loaded into them (`recover db <db> from_files`) while they take no write.
    let empty_all = r.only_configuration && r.sync_source.is_none();
    for shard in &mut db.shards {
        if let Some((_, pid)) = r.pids.iter().find(|(id, _)| *id == shard.id) {
            shard.pid = Some(*pid);
        }
        let empty = shard.role == Role::Master && (empty_all || r.empty.contains(&shard.id));
        shard.empty_since = empty.then(unix_now);
        // What it loaded, so that a later recovery knows this data and refuses older.
        if let Some((_, source)) = r.sources.iter().find(|(id, _)| *id == shard.id) {
            shard.loaded_ns = Some(source.modified_ns);
        }
    }
    let waiting = nodes_awaiting_files(&next);
    let mut cleared = Vec::new();
    for node in next.nodes.values_mut() {
        if waiting.contains(&node.id) {
            continue;
        }
        if let Some(path) = node.recovery_path.take() {
            cleared.push(ClearedPath {
                node: node.id,
                recovery_path: path,
            });
        }
    }
    lock.save(&mut next).map_err(RunError::NotSaved)?;
    *cluster = next;
    Ok(cleared)
}

/// The nodes whose recovery path a database still reads from: every node with a shard
/// of a database pending recovery, or of one whose master came back EMPTY (its files,
/// found later on its node or a replica's, fill it with `recover db <db> from_files`).
pub(super) fn nodes_awaiting_files(cluster: &Cluster) -> BTreeSet<Id> {
    cluster
        .databases
        .values()
        .filter(|d| {
            d.state == DbState::PendingRecovery || d.shards.iter().any(|s| s.empty_since.is_some())
        })
        .flat_map(|d| d.shards.iter().map(|s| s.node))
        .collect()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
