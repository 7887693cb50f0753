//! What a disaster left on disk: shard directories, their identity files, CCS backups,
//! and every id they prove was handed out.
//!
//! Only reads. Files under a recovery path are the operator's last copy of the data.
//!
//! The `*_on` forms read where [`On`] says: this machine (as the plain forms do), or
//! another host through [`Disk`] (`cluster recover ... recovery_path ssh://host/dir`).

use crate::server::shard_dir::{db_dirs_in, shard_dirs_in, REDIS_DIR};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::ccs::{DbTombstone, Id, ShardIdentity, SHARD_IDENTITY_FILE};
use crate::host::NodeId;
use crate::recovery::files::Disk;
use crate::server::shard_dir::{id_in_name, tombstone_id, DB_PREFIX, SHARD_PREFIX};

/// Where a disk is read: `place` [`HERE`] is this machine; any other is a host of `disk`.
#[derive(Clone, Copy)]
pub struct On<'a> {
    pub disk: &'a Disk,
    pub place: NodeId,
}

/// The place of this machine in an [`On`].
pub const HERE: NodeId = 0;

impl On<'_> {
    pub fn is_here(&self) -> bool {
        self.place == HERE
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.disk.is_dir(self.place, path)
    }

    /// Sorted subdirectories of `dir` named `<prefix><id>`.
    fn id_dirs(&self, dir: &Path, prefix: &str) -> Vec<(u64, PathBuf)> {
        let Ok(names) = self.disk.list(self.place, dir) else {
            return Vec::new();
        };
        let mut found: Vec<(u64, PathBuf)> = names
            .into_iter()
            .filter_map(|n| Some((id_in_name(&n, prefix)?, dir.join(n))))
            .filter(|(_, p)| self.is_dir(p))
            .collect();
        found.sort();
        found
    }

    fn db_dirs(&self, root: &Path) -> Vec<(u64, PathBuf)> {
        if self.is_here() {
            return db_dirs_in(root);
        }
        self.id_dirs(&root.join(REDIS_DIR), DB_PREFIX)
    }
}

/// How deep below a given path to look for node roots (directories holding `redis/`), so
/// an operator can name the directory the old nodes' disks are mounted under.
const ROOT_SEARCH_DEPTH: usize = 2;

/// One `redis/db-<db>/shard-<shard>/` directory found under a root.
#[derive(Debug)]
pub struct ShardDir {
    pub dir: PathBuf,
    pub db: Id,
    pub shard: Id,
    pub identity: IdentityRead,
}

#[derive(Debug)]
pub enum IdentityRead {
    Found(Box<ShardIdentity>),
    Missing,
    /// Unreadable or not an identity document: the reason, for the report.
    Bad(String),
}

/// Through the one reader of identity files, [`crate::server::ShardDir::read_identity`].
pub fn read_identity(dir: &Path) -> IdentityRead {
    // The directory's node does not matter while every node is this machine.
    judged(crate::server::ShardDir::at(0, dir).read_identity())
}

/// The rebuild's verdict on an identity file as the server layer read it.
fn judged(read: crate::server::IdentityRead<ShardIdentity>) -> IdentityRead {
    use crate::server::IdentityRead as Read;
    match read {
        Read::Found(identity) => IdentityRead::Found(Box::new(identity)),
        Read::Missing => IdentityRead::Missing,
        Read::Unreadable(e) => IdentityRead::Bad(e.to_string()),
        Read::Corrupt(_, e) => IdentityRead::Bad(e.to_string()),
    }
}

/// [`shard_dirs`] where `on` says.
pub fn shard_dirs_on(on: On, root: &Path) -> Vec<ShardDir> {
    if on.is_here() {
        return shard_dirs(root);
    }
    let mut out = Vec::new();
    for (db, db_dir) in on.db_dirs(root) {
        for (shard, dir) in on.id_dirs(&db_dir, SHARD_PREFIX) {
            let read = on.disk.read(on.place, &dir.join(SHARD_IDENTITY_FILE));
            let identity = judged(crate::server::IdentityRead::from_read(read));
            out.push(ShardDir {
                dir,
                db,
                shard,
                identity,
            });
        }
    }
    out
}

/// Every shard directory under `root/redis/`, in id order.
pub fn shard_dirs(root: &Path) -> Vec<ShardDir> {
    let mut out = Vec::new();
    for (db, db_dir) in db_dirs_in(root) {
        for (shard, dir) in shard_dirs_in(&db_dir) {
            let identity = read_identity(&dir);
            out.push(ShardDir {
                dir,
                db,
                shard,
                identity,
            });
        }
    }
    out
}

/// The tombstones of deleted databases in `root/redis/` ([`DbTombstone`]), read where
/// `on` says, in name order: each file with what it holds, or why it cannot be used.
pub fn tombstones_on(on: On, root: &Path) -> Vec<(PathBuf, Result<DbTombstone, String>)> {
    let redis = root.join(REDIS_DIR);
    let Ok(mut names) = on.disk.list(on.place, &redis) else {
        return Vec::new();
    };
    names.sort();
    names
        .into_iter()
        .filter_map(|name| Some((tombstone_id(&name)?, redis.join(name))))
        .map(|(db, path)| {
            let read = on
                .disk
                .read(on.place, &path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<DbTombstone>(&bytes)
                        .map_err(|e| format!("not a tombstone ({e})"))
                })
                .and_then(|t| match t.db_id == db {
                    true => Ok(t),
                    false => Err(format!("it names `db:{}`, not the file's", t.db_id)),
                });
            (path, read)
        })
        .collect()
}

/// Directories under `root/redis/` that cannot be listed, and why: any shard below them is
/// invisible, which the operator must hear about rather than find missing later.
pub fn unreadable_dirs(root: &Path) -> Vec<(PathBuf, String)> {
    let redis = root.join(REDIS_DIR);
    if let Err(e) = fs::read_dir(&redis) {
        return vec![(redis, e.to_string())];
    }
    db_dirs_in(root)
        .into_iter()
        .filter_map(|(_, dir)| fs::read_dir(&dir).err().map(|e| (dir, e.to_string())))
        .collect()
}

/// [`unreadable_dirs`] where `on` says.
pub fn unreadable_dirs_on(on: On, root: &Path) -> Vec<(PathBuf, String)> {
    if on.is_here() {
        return unreadable_dirs(root);
    }
    let redis = root.join(REDIS_DIR);
    if let Err(e) = on.disk.list(on.place, &redis) {
        return vec![(redis, e.to_string())];
    }
    on.db_dirs(root)
        .into_iter()
        .filter_map(|(_, dir)| {
            let listed = on.disk.list(on.place, &dir);
            listed.err().map(|e| (dir, e.to_string()))
        })
        .collect()
}

/// [`node_roots`] where `on` says: another host's tree is scanned in one go first.
pub fn node_roots_on(on: On, path: &Path) -> Vec<PathBuf> {
    if on.is_here() {
        return node_roots(path);
    }
    // Down to the identity files of the deepest root: one `find` answers the walk.
    on.disk.scan_below(on.place, path, ROOT_SEARCH_DEPTH + 4);
    fn walk(on: On, dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        if on.is_dir(&dir.join(REDIS_DIR)) {
            out.push(dir.to_path_buf());
            return;
        }
        if depth == 0 {
            return;
        }
        let Ok(mut names) = on.disk.list(on.place, dir) else {
            return;
        };
        names.sort();
        for name in names {
            let sub = dir.join(name);
            if on.is_dir(&sub) {
                walk(on, &sub, depth - 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(on, path, ROOT_SEARCH_DEPTH, &mut out);
    out
}

/// Node roots at or below `path`: `path` itself when it holds `redis/`, else its
/// subdirectories (a few levels down) that do.
pub fn node_roots(path: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        if dir.join("redis").is_dir() {
            out.push(dir.to_path_buf());
            return;
        }
        if depth == 0 {
            return;
        }
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        let mut subdirs: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.path())
            .collect();
        subdirs.sort();
        for sub in subdirs {
            walk(&sub, depth - 1, out);
        }
    }
    let mut out = Vec::new();
    walk(path, ROOT_SEARCH_DEPTH, &mut out);
    out
}

/// Where an id was seen to be in use: what a too-small `alloc_id` is told it conflicts with.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct IdSighting {
    pub id: Id,
    pub what: SightingKind,
    pub path: PathBuf,
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SightingKind {
    DbDir,
    ShardDir,
    Identity,
    /// A CCS backup's `alloc_id` says every id below it was handed out.
    Backup,
    /// An id in the configuration being recovered (node, database or shard).
    Config,
    /// A deleted database's tombstone names it (the database's or one of its shards').
    Tombstone,
}

impl fmt::Display for IdSighting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match self.what {
            SightingKind::DbDir => write!(f, "database directory `{path}`"),
            SightingKind::ShardDir => write!(f, "shard directory `{path}`"),
            SightingKind::Identity => write!(f, "shard identity file `{path}`"),
            SightingKind::Backup => write!(
                f,
                "CCS backup `{path}`, whose alloc_id {} says it was handed out",
                self.id + 1
            ),
            SightingKind::Config => write!(f, "the recovered configuration, from `{path}`"),
            SightingKind::Tombstone => write!(f, "deleted database's tombstone `{path}`"),
        }
    }
}

/// The largest id seen in use; the first sighting wins ties so the report is stable.
#[derive(Default, Debug)]
pub struct IdScan {
    pub largest: Option<IdSighting>,
}

impl IdScan {
    pub fn see(&mut self, id: Id, what: SightingKind, path: &Path) {
        if self.largest.as_ref().is_some_and(|l| l.id >= id) {
            return;
        }
        self.largest = Some(IdSighting {
            id,
            what,
            path: path.to_path_buf(),
        });
    }

    /// Every id on disk under `root` that belongs to `cluster_id`: directory names,
    /// identity files (shard, database, node and master ids), deleted databases'
    /// tombstones, and `ccs/ccs.json`'s allocator. Shard directories of another cluster are left out: their ids are not
    /// ours to avoid. Read where `on` says (`None`: this machine).
    pub fn scan_root_on(&mut self, on: Option<On>, root: &Path, cluster_id: u64) {
        let on = on.filter(|o| !o.is_here());
        let shards = match on {
            Some(on) => shard_dirs_on(on, root),
            None => shard_dirs(root),
        };
        for shard in shards {
            if let IdentityRead::Found(identity) = &shard.identity {
                if identity.cluster_id != cluster_id {
                    continue;
                }
                let file = shard.dir.join(SHARD_IDENTITY_FILE);
                for id in [identity.shard_id, identity.db_id, identity.node_id]
                    .into_iter()
                    .chain(identity.master)
                {
                    self.see(id, SightingKind::Identity, &file);
                }
            }
            let db_dir = shard.dir.parent().unwrap_or(&shard.dir);
            self.see(shard.db, SightingKind::DbDir, db_dir);
            self.see(shard.shard, SightingKind::ShardDir, &shard.dir);
        }
        // A database directory whose shard directories are gone still used its id.
        let dbs = match on {
            Some(on) => on.db_dirs(root),
            None => db_dirs_in(root),
        };
        for (db, db_dir) in dbs {
            self.see(db, SightingKind::DbDir, &db_dir);
        }
        let here = Disk::local();
        let on_tombstones = on.unwrap_or(On {
            disk: &here,
            place: HERE,
        });
        for (path, tombstone) in tombstones_on(on_tombstones, root) {
            let Ok(t) = tombstone else { continue };
            if t.cluster_id == cluster_id {
                for id in std::iter::once(t.db_id).chain(t.shards) {
                    self.see(id, SightingKind::Tombstone, &path);
                }
            }
        }
        let backup = root.join("ccs").join("ccs.json");
        let alloc_id = match on {
            Some(on) => backup_field_on(on, &backup, cluster_id, "alloc_id"),
            None => backup_alloc_id(&backup, cluster_id),
        };
        if let Some(alloc_id) = alloc_id {
            if alloc_id > 0 {
                self.see(alloc_id - 1, SightingKind::Backup, &backup);
            }
        }
    }
}

/// A field of a CCS backup of `cluster_id`, read loosely: any format, any shape, so an
/// older or damaged backup still tells which ids were used.
fn backup_field(path: &Path, cluster_id: u64, field: &str) -> Option<u64> {
    field_of(&fs::read(path).ok()?, cluster_id, field)
}

/// [`backup_field`] of a backup where `on` says.
pub fn backup_field_on(on: On, path: &Path, cluster_id: u64, field: &str) -> Option<u64> {
    field_of(&on.disk.read(on.place, path).ok()?, cluster_id, field)
}

fn field_of(bytes: &[u8], cluster_id: u64, field: &str) -> Option<u64> {
    let doc: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if crate::ccs::model::cluster_id_text::of(&doc)? != cluster_id {
        return None;
    }
    doc.get(field)?.as_u64()
}

pub fn backup_alloc_id(path: &Path, cluster_id: u64) -> Option<Id> {
    backup_field(path, cluster_id, "alloc_id")
}

pub fn backup_generation(path: &Path, cluster_id: u64) -> Option<u64> {
    backup_field(path, cluster_id, "generation")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_keeps_first_of_ties() {
        let mut scan = IdScan::default();
        scan.see(3, SightingKind::DbDir, Path::new("/a"));
        scan.see(3, SightingKind::ShardDir, Path::new("/b"));
        scan.see(2, SightingKind::ShardDir, Path::new("/c"));
        let largest = scan.largest.unwrap();
        assert_eq!((largest.id, largest.path), (3, PathBuf::from("/a")));
    }

    #[test]
    fn scans_dirs_identities_and_backups() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("redis/db-4/shard-5")).unwrap();
        fs::create_dir_all(root.join("redis/db-9")).unwrap();
        fs::create_dir_all(root.join("redis/notes")).unwrap();
        let mut scan = IdScan::default();
        scan.scan_root_on(None, root, 7);
        let largest = scan.largest.clone().unwrap();
        assert_eq!(largest.id, 9);
        assert_eq!(largest.what, SightingKind::DbDir);

        fs::create_dir_all(root.join("ccs")).unwrap();
        fs::write(
            root.join("ccs/ccs.json"),
            r#"{"cluster_id": 7, "alloc_id": 31}"#,
        )
        .unwrap();
        scan.scan_root_on(None, root, 7);
        let largest = scan.largest.clone().unwrap();
        assert_eq!((largest.id, largest.what), (30, SightingKind::Backup));
        assert!(largest.to_string().contains("alloc_id 31"));

        // Another cluster's backup proves nothing about our ids.
        let mut other = IdScan::default();
        other.scan_root_on(None, root, 8);
        assert_eq!(other.largest.unwrap().id, 9);
    }

    #[test]
    fn finds_node_roots_below_a_mount() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("old/n1/redis")).unwrap();
        fs::create_dir_all(tmp.path().join("old/n2/redis/db-1")).unwrap();
        fs::create_dir_all(tmp.path().join("old/empty")).unwrap();
        let roots = node_roots(tmp.path());
        assert_eq!(
            roots,
            vec![tmp.path().join("old/n1"), tmp.path().join("old/n2")]
        );
        assert_eq!(
            node_roots(&tmp.path().join("old/n1")),
            vec![tmp.path().join("old/n1")]
        );
    }
}
