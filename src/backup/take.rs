//! Taking one run: a consistent cut of every master (one short write pause in which every
//! snapshot's fork is confirmed), each snapshot streamed over the replication protocol
//! into the repository and checked by the reader, then the manifest, last.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ccs::{Cluster, Database, Id, Role, Shard};
use crate::persist::{CheckOptions, Verdict};
use crate::progress::Progress;
use crate::server::{connect, info, serving, ShardAddr};

use super::codec::{stored_name, Codec, Recipients};
use super::manifest::{Manifest, ShardEntry, MANIFEST_FORMAT};
use super::repo::Repository;
use super::snapshot::{SnapshotConn, SnapshotStart};
use super::{now_ms, BackupError};

/// Forks a node runs at once for backups of different databases.
pub const FORKS_PER_NODE: usize = 2;
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for a save or AOF rewrite already running before the pause.
const CHILD_WAIT: Duration = Duration::from_secs(30);

/// What one run is asked to do.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub run: String,
    pub task: Option<String>,
    /// The restore task this run is the safety backup of.
    pub safety_for: Option<String>,
    pub repo: Repository,
    pub max_pause: Duration,
    pub codec: Codec,
}

/// A master and the shard its snapshot is taken from (a replica when it has one).
struct Source {
    /// The configured master: the run's shard (its id names the file, its slots the
    /// range).
    master: Shard,
    /// The shard of the master's group serving as its master now (`master` itself, or a
    /// replica that took over after a failover): the one whose writes are paused.
    acting: Shard,
    from: Shard,
    addr: ShardAddr,
    master_addr: ShardAddr,
    engine: String,
    version: String,
}

fn addr_of(cluster: &Cluster, db: &Database, s: &Shard) -> Result<ShardAddr, BackupError> {
    let node = cluster
        .nodes
        .get(&s.node)
        .ok_or_else(|| BackupError::Failed(format!("node:{} is not in the cluster", s.node)))?;
    Ok(cluster.shard_addr(db, &node.addr, s.port))
}

/// Takes a run of `db` into `spec.repo`: on success the run's directory holds every
/// shard's file and the manifest; on failure nothing of it is left.
pub async fn take(
    cluster: &Cluster,
    db: &Database,
    spec: &RunSpec,
    progress: &dyn Progress,
) -> Result<Manifest, BackupError> {
    let started = now_ms();
    // A failover under way (a master down, its replica not yet promoted, shards saying
    // the cluster is down) is waited for, within bounds; a master down that no replica
    // can take over from is refused at once, naming what is not served.
    crate::db::settled_masters(cluster, db, crate::db::SETTLE_TIMEOUT)
        .await
        .map_err(BackupError::Failed)?;
    let mut sources = Vec::new();
    for m in db.masters() {
        sources.push(source_of(cluster, db, m).await?);
    }
    if sources.is_empty() {
        return Err(BackupError::Failed(format!(
            "db:{} `{}` has no master shard",
            db.id, db.config.name
        )));
    }
    let _permits = fork_permits(&sources).await;
    let mut restore_conf = Vec::new();
    let prepared = prepare(&mut sources, &mut restore_conf).await;
    let result = match prepared {
        Ok(()) => cut_and_stream(cluster, db, spec, &sources, started, progress).await,
        Err(e) => Err(e),
    };
    for (addr, key, value) in restore_conf {
        let _ = config_set(&addr, key, &value).await;
    }
    result
}

/// Where master `m`'s snapshot comes from, asked of the live servers of its group
/// ([`crate::server::serving`]): the shard serving as master now (a replica promoted by
/// a failover holds writes the configured master lacks, and only its pause stops
/// writes), and a replica of it whose link is up, else that shard itself. When no shard
/// of the group answers, the configured roles stay, and the run fails naming the shard
/// that does not answer; when several answer as a master and the cluster does not tell
/// which serves, the run fails naming them (a wrong guess would pause one and snapshot
/// stale data).
async fn source_of(cluster: &Cluster, db: &Database, m: &Shard) -> Result<Source, BackupError> {
    let group: Vec<&Shard> = std::iter::once(m)
        .chain(
            db.shards
                .iter()
                .filter(|s| s.role == Role::Replica && s.master == Some(m.id)),
        )
        .collect();
    let addrs = group
        .iter()
        .map(|s| addr_of(cluster, db, s))
        .collect::<Result<Vec<_>, _>>()?;
    let live = serving(&addrs, db.config.shards > 1, ROLE_TIMEOUT)
        .await
        .map_err(|u| {
            let names: Vec<String> = group
                .iter()
                .zip(&addrs)
                .map(|(s, a)| format!("redis:{} ({a})", s.id))
                .collect();
            BackupError::Failed(u.describe(&db.config.name, &names))
        })?;
    let from = match (live.replica, live.answered) {
        (Some(r), _) => r,
        // Nothing answers: the configured replica, as before, so the error names it.
        (None, false) if group.len() > 1 => 1,
        (None, _) => live.master,
    };
    Ok(Source {
        master: m.clone(),
        acting: group[live.master].clone(),
        from: group[from].clone(),
        addr: addrs[from].clone(),
        master_addr: addrs[live.master].clone(),
        engine: String::new(),
        version: String::new(),
    })
}

/// Bounds the INFO that asks each shard of a group its live role.
const ROLE_TIMEOUT: Duration = Duration::from_secs(2);

/// Versions, no save running, and diskless transfers that start at once.
async fn prepare(
    sources: &mut [Source],
    restore_conf: &mut Vec<(ShardAddr, &'static str, String)>,
) -> Result<(), BackupError> {
    for s in sources.iter_mut() {
        let down = |e: crate::server::ServerError| {
            BackupError::Failed(format!("redis:{} does not answer: {e}", s.from.id))
        };
        let i = info(&s.addr, "server", SETUP_TIMEOUT).await.map_err(down)?;
        let (engine, version) = i.engine_version().unwrap_or(("redis", "unknown"));
        s.engine = engine.into();
        s.version = version.to_string();
        let deadline = Instant::now() + CHILD_WAIT;
        loop {
            let p = info(&s.addr, "persistence", SETUP_TIMEOUT)
                .await
                .map_err(down)?;
            let busy = p.get("rdb_bgsave_in_progress") == Some("1")
                || p.get("aof_rewrite_in_progress") == Some("1");
            if !busy {
                break;
            }
            if Instant::now() >= deadline {
                return Err(BackupError::Failed(format!(
                    "redis:{} kept saving (a save or AOF rewrite) for {}s: no snapshot can start",
                    s.from.id,
                    CHILD_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for (key, want) in [
            ("repl-diskless-sync", "yes"),
            ("repl-diskless-sync-delay", "0"),
        ] {
            let have = config_get(&s.addr, key).await.map_err(down)?;
            if have != want {
                config_set(&s.addr, key, want).await.map_err(down)?;
                restore_conf.push((s.addr.clone(), key, have));
            }
        }
    }
    Ok(())
}

async fn config_get(addr: &ShardAddr, key: &str) -> Result<String, crate::server::ServerError> {
    let mut con = connect(addr, SETUP_TIMEOUT).await?;
    let v: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(key)
        .query_async(&mut con)
        .await
        .map_err(|e| addr.err(e))?;
    Ok(v.get(1).cloned().unwrap_or_default())
}

async fn config_set(
    addr: &ShardAddr,
    key: &str,
    value: &str,
) -> Result<(), crate::server::ServerError> {
    let mut con = connect(addr, SETUP_TIMEOUT).await?;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg(key)
        .arg(value)
        .query_async::<()>(&mut con)
        .await
        .map_err(|e| addr.err(e))
}

/// The cut (one short write pause), every snapshot streamed into the run's directory,
/// the forks confirmed to be the cut's, and the manifest written last.
async fn cut_and_stream(
    cluster: &Cluster,
    db: &Database,
    spec: &RunSpec,
    sources: &[Source],
    started: i64,
    progress: &dyn Progress,
) -> Result<Manifest, BackupError> {
    let recipients = match &spec.codec.encrypt {
        Some(path) => Some(Recipients::load(path).map_err(|e| BackupError::Failed(e.to_string()))?),
        None => None,
    };
    spec.repo.prepare().map_err(BackupError::Failed)?;
    let run_dir = spec
        .repo
        .begin(&spec.run, cluster.cluster_id)
        .map_err(BackupError::Failed)?;
    let mut conns = Connections::open(sources).await?;
    let bound = spec.max_pause;
    let pause = conns.cut(sources, bound).await?;
    let streaming = Streaming {
        db,
        run_dir: &run_dir,
        compress: spec.codec.compress,
        recipients: recipients.as_ref(),
        progress,
    };
    let entries = streaming.stream(conns.snapshots, sources).await?;
    let mut config = db.config.clone();
    config.password = None;
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        run: spec.run.clone(),
        task: spec.task.clone(),
        safety_for: spec.safety_for.clone(),
        cluster_id: cluster.cluster_id,
        cluster_name: cluster.name.clone(),
        db_id: db.id,
        db: config,
        password_set: db.config.password.is_some(),
        started,
        finished: now_ms(),
        pause_ms: (pause.as_secs_f64() * 1000.0 * 100.0).round() / 100.0,
        max_pause_ms: bound.as_millis() as u64,
        shards: entries,
        checksum: String::new(),
    };
    run_dir.seal(&manifest).map_err(BackupError::Failed)?;
    Ok(manifest)
}

/// The connections a run needs, opened before the pause: each source's snapshot
/// connection (AUTH and REPLCONF done), each master's, and each source's for commands.
struct Connections {
    snapshots: Vec<SnapshotConn>,
    masters: Vec<redis::aio::MultiplexedConnection>,
    sources: Vec<redis::aio::MultiplexedConnection>,
}

impl Connections {
    async fn open(sources: &[Source]) -> Result<Connections, BackupError> {
        let mut snapshots = Vec::new();
        for s in sources {
            let a = s.addr.clone();
            let conn = tokio::task::spawn_blocking(move || SnapshotConn::open(&a, SETUP_TIMEOUT))
                .await
                .map_err(|e| BackupError::Failed(e.to_string()))?
                .map_err(|e| BackupError::Failed(format!("redis:{}: {e}", s.from.id)))?;
            snapshots.push(conn);
        }
        let down =
            |id: Id| move |e| BackupError::Failed(format!("redis:{id} does not answer: {e}"));
        let mut masters = Vec::new();
        for s in sources {
            let con = connect(&s.master_addr, SETUP_TIMEOUT).await;
            masters.push(con.map_err(down(s.acting.id))?);
        }
        let mut cons = Vec::new();
        for s in sources {
            let con = connect(&s.addr, SETUP_TIMEOUT).await;
            cons.push(con.map_err(down(s.from.id))?);
        }
        Ok(Connections {
            snapshots,
            masters,
            sources: cons,
        })
    }

    /// The cut: every master's writes paused (one after another: each a round trip on
    /// loopback or a LAN), the replicas caught up, every snapshot started, the writes
    /// let go. How long the pause took.
    async fn cut(&mut self, sources: &[Source], bound: Duration) -> Result<Duration, BackupError> {
        let t0 = Instant::now();
        let deadline = t0 + bound;
        let pause_ms = bound.as_millis().max(1).to_string();
        let mut paused = Vec::new();
        for con in self.masters.iter_mut() {
            paused.push(
                redis::cmd("CLIENT")
                    .arg("PAUSE")
                    .arg(&pause_ms)
                    .arg("WRITE")
                    .query_async::<()>(con)
                    .await,
            );
        }
        let mut cut = Ok(());
        if let Some((i, e)) = paused
            .iter()
            .enumerate()
            .find_map(|(i, r)| r.as_ref().err().map(|e| (i, e)))
        {
            cut = Err(format!(
                "redis:{}: CLIENT PAUSE failed: {e}",
                sources[i].acting.id
            ));
        }
        if cut.is_ok() {
            cut = replicas_caught_up(sources, &mut self.masters, deadline).await;
        }
        if cut.is_ok() {
            cut = start_all(&mut self.snapshots, sources, &mut self.sources, deadline).await;
        }
        for con in self.masters.iter_mut() {
            let _ = redis::cmd("CLIENT")
                .arg("UNPAUSE")
                .query_async::<()>(con)
                .await;
        }
        let pause = t0.elapsed();
        cut.map_err(|e| {
            BackupError::Failed(format!(
                "no consistent cut within the {} ms write pause: {e}",
                bound.as_millis()
            ))
        })?;
        Ok(pause)
    }
}

/// Where and how the snapshots are written.
struct Streaming<'a> {
    db: &'a Database,
    run_dir: &'a super::RunDir,
    compress: super::Compression,
    recipients: Option<&'a Recipients>,
    progress: &'a dyn Progress,
}

/// What one shard's snapshot thread brings back: its master, the shard it was taken
/// from, when it started, and the snapshot streamed and stored (or why not).
type Streamed = (
    Id,
    Id,
    i64,
    Result<(super::snapshot::Streamed, super::StoredDigest), String>,
);

impl Streaming<'_> {
    /// Every snapshot streams at once, each on its own thread, checked by the reader as
    /// it passes: the manifest's entry of each.
    async fn stream(
        &self,
        conns: Vec<SnapshotConn>,
        sources: &[Source],
    ) -> Result<Vec<ShardEntry>, BackupError> {
        let mut handles = Vec::new();
        for (conn, s) in conns.into_iter().zip(sources) {
            handles.push(self.stream_one(conn, s)?);
        }
        let (compress, encrypted) = (self.compress, self.recipients.is_some());
        let mut entries = Vec::new();
        let mut errors = Vec::new();
        for (h, s) in handles.into_iter().zip(sources) {
            match h.await {
                Ok((master, from, shard_started, Ok((st, stored)))) => entries.push(ShardEntry {
                    shard: master,
                    taken_from: from,
                    slots: s.master.slots,
                    file: stored_name(&format!("shard-{master}.rdb"), compress, encrypted),
                    bytes: st.bytes,
                    sha256: st.sha256,
                    compression: compress,
                    encrypted,
                    stored_bytes: (compress.is_zstd() || encrypted).then_some(stored.bytes),
                    stored_sha256: (compress.is_zstd() || encrypted).then_some(stored.sha256),
                    rdb_version: st.report.rdb_version.unwrap_or(0),
                    engine: s.engine.clone(),
                    server_version: s.version.clone(),
                    keys_per_db: st.report.keys_per_db.clone(),
                    keys: st.report.keys,
                    expires: st.report.expires,
                    started: shard_started,
                    finished: now_ms(),
                }),
                Ok((_, _, _, Err(e))) => errors.push(e),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if !errors.is_empty() {
            return Err(BackupError::Failed(errors.join("; ")));
        }
        Ok(entries)
    }

    /// One shard's snapshot, streamed on a thread of its own.
    fn stream_one(
        &self,
        conn: SnapshotConn,
        s: &Source,
    ) -> Result<tokio::task::JoinHandle<Streamed>, BackupError> {
        let (db, compress, encrypted) = (self.db, self.compress, self.recipients.is_some());
        let name = format!("shard-{}.rdb", s.master.id);
        let mut part = self
            .run_dir
            .create(
                &stored_name(&name, compress, encrypted),
                compress,
                self.recipients,
            )
            .map_err(BackupError::Failed)?;
        let opts = CheckOptions {
            slots: s.master.slots.filter(|_| db.config.shards > 1),
        };
        let task = self.progress.task(
            &format!("backup {} redis:{}", db.config.name, s.master.id),
            0,
        );
        let (master, from) = (s.master.id, s.from.id);
        let shown = Path::new(&name).to_path_buf();
        Ok(tokio::task::spawn_blocking(move || {
            let shard_started = now_ms();
            let mut last = Instant::now();
            let mut on_bytes = |n: u64| {
                if last.elapsed() > Duration::from_millis(100) {
                    task.set_position(n);
                    last = Instant::now();
                }
            };
            let res = conn
                .stream(&shown, &mut part, &opts, &mut on_bytes)
                .map_err(|e| format!("the snapshot of redis:{from} failed: {e}"));
            let res = res.and_then(|streamed| {
                let r = &streamed.report;
                if r.verdict != Verdict::Ok {
                    let why = r
                        .fault
                        .as_ref()
                        .map(|f| format!(" at offset {}: expected {}", f.offset, f.expected))
                        .unwrap_or_default();
                    return Err(format!(
                        "the snapshot of redis:{from} is {}{why}",
                        r.verdict
                    ));
                }
                if r.keys_outside_slots > 0 {
                    return Err(format!(
                        "the snapshot of redis:{from} holds {} key(s) outside its slots (e.g. {})",
                        r.keys_outside_slots,
                        r.outside_examples.join(", ")
                    ));
                }
                let stored = part.commit()?;
                Ok((streamed, stored))
            });
            task.finish(if res.is_ok() { "done" } else { "failed" });
            (master, from, shard_started, res)
        }))
    }
}

/// Waits (until `deadline`) for every replica a snapshot is taken from to have every
/// write its master took before the pause.
async fn replicas_caught_up(
    sources: &[Source],
    masters: &mut [redis::aio::MultiplexedConnection],
    deadline: Instant,
) -> Result<(), String> {
    for (s, con) in sources.iter().zip(masters.iter_mut()) {
        if s.from.id == s.acting.id {
            continue;
        }
        let text: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(con)
            .await
            .map_err(|e| format!("redis:{}: {e}", s.acting.id))?;
        let target = crate::server::Info::parse(&text)
            .get_u64("master_repl_offset")
            .unwrap_or(0);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "replica redis:{} did not catch up with redis:{} in time",
                    s.from.id, s.acting.id
                ));
            }
            let i = info(&s.addr, "replication", left)
                .await
                .map_err(|e| format!("redis:{}: {e}", s.from.id))?;
            let have = i.get_u64("slave_repl_offset").unwrap_or(0);
            if have >= target && i.get("master_link_status") == Some("up") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    Ok(())
}

/// Asks every source for its snapshot (`PSYNC ? -1`) and waits (until `deadline`) until
/// each has started it: the `+FULLRESYNC` on the snapshot's own connection, at a
/// replication offset no earlier than the source's inside the pause. From then on each
/// snapshot is of the data as it is inside the pause. (The server's fork count is no such
/// sign: it moves for any save, AOF rewrite or replica sync, and a server busy with one
/// starts the snapshot only when that ends, perhaps after the pause.)
async fn start_all(
    snapshots: &mut Vec<SnapshotConn>,
    sources: &[Source],
    cons: &mut [redis::aio::MultiplexedConnection],
    deadline: Instant,
) -> Result<(), String> {
    let mut paused_at = Vec::new();
    for (s, con) in sources.iter().zip(cons.iter_mut()) {
        let text: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(con)
            .await
            .map_err(|e| format!("redis:{}: {e}", s.from.id))?;
        paused_at.push(
            crate::server::Info::parse(&text)
                .get_u64("master_repl_offset")
                .unwrap_or(0),
        );
    }
    for (s, conn) in sources.iter().zip(snapshots.iter_mut()) {
        conn.send_psync()
            .map_err(|e| format!("redis:{}: {e}", s.from.id))?;
    }
    let mut conns = std::mem::take(snapshots);
    let (conns, started) = tokio::task::spawn_blocking(move || {
        let started: Vec<_> = conns.iter_mut().map(|c| c.wait_start(deadline)).collect();
        (conns, started)
    })
    .await
    .map_err(|e| e.to_string())?;
    *snapshots = conns;
    let mut late = Vec::new();
    for ((s, started), at) in sources.iter().zip(started).zip(&paused_at) {
        match started.map_err(|e| format!("redis:{}: {e}", s.from.id))? {
            SnapshotStart::Started { offset } if offset >= *at => {}
            SnapshotStart::Started { offset } => {
                return Err(format!(
                    "redis:{} gave a save begun before the pause (at replication offset \
                     {offset}, the pause at {at})",
                    s.from.id
                ))
            }
            SnapshotStart::Waiting => late.push(s),
        }
    }
    if late.is_empty() {
        return Ok(());
    }
    let mut named = Vec::new();
    for s in late {
        let busy = match info(&s.addr, "persistence", SETUP_TIMEOUT).await {
            Ok(p) if p.get("aof_rewrite_in_progress") == Some("1") => {
                " (an AOF rewrite runs there: its snapshot starts when that ends)"
            }
            Ok(p) if p.get("rdb_bgsave_in_progress") == Some("1") => {
                " (a save runs there: its snapshot starts when that ends)"
            }
            _ => "",
        };
        named.push(format!("redis:{}{busy}", s.from.id));
    }
    Err(format!(
        "{} did not start its snapshot in time; run again, or give a longer `max_pause`",
        named.join(", ")
    ))
}

/// Permits for the forks this run needs on each node: at most [`FORKS_PER_NODE`] backup
/// forks run on a node, except that one run may need more at once for its cut (then it
/// takes the node's every permit). Taken in node order, so runs never deadlock.
async fn fork_permits(sources: &[Source]) -> Vec<OwnedSemaphorePermit> {
    static NODES: OnceLock<Mutex<HashMap<Id, Arc<Semaphore>>>> = OnceLock::new();
    let mut need: BTreeMap<Id, u32> = BTreeMap::new();
    for s in sources {
        *need.entry(s.from.node).or_default() += 1;
    }
    let mut permits = Vec::new();
    for (node, n) in need {
        let sem = {
            let mut map = NODES
                .get_or_init(Default::default)
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            map.entry(node)
                .or_insert_with(|| Arc::new(Semaphore::new(FORKS_PER_NODE)))
                .clone()
        };
        let n = n.min(FORKS_PER_NODE as u32);
        if let Ok(p) = sem.acquire_many_owned(n).await {
            permits.push(p);
        }
    }
    permits
}
