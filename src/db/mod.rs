//! Database operations on live shards: the one bring-up pipeline ([`bringup`]: masters,
//! load check, persistence, replicas, cluster slots or replication, sync source) that
//! create, restart, recovery and restore share; create (placement, bring-up, roll back on
//! failure), delete, restart, and the `status` probes. [`service`] holds the operator
//! actions (`create db`, `restart`, `delete db`) as the commands call them: under the
//! lock, with progress, saved, a typed result.
//!
//! Every operation takes the cluster by `&mut` and changes it only when it succeeds, so a
//! caller that saves the CCS after success and not after failure leaves it as it was.
//! One exception: a restart that fails part-way records which shards run
//! ([`DbError::RestartIncomplete`]), and the caller saves that too.

pub mod bringup;
mod cancel;
mod create;
mod dirs;
mod lifecycle;
mod placement;
pub mod service;
mod shard;
mod slot_check;
mod status;

use std::path::PathBuf;
use std::time::Duration;

use crate::ccs::{Cluster, Database, Id};
use crate::server::{ServerError, ShardAddr};

pub use bringup::{wire, BringUp, KeyBounds, LoadCheckError, SourceStep, SyncSource, Timeouts};
pub use cancel::Cancel;
pub use create::{create_db, create_db_with, mark_created, CreateDb, MAX_SHARDS};
pub use lifecycle::{delete_db, not_running, record_pids, restart_db, set_aside, DeleteOutcome};
pub use placement::{check_replica_engines, check_tls_servers, place};
pub use shard::{conf_for, shard_start, start_shard};
pub use slot_check::{cluster_down, join as slot_runs, ClusterDown};
pub use status::{
    status, DatabaseRow, EndpointRow, NodeRow, ShardRow, StatusReport, CERT_WARN_DAYS,
    CLUSTER_FAIL, FAILED_OVER, FENCED, NO_REPLICA_ELSEWHERE, NO_REPLICA_WAY, PORT_TAKEN,
    RESTORE_UNFINISHED, RESTORING, SLOTS_NOT_SERVED, STATUS_TIMEOUT, TLS_REFUSED,
};

/// How long cluster formation and replica sync may take during create / restart.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// What another shell is doing with a database that a restart must not pull its shards
/// from under (asked by the caller under the CCS lock).
#[derive(Clone, Debug)]
pub enum Busy {
    /// A restore task of it is claimed there.
    Restoring { task: String },
    /// A backup run of it is streaming there.
    BackingUp { run: String, task: Option<String> },
}

impl Busy {
    /// The refusal of a restart or a delete of db `id` `name`.
    pub fn refusal(&self, id: Id, name: String) -> DbError {
        match self.clone() {
            Busy::Restoring { task } => DbError::Restoring { id, name, task },
            Busy::BackingUp { run, task } => DbError::BackingUp {
                id,
                name,
                run,
                task,
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database name `{0}` is already used")]
    NameTaken(String),
    /// The message of [`crate::ccs::rules::check_db_name`].
    #[error("{0}")]
    BadName(String),
    #[error("there is no db:{0}")]
    NoSuchDb(Id),
    #[error("no node:{0} in the cluster")]
    NoSuchNode(Id),
    #[error("shards must be between 1 and {max}, not {given}")]
    BadShards { given: u32, max: u32 },
    #[error("{}", memory_too_small(*.given))]
    MemoryTooSmall { given: u64 },
    #[error(
        "replication needs at least 2 nodes, the cluster has {have}: a replica never runs \
         on its master's node (add one with `node add`)"
    )]
    TooFewNodes { have: usize },
    /// The message of [`crate::server::unusable_port`].
    #[error("{0}")]
    BadPort(String),
    #[error("port `{port}` is already used by redis:{shard} of db:{db}")]
    PortReserved { port: u16, db: Id, shard: Id },
    #[error(transparent)]
    PortOfOtherNode(#[from] crate::ccs::rules::PortOfOtherNode),
    #[error(
        "replication would pair a master on node:{master_node} ({master}, which writes RDB \
         version {writes}) with a replica on node:{replica_node} ({replica}, which loads RDB \
         version {loads} and older): the replica could never load its master's data; give \
         node:{replica_node} a server at least as new (`node {replica_node} redis_server set \
         <path>`), or use `replication disabled`"
    )]
    ReplicaCannotLoad {
        master_node: Id,
        master: String,
        writes: u32,
        replica_node: Id,
        replica: String,
        loads: u32,
    },
    #[error("bad sync_source `{given}`: {reason}")]
    BadSyncSource { given: String, reason: String },
    #[error("shard directory `{0}` already exists: its id is taken on disk")]
    ShardDirExists(PathBuf),
    #[error(
        "`tls enabled` needs the cluster's TLS material: run `cluster tls set cacert <path> \
         cert <path> key <path>` first"
    )]
    NoTlsMaterial,
    #[error(
        "`tls_auth_clients optional` is for a TLS database, and this one speaks plain text: \
         the cluster has no TLS material (`cluster tls set`)"
    )]
    AuthClientsWithoutTls,
    #[error("db:{id} `{name}` is pending recovery: run `recover db {name}` first")]
    PendingRecovery { id: Id, name: String },
    #[error(
        "restart of db:{id} `{name}` did not finish: {cause}\nrunning: {}; not running: {} \
         (recorded in the configuration); fix the cause and run `restart db {name}` again",
        shard_list(.running), shard_list(.down)
    )]
    RestartIncomplete {
        id: Id,
        name: String,
        cause: Box<DbError>,
        running: Vec<Id>,
        down: Vec<Id>,
    },
    /// A restore task of the database is claimed by another shell (verified, started,
    /// retried or deleted there): stopping or removing its shards now would pull them
    /// from under it.
    #[error(
        "db:{id} `{name}` is being restored by restore task `{task}` in another shell: nothing was stopped; see `restore task show {task}`, and run this again once it is done"
    )]
    Restoring { id: Id, name: String, task: String },
    /// A run of the database is streaming in another shell: stopping its shards now
    /// would break the run off (`broken pipe`, naming no restart or delete).
    #[error(
        "db:{id} `{name}` is being backed up by run `{run}`{} in another shell: nothing was stopped; run this again once the run is done{}",
        .task.as_ref().map(|t| format!(" of backup task `{t}`")).unwrap_or_default(),
        .task.as_ref().map(|t| format!(" (`backup task history {t}`)")).unwrap_or_default()
    )]
    BackingUp {
        id: Id,
        name: String,
        run: String,
        task: Option<String>,
    },
    #[error("db:{id} `{name}` cannot restart: redis:{shard}: {aside}")]
    RestoreSetAside {
        id: Id,
        name: String,
        shard: Id,
        aside: Box<crate::server::SetAside>,
    },
    #[error(
        "db:{id} `{name}` cannot restart: redis:{master}'s directory `{dir}` on node:{node} \
         holds nothing its server loads keys from (`dump.rdb`; with AOF persistence also \
         `appendonlydir`, `appendonly.aof`): started empty, its replica redis:{replica} \
         (node:{replica_node}), whose copy of the data (`{replica_dir}`) may be the only \
         one, would sync from it and be emptied; nothing was stopped: copy the replica's \
         data files into `{dir}` and run `restart db {name}` again, or restore a backup run \
         of it (`restore task create name <task> db {name} backup latest force`)"
    )]
    MasterWithoutData {
        id: Id,
        name: String,
        master: Id,
        node: Id,
        dir: PathBuf,
        replica: Id,
        replica_node: Id,
        replica_dir: PathBuf,
    },
    #[error("{0}")]
    ReplicaAhead(Box<ReplicasAhead>),
    #[error(
        "interrupted: `create db {0}` was rolled back (its shards stopped, their directories \
         removed, the configuration unchanged)"
    )]
    Interrupted(String),
    #[error(
        "node:{node} has no copy of the cluster's TLS material and none could be installed: \
         {source}: set it again with `cluster tls set cacert <path> cert <path> key <path>`"
    )]
    TlsMaterial {
        node: Id,
        source: crate::tls::TlsError,
    },
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Store(#[from] crate::ccs::StoreError),
}

/// Masters that would start from a file behind a replica of theirs
/// ([`DbError::ReplicaAhead`]).
#[derive(Debug)]
pub struct ReplicasAhead {
    pub id: Id,
    pub name: String,
    /// Each such master with its replica furthest along.
    pub pairs: Vec<Behind>,
}

/// A master that would start from its `dump.rdb` at `master_offset` of its shard's
/// replication, and its replica at `replica_offset`, further along.
#[derive(Debug)]
pub struct Behind {
    pub master: Id,
    pub node: Id,
    pub dir: PathBuf,
    pub master_offset: u64,
    pub replica: Id,
    pub replica_node: Id,
    pub replica_dir: PathBuf,
    pub replica_offset: u64,
    /// The replica runs (what it holds further is in its memory, maybe not in its file).
    pub running: bool,
}

impl std::fmt::Display for ReplicasAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "db:{} `{}` cannot restart: ", self.id, self.name)?;
        for (i, b) in self.pairs.iter().enumerate() {
            write!(
                f,
                "{}redis:{} (node:{}) would start from its `dump.rdb` at replication offset \
                 {}, and its replica redis:{} (node:{}) is further along the shard's \
                 replication, at offset {} ({})",
                if i > 0 { "; " } else { "" },
                b.master,
                b.node,
                b.master_offset,
                b.replica,
                b.replica_node,
                b.replica_offset,
                if b.running {
                    "in memory, running"
                } else {
                    "in its `dump.rdb`"
                }
            )?;
        }
        write!(
            f,
            ": refused by its master as too new, a replica would sync from it whole and lose \
             what only it holds; nothing was stopped: put the replica's `dump.rdb` in place of \
             its master's (the master's set aside) and restart again"
        )
    }
}

impl crate::error::DomainError for DbError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            DbError::BadName(_)
            | DbError::BadPort(_)
            | DbError::BadShards { .. }
            | DbError::MemoryTooSmall { .. } => ErrorKind::Usage,
            DbError::NoSuchDb(_) | DbError::NoSuchNode(_) => ErrorKind::NotFound,
            // Its form was checked when the line was parsed: what is left is where it
            // points (itself, a sharded database, nothing answering).
            DbError::BadSyncSource { .. }
            | DbError::NameTaken(_)
            | DbError::TooFewNodes { .. }
            | DbError::PortReserved { .. }
            | DbError::PortOfOtherNode(_)
            | DbError::ReplicaCannotLoad { .. }
            | DbError::ShardDirExists(_)
            | DbError::NoTlsMaterial
            | DbError::AuthClientsWithoutTls
            | DbError::PendingRecovery { .. }
            | DbError::Restoring { .. }
            | DbError::BackingUp { .. }
            | DbError::RestoreSetAside { .. }
            | DbError::MasterWithoutData { .. }
            | DbError::ReplicaAhead(_) => ErrorKind::Conflict,
            DbError::RestartIncomplete { cause, .. } => cause.kind(),
            DbError::Interrupted(_) => ErrorKind::Interrupted,
            DbError::TlsMaterial { source, .. } => source.kind(),
            DbError::Server(e) => e.kind(),
            DbError::Store(e) => e.kind(),
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            DbError::TooFewNodes { .. } => vec!["add a node with `node add`".into()],
            DbError::PendingRecovery { name, .. } => {
                vec![format!(
                    "run `recover db {}` first",
                    crate::lang::quote(name)
                )]
            }
            DbError::RestartIncomplete { name, cause, .. } => {
                let mut hints = cause.hints();
                hints.push(format!(
                    "fix the cause and run `restart db {}` again",
                    crate::lang::quote(name)
                ));
                hints
            }
            DbError::MasterWithoutData {
                name,
                node,
                dir,
                replica,
                replica_node,
                replica_dir,
                ..
            } => vec![
                format!(
                    "copy redis:{replica}'s data files from `{}` on node:{replica_node} into \
                     `{}` on node:{node}, then run `restart db {}` again",
                    replica_dir.display(),
                    dir.display(),
                    crate::lang::quote(name)
                ),
                format!(
                    "or restore a backup run of it: `restore task create name <task> db {} backup latest force`",
                    crate::lang::quote(name)
                ),
            ],
            DbError::ReplicaAhead(a) => {
                let mut hints = Vec::new();
                for b in &a.pairs {
                    let Behind {
                        master,
                        node,
                        dir,
                        replica,
                        replica_node,
                        replica_dir,
                        ..
                    } = b;
                    if b.running {
                        hints.push(format!(
                            "have redis:{replica} write what it holds: `SAVE` on it (`status \
                             shards` gives its address), or stop it"
                        ));
                    }
                    hints.push(format!(
                        "set redis:{master}'s `dump.rdb` in `{}` on node:{node} aside, copy \
                         redis:{replica}'s from `{}` on node:{replica_node} in its place",
                        dir.display(),
                        replica_dir.display(),
                    ));
                }
                hints.push(format!(
                    "then run `restart db {}` again: each master starts where its replica got to",
                    crate::lang::quote(&a.name)
                ));
                hints
            }
            DbError::TlsMaterial { .. } => vec![
                "set the material again: `cluster tls set cacert <path> cert <path> key <path>`"
                    .into(),
            ],
            DbError::Server(e) => e.hints(),
            DbError::Store(e) => e.hints(),
            _ => Vec::new(),
        }
    }
}

fn shard_list(ids: &[Id]) -> String {
    if ids.is_empty() {
        return "none".into();
    }
    let names: Vec<String> = ids.iter().map(|id| format!("redis:{id}")).collect();
    names.join(", ")
}

/// The least `memory` a database may be given: an empty redis-server already uses about
/// 0.9 MB (`used_memory` of Redis 7.0 at start), and needs room beyond that for client
/// buffers, a replica's output buffer and the replication backlog; below this every
/// write would fail with OOM.
pub const MIN_MEMORY: u64 = 4 << 20;

/// Why a memory limit is refused (the parser and `create db` say the same).
pub fn memory_too_small(given: u64) -> String {
    format!(
        "`memory` of {given} bytes is below what an empty server needs: redis-server uses about 1 MB before any key, plus client and replication buffers; give at least 4mb"
    )
}

/// The database `id` names. Commands resolve what the operator typed once, with
/// [`crate::lang::DbRef::resolve`]; the library takes the id.
pub fn database(cluster: &Cluster, id: Id) -> Result<&Database, DbError> {
    cluster.databases.get(&id).ok_or(DbError::NoSuchDb(id))
}

/// Where a shard of `db` listens, with the database's password.
pub fn shard_addr(cluster: &Cluster, db: &Database, shard_id: Id) -> Option<ShardAddr> {
    let shard = db.shards.iter().find(|s| s.id == shard_id)?;
    let node = cluster.nodes.get(&shard.node)?;
    Some(cluster.shard_addr(db, &node.addr, shard.port))
}

/// Where each master's data is served now, one address a configured master: the
/// master's own, or that of the replica a failover promoted in its place (asked of the
/// live servers, [`crate::server::serving`]; the master's own when no shard of its
/// group answers as a master). Each with the shard's id (the one serving). Refused,
/// naming the shards, when several of a group answer as a master and the cluster does
/// not tell which serves.
pub async fn serving_masters(
    cluster: &Cluster,
    db: &Database,
) -> Result<Vec<(Id, ShardAddr)>, String> {
    let mut out = Vec::new();
    for m in db.masters() {
        let (ids, group): (Vec<Id>, Vec<ShardAddr>) = std::iter::once(m.id)
            .chain(
                db.shards
                    .iter()
                    .filter(|s| s.master == Some(m.id))
                    .map(|s| s.id),
            )
            .filter_map(|id| Some((id, shard_addr(cluster, db, id)?)))
            .unzip();
        if group.is_empty() {
            continue;
        }
        let live = crate::server::serving(&group, db.config.shards > 1, ROLE_TIMEOUT)
            .await
            .map_err(|u| {
                let names: Vec<String> = ids
                    .iter()
                    .zip(&group)
                    .map(|(id, a)| format!("redis:{id} ({a})"))
                    .collect();
                u.describe(&db.config.name, &names)
            })?;
        out.push((ids[live.master], group[live.master].clone()));
    }
    Ok(out)
}

/// How long [`settled_masters`] waits for a sharded database's cluster to serve again:
/// a master that stops answering is marked failed after the node timeout, a replica of it
/// is elected within a second or two, and the other nodes hear of it by gossip.
pub const SETTLE_TIMEOUT: Duration =
    Duration::from_millis(3 * crate::server::CLUSTER_NODE_TIMEOUT_MS as u64);

/// [`serving_masters`], once the database's Redis Cluster serves every key: each serving
/// master answers and no shard says `cluster_state` other than `ok`
/// ([`slot_check::cluster_down`]). While that may still change by itself (a master that
/// does not answer has a replica that does, which a failover promotes; shards say the
/// cluster is down, as they do until they hear of the promotion) it is asked again, up
/// to `settle`; then, or at once when nothing will change (a master down and no replica
/// of it answering), refused naming the database, what is not served and what to do.
pub async fn settled_masters(
    cluster: &Cluster,
    db: &Database,
    settle: Duration,
) -> Result<Vec<(Id, ShardAddr)>, String> {
    let deadline = std::time::Instant::now() + settle;
    loop {
        let masters = serving_masters(cluster, db).await?;
        if db.config.shards < 2 {
            return Ok(masters);
        }
        let Some((why, may_change)) = not_served(cluster, db, &masters).await else {
            return Ok(masters);
        };
        let name = &db.config.name;
        if !may_change {
            return Err(format!(
                "db `{name}` is not served: {why}; no replica of a master down answers to \
                 take its slots over: `restart db {name}` starts it again; `status` shows \
                 the shards"
            ));
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!(
                "db `{name}` is not served after {}s: {why}: a failover may still be under \
                 way; wait and run again, `status` shows the shards",
                settle.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What keeps `db`'s cluster from serving every key, with whether it may still change by
/// itself; `None` when it serves.
async fn not_served(
    cluster: &Cluster,
    db: &Database,
    masters: &[(Id, ShardAddr)],
) -> Option<(String, bool)> {
    let mut probes = std::collections::BTreeMap::new();
    for s in &db.shards {
        if let Some(a) = shard_addr(cluster, db, s.id) {
            let p = crate::server::probe(&a, crate::server::ClusterAsk::State, ROLE_TIMEOUT);
            probes.insert(s.id, p.await);
        }
    }
    let up = |id: Id| probes.get(&id).is_some_and(|p| p.up);
    // A master down with no replica answering stays down, and the others' `fail` with
    // it; anything else a failover or gossip settles.
    let (mut why, mut stuck) = (Vec::new(), false);
    for (id, addr) in masters {
        if up(*id) {
            continue;
        }
        // The configured master of the group the serving shard is in.
        let group = db
            .shards
            .iter()
            .find(|s| s.id == *id)
            .map_or(*id, |s| s.master.unwrap_or(s.id));
        let slots = db
            .shards
            .iter()
            .find(|s| s.id == group)
            .and_then(|s| s.slots)
            .map_or(String::new(), |r| format!(", slots {r},"));
        why.push(format!("redis:{id} ({addr}){slots} does not answer"));
        stuck |= !db
            .shards
            .iter()
            .any(|s| s.id != *id && (s.id == group || s.master == Some(group)) && up(s.id));
    }
    if let Some(c) = cluster_down(db, &probes) {
        why.push(format!(
            "{} say `cluster_state:{}` (their clients get `CLUSTERDOWN`)",
            c.shards_named(),
            c.state
        ));
    }
    (!why.is_empty()).then(|| (why.join("; "), !stuck))
}

/// Bounds the INFO that asks a shard its live role.
const ROLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The database's endpoint: its first master's address and the endpoint port,
/// `rediss://` before it when the database speaks TLS.
pub fn endpoint(cluster: &Cluster, db: &Database) -> String {
    let host = db
        .masters()
        .next()
        .and_then(|s| cluster.nodes.get(&s.node))
        .map(|n| n.addr.as_str())
        .unwrap_or("?");
    crate::endpoint::Endpoint::new(host, db.port)
        .with_tls(db.config.tls)
        .to_string()
}
