//! Bringing one database back: copy the planned files into fresh shard directories, start
//! the shards in the loading mode their source needs, check what loaded against what the
//! reader counted, switch to the configured persistence, restore replicas and the slot
//! map, and re-attach the sync source. The caller marks the database active.
//!
//! Everything done here can be done again: a shard directory is only ever (re)filled
//! from the recovery path, so a run cut short is finished by running it again.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use super::beside::beside;
use super::copy::on_host::{copy_source, copy_to_temp, install_copy};
use super::copy::{adopt_copies, stand_in_aof, CopyError, StandIn};
use super::finish::finish;
use super::plan::{
    likely_sources, plan_db_on, DbPlan, Disk, Inspect, Outcome, Source, SourceCheck, SourceKind,
};
use super::reader::reader_check;
pub use super::shard_dirs::{clear_markers, MARKER_FILE};
use super::shard_dirs::{prepare_dir, record_started, shard_dir, stop_own_leftover};
use crate::ccs::{Cluster, Database, Id, SlotRange};
use crate::db::start_shard;
use crate::host::Host;
use crate::server::{ConfOptions, ServerError, Servers, StartOptions};

/// Validates one candidate source (the real reader, or a stand-in in tests).
pub type CheckFn = fn(&Path, Option<SlotRange>) -> SourceCheck;

/// What every database's recovery in one command shares.
#[derive(Clone, Debug)]
pub struct Recovery {
    pub server: Servers,
    pub check: CheckFn,
    pub only_configuration: bool,
    /// Bounds a shard's load of its data (and a full sync from a sync source).
    pub load_timeout: Duration,
    /// Bounds cluster formation, replica sync and persistence switches.
    pub setup_timeout: Duration,
    /// What is proved after the load: key counts always, content by default.
    pub proof: Proof,
    /// RDB files newer than the target server loads are replayed (their keys written as
    /// commands into masters started empty) instead of refused.
    pub replay: bool,
    /// A database with a master whose files were not found comes back with that master
    /// EMPTY (`allow_empty`) instead of staying pending recovery.
    pub allow_empty: bool,
    /// A source older than data Lazarus knows the database had is loaded anyway
    /// (`allow_stale`).
    pub allow_stale: bool,
    /// Plans for `recover db <db> from_files`: see [`super::plan::Inspect::refill`].
    pub refill: bool,
    /// Masters whose files were brought as hard links to the originals
    /// (`copy::bring_file`), which their line says: until each shard's next save, its
    /// files are the recovery path's.
    linked: Arc<std::sync::Mutex<std::collections::BTreeSet<Id>>>,
}

/// How far a recovery proves the data that came back is the data the files held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Proof {
    /// Key counts and the content digest, key by key.
    #[default]
    Content,
    /// Key counts only (`verify counts`, for very large databases).
    Counts,
}

/// What the content proof found for a recovered database.
#[derive(Serialize, Clone, Debug)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ContentProof {
    Verified {
        keys: u64,
        digest: String,
        /// Keys that expired between the files and the check, counted apart.
        expired: u64,
        line: String,
    },
    NotVerified {
        reason: String,
        line: String,
    },
}

impl ContentProof {
    /// `content verified: N keys, digest <hex>` or why it was not.
    pub fn line(&self) -> &str {
        match self {
            ContentProof::Verified { line, .. } | ContentProof::NotVerified { line, .. } => line,
        }
    }
}

impl Recovery {
    pub fn new(server: Servers, only_configuration: bool) -> Recovery {
        Recovery {
            server,
            check: reader_check,
            only_configuration,
            load_timeout: Duration::from_secs(3600),
            setup_timeout: Duration::from_secs(120),
            proof: Proof::Content,
            replay: false,
            allow_empty: false,
            allow_stale: false,
            refill: false,
            linked: Arc::default(),
        }
    }

    /// Notes how master `id`'s files came over (the last bringing decides).
    fn brought(&self, id: Id, copied: &crate::recovery::copy::Copied) {
        if let Ok(mut linked) = self.linked.lock() {
            if copied.linked > 0 {
                linked.insert(id);
            } else {
                linked.remove(&id);
            }
        }
    }

    /// Whether any of `ids` had its files brought as links.
    pub(super) fn any_linked(&self, ids: impl IntoIterator<Item = Id>) -> bool {
        self.linked
            .lock()
            .is_ok_and(|l| ids.into_iter().any(|id| l.contains(&id)))
    }

    /// Plans one database against its files (reads them all: call off the async threads).
    pub fn plan(&self, cluster: &Cluster, db: &Database) -> DbPlan {
        self.plan_on(&self.disk(cluster), cluster, db)
    }

    /// [`Recovery::plan`] reading through `disk`, shared by the databases of one command
    /// (what it read ahead serves them all).
    pub fn plan_on(&self, disk: &Disk, cluster: &Cluster, db: &Database) -> DbPlan {
        // The files must load on the oldest engine among the database's nodes.
        let oldest = self.server.oldest_of(db.shards.iter().map(|s| s.node));
        let (max_rdb, label) = match oldest {
            Some(s) => (s.max_rdb(), s.label()),
            None => (None, "unknown".to_string()),
        };
        let mut plan = plan_db_on(&Inspect {
            disk,
            cluster,
            db,
            max_rdb,
            server: &label,
            check: &self.check,
            replay: self.replay,
            allow_stale: self.allow_stale,
            refill: self.refill,
        });
        let engines: std::collections::BTreeSet<&str> = self
            .server
            .of_nodes(db.shards.iter().map(|s| s.node))
            .iter()
            .map(|s| s.engine)
            .collect();
        if !engines.is_empty() {
            plan.kind = engines.into_iter().collect::<Vec<_>>().join(",");
        }
        plan
    }

    /// Where planning reads each node's files (call within the runtime).
    pub fn disk(&self, cluster: &Cluster) -> Disk {
        Disk::new(self.server.hosts().clone(), cluster)
    }

    /// The host that serves `node`.
    pub fn host(&self, node: Id) -> Arc<dyn Host> {
        self.server.host(node)
    }
}

#[derive(Debug, Error)]
pub enum RecoverError {
    #[error("{}", .0.join("; "))]
    Blocked(Vec<String>),
    /// Masters none of whose files were found: the database stays pending recovery
    /// unless the operator asks for them EMPTY.
    #[error("{}: the database stays pending recovery; find the files (`node <id> recovery_path set <path>`, then `recover list`), or bring it back with {} EMPTY: `recover db {db} allow_empty`", lines.join("; "), if lines.len() == 1 { "that shard" } else { "those shards" })]
    NoFiles { db: String, lines: Vec<String> },
    #[error("shard directory `{}` already holds data files recovery did not write: move them away (or point the node's recovery path at them) and run again", .0.display())]
    ShardDirTaken(PathBuf),
    #[error("a server recovery did not start (pid {pid}) runs in shard directory `{}`: recovery never stops it; if it serves this database, it is live (see `status`), else stop it yourself and run again", dir.display())]
    ServerNotOurs { dir: PathBuf, pid: u32 },
    #[error("`{}`: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("node:{node}: {source}")]
    Tls {
        node: Id,
        source: crate::tls::TlsError,
    },
    #[error("redis:{shard} loaded {loaded} keys in db {logical}, expected {low} to {high}: the {kind} `{}` holds {expected} there, {expires} with a TTL, {expired} of them already expired when checked", path.display())]
    KeyCount {
        shard: Id,
        logical: u32,
        loaded: u64,
        expected: u64,
        expires: u64,
        expired: u64,
        low: u64,
        high: u64,
        kind: SourceKind,
        path: PathBuf,
    },
    #[error("redis:{shard}: replaying `{}` failed: {reason}", path.display())]
    Replay {
        shard: Id,
        path: PathBuf,
        reason: String,
    },
    /// The loaded data is not what the files hold: the verdict names the first keys.
    #[error("{0}")]
    ContentDiffers(String),
    #[error("redis:{shard}: the server refused every copy the reader accepts: {}", refused.join("; "))]
    AllRefused { shard: Id, refused: Vec<String> },
    #[error("{0}")]
    Internal(String),
}

impl crate::error::DomainError for RecoverError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            RecoverError::NoFiles { .. } => ErrorKind::NotFound,
            RecoverError::Blocked(_)
            | RecoverError::AllRefused { .. }
            | RecoverError::Replay { .. }
            | RecoverError::KeyCount { .. }
            | RecoverError::ContentDiffers(_) => ErrorKind::Damaged,
            RecoverError::ShardDirTaken(_) | RecoverError::ServerNotOurs { .. } => {
                ErrorKind::Conflict
            }
            RecoverError::Io { .. } => ErrorKind::Io,
            RecoverError::Copy(e) => e.kind(),
            RecoverError::Server(e) => e.kind(),
            RecoverError::Tls { source, .. } => source.kind(),
            RecoverError::Internal(_) => ErrorKind::Internal,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            RecoverError::ShardDirTaken(_) => vec![
                "move the files away (or point the node's recovery path at them) and run again"
                    .into(),
            ],
            RecoverError::NoFiles { db, .. } => vec![
                "find the files: `node <id> recovery_path set <path>`, then `recover list`".into(),
                format!("bring it back with those shards EMPTY: `recover db {db} allow_empty`"),
            ],
            RecoverError::Copy(e) => e.hints(),
            RecoverError::Server(e) => e.hints(),
            _ => Vec::new(),
        }
    }
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
    /// Masters whose loaded key count was not compared with the files, and why.
    pub unverified: Vec<String>,
    /// The sync source the database follows again.
    pub sync_source: Option<SyncSource>,
    /// The content proof, when one was asked for and there was data to prove.
    pub content: Option<ContentProof>,
    /// Masters that loaded another copy than the chosen one, which their server
    /// refused: which copy each used, and why the first was rejected.
    pub fallbacks: Vec<String>,
    /// Keys loaded with values damaged where the load does not look, by master
    /// (`redis:N: `key` in database D at offset O`): a client read of one stops the
    /// server, so the line says to UNLINK them first.
    pub damaged_values: Vec<String>,
    /// Some master's files are hard links to the originals in the recovery path, until
    /// its next save or AOF rewrite replaces them.
    pub linked: bool,
    /// Where the time went.
    pub phases: Phases,
}

/// Where a database's recovery spent its time, in milliseconds. Validation, the copy and
/// the masters' load run at once, each timed from the moment they all begin (a copy made
/// before its server starts, as an AOF on another host is, comes first and adds to the
/// load's wait); the checks, the proof and the rest of the bring-up follow one another.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Phases {
    pub validation_ms: u64,
    pub copy_ms: u64,
    pub load_ms: u64,
    /// Key counts against the reader's.
    pub checks_ms: u64,
    /// The content proof (0 with `verify counts`).
    pub proof_ms: u64,
    /// Persistence switched, replicas, slot map, sync source.
    pub bring_up_ms: u64,
}

/// Milliseconds since `from`.
pub(super) fn ms_since(from: std::time::Instant) -> u64 {
    from.elapsed().as_millis() as u64
}

/// The sync source a recovered database follows again.
pub use crate::db::SyncSource;

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
    let dirs: Vec<ShardPlace> = db
        .shards
        .iter()
        .map(|s| (rec.host(s.node), shard_dir(&cluster, &db, s)))
        .collect();
    let result = recover_in(&rec, &cluster, &db, &dirs, stage).await;
    if result.is_err() {
        // Leave no half-recovered shard running: a re-run starts from the files again.
        // Only servers this recovery started are stopped; any other is left alone.
        for (host, dir) in &dirs {
            let _ = stop_own_leftover(&**host, dir).await;
        }
    }
    result
}

/// A shard directory on its node's host.
type ShardPlace = (Arc<dyn Host>, PathBuf);

/// After an interrupted recovery of `db_id`: stops the servers this recovery started in
/// its shard directories (proved by the marker and pid), nothing else.
pub async fn stop_leftovers(hosts: &crate::host::Hosts, cluster: &Cluster, db_id: Id) {
    let Some(db) = cluster.databases.get(&db_id) else {
        return;
    };
    for shard in &db.shards {
        let host = hosts.of(shard.node);
        let _ = stop_own_leftover(&*host, &shard_dir(cluster, db, shard)).await;
    }
}

async fn recover_in(
    rec: &Arc<Recovery>,
    cluster: &Arc<Cluster>,
    db: &Database,
    dirs: &[ShardPlace],
    stage: &(dyn Fn(&str) + Send + Sync),
) -> Result<Recovered, RecoverError> {
    stage("preparing shard directories");
    let hosts = rec.server.hosts();
    for (host, dir) in dirs {
        prepare_dir(hosts, &**host, cluster, dir).await?;
    }
    if let (true, Some(record)) = (db.config.tls, &cluster.tls) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let nodes: std::collections::BTreeSet<Id> = db.shards.iter().map(|s| s.node).collect();
        for id in nodes {
            let Some(node) = cluster.nodes.get(&id) else {
                continue;
            };
            let installed = if hosts.is_remote(id) {
                crate::tls::install_from_recovery_path_on(
                    &*hosts.of(id),
                    &node.persistent_path,
                    node.recovery_path.as_deref(),
                    record,
                    now,
                )
                .await
            } else {
                crate::tls::install_from_recovery_path(
                    &node.persistent_path,
                    node.recovery_path.as_deref(),
                    record,
                    now,
                )
            };
            installed.map_err(|source| RecoverError::Tls { node: id, source })?;
        }
    }
    if rec.only_configuration {
        stage("starting shards");
        let pids = start_masters(rec, cluster, db, &BTreeMap::new()).await?;
        return finish(rec, cluster, db, None, pids, stage).await;
    }
    let guess = if rec.replay {
        // A file to replay must not be started on: validation decides first.
        stage("validating");
        let (r, c, d) = (rec.clone(), cluster.clone(), db.clone());
        let plan = tokio::task::spawn_blocking(move || r.plan(&c, &d))
            .await
            .map_err(|e| RecoverError::Internal(e.to_string()))?;
        chosen(&plan)
    } else {
        let (r, c, d) = (rec.clone(), cluster.clone(), db.clone());
        tokio::task::spawn_blocking(move || likely_sources(&r.disk(&c), &c, &d))
            .await
            .map_err(|e| RecoverError::Internal(e.to_string()))?
    };
    // The files' side of the content proof is read while the servers load them.
    let early = early_digest(rec, db, &guess);
    let (plan, results, phases, copies) =
        match load_masters(rec, cluster, db, &guess, stage).await? {
            Loaded::Done(plan, results, phases, copies) => (plan, results, phases, copies),
            Loaded::Chose(plan) => {
                // Validation chose other files than the quick guess: start over with its
                // choice (rare: a corrupted freshest file, or an RDB copied without its
                // times).
                for (host, dir) in dirs {
                    prepare_dir(hosts, &**host, cluster, dir).await?;
                }
                match load_masters(rec, cluster, db, &chosen(&plan), stage).await? {
                    Loaded::Done(plan, results, phases, copies) => (plan, results, phases, copies),
                    Loaded::Chose(_) => {
                        return Err(RecoverError::Internal(
                            "the files changed while recovery read them: run it again".into(),
                        ))
                    }
                }
            }
        };
    let (plan, pids, fallbacks) = fall_back(rec, cluster, db, plan, results, stage).await?;
    if !replays_after_link(db, &plan) {
        replay_masters(rec.server.hosts(), cluster, db, &plan, stage).await?;
    }
    let loaded = Some(LoadedMasters {
        plan: &plan,
        early,
        phases,
        copies,
    });
    let mut recovered = finish(rec, cluster, db, loaded, pids, stage).await?;
    recovered.fallbacks = fallbacks;
    Ok(recovered)
}

/// The content digest of the files picked for the masters, taken on a blocking thread
/// while the servers load them (the load holds one core; validation and the copy leave
/// room on the others), when the proof will ask for it and every pick is on this
/// machine. The proof takes it if the masters loaded exactly these picks.
pub(super) struct EarlyDigest {
    picks: Picks,
    digest: Option<
        tokio::task::JoinHandle<Result<crate::persist::ContentDigest, crate::verify::VerifyError>>,
    >,
    /// Set when nobody waits for the digest any more: its reading stops within a
    /// megabyte instead of going on to the files' end (and holding the shell's exit).
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for EarlyDigest {
    /// Not asked for (other files were loaded), or the recovery failed or was called
    /// off: the digest's thread stops reading.
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl EarlyDigest {
    /// The digest, or why the files could not be digested, if `sources` are the picks it
    /// read (reading them again would only say the same).
    pub(super) async fn of(
        mut self,
        sources: &[(Id, Source)],
    ) -> Option<Result<crate::persist::ContentDigest, crate::verify::VerifyError>> {
        let same = sources.len() == self.picks.len()
            && sources.iter().all(|(id, s)| {
                self.picks
                    .get(id)
                    .is_some_and(|(kind, path)| *kind == s.kind && *path == s.path)
            });
        if !same {
            return None;
        }
        self.digest.take()?.await.ok()
    }
}

fn early_digest(rec: &Recovery, db: &Database, picks: &Picks) -> Option<EarlyDigest> {
    if rec.proof != Proof::Content || picks.is_empty() {
        return None;
    }
    let mut files = Vec::new();
    for (id, (_, path)) in picks {
        let node = db.shards.iter().find(|s| s.id == *id)?.node;
        if rec.server.hosts().is_remote(node) {
            return None;
        }
        files.push(crate::verify::DataSource::Path(
            crate::verify::source_file(path).ok()?,
        ));
    }
    let opts = crate::persist::DigestOptions::unserved();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    Some(EarlyDigest {
        picks: picks.clone(),
        // At the shell's own priority, unlike validation and the copy: the proof waits for
        // it, and an AOF's takes seconds. On one core: the load holds another, and an
        // RDB's digest on one (~0.9 s/GB) ends well before its load (~2.4 s/GB).
        digest: Some(tokio::task::spawn_blocking(move || {
            crate::persist::reading_stops_when(Some(stopped), || {
                crate::persist::on_one_core(|| crate::verify::digest_of_sources(&files, &opts))
            })
        })),
        stop,
    })
}

/// Each master whose server refused its chosen copy (the reader can call ok what the
/// server will not load) is started again on the next copy the reader accepts, freshest
/// first: its replica's files, the other format (issue 18: the line says which copy was
/// used and why the first was refused); none when the server could not start for a
/// reason of its own (its port taken). The plan then names the copy used. With no copy
/// left the master's first refusal is the error.
async fn fall_back(
    rec: &Arc<Recovery>,
    cluster: &Arc<Cluster>,
    db: &Database,
    mut plan: DbPlan,
    results: Starts,
    stage: &(dyn Fn(&str) + Send + Sync),
) -> Result<(DbPlan, Vec<(Id, u32)>, Vec<String>), RecoverError> {
    let mut pids = Vec::new();
    let mut notes = Vec::new();
    for (id, result) in results {
        let first_err = match result {
            Ok(pid) => {
                pids.push((id, pid));
                continue;
            }
            Err(e) => e,
        };
        let (Some(sp), Some(shard)) = (
            plan.shard_plans.iter_mut().find(|s| s.shard == id),
            db.shards.iter().find(|s| s.id == id),
        ) else {
            return Err(first_err.into());
        };
        let Outcome::Ready { source: first } = &sp.outcome else {
            return Err(first_err.into());
        };
        if matches!(
            first_err,
            ServerError::PortTaken { .. }
                | ServerError::PortLost { .. }
                | ServerError::NoFreePort { .. }
        ) {
            // Not the copy's fault: another copy would meet the same port.
            return Err(first_err.into());
        }
        let first = first.clone();
        let why = first_line(&first_err.to_string());
        let dir = shard_dir(cluster, db, shard);
        let host = rec.host(shard.node);
        let mut refused = vec![format!("{} ({why})", describe(&first, id))];
        let mut started = None;
        for next in std::mem::take(&mut sp.alternates) {
            if started.is_some() || next.replay {
                continue;
            }
            stage(&format!(
                "redis:{id}: the server refused its copy, loading {}",
                describe(&next, id)
            ));
            stop_own_leftover(&*host, &dir).await?;
            prepare_dir(rec.server.hosts(), &*host, cluster, &dir).await?;
            let copied = copy_source(&*host, &next.path, next.kind, &dir).await?;
            rec.brought(id, &copied);
            let picks: Picks = [(id, (next.kind, next.path.clone()))].into();
            match start_each(rec, cluster, db, &picks, Some(id), &BTreeMap::new())
                .await
                .pop()
            {
                Some((_, Ok(pid))) => started = Some((pid, next)),
                Some((_, Err(e))) => refused.push(format!(
                    "{} ({})",
                    describe(&next, id),
                    first_line(&e.to_string())
                )),
                None => {}
            }
        }
        let Some((pid, used)) = started else {
            if refused.len() == 1 {
                return Err(first_err.into());
            }
            return Err(RecoverError::AllRefused { shard: id, refused });
        };
        notes.push(format!(
            "redis:{id} loaded {}: the server refused {}",
            describe(&used, id),
            refused.join(", then ")
        ));
        sp.outcome = Outcome::Ready { source: used };
        pids.push((id, pid));
    }
    Ok((plan, pids, notes))
}

/// `aof `<path>``, with `(replica redis:N's copy)` when it is not the master's own.
fn describe(source: &Source, master: Id) -> String {
    let mut text = format!("{} `{}`", source.kind, source.path.display());
    if source.from_shard != master {
        text.push_str(&format!(" (replica redis:{}'s copy)", source.from_shard));
    }
    text
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    match line.char_indices().nth(300) {
        Some((at, _)) => format!("{}...", &line[..at]),
        None => line.to_string(),
    }
}

/// Whether a database's replay waits for its slot map: a Redis Cluster master takes
/// writes only for slots it serves (`CLUSTERDOWN` before), so a sharded database's
/// masters are linked first ([`super::finish`]) and replayed into after.
pub(super) fn replays_after_link(db: &Database, plan: &DbPlan) -> bool {
    db.config.shards > 1
        && plan
            .shard_plans
            .iter()
            .any(|s| matches!(&s.outcome, Outcome::Ready { source } if source.replay))
}

/// Writes the keys of every source to replay into its master (started empty), as
/// `RESTORE ... ABSTTL` of payloads in the oldest encodings that carry each value.
pub(super) async fn replay_masters(
    hosts: &crate::host::Hosts,
    cluster: &Cluster,
    db: &Database,
    plan: &DbPlan,
    stage: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), RecoverError> {
    for s in &plan.shard_plans {
        let Outcome::Ready { source } = &s.outcome else {
            continue;
        };
        if !source.replay {
            continue;
        }
        let node = db
            .shards
            .iter()
            .find(|x| x.id == source.from_shard)
            .map(|x| x.node);
        // Another host's file is streamed through it, never copied here.
        let file = match node {
            Some(node) => crate::replay::ReplayFile::on(hosts, node, source.path.clone()),
            None => crate::replay::ReplayFile::Local(source.path.clone()),
        };
        stage(&format!("replaying `{}`", source.path.display()));
        let addr = crate::db::shard_addr(cluster, db, s.shard)
            .ok_or_else(|| RecoverError::Internal(format!("redis:{} has no node", s.shard)))?;
        let target = crate::replay::Target {
            slots: crate::ccs::SlotRange::ALL,
            addr,
        };
        let cluster_mode = db.config.shards > 1;
        tokio::task::spawn_blocking(move || {
            crate::replay::write_files(&[file], &[target], cluster_mode, &|_| {})
        })
        .await
        .map_err(|e| RecoverError::Internal(e.to_string()))?
        .map_err(|e| RecoverError::Replay {
            shard: s.shard,
            path: source.path.clone(),
            reason: e,
        })?;
    }
    Ok(())
}

/// What each master loads: the kind and path of its source.
type Picks = BTreeMap<Id, (SourceKind, PathBuf)>;

fn chosen(plan: &DbPlan) -> Picks {
    plan.shard_plans
        .iter()
        .filter_map(|s| match &s.outcome {
            // A replayed source is not loaded: its master starts empty.
            Outcome::Ready { source } if !source.replay => {
                Some((s.shard, (source.kind, source.path.clone())))
            }
            _ => None,
        })
        .collect()
}

/// Each master's pid, or why its server did not start.
type Starts = Vec<(Id, Result<u32, ServerError>)>;

enum Loaded {
    /// Validation agreed with what was loaded: each master's pid, or why its server
    /// did not load; the copies still being made when every master loaded.
    Done(DbPlan, Starts, Phases, Copies),
    /// Validation chose other sources; nothing loaded may stay.
    Chose(DbPlan),
}

/// Starts every master on `picks` while validation reads the same files, so that a
/// database costs about its server's own load time. An RDB is loaded straight from the
/// original through a symlink while the copy is made beside it: redis-server only reads
/// `dump.rdb` at startup and replaces it by rename when it saves, so the original is
/// never written; the checked copy (a hard link to the original where it can be, made in
/// an instant: `copy::bring_file`) then takes the symlink's place. A multi-part AOF on
/// this machine loads the same way through its [`StandIn`] (the server appends only to a
/// new incr file of its own); any other AOF is appended to in place, so it is copied
/// before its server starts.
async fn load_masters(
    rec: &Arc<Recovery>,
    cluster: &Arc<Cluster>,
    db: &Database,
    picks: &Picks,
    stage: &(dyn Fn(&str) + Send + Sync),
) -> Result<Loaded, RecoverError> {
    stage("validating, copying and loading");
    let began = std::time::Instant::now();
    let mut phases = Phases::default();
    let planning = {
        let (r, c, d) = (rec.clone(), cluster.clone(), db.clone());
        beside(move || (r.plan(&c, &d), ms_since(began)))
    };
    let mut copies = tokio::task::JoinSet::new();
    let mut stand_ins = BTreeMap::new();
    let mut started: Result<Starts, RecoverError> = Ok(Vec::new());
    for (id, (kind, path)) in picks {
        let Some(shard) = db.shards.iter().find(|s| s.id == *id) else {
            continue;
        };
        let (id, kind, path, dir) = (*id, *kind, path.clone(), shard_dir(cluster, db, shard));
        let host = rec.host(shard.node);
        let stand_in = match kind {
            SourceKind::Rdb => {
                let link = dir.join(kind.file_name());
                host.symlink(&path, &link)
                    .await
                    .map(|_| true)
                    .map_err(|source| RecoverError::Io { path: link, source })
            }
            // The parts of a multi-part AOF on this machine are linked the same way.
            SourceKind::AofDir if host.is_local() => {
                let (p, d) = (path.clone(), dir.clone());
                match tokio::task::spawn_blocking(move || stand_in_aof(&p, &d)).await {
                    Ok(Ok(Some(s))) => {
                        stand_ins.insert(id, s);
                        Ok(true)
                    }
                    Ok(Ok(None)) => Ok(false),
                    Ok(Err(e)) => Err(e.into()),
                    Err(e) => Err(RecoverError::Internal(e.to_string())),
                }
            }
            _ => Ok(false),
        };
        match stand_in {
            Ok(true) => {
                let rec = rec.clone();
                copies.spawn(async move {
                    copy_to_temp(&*host, &path, kind, &dir).await.map(|c| {
                        rec.brought(id, &c);
                        (id, kind, dir, host, ms_since(began))
                    })
                });
            }
            Ok(false) => {
                match copy_source(&*host, &path, kind, &dir).await {
                    Ok(c) => rec.brought(id, &c),
                    Err(e) => {
                        started = Err(e.into());
                        break;
                    }
                }
                phases.copy_ms = ms_since(began);
            }
            Err(e) => {
                started = Err(e);
                break;
            }
        }
    }
    if let Ok(starts) = &mut started {
        *starts = start_each(rec, cluster, db, picks, None, &stand_ins).await;
        phases.load_ms = ms_since(began);
    }
    // Validation's verdict first: it names a bad file better than a failed start does.
    let (plan, validated) = planning.join().await.map_err(RecoverError::Internal)?;
    phases.validation_ms = validated;
    let verdict = verdict(rec, db, &plan);
    let refused: Vec<Id> = match &started {
        Ok(starts) => starts
            .iter()
            .filter(|(_, r)| r.is_err())
            .map(|(id, _)| *id)
            .collect(),
        Err(_) => Vec::new(),
    };
    let mut pending = Copies {
        set: copies,
        stand_ins,
    };
    // Every master loaded what validation chose: the copies may finish during the
    // checks and the proof (`finish` settles them before anything writes to the shard
    // directories). Otherwise they are settled now: a refused master's copy takes its
    // place for the fallbacks, and nothing of a failed attempt may stay half-done.
    let defer = verdict.is_ok() && chosen(&plan) == *picks && started.is_ok() && refused.is_empty();
    let copied = match defer {
        true => Ok(()),
        false => pending.settle(&refused).await.map(|ms| {
            phases.copy_ms = phases.copy_ms.max(ms);
        }),
    };
    verdict?;
    if chosen(&plan) != *picks {
        return Ok(Loaded::Chose(plan));
    }
    let results = started?;
    copied?;
    Ok(Loaded::Done(plan, results, phases, pending))
}

/// What `finish` gets of a database whose masters loaded their files.
pub(super) struct LoadedMasters<'a> {
    pub plan: &'a DbPlan,
    /// The files' digest, read while the servers loaded.
    pub early: Option<EarlyDigest>,
    pub phases: Phases,
    /// The files' copies, maybe still being made.
    pub copies: Copies,
}

/// Whether validation lets the database come back from `plan`: no file it blocks on, and
/// a file for every master unless `allow_empty`.
fn verdict(rec: &Recovery, db: &Database, plan: &DbPlan) -> Result<(), RecoverError> {
    let blocking: Vec<String> = plan
        .blocking()
        .into_iter()
        .map(|(shard, reason)| format!("redis:{shard}: {reason}"))
        .collect();
    if !blocking.is_empty() {
        return Err(RecoverError::Blocked(blocking));
    }
    if !rec.allow_empty {
        let lines: Vec<String> = plan
            .shard_plans
            .iter()
            .filter_map(|s| match &s.outcome {
                Outcome::Missing { reason } => Some(format!("redis:{}: {reason}", s.shard)),
                _ => None,
            })
            .collect();
        if !lines.is_empty() {
            return Err(RecoverError::NoFiles {
                db: db.config.name.clone(),
                lines,
            });
        }
    }
    Ok(())
}

/// The copies of the masters' files being made beside their servers (the servers read
/// the originals through symlinks meanwhile), and the AOF stand-ins they replace.
pub(super) struct Copies {
    set: tokio::task::JoinSet<Result<CopyDone, CopyError>>,
    stand_ins: BTreeMap<Id, StandIn>,
}

/// A finished copy: its shard, kind and directory, the host, and when it finished (ms
/// since the load began).
type CopyDone = (Id, SourceKind, PathBuf, Arc<dyn Host>, u64);

impl Copies {
    /// Waits for every copy and puts each in its place: over the stand-in's links, or
    /// whole where the server of `refused` would not load its stand-in. The first error
    /// is the answer, after every copy has ended. Returns when the last copy finished.
    pub(super) async fn settle(&mut self, refused: &[Id]) -> Result<u64, RecoverError> {
        let mut copied = Ok(());
        let mut last = 0;
        while let Some(joined) = self.set.join_next().await {
            let done = joined
                .map_err(|e| RecoverError::Internal(e.to_string()))
                .and_then(|r| Ok(r?));
            let (id, kind, dir, host, took) = match done {
                Ok(done) if copied.is_ok() => done,
                Ok(_) => continue,
                Err(e) => {
                    copied = copied.and(Err(e));
                    continue;
                }
            };
            last = last.max(took);
            copied = match self.stand_ins.get(&id) {
                Some(s) if !refused.contains(&id) => {
                    let (s, d) = (s.clone(), dir.clone());
                    tokio::task::spawn_blocking(move || adopt_copies(&s, &d))
                        .await
                        .map_err(|e| RecoverError::Internal(e.to_string()))
                        .and_then(|r| Ok(r?))
                }
                // A refused stand-in leaves no link behind: the copy takes its place whole,
                // and the refusal goes on to the fallbacks like any other.
                Some(_) => match stop_own_leftover(&*host, &dir).await {
                    Ok(_) => install_copy(&*host, kind, &dir).await.map_err(Into::into),
                    Err(e) => Err(e),
                },
                None => install_copy(&*host, kind, &dir).await.map_err(Into::into),
            };
        }
        copied.map(|()| last)
    }
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
    let mut pids = Vec::new();
    for (id, result) in start_each(rec, cluster, db, picks, None, &BTreeMap::new()).await {
        pids.push((id, result?));
    }
    Ok(pids)
}

/// [`start_masters`], each master's own outcome (or only master `only`'s); those in
/// `stand_ins` load their AOF through its [`StandIn`].
async fn start_each(
    rec: &Recovery,
    cluster: &Cluster,
    db: &Database,
    picks: &Picks,
    only: Option<Id>,
    stand_ins: &BTreeMap<Id, StandIn>,
) -> Starts {
    let mut starts = tokio::task::JoinSet::new();
    for shard in db.masters().filter(|s| only.is_none_or(|id| s.id == id)) {
        let opts = StartOptions {
            conf: ConfOptions {
                appendonly: picks.get(&shard.id).map(|(kind, _)| kind.is_aof()),
                // Own data first; the sync source is re-attached after the checks.
                standalone: !rec.only_configuration,
                aof_stand_in: stand_ins.contains_key(&shard.id),
            },
            timeout: rec.load_timeout,
            creating: false,
        };
        let (server, cluster, db, shard) = (
            rec.server.clone(),
            cluster.clone(),
            db.clone(),
            shard.clone(),
        );
        starts.spawn(async move {
            let started = start_shard(&server, &cluster, &db, &shard, &opts).await;
            if let Ok(pid) = started {
                let host = server.host(shard.node);
                record_started(&*host, &shard_dir(&cluster, &db, &shard), pid).await;
            }
            (shard.id, started)
        });
    }
    let mut out = Vec::new();
    while let Some(joined) = starts.join_next().await {
        if let Ok(result) = joined {
            out.push(result);
        }
    }
    out.sort_by_key(|(id, _)| *id);
    out
}
