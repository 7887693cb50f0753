//! Live databases are not lost ones: before a database is treated as needing recovery its
//! shards are asked at their addresses, and a database whose every shard answers from its
//! own shard directory (the server's `config_file` lies in `redis/db-N/shard-M`, whose
//! identity file names this cluster, database and shard) is adopted as `active`, never
//! recovered over.
//!
//! Adopting points the configuration at where the shards really run: a node whose shards
//! answer from another persistent path than the one recorded takes that path back (and
//! drops a recovery path inside it). Databases that do not answer but whose shard
//! directories lie in place under such a path are down, not lost: they are marked active
//! too, for `restart` to bring back from their own files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::ccs::{Cluster, Database, DbState, Id, ShardIdentity};
use crate::host::{Host, Hosts};
use crate::server::shard_dir::served_from;
use crate::server::{info, IdentityRead, ShardDir};

/// A shard that does not answer within this is taken as not running.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

/// What answered at a shard's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardAnswer {
    /// Nothing answered.
    Silent,
    /// This shard, from its directory under `root` (the node's persistent path).
    Ours { pid: Option<u32>, root: PathBuf },
    /// Something else: another program, another shard or another cluster's.
    Other(String),
}

/// What a database's shards answered.
#[derive(Clone, Debug, Default)]
pub struct DbAnswers {
    pub shards: BTreeMap<Id, ShardAnswer>,
    /// Shard directories, under a root some live shard of the same node answered from,
    /// that hold this database's shard (its identity file and data files), read on the
    /// node's host: where a database that does not answer is down in place.
    pub in_place: BTreeSet<PathBuf>,
}

impl DbAnswers {
    /// Every shard answered as itself.
    pub fn live(&self) -> bool {
        !self.shards.is_empty()
            && self
                .shards
                .values()
                .all(|a| matches!(a, ShardAnswer::Ours { .. }))
    }
}

/// A database adopted as live (or as down in place), for the reply.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Adopted {
    pub id: Id,
    pub name: String,
    /// Its shards answered; else they are down with their files in place.
    pub running: bool,
    /// Where its shards' directories are.
    pub paths: Vec<PathBuf>,
}

impl Adopted {
    /// `db:N `name`: ...` for the reply.
    pub fn line(&self) -> String {
        let paths: Vec<String> = self
            .paths
            .iter()
            .map(|p| format!("`{}`", p.display()))
            .collect();
        if self.running {
            format!(
                "db:{} `{}`: its shards answer from {}: adopted as active, not recovered",
                self.id,
                self.name,
                paths.join(", ")
            )
        } else {
            format!(
                "db:{} `{}`: down with its files in place under {}: active, bring it up with `restart db {}` (or `restart all`)",
                self.id,
                self.name,
                paths.join(", "),
                self.name
            )
        }
    }
}

/// Whether `dir` on `host` holds `shard` of `db` of this cluster, with data files.
async fn holds_shard(host: &dyn Host, cluster_id: u64, db: Id, shard: Id, dir: &Path) -> bool {
    let Ok(bytes) = host.read(&ShardDir::at(0, dir).identity_file()).await else {
        return false;
    };
    let ours = IdentityRead::<ShardIdentity>::parse(bytes)
        .found()
        .is_some_and(|i| i.cluster_id == cluster_id && i.db_id == db && i.shard_id == shard);
    let mut has_data = false;
    for f in crate::server::shard_dir::DATA_FILES {
        has_data |= host.metadata(&dir.join(f)).await.is_ok();
    }
    ours && has_data
}

/// Asks one shard who it is.
async fn ask(hosts: &Hosts, cluster: &Cluster, db: &Database, shard: Id) -> ShardAnswer {
    let Some(addr) = crate::db::shard_addr(cluster, db, shard) else {
        return ShardAnswer::Silent;
    };
    let addr_text = addr.to_string();
    let listening = tokio::time::timeout(
        PROBE_TIMEOUT,
        tokio::net::TcpStream::connect((addr.host.as_str(), addr.port)),
    )
    .await;
    if !matches!(listening, Ok(Ok(_))) {
        return ShardAnswer::Silent;
    }
    let info = match info(&addr, "server", PROBE_TIMEOUT).await {
        Ok(info) => info,
        // Something listens there but does not answer as this shard would (another
        // password, another protocol): another program holds the port.
        Err(e) => return ShardAnswer::Other(format!("`{addr_text}` is taken: {e}")),
    };
    let (dir, root) = match served_from(&info, db.id, shard) {
        Ok(found) => found,
        Err(why) => return ShardAnswer::Other(format!("`{addr_text}` {why}")),
    };
    let node = db
        .shards
        .iter()
        .find(|s| s.id == shard)
        .map_or(0, |s| s.node);
    let shard_dir = ShardDir::at(node, dir.clone());
    let host = hosts.of(node);
    if host.metadata(&shard_dir.marker_file()).await.is_ok() {
        // A recovery cut short started it: not a database that runs, but recovery's own
        // unfinished work, which the next recovery takes over.
        return ShardAnswer::Silent;
    }
    let identity: Option<ShardIdentity> = match host.read(&shard_dir.identity_file()).await {
        Ok(bytes) => IdentityRead::parse(bytes).found(),
        Err(_) => None,
    };
    match identity {
        Some(i)
            if i.cluster_id == cluster.cluster_id
                && i.db_id == db.id
                && i.shard_id == shard
                && !i.creating =>
        {
            ShardAnswer::Ours {
                pid: info.get_u64("process_id").map(|p| p as u32),
                root,
            }
        }
        _ => ShardAnswer::Other(format!(
            "`{addr_text}` runs in `{}`, whose identity file is not redis:{shard} of this cluster",
            dir.display()
        )),
    }
}

/// Asks every shard of each of `dbs` at once, each node's files read on its host; then,
/// for the databases that did not answer, looks for their shard directories under the
/// roots live shards answered from.
pub async fn probe(hosts: &Hosts, cluster: &Cluster, dbs: &[Id]) -> BTreeMap<Id, DbAnswers> {
    let shared = std::sync::Arc::new(cluster.clone());
    let mut asks = tokio::task::JoinSet::new();
    for id in dbs {
        let Some(db) = cluster.databases.get(id) else {
            continue;
        };
        for s in &db.shards {
            let (cluster, db_id, shard, hosts) = (shared.clone(), db.id, s.id, hosts.clone());
            asks.spawn(async move {
                let answer = ask(&hosts, &cluster, &cluster.databases[&db_id], shard).await;
                (db_id, shard, answer)
            });
        }
    }
    let mut out: BTreeMap<Id, DbAnswers> = BTreeMap::new();
    while let Some(joined) = asks.join_next().await {
        if let Ok((db, shard, answer)) = joined {
            out.entry(db).or_default().shards.insert(shard, answer);
        }
    }
    // Each node's roots, as any live shard of it reports them.
    let mut roots: BTreeMap<Id, BTreeSet<PathBuf>> = BTreeMap::new();
    for (db_id, a) in &out {
        let Some(db) = cluster.databases.get(db_id) else {
            continue;
        };
        for s in &db.shards {
            if let Some(ShardAnswer::Ours { root, .. }) = a.shards.get(&s.id) {
                roots.entry(s.node).or_default().insert(root.clone());
            }
        }
    }
    for (db_id, a) in out.iter_mut().filter(|(_, a)| !a.live()) {
        let Some(db) = cluster.databases.get(db_id) else {
            continue;
        };
        for s in &db.shards {
            let host = hosts.of(s.node);
            for root in roots.get(&s.node).into_iter().flatten() {
                let dir = crate::ccs::shard_dir_under(root, db.id, s.id);
                if holds_shard(&*host, cluster.cluster_id, db.id, s.id, &dir).await {
                    a.in_place.insert(dir);
                }
            }
        }
    }
    out
}

/// [`probe`] from code that is not async (`cluster recover`): on a thread of its own.
pub fn probe_blocking(hosts: &Hosts, cluster: &Cluster, dbs: &[Id]) -> BTreeMap<Id, DbAnswers> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|rt| rt.block_on(probe(hosts, cluster, dbs)))
                    .unwrap_or_default()
            })
            .join()
            .unwrap_or_default()
    })
}

/// Adopts every database of `answers` whose shards all answered as themselves: active,
/// with their pids, each node's persistent path where its shards run. Then databases
/// pending recovery whose shard directories all lie in place under their nodes' paths
/// are marked active (down: `restart` brings them back from their own files). Returns
/// what was adopted; `notes` hears what changed on the nodes. A node whose live shards
/// answer from two different paths keeps its path, and those databases are not adopted.
pub fn adopt(
    cluster: &mut Cluster,
    answers: &BTreeMap<Id, DbAnswers>,
    notes: &mut Vec<String>,
) -> Vec<Adopted> {
    // Each node's root, as its live shards report it.
    let mut roots: BTreeMap<Id, BTreeSet<PathBuf>> = BTreeMap::new();
    for (db_id, a) in answers.iter().filter(|(_, a)| a.live()) {
        let Some(db) = cluster.databases.get(db_id) else {
            continue;
        };
        for s in &db.shards {
            if let Some(ShardAnswer::Ours { root, .. }) = a.shards.get(&s.id) {
                roots.entry(s.node).or_default().insert(root.clone());
            }
        }
    }
    let moved: BTreeMap<Id, PathBuf> = roots
        .into_iter()
        .filter(|(_, r)| r.len() == 1)
        .filter_map(|(node, r)| r.into_iter().next().map(|r| (node, r)))
        .collect();
    let mut adopted = Vec::new();
    for (db_id, a) in answers.iter().filter(|(_, a)| a.live()) {
        let Some(db) = cluster.databases.get_mut(db_id) else {
            continue;
        };
        if !db.shards.iter().all(|s| moved.contains_key(&s.node)) {
            continue;
        }
        db.state = DbState::Active;
        for s in &mut db.shards {
            if let Some(ShardAnswer::Ours { pid, .. }) = a.shards.get(&s.id) {
                s.pid = *pid;
            }
        }
        let paths = db
            .shards
            .iter()
            .map(|s| crate::ccs::shard_dir_under(&moved[&s.node], db.id, s.id))
            .collect();
        adopted.push(Adopted {
            id: db.id,
            name: db.config.name.clone(),
            running: true,
            paths,
        });
    }
    for (id, root) in &moved {
        let Some(node) = cluster.nodes.get_mut(id) else {
            continue;
        };
        if node.persistent_path != *root {
            notes.push(format!(
                "`node:{id}` persistent path is `{}`, where its live shards run (was `{}`)",
                root.display(),
                node.persistent_path.display()
            ));
            node.persistent_path = root.clone();
        }
        if let Some(r) = node
            .recovery_path
            .clone()
            .filter(|r| super::rebuild::overlaps(r, root))
        {
            notes.push(format!(
                "`node:{id}` recovery path `{}` cleared: it is the node's live persistent path",
                r.display()
            ));
            node.recovery_path = None;
        }
    }
    // Down in place: every shard directory where the (kept) node path says, holding this
    // shard's identity.
    for db in cluster.databases.values_mut() {
        if db.state != DbState::PendingRecovery
            || !db.shards.iter().all(|s| moved.contains_key(&s.node))
        {
            continue;
        }
        let paths: Vec<PathBuf> = db
            .shards
            .iter()
            .map(|s| crate::ccs::shard_dir_under(&moved[&s.node], db.id, s.id))
            .collect();
        let found = answers.get(&db.id).map(|a| &a.in_place);
        let in_place = paths
            .iter()
            .all(|dir| found.is_some_and(|f| f.contains(dir)));
        if in_place {
            db.state = DbState::Active;
            adopted.push(Adopted {
                id: db.id,
                name: db.config.name.clone(),
                running: false,
                paths,
            });
        }
    }
    adopted.sort_by_key(|a| a.id);
    adopted
}

/// Databases of `answers` whose shard addresses are taken by something else, and what.
pub fn others(answers: &BTreeMap<Id, DbAnswers>) -> Vec<(Id, Id, String)> {
    let mut out = Vec::new();
    for (db, a) in answers {
        for (shard, answer) in &a.shards {
            if let ShardAnswer::Other(what) = answer {
                out.push((*db, *shard, what.clone()));
            }
        }
    }
    out
}
