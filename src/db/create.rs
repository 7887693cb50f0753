//! `create db`: validate, place, bring the shards up ([`super::bringup`]), and roll
//! everything back when any step fails.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::ccs::{Cluster, Database, DbConfig, Id};
use crate::host::NodePath;
use crate::server::{stop_pid_on, ServerError, Servers, StartOptions};

use super::bringup::BringUp;
use super::cancel::Cancel;
use super::dirs::db_dirs;
use super::placement::{check_replica_engines, check_tls_servers, place_avoiding};
use super::DbError;
use crate::server::shard_dir::{db_dirs_in, shard_dirs_in};

pub const MAX_SHARDS: u32 = 128;

/// What `create db` was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateDb {
    pub config: DbConfig,
    /// Endpoint port; `None` picks a free one from the node's range.
    pub port: Option<u16>,
}

/// Creates the database with live shards and adds it to `cluster`. On any failure the
/// shards started are killed, the directories created removed, and `cluster` is left
/// untouched. Returns the new database's id.
pub async fn create_db(
    cluster: &mut Cluster,
    server: &Servers,
    req: CreateDb,
) -> Result<Id, DbError> {
    create_db_with(cluster, server, req, &Cancel::default()).await
}

/// [`create_db`] that stops and rolls back when `cancel` trips (Ctrl-C): checked after
/// the shards started, and raced against the cluster / replica setup, which only talks
/// to running shards and can be dropped at any point.
pub async fn create_db_with(
    cluster: &mut Cluster,
    server: &Servers,
    req: CreateDb,
    cancel: &Cancel,
) -> Result<Id, DbError> {
    validate(cluster, &req).await?;
    // Ports Lazarus picked itself that another process took between the probe and the
    // server binding them: the next attempt keeps off them. A port the operator gave is
    // never substituted.
    let mut lost: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    let mut attempt = 1;
    loop {
        let mut scratch = cluster.clone();
        // Ids on disk count as allocated: an interrupted create leaves its directories
        // without saving the allocator, and must not make every later create collide.
        if let Some(largest) = largest_id_on_disk(&scratch) {
            scratch.alloc_id = scratch.alloc_id.max(largest + 1);
        }
        let mut db = place_avoiding(&mut scratch, req.config.clone(), req.port, &lost)?;
        check_replica_engines(&db, server)?;
        check_tls_servers(&db, server).await?;
        let dirs = db_dirs(&scratch, &db);
        for dir in &dirs {
            if server.host(dir.node).metadata(&dir.path).await.is_ok() {
                return Err(DbError::ShardDirExists(dir.path.clone()));
            }
        }

        let parents = missing_parents(server, &dirs).await;

        if let Err(e) = bring_up(&scratch, server, &mut db, cancel).await {
            roll_back(server, &db, &dirs, &parents).await;
            // Taken between the placement's probe and the start: before the start's own
            // check (`PortTaken`) or before the server bound it (`PortLost`).
            let taken = match &e {
                DbError::Server(ServerError::PortLost { shard, port, .. }) => db
                    .shards
                    .iter()
                    .find(|s| s.id == *shard)
                    .and_then(|s| scratch.nodes.get(&s.node))
                    .map(|n| (n.addr.clone(), *port)),
                DbError::Server(ServerError::PortTaken { addr, port, .. }) => {
                    Some((addr.clone(), *port))
                }
                _ => None,
            };
            if let Some((addr, port)) = taken {
                let picked = req.port != Some(port);
                if picked && attempt < PORT_ATTEMPTS {
                    lost.entry(addr).or_default().insert(port);
                    attempt += 1;
                    continue;
                }
            }
            return Err(e);
        }
        let id = db.id;
        scratch.databases.insert(id, db);
        *cluster = scratch;
        return Ok(id);
    }
}

/// How many times `create db` places its shards when ports it picked are taken by
/// someone else before its servers bind them.
const PORT_ATTEMPTS: u32 = 4;

async fn validate(cluster: &Cluster, req: &CreateDb) -> Result<(), DbError> {
    let name = &req.config.name;
    crate::ccs::rules::check_db_name(name).map_err(DbError::BadName)?;
    if cluster.database_by_name(name).is_some() {
        return Err(DbError::NameTaken(name.clone()));
    }
    let shards = req.config.shards;
    if shards == 0 || shards > MAX_SHARDS {
        return Err(DbError::BadShards {
            given: shards,
            max: MAX_SHARDS,
        });
    }
    if let Some(given) = req.config.memory.filter(|m| *m < super::MIN_MEMORY) {
        return Err(DbError::MemoryTooSmall { given });
    }
    if req.config.tls && cluster.tls.is_none() {
        return Err(DbError::NoTlsMaterial);
    }
    if req.config.tls_auth_clients_optional && !req.config.tls {
        return Err(DbError::AuthClientsWithoutTls);
    }
    if let Some(source) = &req.config.sync_source {
        let bad = |reason: &str| DbError::BadSyncSource {
            given: source.to_string(),
            reason: reason.to_string(),
        };
        if shards > 1 {
            return Err(bad(
                "a sync source needs a single-shard database (Redis Cluster shards cannot `REPLICAOF`)",
            ));
        }
        if source.tls && cluster.tls.is_none() {
            return Err(bad(
                "a `rediss://` source needs the cluster's TLS material (`cluster tls set`) to \
                 replicate over TLS",
            ));
        }
        let reach = tokio::net::TcpStream::connect((source.host.as_str(), source.port));
        match tokio::time::timeout(Duration::from_secs(2), reach).await {
            Ok(Ok(_)) => {}
            _ => return Err(bad("nothing answers there")),
        }
    }
    Ok(())
}

/// The largest id in `db-<id>` / `shard-<id>` directory names under the nodes'
/// persistent paths.
fn largest_id_on_disk(cluster: &Cluster) -> Option<Id> {
    cluster
        .nodes
        .values()
        .flat_map(|n| db_dirs_in(&n.persistent_path))
        .flat_map(|(db, path)| {
            let shards = shard_dirs_in(&path).into_iter().map(|(id, _)| id);
            std::iter::once(db).chain(shards)
        })
        .max()
}

async fn bring_up(
    cluster: &Cluster,
    server: &Servers,
    db: &mut Database,
    cancel: &Cancel,
) -> Result<(), DbError> {
    if cancel.is_tripped() {
        return Err(DbError::Interrupted(db.config.name.clone()));
    }
    // Starts are not raced: a start dropped half-way could leave a server nobody tracks.
    // A new shard has no data to load, so they are quick.
    let opts = StartOptions {
        creating: true,
        ..StartOptions::default()
    };
    let all: Vec<Id> = db.shards.iter().map(|s| s.id).collect();
    // Masters and replicas at once: a replica up first only retries its master.
    let started = BringUp::new(cluster, db).start(server, &all, &opts).await;
    let mut first_err = None;
    for (shard_id, res) in started {
        match res {
            Ok(pid) => {
                if let Some(s) = db.shards.iter_mut().find(|s| s.id == shard_id) {
                    s.pid = Some(pid);
                }
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e.into());
    }
    let interrupted = DbError::Interrupted(db.config.name.clone());
    let up = BringUp::new(cluster, db);
    tokio::select! {
        res = up.wire() => Ok(res?),
        () = cancel.tripped() => Err(interrupted),
    }
}

/// Clears the `creating` mark from the identity files of `db_id`'s shards, once the
/// configuration holding the database is saved. A file that cannot be rewritten is
/// returned: a rebuild from identity files alone would leave the database out.
pub fn mark_created(cluster: &Cluster, db_id: Id) -> Result<(), crate::server::ServerError> {
    let Some(db) = cluster.databases.get(&db_id) else {
        return Ok(());
    };
    for shard in &db.shards {
        if let Some(node) = cluster.nodes.get(&shard.node) {
            let dir =
                crate::server::ShardDir::under(node.id, &node.persistent_path, db.id, shard.id);
            dir.write_identity(&cluster.identity_of(db, shard))
                .map_err(|e| crate::server::ServerError::io(dir.identity_file(), e))?;
        }
    }
    Ok(())
}

/// The directories above `dirs` that do not exist yet (a fresh node's `redis/`, the
/// default cluster's `<home>/nodes/1`), innermost first: the create makes them, and its
/// roll back removes them again.
async fn missing_parents(server: &Servers, dirs: &[NodePath]) -> Vec<NodePath> {
    let mut missing: Vec<NodePath> = Vec::new();
    for dir in dirs {
        let host = server.host(dir.node);
        for parent in dir.path.ancestors().skip(1) {
            if parent.as_os_str().is_empty() || host.metadata(parent).await.is_ok() {
                break;
            }
            missing.push(NodePath::new(dir.node, parent));
        }
    }
    missing.sort_by(|a, b| {
        let depth = |p: &NodePath| p.path.components().count();
        depth(b).cmp(&depth(a)).then_with(|| a.cmp(b))
    });
    missing.dedup();
    missing
}

/// Takes back database `id`, created by [`create_db`] into `cluster` but never saved (the
/// save failed): its shards stopped, its directories removed, the database gone from
/// `cluster`. Not [`super::lifecycle::delete_db`]: a database that never existed leaves no
/// tombstone, nor identity files marked deleted.
pub async fn roll_back_unsaved(cluster: &mut Cluster, server: &Servers, id: Id) {
    let Some(db) = cluster.databases.remove(&id) else {
        return;
    };
    let dirs = db_dirs(cluster, &db);
    roll_back(server, &db, &dirs, &[]).await;
}

async fn roll_back(server: &Servers, db: &Database, dirs: &[NodePath], parents: &[NodePath]) {
    for s in &db.shards {
        if let Some(pid) = s.pid {
            let _ = stop_pid_on(&*server.host(s.node), pid, Duration::from_millis(200)).await;
        }
    }
    // Shards whose pid was not recorded (a failed wire step has all of them; a failed
    // start may leave one running): any server still running in our new dirs goes too.
    for dir in dirs {
        let host = server.host(dir.node);
        if let Ok(entries) = host.list(&dir.path).await {
            for e in entries {
                let shard = dir.path.join(&e.name);
                if let Some(pid) = crate::server::shard_pid_on(&*host, &shard).await {
                    let _ = stop_pid_on(&*host, pid, Duration::from_millis(200)).await;
                }
            }
        }
        // These directories did not exist before this create: removing them loses nothing.
        let _ = host.remove(&dir.path).await;
    }
    // Nor did these; each goes only when nothing else was put in it meanwhile.
    for parent in parents {
        let host = server.host(parent.node);
        if host.list(&parent.path).await.is_ok_and(|e| e.is_empty()) {
            let _ = host.remove(&parent.path).await;
        }
    }
}
