//! `delete db` and `restart db` (its bring-up is [`super::bringup`]'s).

use std::path::PathBuf;

use serde::Serialize;

use crate::ccs::{Cluster, Database, DbState, Id, Role};
use crate::host::Hosts;
use crate::server::{
    shard_pid, shard_pid_on, stop_shard_on, ServerError, Servers, SetAside, StartOptions,
};

use super::bringup::BringUp;
use super::dirs::db_dirs;
use super::{database, DbError};

/// Stops every shard of `db` at once; returns how many were running.
async fn stop_all(cluster: &Cluster, hosts: &Hosts, db: &Database) -> Result<usize, DbError> {
    let mut tasks = Vec::new();
    for s in &db.shards {
        if let Some(node) = cluster.nodes.get(&s.node) {
            let dir = node.shard_dir(db.id, s.id);
            let host = hosts.of(node.id);
            tasks.push(tokio::spawn(
                async move { stop_shard_on(&*host, &dir).await },
            ));
        }
    }
    let mut stopped = 0;
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(Ok(was_running)) => stopped += usize::from(was_running),
            Ok(Err(e)) => {
                first_err.get_or_insert(DbError::Server(e));
            }
            Err(e) => {
                first_err.get_or_insert(DbError::Server(ServerError::Cluster(format!(
                    "stop task failed: {e}"
                ))));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(stopped),
    }
}

/// The machine of every node of `cluster`.
pub(crate) fn hosts_of(cluster: &Cluster) -> Result<Hosts, DbError> {
    cluster.hosts().map_err(|e| {
        DbError::Server(ServerError::Cluster(format!(
            "no private directory for ssh connections: {e}"
        )))
    })
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DeleteOutcome {
    pub id: Id,
    pub name: String,
    /// Shards that were running and were stopped.
    pub stopped: usize,
    /// Data directories removed (`purge`) or kept.
    pub purged: Vec<PathBuf>,
    pub kept: Vec<PathBuf>,
}

/// Stops the database's shards and removes it from `cluster`. Its data directories stay
/// unless `purge`; either way each of its nodes keeps its tombstone
/// ([`crate::ccs::DbTombstone`]).
pub async fn delete_db(
    cluster: &mut Cluster,
    id: Id,
    purge: bool,
) -> Result<DeleteOutcome, DbError> {
    let db = database(cluster, id)?.clone();
    let hosts = hosts_of(cluster)?;
    let stopped = stop_all(cluster, &hosts, &db).await?;
    let (mut purged, mut kept) = (Vec::new(), Vec::new());
    for dir in db_dirs(cluster, &db) {
        let host = hosts.of(dir.node);
        if host.metadata(&dir.path).await.is_err() {
            continue;
        }
        if purge {
            host.remove(&dir.path)
                .await
                .map_err(|e| ServerError::io(&dir.path, e))?;
            purged.push(dir.path);
        } else {
            kept.push(dir.path);
        }
    }
    // The directories kept still hold identity files: marked, so a rebuild from them
    // never brings the database back.
    for shard in &db.shards {
        let Some(node) = cluster.nodes.get(&shard.node) else {
            continue;
        };
        let dir = crate::server::ShardDir::under(node.id, &node.persistent_path, db.id, shard.id);
        if !kept.iter().any(|k| dir.path().starts_with(k)) {
            continue;
        }
        let file = dir.identity_file();
        let host = hosts.of(node.id);
        if host.metadata(&file).await.is_err() {
            continue;
        }
        let mut identity = cluster.identity_of(&db, shard);
        identity.deleted = true;
        let json = serde_json::to_vec_pretty(&identity)
            .map_err(|e| ServerError::io(&file, std::io::Error::other(e)))?;
        host.write_private(&file, &json)
            .await
            .map_err(|e| ServerError::io(&file, e))?;
    }
    // A tombstone on each of its nodes, purged or not: the directories a purge removes
    // are this life's only, and an earlier life's copies of its shards (a disk recovered
    // from) must not bring it back in a rebuild from identity files.
    let tombstone = cluster.tombstone_of(&db, purge);
    let json = serde_json::to_vec_pretty(&tombstone).expect("a tombstone always serializes");
    let mut nodes: Vec<Id> = db.shards.iter().map(|s| s.node).collect();
    nodes.sort();
    nodes.dedup();
    for node in nodes.iter().filter_map(|id| cluster.nodes.get(id)) {
        let file = crate::server::shard_dir::tombstone_under(&node.persistent_path, db.id);
        let host = hosts.of(node.id);
        let dir = file.parent().expect("under `redis/`");
        host.create_private_dir(dir)
            .await
            .map_err(|e| ServerError::io(dir, e))?;
        host.write_private(&file, &json)
            .await
            .map_err(|e| ServerError::io(&file, e))?;
    }
    cluster.databases.remove(&db.id);
    Ok(DeleteOutcome {
        id: db.id,
        name: db.config.name,
        stopped,
        purged,
        kept,
    })
}

/// Stops the database's shards (letting each persist as configured) and starts them again
/// with their data; rewires the cluster and replicas. Returns the database id.
///
/// A restart that fails part-way still starts every shard it can and records in
/// `cluster` which shards run (their pids) and which do not, then returns
/// [`DbError::RestartIncomplete`]: the caller saves the CCS in that case too.
pub async fn restart_db(cluster: &mut Cluster, server: &Servers, id: Id) -> Result<Id, DbError> {
    let db = database(cluster, id)?.clone();
    if db.state == DbState::PendingRecovery {
        return Err(DbError::PendingRecovery {
            id: db.id,
            name: db.config.name,
        });
    }
    // A replica whose node's binary (changed since: `node redis_server set`) cannot load
    // its master's RDB would never sync: refused before anything is stopped.
    super::placement::check_replica_engines(&db, server)?;
    super::placement::check_tls_servers(&db, server).await?;
    // A shard started without the data a restore set aside would come up empty (or
    // with the run's file), and report success.
    let hosts = hosts_of(cluster)?;
    if let Some((shard, aside)) = set_aside(cluster, &db, &hosts).await.into_iter().next() {
        return Err(DbError::RestoreSetAside {
            id: db.id,
            name: db.config.name,
            shard,
            aside: Box::new(aside),
        });
    }
    // Down masters and their replicas, looked at once for both refusals below.
    let masters_down = down_masters(cluster, &db, &hosts).await;
    if let Some(refused) =
        master_without_data(&db, &masters_down).or_else(|| replica_ahead(&db, &masters_down))
    {
        return Err(refused);
    }
    reinstall_lost_material(cluster, &db, &hosts).await?;
    let result = stop_and_start(cluster, server, &db).await;
    // Whatever happened, record what runs now: stale pids would hide the truth.
    let (id, name) = (db.id, db.config.name.clone());
    cluster.databases.insert(id, db);
    let (running, down) = record_pids(cluster, &hosts, id).await;
    result
        .map(|()| id)
        .map_err(|cause| DbError::RestartIncomplete {
            id,
            name,
            cause: Box::new(cause),
            running,
            down,
        })
}

/// A master that is not running and whose directory holds no file its server loads keys
/// from (its node's disk was lost or wiped, its RDB deleted, or it never saved one: a
/// `nodes.conf` left behind is no data), while a replica of it holds its data (running as
/// its replica, or with such files, unless an RDB alone that says it holds no key):
/// started empty, it would be the master the replica syncs from, and the replica's copy
/// would be emptied, on disk too (a full sync replaces the replica's files). After a
/// failover the replica serves the slots as a master and the restarted master follows
/// it: that is no loss, and not refused. A database without persistence keeps nothing on
/// disk, so it is not asked ([`down_masters`] finds none).
fn master_without_data(db: &Database, down: &[DownMaster]) -> Option<DbError> {
    let aof = db.config.persistence == crate::ccs::Persistence::Aof;
    let loads = crate::server::shard_dir::key_files(aof);
    for (master, replicas) in down {
        if master.holds_any(loads) {
            continue;
        }
        for replica in replicas {
            let holds = match &replica.role {
                // It took the slots: the master follows it.
                Some(role) if role.is_master => continue,
                Some(_) => true,
                None => replica.may_hold_keys(loads),
            };
            if holds {
                return Some(DbError::MasterWithoutData {
                    id: db.id,
                    name: db.config.name.clone(),
                    master: master.shard.id,
                    node: master.node,
                    dir: master.dir.clone(),
                    replica: replica.shard.id,
                    replica_node: replica.node,
                    replica_dir: replica.dir.clone(),
                });
            }
        }
    }
    None
}

/// A shard as a restart finds it before anything stops: its node and directory, whether
/// its server runs and what it says of its role, else what its directory holds.
struct ShardAt<'a> {
    shard: &'a crate::ccs::Shard,
    node: Id,
    dir: PathBuf,
    running: bool,
    /// Its replication role, when its server runs (asked of replicas only).
    role: Option<RoleNow>,
    /// When it does not run: the names in its directory, and its `dump.rdb`'s first bytes.
    names: Vec<String>,
    rdb: Option<crate::persist::RdbHead>,
}

/// What a running shard says of its replication role.
struct RoleNow {
    is_master: bool,
    /// How far along its master's stream it is (`master_repl_offset`).
    offset: Option<u64>,
}

/// A master whose server does not run, with its replicas.
type DownMaster<'a> = (ShardAt<'a>, Vec<ShardAt<'a>>);

impl ShardAt<'_> {
    /// Whether its directory holds one of `files`.
    fn holds_any(&self, files: &[&str]) -> bool {
        self.names.iter().any(|n| files.contains(&n.as_str()))
    }

    /// Whether its directory holds one of `loads` (the files its server loads keys from)
    /// that may hold keys: an RDB alone that says it holds none does not (a replica's
    /// `dump.rdb` from its first sync with a master that had no key yet).
    fn may_hold_keys(&self, loads: &[&str]) -> bool {
        use crate::server::shard_dir::RDB_FILE;
        let present: Vec<&str> = loads
            .iter()
            .copied()
            .filter(|f| self.names.iter().any(|n| n == f))
            .collect();
        if present == [RDB_FILE] {
            return self.rdb.as_ref().and_then(|h| h.keys) != Some(false);
        }
        !present.is_empty()
    }
}

/// Each master of `db` whose server does not run, with its replicas, as a restart finds
/// them (shards on nodes the configuration no longer has are left out): a running
/// replica's role asked of it, the directory of a shard that does not run listed and its
/// `dump.rdb`'s head read, each once. None for a database without persistence.
async fn down_masters<'a>(
    cluster: &'a Cluster,
    db: &'a Database,
    hosts: &Hosts,
) -> Vec<DownMaster<'a>> {
    use crate::server::shard_dir::RDB_FILE;
    if db.config.persistence == crate::ccs::Persistence::Disabled {
        return Vec::new();
    }
    let at = |shard: &'a crate::ccs::Shard, ask_role: bool| async move {
        let node = cluster.nodes.get(&shard.node)?;
        let host = hosts.of(node.id);
        let dir = node.shard_dir(db.id, shard.id);
        let running = shard_pid_on(&*host, &dir).await.is_some();
        let mut at = ShardAt {
            shard,
            node: node.id,
            dir,
            running,
            role: None,
            names: Vec::new(),
            rdb: None,
        };
        if running && ask_role {
            let addr = cluster.shard_addr(db, &node.addr, shard.port);
            let info = crate::server::info(&addr, "replication", REPLICA_ROLE_TIMEOUT).await;
            // A replica that does not answer still runs as one.
            at.role = Some(RoleNow {
                is_master: info.as_ref().is_ok_and(|i| i.get("role") == Some("master")),
                offset: info.ok().and_then(|i| i.get_u64("master_repl_offset")),
            });
        } else if !running {
            let names = host.list(&at.dir).await.unwrap_or_default();
            at.names = names.into_iter().map(|e| e.name).collect();
            if at.names.iter().any(|n| n == RDB_FILE) {
                at.rdb = rdb_head(&*host, &at.dir.join(RDB_FILE)).await;
            }
        }
        Some(at)
    };
    let mut out = Vec::new();
    for master in db.masters() {
        let Some(m) = at(master, false).await.filter(|m| !m.running) else {
            continue;
        };
        let mut replicas = Vec::new();
        for r in db
            .shards
            .iter()
            .filter(|s| s.role == Role::Replica && s.master == Some(master.id))
        {
            replicas.extend(at(r, true).await);
        }
        out.push((m, replicas));
    }
    out
}

/// A master that is not running and starts from its `dump.rdb`, while a replica of it
/// is further along the shard's replication stream (in its own `dump.rdb`, or in its
/// memory while it runs as the replica): the master takes the stream up where its file
/// left it (`repl-offset`), the replica asks to go on from further than that, is
/// refused, and syncs whole from the master, its own file replaced: the writes between
/// the two points, which only the replica held, are gone. Both keep a snapshot on their
/// own schedule, so after a power loss either may be the newer. The offset is compared,
/// not the stream's id: a master restarted from a file takes a new id and counts on from
/// the file's offset, so the replica that followed it since holds an id no file of the
/// master names (redis-server 7.0 then refuses its partial sync outright). A replica that
/// took the slots in a failover is no loss (the master follows it). Only a snapshot
/// database is asked: an AOF does not say where in the stream it is.
fn replica_ahead(db: &Database, down: &[DownMaster]) -> Option<DbError> {
    if db.config.persistence != crate::ccs::Persistence::Snapshot {
        return None;
    }
    let mut pairs: Vec<super::Behind> = Vec::new();
    for (master, replicas) in down {
        let Some(mine) = &master.rdb else {
            continue;
        };
        let Some(from) = mine.repl_offset else {
            continue;
        };
        let mut furthest: Option<(&ShardAt, u64)> = None;
        for replica in replicas {
            // Where it is along the stream, and when it was there.
            let theirs = match &replica.role {
                Some(role) if role.is_master => continue,
                Some(role) => role.offset.map(|at| (at, Some(now_secs()))),
                None => replica
                    .rdb
                    .as_ref()
                    .and_then(|h| Some((h.repl_offset?, h.created))),
            };
            // The pings a master sends its replicas move the stream on without a write:
            // a replica whose file was written later is that much further along.
            let ahead = theirs.filter(|&(at, when)| {
                let idle = when.zip(mine.created).map_or(0, |(t, m)| t - m);
                at > from.saturating_add(idle_growth(idle))
            });
            if let Some((at, _)) = ahead {
                if furthest.is_none_or(|(_, f)| at > f) {
                    furthest = Some((replica, at));
                }
            }
        }
        if let Some((replica, at)) = furthest {
            pairs.push(super::Behind {
                master: master.shard.id,
                node: master.node,
                dir: master.dir.clone(),
                master_offset: from,
                replica: replica.shard.id,
                replica_node: replica.node,
                replica_dir: replica.dir.clone(),
                replica_offset: at,
                running: replica.running,
            });
        }
    }
    (!pairs.is_empty()).then(|| {
        DbError::ReplicaAhead(Box::new(super::ReplicasAhead {
            id: db.id,
            name: db.config.name.clone(),
            pairs,
        }))
    })
}

/// What the first bytes of the RDB at `path` on `host` say of it; `None` when there is no
/// such file, or it is not an RDB.
async fn rdb_head(
    host: &dyn crate::host::Host,
    path: &std::path::Path,
) -> Option<crate::persist::RdbHead> {
    let head = host
        .read_start(path, crate::persist::RDB_HEAD_BYTES as u64)
        .await
        .ok()?;
    crate::persist::rdb_head_of(&head)
}

/// Seconds since the epoch, as an RDB's `ctime` counts them.
fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// How far a master's replication stream runs on in `secs` seconds with no write: a
/// `PING` (14 bytes) every `repl-ping-replica-period` (10 s by default, as Lazarus leaves
/// it), one more, and room for a `SELECT` (23 bytes). A replica further along than its
/// master's file by more than that holds writes the file does not.
fn idle_growth(secs: i64) -> u64 {
    const PING: u64 = 14;
    const PERIOD: u64 = 10;
    const SLACK: u64 = 64;
    PING * (secs.max(0) as u64 / PERIOD + 1) + SLACK
}

/// A TLS database's shards load the cluster's material from their node's persistent
/// path (`tls/<material id>/`): on a node whose disk was lost there is none, and its
/// shards would not start ("Failed to load certificate"). The material is installed
/// there again first, as `node add` installs it: this machine's copy, or the files the
/// operator gave, checked again and the very material the CCS records.
async fn reinstall_lost_material(
    cluster: &Cluster,
    db: &Database,
    hosts: &Hosts,
) -> Result<(), DbError> {
    let Some(record) = cluster.tls.as_ref().filter(|_| db.config.tls) else {
        return Ok(());
    };
    let mut nodes: Vec<Id> = db.shards.iter().map(|s| s.node).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let now = now_secs();
    let mut material = None;
    for id in nodes {
        let Some(node) = cluster.nodes.get(&id) else {
            continue;
        };
        let host = hosts.of(id);
        let dir = crate::tls::installed_dir(&node.persistent_path, record);
        let mut whole = true;
        for file in ["ca.crt", "cert.crt", "key.pem"] {
            whole &= host.metadata(&dir.join(file)).await.is_ok();
        }
        if whole {
            continue;
        }
        let to_tls = |source| DbError::TlsMaterial { node: id, source };
        let material = match &mut material {
            Some(m) => m,
            None => material.insert(
                crate::tls::material_here(Some(record), cluster.local_persistent_paths(), now)
                    .map_err(to_tls)?,
            ),
        };
        crate::tls::install_on(&*host, &node.persistent_path, material)
            .await
            .map_err(to_tls)?;
    }
    Ok(())
}

const REPLICA_ROLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Records in `cluster` the pid of each shard of database `id` as its directory's server
/// runs now (`None` for a shard not running): the one place a restart of shards (`restart
/// db`, a restore's start, roll back and put-back) makes the CCS's pids true again.
/// Returns the shards running and those down.
pub async fn record_pids(cluster: &mut Cluster, hosts: &Hosts, id: Id) -> (Vec<Id>, Vec<Id>) {
    let (mut running, mut down) = (Vec::new(), Vec::new());
    let Some(db) = cluster.databases.get(&id) else {
        return (running, down);
    };
    let mut pids = Vec::new();
    for s in &db.shards {
        let pid = match cluster.nodes.get(&s.node) {
            Some(n) => shard_pid_on(&*hosts.of(n.id), &n.shard_dir(id, s.id)).await,
            None => None,
        };
        pids.push((s.id, pid));
    }
    if let Some(db) = cluster.databases.get_mut(&id) {
        for s in &mut db.shards {
            s.pid = pids.iter().find(|(i, _)| *i == s.id).and_then(|(_, p)| *p);
            match s.pid {
                Some(_) => running.push(s.id),
                None => down.push(s.id),
            }
        }
    }
    (running, down)
}

/// The shards of `db` holding data a restore set aside and did not put back, each
/// directory asked on its node's host.
pub async fn set_aside(cluster: &Cluster, db: &Database, hosts: &Hosts) -> Vec<(Id, SetAside)> {
    let mut found = Vec::new();
    for s in &db.shards {
        let Some(n) = cluster.nodes.get(&s.node) else {
            continue;
        };
        if let Some(aside) = SetAside::in_dir(&*hosts.of(n.id), &n.shard_dir(db.id, s.id)).await {
            found.push((s.id, aside));
        }
    }
    found
}

/// Active databases with a shard whose server is not running in its directory: what
/// `restart all` brings back (after a power loss, every one).
pub fn not_running(cluster: &Cluster) -> Vec<Id> {
    cluster
        .databases
        .values()
        .filter(|db| db.state == DbState::Active)
        .filter(|db| {
            db.shards.iter().any(|s| match cluster.nodes.get(&s.node) {
                None => true,
                Some(n) if n.ssh.is_none() => shard_pid(&n.shard_dir(db.id, s.id)).is_none(),
                // On another machine: whether its port answers (a pid there is a round
                // trip this synchronous check does not make).
                Some(n) => !answers(&n.addr, s.port),
            })
        })
        .map(|db| db.id)
        .collect()
}

fn answers(addr: &str, port: u16) -> bool {
    let Ok(ip) = addr.parse::<std::net::IpAddr>() else {
        return false;
    };
    let to = std::net::SocketAddr::new(ip, port);
    std::net::TcpStream::connect_timeout(&to, std::time::Duration::from_secs(1)).is_ok()
}

/// Stops every shard, then starts every shard not running (masters first: a replica up
/// first only retries, a master up first lets its replica sync at once), then wires them.
/// One shard failing does not keep the others down.
async fn stop_and_start(cluster: &Cluster, server: &Servers, db: &Database) -> Result<(), DbError> {
    let hosts = hosts_of(cluster)?;
    let mut first_err = stop_all(cluster, &hosts, db).await.err();
    let opts = StartOptions::default();
    let up = BringUp::new(cluster, db);
    for role in [Role::Master, Role::Replica] {
        let mut ids: Vec<Id> = Vec::new();
        for s in db.shards.iter().filter(|s| s.role == role) {
            if let Some(n) = cluster.nodes.get(&s.node) {
                if shard_pid_on(&*hosts.of(n.id), &n.shard_dir(db.id, s.id))
                    .await
                    .is_none()
                {
                    ids.push(s.id);
                }
            }
        }
        for (_, res) in up.start(server, &ids, &opts).await {
            if let Err(e) = res {
                first_err.get_or_insert(e.into());
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(up.wire().await?),
    }
}
