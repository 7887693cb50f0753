//! `cluster recover`: the cluster configuration brought back from a node's CCS backup or,
//! when none survived, from the shard identity files on the old disks.
//!
//! Both forms only read what they find; every database comes back waiting for
//! `recover db` / `recover all`, with no process recorded as running.

mod backup;
mod commit;
mod databases;
mod disk;
mod found;
mod identities;
mod life_choice;
mod place;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::ccs::{Cluster, Id, StoreError};

pub use backup::{from_backup, read_backup, recovered_family};
pub use commit::{recover, stage, RecoverRequest, Staged};
pub use databases::{LeftOut, LostShard};
pub use disk::{IdSighting, SightingKind};
pub use identities::from_identities;

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
    /// The server binary this machine's node runs its shards with.
    pub redis_server: Option<PathBuf>,
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
    /// The server binary this machine's node runs its shards with.
    pub redis_server: Option<PathBuf>,
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
    /// Master shards whose disk is lost, rebuilt from their replicas' identities.
    pub lost: Vec<LostShard>,
    /// Databases that cannot be rebuilt (some slots have no master at all).
    pub left_out: Vec<LeftOut>,
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
        "alloc_id {requested} leaves no room: ids stay at or below {} (2^53, so every JSON reader holds them exactly)",
        crate::ccs::MAX_ID
    )]
    AllocTooLarge { requested: Id },
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
    #[error(transparent)]
    Path(#[from] crate::ccs::rules::PathError),
}

impl crate::error::DomainError for RebuildError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            RebuildError::BackupUnreadable { .. } => ErrorKind::Io,
            RebuildError::BackupInvalid { .. } | RebuildError::BackupFormat { .. } => {
                ErrorKind::Damaged
            }
            RebuildError::UnknownNode { .. } | RebuildError::NoIdentities { .. } => {
                ErrorKind::NotFound
            }
            RebuildError::ForeignBackup { .. }
            | RebuildError::NewerBackup { .. }
            | RebuildError::AllocTooSmall { .. }
            | RebuildError::AllocTooLarge { .. }
            | RebuildError::ClusterExists { .. }
            | RebuildError::BackupTarget { .. } => ErrorKind::Conflict,
            RebuildError::RecoveryPath { .. } | RebuildError::BadPath { .. } => ErrorKind::Io,
            RebuildError::Store(e) => e.kind(),
            RebuildError::Path(e) => e.kind(),
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            // The newer backup records this machine's node, its paths and the recovery
            // paths its databases still pending recovery read: the line works as it is.
            RebuildError::NewerBackup { newer, .. } => vec![
                format!(
                    "recover from it: `cluster recover filename {}`",
                    crate::lang::quote(&newer.to_string_lossy())
                ),
                "move it aside to recover from the older one".into(),
            ],
            RebuildError::AllocTooSmall { conflict, .. } => vec![format!(
                "give an alloc_id above {} or leave it out",
                conflict.id
            )],
            RebuildError::ClusterExists { .. } => vec!["use another `--home`".into()],
            RebuildError::Store(e) => e.hints(),
            _ => Vec::new(),
        }
    }
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
    // An allocator past the limit would hand out ids no JSON reader holds, or wrap.
    if alloc_id > crate::ccs::MAX_ID {
        return Err(RebuildError::AllocTooLarge {
            requested: alloc_id,
        });
    }
    Ok(AllocChoice {
        alloc_id,
        given: given.is_some(),
        largest,
    })
}

/// Runs `f` on a thread of its own inside a runtime of its own: code that is not async
/// (this module's) asks other hosts through blocking calls on that runtime, which must
/// not be the caller's (a command's, which may be waiting on this very thread).
pub(crate) fn off_runtime<T: Send>(
    f: impl FnOnce() -> Result<T, RebuildError> + Send,
) -> Result<T, RebuildError> {
    let failed = |reason: String| RebuildError::BadPath {
        path: PathBuf::new(),
        reason: format!("the hosts cannot be reached: {reason}"),
    };
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .map_err(|e| failed(e.to_string()))?;
                let _in = rt.enter();
                f()
            })
            .join()
            .unwrap_or_else(|_| Err(failed("the reading thread panicked".into())))
    })
}

/// Makes a path absolute without touching the disk beyond the current directory, so the
/// CCS never records a path that means something else from another directory.
pub(crate) fn absolute(path: &Path) -> Result<PathBuf, RebuildError> {
    Ok(crate::ccs::rules::absolute("path", path)?)
}

pub(crate) fn node_list(ids: impl Iterator<Item = Id>) -> String {
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
