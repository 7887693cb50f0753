//! `cluster recover`: the cluster configuration brought back from a node's CCS backup or,
//! when none survived, from the shard identity files on the old disks.
//!
//! Both forms only read what they find; every database comes back waiting for
//! `recover db` / `recover all`, with no process recorded as running.

mod commit;
mod disk;
mod identities;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::ccs::{Cluster, DbState, Id, StoreError, CCS_FORMAT};

pub use commit::{recover, RecoverRequest};
pub use disk::{IdSighting, SightingKind};
pub use identities::from_identities;

use disk::IdScan;

/// How far above the largest id found an unspecified `alloc_id` starts: room for ids a
/// node may have handed out after the last backup it managed to write.
pub const ALLOC_MARGIN: Id = 100;

/// `cluster recover filename <backup> ...`
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FromBackup {
    pub filename: PathBuf,
    pub node_uid: Option<Id>,
    pub persistent_path: Option<PathBuf>,
    pub addr: Option<IpAddr>,
    /// When given, the backup must belong to this cluster.
    pub cluster_id: Option<u64>,
    pub alloc_id: Option<Id>,
}

/// `cluster recover cluster_id <id> recovery_path <path>... ...`
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FromIdentities {
    pub cluster_id: u64,
    pub recovery_paths: Vec<PathBuf>,
    pub node_uid: Option<Id>,
    pub persistent_path: Option<PathBuf>,
    pub addr: Option<IpAddr>,
    pub name: Option<String>,
    pub alloc_id: Option<Id>,
}

/// A rebuilt configuration and what the operator must know about how it was made.
#[derive(Serialize, Clone, Debug)]
pub struct Rebuilt {
    pub cluster: Cluster,
    pub alloc: AllocChoice,
    /// Choices made on the operator's behalf (recovery paths, persistent paths).
    pub notes: Vec<String>,
    /// What was found wrong or left out: foreign or unreadable files, incomplete databases.
    pub problems: Vec<String>,
}

#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct AllocChoice {
    pub alloc_id: Id,
    /// Given by the operator rather than picked.
    pub given: bool,
    /// The largest id found in use, and where.
    pub largest: Option<IdSighting>,
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("cannot read the CCS backup `{}`: {reason}", path.display())]
    BackupUnreadable { path: PathBuf, reason: String },
    #[error("the CCS backup `{}` is not valid: {reason}", path.display())]
    BackupInvalid { path: PathBuf, reason: String },
    #[error(
        "the CCS backup `{}` has format {found}, this lazarus reads format {expected}",
        path.display()
    )]
    BackupFormat {
        path: PathBuf,
        found: u64,
        expected: u32,
    },
    #[error("the CCS backup `{}` belongs to cluster_id {found}, not {expected}", path.display())]
    ForeignBackup {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error("node_uid {id} is not a node of {source_desc} (nodes: {known})")]
    UnknownNode {
        id: Id,
        source_desc: String,
        known: String,
    },
    #[error(
        "`{}` is a newer backup of this cluster (generation {newer_generation}) than `{}` (generation {given_generation}): recover from it, or move it aside to recover from the older one",
        newer.display(),
        given.display()
    )]
    NewerBackup {
        newer: PathBuf,
        newer_generation: u64,
        given: PathBuf,
        given_generation: u64,
    },
    #[error("recovery path `{}` cannot be used: {reason}", path.display())]
    RecoveryPath { path: PathBuf, reason: String },
    #[error("no shard identity file of cluster_id {cluster_id} found under {searched}{others}")]
    NoIdentities {
        cluster_id: u64,
        searched: String,
        others: String,
    },
    #[error(
        "alloc_id {requested} is too small: id {} is already in use ({}); give an alloc_id above {} or leave it out",
        conflict.id, conflict, conflict.id
    )]
    AllocTooSmall { requested: Id, conflict: IdSighting },
    #[error(
        "a cluster already exists in `{}`: `{name}` (cluster_id {cluster_id}); `cluster recover` needs a home with no cluster (use another `--home`)",
        home.display()
    )]
    ClusterExists {
        home: PathBuf,
        name: String,
        cluster_id: u64,
    },
    #[error("will not replace the node backup `{}`: {reason}", path.display())]
    BackupTarget { path: PathBuf, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("`{}` is not a usable path: {reason}", path.display())]
    BadPath { path: PathBuf, reason: String },
}

/// Picks the allocator: above every id found in use. A given value at or below the
/// largest would hand out an id twice, so it is refused rather than raised silently.
pub fn choose_alloc_id(
    given: Option<Id>,
    largest: Option<IdSighting>,
) -> Result<AllocChoice, RebuildError> {
    let floor = largest.as_ref().map_or(0, |l| l.id);
    let alloc_id = match given {
        Some(requested) => {
            if let Some(conflict) = largest.as_ref().filter(|l| requested <= l.id) {
                return Err(RebuildError::AllocTooSmall {
                    requested,
                    conflict: conflict.clone(),
                });
            }
            requested.max(1)
        }
        None => floor.saturating_add(ALLOC_MARGIN),
    };
    Ok(AllocChoice {
        alloc_id,
        given: given.is_some(),
        largest,
    })
}

/// Makes a path absolute without touching the disk beyond the current directory, so the
/// CCS never records a path that means something else from another directory.
pub(crate) fn absolute(path: &Path) -> Result<PathBuf, RebuildError> {
    std::path::absolute(path).map_err(|e| RebuildError::BadPath {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The backup file named, or the `ccs.json` inside a named `ccs/` or persistent path.
fn backup_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        for candidate in [path.join("ccs.json"), path.join("ccs").join("ccs.json")] {
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    path.to_path_buf()
}

/// Reads and validates a CCS backup: syntax (with line and column), format version, shape,
/// and that every shard sits on a node the backup lists.
pub fn read_backup(path: &Path) -> Result<Cluster, RebuildError> {
    let bytes = fs::read(path).map_err(|e| RebuildError::BackupUnreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let invalid = |reason: String| RebuildError::BackupInvalid {
        path: path.to_path_buf(),
        reason,
    };
    let doc: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    match doc.get("format").and_then(|f| f.as_u64()) {
        None => return Err(invalid("no `format` field: not a CCS document".into())),
        Some(found) if found != u64::from(CCS_FORMAT) => {
            return Err(RebuildError::BackupFormat {
                path: path.to_path_buf(),
                found,
                expected: CCS_FORMAT,
            })
        }
        Some(_) => {}
    }
    let cluster: Cluster = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    for db in cluster.databases.values() {
        for shard in &db.shards {
            if !cluster.nodes.contains_key(&shard.node) {
                return Err(invalid(format!(
                    "shard `redis:{}` of `db:{}` is on `node:{}`, which the backup does not list",
                    shard.id, db.id, shard.node
                )));
            }
        }
    }
    Ok(cluster)
}

fn node_list(ids: impl Iterator<Item = Id>) -> String {
    let list: Vec<String> = ids.map(|id| format!("`node:{id}`")).collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// Whether one path is the other or lies inside it: recovering into such a persistent path
/// would let redis-server rewrite the files being recovered from.
pub(crate) fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// `<path>-recovered` (or `-recovered-2`, ...): the first sibling of `path` that holds no
/// shard data yet.
fn fresh_sibling(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    (1..100)
        .map(|n| match n {
            1 => path.with_file_name(format!("{name}-recovered")),
            n => path.with_file_name(format!("{name}-recovered-{n}")),
        })
        .find(|p| !p.join("redis").exists())
}

/// Shard directories of this cluster that the backup does not know: made after it was
/// written. Their ids are avoided by the allocator; the operator should know they exist.
fn unknown_shards(cluster: &Cluster, root: &Path, problems: &mut Vec<String>) {
    for dir in disk::shard_dirs(root) {
        let disk::IdentityRead::Found(identity) = &dir.identity else {
            continue;
        };
        let known = cluster
            .databases
            .get(&dir.db)
            .is_some_and(|db| db.shards.iter().any(|s| s.id == dir.shard));
        if identity.cluster_id == cluster.cluster_id && !known {
            problems.push(format!(
                "`{}` holds shard `redis:{}` of `db:{}` `{}`, which the backup does not list (made after it was written?): left alone",
                dir.dir.display(),
                dir.shard,
                dir.db,
                identity.db.name
            ));
        }
    }
}

/// Rebuilds the configuration from a node's CCS backup (not yet stored).
pub fn from_backup(req: &FromBackup) -> Result<Rebuilt, RebuildError> {
    let path = absolute(&backup_file(&req.filename))?;
    let mut cluster = read_backup(&path)?;
    if let Some(expected) = req.cluster_id.filter(|c| *c != cluster.cluster_id) {
        return Err(RebuildError::ForeignBackup {
            path,
            found: cluster.cluster_id,
            expected,
        });
    }
    let local = req.node_uid.unwrap_or(cluster.local_node);
    if !cluster.nodes.contains_key(&local) {
        return Err(RebuildError::UnknownNode {
            id: local,
            source_desc: format!("the backup `{}`", path.display()),
            known: node_list(cluster.nodes.keys().copied()),
        });
    }
    cluster.local_node = local;
    let mut notes = Vec::new();
    let mut problems = Vec::new();
    let mut scan = IdScan::default();
    if cluster.alloc_id > 0 {
        scan.see(cluster.alloc_id - 1, SightingKind::Backup, &path);
    }
    for id in cluster.nodes.keys().chain(cluster.databases.keys()) {
        scan.see(*id, SightingKind::Config, &path);
    }
    for db in cluster.databases.values() {
        for shard in &db.shards {
            scan.see(shard.id, SightingKind::Config, &path);
        }
    }

    let mut roots = BTreeSet::new();
    for node in cluster.nodes.values_mut() {
        let old = node.persistent_path.clone();
        let mut given_path = false;
        if node.id == local {
            if let Some(addr) = req.addr {
                node.addr = addr.to_string();
            }
            if let Some(p) = &req.persistent_path {
                node.persistent_path = absolute(p)?;
                given_path = true;
            }
        }
        let old_has_data = old.join("redis").is_dir();
        let recorded = node.recovery_path.clone().filter(|r| r.is_dir());
        if old_has_data && !given_path && recorded.is_none() {
            // Recovering in place would have redis-server rewrite the only copy of the
            // old files: recover into a fresh sibling and read from the old path.
            if let Some(fresh) = fresh_sibling(&old) {
                notes.push(format!(
                    "`node:{}` persistent path is now `{}`: its old one still holds its shard data",
                    node.id,
                    fresh.display()
                ));
                node.persistent_path = fresh;
            }
        }
        match (&recorded, &node.recovery_path) {
            (Some(_), _) => {}
            _ if old_has_data && !overlaps(&old, &node.persistent_path) => {
                notes.push(format!(
                    "`node:{}` recovery path set to `{}`, its old persistent path, which still holds shard data",
                    node.id,
                    old.display()
                ));
                node.recovery_path = Some(old.clone());
            }
            (None, Some(r)) => notes.push(format!(
                "`node:{}` keeps its recorded recovery path `{}`, which does not exist now: set one with `node {} recovery_path set <path>`",
                node.id,
                r.display(),
                node.id
            )),
            (None, None) => {}
        }
        if old_has_data && overlaps(&old, &node.persistent_path) && recorded.is_none() {
            problems.push(format!(
                "`node:{}` persistent path `{}` still holds the old shard data: recovering into it would rewrite those files; copy them elsewhere and point `node {} recovery_path set` at the copy",
                node.id,
                old.display(),
                node.id
            ));
        }
        roots.insert(old);
        roots.insert(node.persistent_path.clone());
        roots.extend(node.recovery_path.clone());
    }
    for root in roots.iter().filter(|r| r.is_dir()) {
        scan.scan_root(root, cluster.cluster_id);
        unknown_shards(&cluster, root, &mut problems);
        if let Some(generation) =
            disk::backup_generation(&root.join("ccs").join("ccs.json"), cluster.cluster_id)
        {
            if generation > cluster.generation {
                return Err(RebuildError::NewerBackup {
                    newer: root.join("ccs").join("ccs.json"),
                    newer_generation: generation,
                    given: path,
                    given_generation: cluster.generation,
                });
            }
        }
    }

    if let Some(server) = cluster.redis_server.as_ref().filter(|p| !p.is_file()) {
        problems.push(format!(
            "the recorded `redis_server` `{}` is not there: shards will not start until it is, or until `--redis-server` names another",
            server.display()
        ));
    }
    for db in cluster.databases.values_mut() {
        db.state = DbState::PendingRecovery;
        for shard in &mut db.shards {
            shard.pid = None;
        }
    }
    let alloc = choose_alloc_id(req.alloc_id, scan.largest)?;
    cluster.alloc_id = alloc.alloc_id;
    Ok(Rebuilt {
        cluster,
        alloc,
        notes,
        problems,
    })
}
