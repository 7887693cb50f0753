//! `recover db <db> from_files`: a database a recovery brought back with masters EMPTY
//! (`allow_empty`, its files not found then) gets the files found since, as long as those
//! masters have taken no write: their keys are written into the live masters (fenced, as
//! a restore fences), counted and proved against the files. The masters that came back
//! with data are not touched. Masters and files on other hosts are filled the same way:
//! each file is streamed through its host to the writer here, and proved the same.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::apply::Recovery;
use super::plan::{Outcome, Source};
use crate::ccs::{Cluster, Database, DbState, Id, Shard, StoreError, StoreLock};
use crate::error::{DomainError, ErrorKind};
use crate::host::Hosts;
use crate::progress::Progress;
use crate::replay::ReplayFile;
use crate::server::{connect, info, ServerError, ShardAddr};
use crate::verify::DataSource;

/// Why `from_files` wrote nothing, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum FillError {
    #[error("db:{id} `{name}` is not back yet: bring it back with `recover db {}`", crate::lang::quote(.name))]
    NotBack { id: Id, name: String },
    #[error("db:{id} `{name}` did not come back EMPTY: `from_files` only fills masters a recovery brought back without their files (`allow_empty`); to replace live data, restore a backup (`restore task create`)")]
    NotEmpty { id: Id, name: String },
    #[error("redis:{shard} does not answer ({reason}): `from_files` fills a running master; bring it up first (`restart db {}`)", crate::lang::quote(.name))]
    NotAnswering {
        shard: Id,
        name: String,
        reason: ServerError,
    },
    #[error("db:{id} `{name}`: redis:{shard} {what} since it came back EMPTY: `from_files` never mixes files into data written since; nothing was written")]
    Touched {
        id: Id,
        name: String,
        shard: Id,
        what: String,
    },
    #[error("db:{id} `{name}`: {}; nothing was written: find the files (`node <id> recovery_path set <path>`, then `recover list`) and run it again", .missing.join("; "))]
    Missing {
        id: Id,
        name: String,
        missing: Vec<String>,
    },
    #[error("db:{id} `{name}`: redis:{shard}: {reason}; {after}{kept}")]
    Failed {
        id: Id,
        name: String,
        shard: Id,
        reason: String,
        /// `it is EMPTY again, as before`, or why it may not be.
        after: String,
        /// ` (redis:N filled before it, and kept)`, or nothing.
        kept: String,
    },
    #[error("filled, but the configuration could not be saved: {0}")]
    NotSaved(StoreError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("{0}")]
    Internal(String),
}

impl DomainError for FillError {
    fn kind(&self) -> ErrorKind {
        match self {
            FillError::NotBack { .. } | FillError::NotEmpty { .. } | FillError::Touched { .. } => {
                ErrorKind::Conflict
            }
            FillError::NotAnswering { .. } => ErrorKind::Unavailable,
            FillError::Missing { .. } => ErrorKind::NotFound,
            FillError::Failed { .. } => ErrorKind::Damaged,
            FillError::NotSaved(e) => e.kind(),
            FillError::Server(e) => e.kind(),
            FillError::Internal(_) => ErrorKind::Internal,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            FillError::NotSaved(e) => e.hints(),
            FillError::Server(e) => e.hints(),
            _ => Vec::new(),
        }
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds the content proof of one master.
const PROOF_TIMEOUT: Duration = Duration::from_secs(3600);

/// What `from_files` loaded.
#[derive(Serialize)]
pub struct Filled {
    pub id: Id,
    pub name: String,
    /// Each master filled: its id, the source, the keys it holds now.
    pub masters: Vec<FilledMaster>,
    /// The content proof's line per master (`content verified: ...`), when one ran.
    pub proofs: Vec<String>,
}

#[derive(Serialize)]
pub struct FilledMaster {
    pub shard: Id,
    pub source: Source,
    pub keys: u64,
}

/// `recover db <db> from_files`, under `lock` (the command's): fills db `id`'s masters
/// that came back EMPTY from the files found since, one after another, and records each
/// filled one. `counts_only`: key counts, no content proof.
pub async fn from_files(
    lock: &StoreLock,
    cluster: &Cluster,
    id: Id,
    redis_server: Option<&Path>,
    counts_only: bool,
    allow_stale: bool,
    progress: &dyn Progress,
) -> Result<Filled, FillError> {
    let db = cluster
        .databases
        .get(&id)
        .ok_or_else(|| FillError::Internal(format!("db:{id} vanished")))?
        .clone();
    let name = db.config.name.clone();
    if db.state != DbState::Active {
        return Err(FillError::NotBack { id: db.id, name });
    }
    let empty: Vec<Shard> = db
        .masters()
        .filter(|s| s.empty_since.is_some())
        .cloned()
        .collect();
    if empty.is_empty() {
        return Err(FillError::NotEmpty { id: db.id, name });
    }
    for s in &empty {
        untouched(cluster, &db, s).await?;
    }
    let hosts = cluster
        .hosts()
        .map_err(|e| FillError::Internal(format!("the nodes' hosts cannot be set up: {e}")))?;

    let sources = sources_of(cluster, &db, &empty, redis_server, allow_stale).await?;

    let fence = crate::restore::fence_password();
    let mut filled = Filled {
        id: db.id,
        name: name.clone(),
        masters: Vec::new(),
        proofs: Vec::new(),
    };
    for (shard, source) in &sources {
        let task = progress.task(&format!("db:{} redis:{} from files", db.id, shard.id), 0);
        let result = fill(&hosts, cluster, &db, shard, source, &fence, counts_only).await;
        match result {
            Ok((keys, proof)) => {
                task.finish("filled");
                filled.masters.push(FilledMaster {
                    shard: shard.id,
                    source: source.clone(),
                    keys,
                });
                filled.proofs.extend(proof);
            }
            Err(Unfilled {
                reason: e,
                empty_again,
            }) => {
                task.finish("failed");
                let done: Vec<String> = filled
                    .masters
                    .iter()
                    .map(|m| format!("redis:{}", m.shard))
                    .collect();
                let (again, after) = match empty_again {
                    Emptied::Untouched => (None, "it is EMPTY, as before".to_string()),
                    Emptied::Again(at) => {
                        (Some((shard.id, at)), "it is EMPTY again, as before".to_string())
                    }
                    Emptied::Not(why) => (
                        None,
                        format!("it may not be EMPTY again ({why}): `from_files` refuses it while it holds keys or writes not saved"),
                    ),
                };
                let _ = record(lock, cluster, db.id, &done_ids(&filled), again);
                let kept = if done.is_empty() {
                    String::new()
                } else {
                    format!(" ({} filled before it, and kept)", done.join(", "))
                };
                return Err(FillError::Failed {
                    id: db.id,
                    name,
                    shard: shard.id,
                    reason: e,
                    after,
                    kept,
                });
            }
        }
    }
    record(lock, cluster, db.id, &done_ids(&filled), None)?;
    Ok(filled)
}

/// The source each EMPTY master is filled from (validation's choice among the files
/// found since), or which have none.
async fn sources_of(
    cluster: &Cluster,
    db: &Database,
    empty: &[Shard],
    redis_server: Option<&Path>,
    allow_stale: bool,
) -> Result<Vec<(Shard, Source)>, FillError> {
    let mut rec = Recovery::new(cluster.servers(redis_server)?, false);
    // Every source is written key by key, so a file newer than the server loads is fine.
    rec.replay = true;
    rec.allow_stale = allow_stale;
    rec.refill = true;
    let plan = {
        let (c, d) = (cluster.clone(), db.clone());
        tokio::task::spawn_blocking(move || rec.plan(&c, &d))
            .await
            .map_err(|e| FillError::Internal(e.to_string()))?
    };
    let mut sources = Vec::new();
    let mut missing = Vec::new();
    for s in empty {
        match plan
            .shard_plans
            .iter()
            .find(|p| p.shard == s.id)
            .map(|p| &p.outcome)
        {
            Some(Outcome::Ready { source }) => sources.push((s.clone(), source.clone())),
            Some(Outcome::Missing { reason }) => missing.push(format!("redis:{}: {reason}", s.id)),
            _ => missing.push(format!("redis:{}: not planned", s.id)),
        }
    }
    if !missing.is_empty() {
        return Err(FillError::Missing {
            id: db.id,
            name: db.config.name.clone(),
            missing,
        });
    }

    Ok(sources)
}

/// Each master filled, and the modification time of the source it took.
fn done_ids(filled: &Filled) -> Vec<(Id, i64)> {
    filled
        .masters
        .iter()
        .map(|m| (m.shard, m.source.modified_ns))
        .collect()
}

/// The masters filled are no longer EMPTY: their marks go (and what each loaded is
/// recorded), and so does the recovery path of every node no database pending recovery,
/// nor a master still EMPTY, reads from. A master whose fill failed and that is EMPTY
/// again (`again`: it, and when) is marked EMPTY from then.
fn record(
    lock: &StoreLock,
    cluster: &Cluster,
    id: Id,
    done: &[(Id, i64)],
    again: Option<(Id, i64)>,
) -> Result<(), FillError> {
    if done.is_empty() && again.is_none() {
        return Ok(());
    }
    let filled: Vec<Id> = done.iter().map(|(id, _)| *id).collect();
    let mut next = cluster.clone();
    if let Some(db) = next.databases.get_mut(&id) {
        for s in db.shards.iter_mut() {
            if let Some((_, loaded)) = done.iter().find(|(id, _)| *id == s.id) {
                s.empty_since = None;
                s.loaded_ns = Some(*loaded);
            }
            if let Some((_, at)) = again.filter(|(id, _)| *id == s.id) {
                s.empty_since = Some(at);
            }
        }
    }
    let waiting = super::run::nodes_awaiting_files(&next);
    let used: std::collections::BTreeSet<Id> = cluster.databases[&id]
        .shards
        .iter()
        .filter(|s| filled.contains(&s.id))
        .map(|s| s.node)
        .collect();
    for node in next.nodes.values_mut() {
        if used.contains(&node.id) && !waiting.contains(&node.id) {
            node.recovery_path = None;
        }
    }
    lock.save(&mut next).map_err(FillError::NotSaved)
}

fn addr_of(cluster: &Cluster, db: &Database, shard: Id) -> Result<ShardAddr, FillError> {
    crate::db::shard_addr(cluster, db, shard)
        .ok_or_else(|| FillError::Internal(format!("redis:{shard} has no node")))
}

/// Refuses a master that holds a key or may have taken a write since it came back
/// EMPTY: a change not saved yet, or a save after that moment (a write since, saved).
async fn untouched(cluster: &Cluster, db: &Database, s: &Shard) -> Result<(), FillError> {
    let since = s.empty_since.unwrap_or(0);
    let a = addr_of(cluster, db, s.id)?;
    let ask = |section: &'static str| {
        let a = a.clone();
        async move {
            info(&a, section, TIMEOUT)
                .await
                .map_err(|reason| FillError::NotAnswering {
                    shard: s.id,
                    name: db.config.name.clone(),
                    reason,
                })
        }
    };
    let keys = ask("keyspace").await?.keys();
    let persistence = ask("persistence").await?;
    let changes = persistence
        .get_u64("rdb_changes_since_last_save")
        .unwrap_or(0);
    let saved = persistence.get_u64("rdb_last_save_time").unwrap_or(0) as i64;
    let refuse = |what: String| {
        Err(FillError::Touched {
            id: db.id,
            name: db.config.name.clone(),
            shard: s.id,
            what,
        })
    };
    if keys > 0 {
        return refuse(format!("holds {keys} keys"));
    }
    if changes > 0 {
        return refuse(format!("has taken {changes} writes"));
    }
    if saved > since {
        return refuse(format!(
            "saved its data {}s after it came back, so it may have taken writes",
            saved - since
        ));
    }
    Ok(())
}

/// Why a master's fill failed, and whether it is EMPTY (see [`empty_again`]).
struct Unfilled {
    reason: String,
    empty_again: Emptied,
}

/// A master after a failed fill.
enum Emptied {
    /// Nothing was written: it is EMPTY as before.
    Untouched,
    /// Its keys were removed, and saved at this time: its new `empty_since`.
    Again(i64),
    /// Written, and it could not be emptied again: why.
    Not(String),
}

/// Fences the master, writes the source's keys into it, checks the count and (unless
/// `counts_only`) proves the content, then unfences. On failure the master is emptied
/// again (it held nothing, and no client could write while fenced) and unfenced.
async fn fill(
    hosts: &Hosts,
    cluster: &Cluster,
    db: &Database,
    shard: &Shard,
    source: &Source,
    fence: &str,
    counts_only: bool,
) -> Result<(u64, Option<String>), Unfilled> {
    let failed = |reason: String| Unfilled {
        reason,
        empty_again: Emptied::Untouched,
    };
    let a = addr_of(cluster, db, shard.id).map_err(|e| failed(e.to_string()))?;
    let node = cluster
        .nodes
        .get(&shard.node)
        .ok_or_else(|| failed(format!("node:{} is not in the cluster", shard.node)))?;
    let file =
        crate::restore::FenceFile::in_dir(hosts.of(node.id), &node.shard_dir(db.id, shard.id));
    crate::restore::fence_shard(&a, fence, &file)
        .await
        .map_err(failed)?;
    let mut fenced = a.clone();
    fenced.password = Some(fence.to_string());
    let result = write_and_check(hosts, db, shard, source, &fenced, counts_only).await;
    let again = match result {
        Ok(_) => Emptied::Untouched,
        Err(_) => match empty_again(&fenced).await {
            Ok(at) => Emptied::Again(at),
            Err(why) => Emptied::Not(why),
        },
    };
    if let Err(e) =
        crate::restore::unfence_shard(&fenced, db.config.password.as_deref(), Some(&file)).await
    {
        // What the master holds is what the write and the emptying left, not "as before".
        let empty_again = match result {
            Ok(_) => Emptied::Not("the keys were written before unfencing it failed".into()),
            Err(_) => again,
        };
        return Err(Unfilled {
            reason: format!("unfencing it failed: {e}"),
            empty_again,
        });
    }
    file.remove().await;
    result.map_err(|reason| Unfilled {
        reason,
        empty_again: again,
    })
}

/// Empties a master whose fill failed (it held nothing before, and no client could
/// write while it was fenced), then saves, so that its count of changes since a save
/// says no write came since it was EMPTY again: the fill's own writes would otherwise
/// refuse every later `from_files` (see [`untouched`]). The save's time, its new
/// `empty_since`; or what failed.
async fn empty_again(fenced: &ShardAddr) -> Result<i64, String> {
    let mut con = connect(fenced, TIMEOUT).await.map_err(|e| e.to_string())?;
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut con)
        .await
        .map_err(|e| format!("`FLUSHALL`: {e}"))?;
    redis::cmd("SAVE")
        .query_async::<()>(&mut con)
        .await
        .map_err(|e| format!("`SAVE`: {e}"))?;
    let persistence = info(fenced, "persistence", TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    persistence
        .get_u64("rdb_last_save_time")
        .map(|at| at as i64)
        .ok_or_else(|| "no `rdb_last_save_time` in `INFO persistence`".to_string())
}

async fn write_and_check(
    hosts: &Hosts,
    db: &Database,
    shard: &Shard,
    source: &Source,
    fenced: &ShardAddr,
    counts_only: bool,
) -> Result<(u64, Option<String>), String> {
    let target = crate::replay::Target {
        slots: shard.slots.unwrap_or(crate::ccs::SlotRange::ALL),
        addr: fenced.clone(),
    };
    // The node whose old files these are: a file on another host is streamed through it.
    let from = db
        .shards
        .iter()
        .find(|s| s.id == source.from_shard)
        .map(|s| s.node)
        .filter(|n| hosts.is_remote(*n));
    let file = match from {
        Some(node) => ReplayFile::on(hosts, node, source.path.clone()),
        None => ReplayFile::Local(source.path.clone()),
    };
    let cluster_mode = db.config.shards > 1;
    tokio::task::spawn_blocking(move || {
        crate::replay::write_files(&[file], &[target], cluster_mode, &|_| {})
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("writing `{}` failed: {e}", source.path.display()))?;
    let keys = info(fenced, "keyspace", TIMEOUT)
        .await
        .map_err(|e| e.to_string())?
        .keys();
    let low = source.keys.saturating_sub(source.expires);
    if source.keys_exact && (keys > source.keys || keys < low) {
        return Err(format!(
            "it holds {keys} keys after the write, the {} `{}` holds {} ({} with a TTL)",
            source.kind,
            source.path.display(),
            source.keys,
            source.expires
        ));
    }
    if counts_only {
        return Ok((keys, None));
    }
    let files = vec![match from {
        Some(node) => DataSource::Remote {
            host: hosts.of(node),
            path: source.path.clone(),
            runtime: tokio::runtime::Handle::current(),
        },
        None => {
            DataSource::Path(crate::verify::source_file(&source.path).map_err(|e| e.to_string())?)
        }
    }];
    // Fenced: no client reads while the DUMPs skip LZF.
    let opts = crate::persist::DigestOptions::unserved();
    let proved =
        crate::verify::verify_sources(&files, std::slice::from_ref(fenced), &opts, PROOF_TIMEOUT)
            .await;
    // As a recovery does: a proof that cannot run (an AOF command it does not replay, a
    // module's value) leaves the keys as counted and says why; only a difference fails.
    let c = match proved {
        Ok(c) => c,
        Err(e) => return Ok((keys, Some(format!("content not verified: {e}")))),
    };
    if !c.equal {
        return Err(c.verdict());
    }
    Ok((keys, Some(c.verdict())))
}
