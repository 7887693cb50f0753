//! Bringing one database back: copy the planned files into fresh shard directories, start
//! the shards in the loading mode their source needs, check what loaded against what the
//! reader counted, switch to the configured persistence, restore replicas and the slot
//! map, and re-attach the sync source. The caller marks the database active.
//!
//! Everything done here can be done again: a shard directory is only ever (re)filled
//! from the recovery path, so a run cut short is finished by running it again.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use super::copy::{copy_source, copy_to_temp, ensure_outside, install_copy, CopyError};
use super::plan::{likely_sources, plan_db, DbPlan, Outcome, Source, SourceCheck, SourceKind};
use super::reader::reader_check;
use crate::ccs::{Cluster, Database, Id, Persistence, Role, Shard, SlotRange};
use crate::server::{
    connect, form_cluster, info, is_running, parse_host_port, replicate, set_persistence,
    shard_pid, start_shard, wait_in_sync, ClusterMember, ConfOptions, MemberRole, RedisServer,
    ServerError, ShardAddr, StartOptions,
};

/// Left in a shard directory while recovery fills it: its presence says the data files
/// there are recovery's own, so a later run may replace them.
pub const MARKER_FILE: &str = "lazarus-recovering";

/// Files a shard directory holds data in; anything else there is configuration or logs.
const DATA_FILES: &[&str] = &[
    "dump.rdb",
    "appendonlydir",
    "appendonly.aof",
    "nodes.conf",
    ".dump.rdb.lazarus-tmp",
    ".appendonlydir.lazarus-tmp",
    ".appendonly.aof.lazarus-tmp",
];

/// Validates one candidate source (the real reader, or a stand-in in tests).
pub type CheckFn = fn(&Path, Option<SlotRange>) -> SourceCheck;

/// What every database's recovery in one command shares.
#[derive(Clone, Debug)]
pub struct Recovery {
    pub server: RedisServer,
    pub max_rdb: Option<u32>,
    pub check: CheckFn,
    pub only_configuration: bool,
    /// Bounds a shard's load of its data (and a full sync from a sync source).
    pub load_timeout: Duration,
    /// Bounds cluster formation, replica sync and persistence switches.
    pub setup_timeout: Duration,
}

impl Recovery {
    pub fn new(server: RedisServer, only_configuration: bool) -> Recovery {
        let max_rdb = crate::persist::max_rdb_version_for(&server.version);
        Recovery {
            server,
            max_rdb,
            check: reader_check,
            only_configuration,
            load_timeout: Duration::from_secs(3600),
            setup_timeout: Duration::from_secs(120),
        }
    }

    /// Plans one database against its files (reads them all: call off the async threads).
    pub fn plan(&self, cluster: &Cluster, db: &Database) -> DbPlan {
        plan_db(cluster, db, self.max_rdb, &self.server.version, &self.check)
    }
}

#[derive(Debug, Error)]
pub enum RecoverError {
    #[error("{}", .0.join("; "))]
    Blocked(Vec<String>),
    #[error("shard directory `{}` already holds data files recovery did not write: move them away (or point the node's recovery path at them) and run again", .0.display())]
    ShardDirTaken(PathBuf),
    #[error("`{}`: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("redis:{shard} loaded {loaded} keys in db {logical}, the files hold {expected} ({expires} with a TTL)")]
    KeyCount {
        shard: Id,
        logical: u32,
        loaded: u64,
        expected: u64,
        expires: u64,
    },
    #[error("{0}")]
    Internal(String),
}

/// A database brought back, for the caller to record and report.
#[derive(Serialize, Clone, Debug)]
pub struct Recovered {
    pub id: Id,
    /// Pid of every shard started.
    pub pids: Vec<(Id, u32)>,
    /// Keys loaded over all masters.
    pub keys: u64,
    /// Master shards that came back with data, and from where.
    pub sources: Vec<(Id, Source)>,
    /// Master shards that came back empty because none of their files was found.
    pub empty: Vec<Id>,
    pub only_configuration: bool,
    /// The sync source the database follows again.
    pub sync_source: Option<SyncSource>,
}

#[derive(Serialize, Clone, Debug)]
pub struct SyncSource {
    pub endpoint: String,
    /// It accepted a connection when recovery re-attached the database.
    pub answers: bool,
    /// The database waited for and completed a full sync from it.
    pub synced: bool,
}

/// Recovers one database of `cluster`. `stage` hears each step as it starts.
pub async fn recover_db(
    rec: Arc<Recovery>,
    cluster: Arc<Cluster>,
    db_id: Id,
    stage: &(dyn Fn(&str) + Send + Sync),
) -> Result<Recovered, RecoverError> {
    let db = cluster
        .databases
        .get(&db_id)
        .ok_or_else(|| RecoverError::Internal(format!("no db:{db_id}")))?
        .clone();
    let dirs: Vec<PathBuf> = db
        .shards
        .iter()
        .map(|s| shard_dir(&cluster, &db, s))
        .collect();
    let result = recover_in(&rec, &cluster, &db, &dirs, stage).await;
    if result.is_err() {
        // Leave no half-recovered shard running: a re-run starts from the files again.
        for dir in &dirs {
            kill_leftover(dir).await;
        }
    }
    result
}

async fn recover_in(
    rec: &Arc<Recovery>,
    cluster: &Arc<Cluster>,
    db: &Database,
    dirs: &[PathBuf],
    stage: &(dyn Fn(&str) + Send + Sync),
) -> Result<Recovered, RecoverError> {
    stage("preparing shard directories");
    for dir in dirs {
        prepare_dir(cluster, dir).await?;
    }
    if rec.only_configuration {
        stage("starting shards");
        let pids = start_masters(rec, cluster, db, &BTreeMap::new()).await?;
        return finish(rec, cluster, db, None, pids, stage).await;
    }
    let guess = likely_sources(cluster, db);
    let (plan, pids) = match load_masters(rec, cluster, db, &guess, stage).await? {
        Loaded::Done(plan, pids) => (plan, pids),
        Loaded::Chose(plan) => {
            // Validation chose other files than the quick guess: start over with its
            // choice (rare: a corrupted freshest file, or an RDB copied without its
            // times).
            for dir in dirs {
                kill_leftover(dir).await;
                prepare_dir(cluster, dir).await?;
            }
            match load_masters(rec, cluster, db, &chosen(&plan), stage).await? {
                Loaded::Done(plan, pids) => (plan, pids),
                Loaded::Chose(_) => {
                    return Err(RecoverError::Internal(
                        "the files changed while recovery read them: run it again".into(),
                    ))
                }
            }
        }
    };
    finish(rec, cluster, db, Some(&plan), pids, stage).await
}

/// What each master loads: the kind and path of its source.
type Picks = BTreeMap<Id, (SourceKind, PathBuf)>;

fn chosen(plan: &DbPlan) -> Picks {
    plan.shard_plans
        .iter()
        .filter_map(|s| match &s.outcome {
            Outcome::Ready { source } => Some((s.shard, (source.kind, source.path.clone()))),
            _ => None,
        })
        .collect()
}

enum Loaded {
    /// Validation agreed with what was loaded.
    Done(DbPlan, Vec<(Id, u32)>),
    /// Validation chose other sources; nothing loaded may stay.
    Chose(DbPlan),
}

/// Starts every master on `picks` while validation reads the same files, so that a
/// database costs about its server's own load time. An RDB is loaded straight from the
/// original through a symlink while the copy is made beside it: redis-server only reads
/// `dump.rdb` at startup and replaces it by rename when it saves, so the original is
/// never written; the checked copy then takes the symlink's place. An AOF is appended to
/// in place, so it is copied before its server starts.
async fn load_masters(
    rec: &Arc<Recovery>,
    cluster: &Arc<Cluster>,
    db: &Database,
    picks: &Picks,
    stage: &(dyn Fn(&str) + Send + Sync),
) -> Result<Loaded, RecoverError> {
    stage("validating, copying and loading");
    let planning = {
        let (r, c, d) = (rec.clone(), cluster.clone(), db.clone());
        tokio::task::spawn_blocking(move || r.plan(&c, &d))
    };
    let mut copies = tokio::task::JoinSet::new();
    let mut started = Ok(Vec::new());
    for (id, (kind, path)) in picks {
        let Some(shard) = db.shards.iter().find(|s| s.id == *id) else {
            continue;
        };
        let (kind, path, dir) = (*kind, path.clone(), shard_dir(cluster, db, shard));
        if kind == SourceKind::Rdb {
            let link = dir.join(kind.file_name());
            if let Err(source) = std::os::unix::fs::symlink(&path, &link) {
                started = Err(RecoverError::Io { path: link, source });
                break;
            }
            copies.spawn_blocking(move || copy_to_temp(&path, kind, &dir).map(|_| (kind, dir)));
        } else {
            let copied = tokio::task::spawn_blocking(move || copy_source(&path, kind, &dir)).await;
            if let Err(e) = copied
                .map_err(|e| RecoverError::Internal(e.to_string()))
                .and_then(|r| Ok(r?))
            {
                started = Err(e);
                break;
            }
        }
    }
    if started.is_ok() {
        started = start_masters(rec, cluster, db, picks).await;
    }
    // Validation's verdict first: it names a bad file better than a failed start does.
    let plan = planning
        .await
        .map_err(|e| RecoverError::Internal(e.to_string()))?;
    let mut copied = Ok(());
    while let Some(joined) = copies.join_next().await {
        let done = joined
            .map_err(|e| RecoverError::Internal(e.to_string()))
            .and_then(|r| Ok(r?));
        match done {
            Ok((kind, dir)) if copied.is_ok() => {
                copied = install_copy(kind, &dir).map_err(Into::into)
            }
            Ok(_) => {}
            Err(e) => copied = copied.and(Err(e)),
        }
    }
    let blocking: Vec<String> = plan
        .blocking()
        .into_iter()
        .map(|(shard, reason)| format!("redis:{shard}: {reason}"))
        .collect();
    if !blocking.is_empty() {
        return Err(RecoverError::Blocked(blocking));
    }
    if chosen(&plan) != *picks {
        return Ok(Loaded::Chose(plan));
    }
    let pids = started?;
    copied?;
    Ok(Loaded::Done(plan, pids))
}

/// Starts every master: with `appendonly` matching its pick (a server started with
/// appendonly on and no AOF would ignore the RDB and start empty), or as configured when
/// it has nothing to load. Waits until each has loaded.
async fn start_masters(
    rec: &Recovery,
    cluster: &Cluster,
    db: &Database,
    picks: &Picks,
) -> Result<Vec<(Id, u32)>, RecoverError> {
    let mut starts = tokio::task::JoinSet::new();
    for shard in db.masters() {
        let opts = StartOptions {
            conf: ConfOptions {
                appendonly: picks.get(&shard.id).map(|(kind, _)| kind.is_aof()),
                // Own data first; the sync source is re-attached after the checks.
                standalone: !rec.only_configuration,
            },
            timeout: rec.load_timeout,
        };
        let (server, cluster, db, shard) = (
            rec.server.clone(),
            cluster.clone(),
            db.clone(),
            shard.clone(),
        );
        starts.spawn(async move {
            let pid = start_shard(&server, &cluster, &db, &shard, &opts).await?;
            Ok::<_, ServerError>((shard.id, pid))
        });
    }
    let mut pids = Vec::new();
    let mut first_err = None;
    while let Some(joined) = starts.join_next().await {
        match joined
            .map_err(|e| RecoverError::Internal(e.to_string()))
            .and_then(|r| Ok(r?))
        {
            Ok(pid) => pids.push(pid),
            Err(e) => first_err = first_err.or(Some(e)),
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(pids),
    }
}

/// After the masters loaded: check, switch persistence, replicas, slot map, sync source.
async fn finish(
    rec: &Recovery,
    cluster: &Cluster,
    db: &Database,
    plan: Option<&DbPlan>,
    mut pids: Vec<(Id, u32)>,
    stage: &(dyn Fn(&str) + Send + Sync),
) -> Result<Recovered, RecoverError> {
    let source_of = |id: Id| -> Option<Source> {
        plan?
            .shard_plans
            .iter()
            .find(|s| s.shard == id)
            .and_then(|s| match &s.outcome {
                Outcome::Ready { source } => Some(source.clone()),
                _ => None,
            })
    };
    let sources: Vec<(Id, Source)> = db
        .masters()
        .filter_map(|m| source_of(m.id).map(|s| (m.id, s)))
        .collect();
    let replicas: Vec<&Shard> = db
        .shards
        .iter()
        .filter(|s| s.role == Role::Replica)
        .collect();

    let mut keys = 0;
    if !rec.only_configuration {
        stage("checking key counts");
        for (shard, source) in &sources {
            keys += check_keys(&addr(cluster, db, *shard)?, *shard, source).await?;
        }
        stage("switching to the configured persistence");
        for shard in db.masters() {
            let a = addr(cluster, db, shard.id)?;
            let from_aof = source_of(shard.id).is_some_and(|s| s.kind.is_aof());
            set_persistence(&a, db.config.persistence, rec.load_timeout).await?;
            if from_aof && db.config.persistence == Persistence::Snapshot {
                // With the AOF off, only a snapshot holds the data across a restart.
                snapshot(&a, rec.load_timeout).await?;
            }
        }
    }

    stage("starting replicas");
    for shard in &replicas {
        let opts = StartOptions {
            conf: ConfOptions::default(),
            timeout: rec.load_timeout,
        };
        pids.push((
            shard.id,
            start_shard(&rec.server, cluster, db, shard, &opts).await?,
        ));
    }
    if db.config.shards > 1 {
        stage("forming the cluster");
        form_cluster(
            &members(cluster, db)?,
            rec.setup_timeout.max(rec.load_timeout),
        )
        .await?;
    } else {
        for shard in &replicas {
            wait_in_sync(&addr(cluster, db, shard.id)?, rec.load_timeout).await?;
        }
    }

    let mut sync_source = None;
    let mut synced = false;
    if let (Some(text), true) = (&db.config.sync_source, db.config.shards == 1) {
        stage("attaching to the sync source");
        let (host, port) = parse_host_port(text)
            .ok_or_else(|| RecoverError::Internal(format!("bad sync_source `{text}`")))?;
        // A source that does not answer (down, or itself still waiting for recovery) is
        // followed anyway; waiting for it could take forever.
        let answers = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        .is_ok_and(|c| c.is_ok());
        for master in db.masters() {
            let a = addr(cluster, db, master.id)?;
            let mut con = connect(&a, rec.setup_timeout).await?;
            let redis_err = |e: redis::RedisError| ServerError::Redis {
                addr: a.to_string(),
                reason: e.to_string(),
            };
            if answers && rec.only_configuration {
                // The source's data is the database's data: wait for the full sync.
                replicate(&a, &host, port, rec.load_timeout).await?;
                synced = true;
            } else {
                redis::cmd("REPLICAOF")
                    .arg(&host)
                    .arg(port)
                    .query_async::<()>(&mut con)
                    .await
                    .map_err(redis_err)?;
            }
            // Kept in redis.conf, so a restarted shard follows the source again.
            redis::cmd("CONFIG")
                .arg("REWRITE")
                .query_async::<()>(&mut con)
                .await
                .map_err(redis_err)?;
        }
        sync_source = Some(SyncSource {
            endpoint: text.clone(),
            answers,
            synced,
        });
    }

    let empty = plan.map(|p| p.empty_masters()).unwrap_or_default();
    Ok(Recovered {
        id: db.id,
        pids,
        keys,
        sources,
        empty,
        only_configuration: rec.only_configuration,
        sync_source,
    })
}

fn shard_dir(cluster: &Cluster, db: &Database, shard: &Shard) -> PathBuf {
    match cluster.nodes.get(&shard.node) {
        Some(node) => node.shard_dir(db.id, shard.id),
        None => PathBuf::from(format!("<node:{} missing>", shard.node)),
    }
}

fn addr(cluster: &Cluster, db: &Database, shard: Id) -> Result<ShardAddr, RecoverError> {
    crate::db::shard_addr(cluster, db, shard)
        .ok_or_else(|| RecoverError::Internal(format!("redis:{shard} has no node")))
}

fn members(cluster: &Cluster, db: &Database) -> Result<Vec<ClusterMember>, RecoverError> {
    let masters: Vec<&Shard> = db.masters().collect();
    let mut members = Vec::new();
    for m in &masters {
        let slots = m
            .slots
            .ok_or_else(|| RecoverError::Internal(format!("redis:{} has no slots", m.id)))?;
        members.push(ClusterMember {
            addr: addr(cluster, db, m.id)?,
            role: MemberRole::Master { slots },
        });
    }
    for r in db.shards.iter().filter(|s| s.role == Role::Replica) {
        let of = masters
            .iter()
            .position(|m| Some(m.id) == r.master)
            .ok_or_else(|| RecoverError::Internal(format!("redis:{} follows no master", r.id)))?;
        members.push(ClusterMember {
            addr: addr(cluster, db, r.id)?,
            role: MemberRole::Replica { of },
        });
    }
    Ok(members)
}

/// Readies a shard directory for recovery's files: it must not lie in a recovery path,
/// and any data in it must be recovery's own from an earlier, interrupted run (then the
/// server it may have left running is stopped and the data removed).
async fn prepare_dir(cluster: &Cluster, dir: &Path) -> Result<(), RecoverError> {
    for node in cluster.nodes.values() {
        if let Some(recovery) = &node.recovery_path {
            ensure_outside(dir, recovery)?;
        }
    }
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RecoverError::Io { path, source }
    };
    let has_data = DATA_FILES
        .iter()
        .any(|f| fs::symlink_metadata(dir.join(f)).is_ok());
    if has_data && !dir.join(MARKER_FILE).exists() {
        return Err(RecoverError::ShardDirTaken(dir.to_path_buf()));
    }
    kill_leftover(dir).await;
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    fs::write(
        dir.join(MARKER_FILE),
        format!("pid {}\n", std::process::id()),
    )
    .map_err(io_err(dir))?;
    for name in DATA_FILES {
        let path = dir.join(name);
        let removed = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
            Ok(_) => fs::remove_file(&path),
            Err(_) => Ok(()),
        };
        removed.map_err(io_err(&path))?;
    }
    Ok(())
}

/// Kills a server an earlier, interrupted attempt left running in `dir`. Its data is
/// about to be replaced from the recovery path, so there is no point in the orderly
/// shutdown that would first save it.
async fn kill_leftover(dir: &Path) {
    if let Some(pid) = shard_pid(dir) {
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while is_running(pid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Removes the recovery markers of a database once it is recorded active.
pub fn clear_markers(cluster: &Cluster, db: &Database) {
    for shard in &db.shards {
        let _ = fs::remove_file(shard_dir(cluster, db, shard).join(MARKER_FILE));
    }
}

/// Compares what a master loaded with what the reader counted in its source. Keys with a
/// TTL may have expired in between, so fewer is fine by up to that many; more never is.
async fn check_keys(a: &ShardAddr, shard: Id, source: &Source) -> Result<u64, RecoverError> {
    let keyspace = info(a, "keyspace", Duration::from_secs(10)).await?;
    let loaded_in = |logical: u32| -> u64 {
        keyspace
            .get(&format!("db{logical}"))
            .and_then(|v| v.split(',').find_map(|kv| kv.strip_prefix("keys=")))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let total = keyspace.keys();
    if !source.keys_exact {
        return Ok(total);
    }
    let mut logical: Vec<u32> = source.keys_per_db.keys().copied().collect();
    logical.extend(
        keyspace
            .0
            .keys()
            .filter_map(|k| k.strip_prefix("db")?.parse::<u32>().ok()),
    );
    logical.sort_unstable();
    logical.dedup();
    for n in logical {
        let expected = source.keys_per_db.get(&n).copied().unwrap_or(0);
        let loaded = loaded_in(n);
        if loaded > expected || loaded + source.expires < expected {
            return Err(RecoverError::KeyCount {
                shard,
                logical: n,
                loaded,
                expected,
                expires: source.expires,
            });
        }
    }
    Ok(total)
}

/// BGSAVE and wait for it to succeed.
async fn snapshot(a: &ShardAddr, timeout: Duration) -> Result<(), RecoverError> {
    let before = info(a, "persistence", Duration::from_secs(10))
        .await?
        .get_u64("rdb_last_save_time");
    let mut con = connect(a, Duration::from_secs(10)).await?;
    let redis_err = |e: redis::RedisError| ServerError::Redis {
        addr: a.to_string(),
        reason: e.to_string(),
    };
    redis::cmd("BGSAVE")
        .query_async::<()>(&mut con)
        .await
        .map_err(redis_err)?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let i = info(a, "persistence", Duration::from_secs(10)).await?;
        if i.get("rdb_bgsave_in_progress") == Some("0") {
            if i.get("rdb_last_bgsave_status") != Some("ok") {
                return Err(ServerError::Redis {
                    addr: a.to_string(),
                    reason: "BGSAVE failed".into(),
                }
                .into());
            }
            if i.get_u64("rdb_last_save_time") != before
                || i.get_u64("rdb_changes_since_last_save") == Some(0)
            {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ServerError::Timeout {
                what: format!("`{a}` to save a snapshot"),
                after: timeout,
            }
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
