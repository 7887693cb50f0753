//! Reading the old disks for a rebuild: every shard directory under the node roots with
//! its identity file judged (another cluster's, misplaced, unreadable, marked `creating`
//! or `deleted`), deleted databases' tombstones, the newest CCS backup's list of
//! databases, the TLS record. Only reads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::ccs::{Id, ShardIdentity, SHARD_IDENTITY_FILE};
use crate::recovery::files::Disk;

use super::disk::{self, IdentityRead, On};
use super::identities::Root;

/// An identity file of our cluster and where it was found.
pub(super) struct Found {
    pub root: Root,
    pub file: PathBuf,
    pub identity: ShardIdentity,
    /// When its shard directory was last written (unix nanoseconds; 0 when unknown): of
    /// two lives of a shard on the disks, the later one is the one to rebuild. Read only
    /// where a choice needs it (a round trip per file on another host).
    pub written: std::cell::OnceCell<i64>,
}

/// A shard directory of the disks whose identity file cannot be read (damaged, cut short,
/// or denied): its ids are the directory's names.
pub(super) struct Unreadable {
    pub root: Root,
    pub dir: PathBuf,
    pub file: PathBuf,
    pub db: Id,
    pub shard: Id,
    pub reason: String,
}

impl Unreadable {
    pub(super) fn left_out(&self) -> String {
        format!(
            "cannot read `{}`: {}; left out",
            self.file.display(),
            self.reason
        )
    }
}

/// Identity files of `cluster_id` under `roots`; everything else is reported and left
/// out. Also returns the other cluster ids seen, for the error when none matched.
pub(super) fn collect(
    disk: &Disk,
    roots: &[Root],
    cluster_id: u64,
    problems: &mut Vec<String>,
) -> (Vec<Found>, BTreeSet<u64>, Vec<Unreadable>) {
    let mut found: Vec<Found> = Vec::new();
    let mut foreign = BTreeSet::new();
    let mut unreadable = Vec::new();
    let mut seen: BTreeMap<Id, (usize, PathBuf)> = BTreeMap::new();
    for root in roots {
        let on = On {
            disk,
            place: root.place,
        };
        for (dir, reason) in disk::unreadable_dirs_on(on, &root.path) {
            problems.push(format!(
                "cannot read `{}`: {reason}; any shard under it is left out",
                dir.display()
            ));
        }
        for dir in disk::shard_dirs_on(on, &root.path) {
            let file = dir.dir.join(SHARD_IDENTITY_FILE);
            let identity = match dir.identity {
                IdentityRead::Found(identity) => *identity,
                IdentityRead::Missing => {
                    problems.push(format!(
                        "`{}` has no `{SHARD_IDENTITY_FILE}`: left out",
                        dir.dir.display()
                    ));
                    continue;
                }
                IdentityRead::Bad(reason) => {
                    // Reported once it is known whether a lost master's files are there.
                    unreadable.push(Unreadable {
                        root: root.clone(),
                        dir: dir.dir,
                        file,
                        db: dir.db,
                        shard: dir.shard,
                        reason,
                    });
                    continue;
                }
            };
            if identity.cluster_id != cluster_id {
                problems.push(format!(
                    "`{}` belongs to cluster_id {}, not {cluster_id}: skipped",
                    file.display(),
                    identity.cluster_id
                ));
                foreign.insert(identity.cluster_id);
                continue;
            }
            if identity.db_id != dir.db || identity.shard_id != dir.shard {
                problems.push(format!(
                    "`{}` names `db:{}` shard `redis:{}`, not the directory's: skipped",
                    file.display(),
                    identity.db_id,
                    identity.shard_id
                ));
                continue;
            }
            let this = Found {
                root: root.clone(),
                file,
                identity,
                written: Default::default(),
            };
            // The same shard in two places: two lives of a node (an earlier recovery's
            // `-recovered` directory beside the disk it recovered from), or a shard that
            // moved. The later one holds what the database last was.
            if let Some(&(at, ref first)) = seen.get(&this.identity.shard_id) {
                let earlier = &found[at];
                let later = this.written(disk) > earlier.written(disk);
                let used = if later { &dir.dir } else { first };
                problems.push(format!(
                    "shard `redis:{}` found twice, in `{}` and `{}`: the one written last, `{}`, is used",
                    this.identity.shard_id,
                    first.display(),
                    dir.dir.display(),
                    used.display()
                ));
                if later {
                    seen.insert(this.identity.shard_id, (at, dir.dir.clone()));
                    found[at] = this;
                }
                continue;
            }
            seen.insert(this.identity.shard_id, (found.len(), dir.dir.clone()));
            found.push(this);
        }
    }
    // A later copy of a shard found whose identity file cannot be read (damaged by the
    // crash that ended that life): the shard is rebuilt there, from the earlier copy's
    // identity, so its later files are the ones looked at.
    unreadable.retain(|u| {
        let Some(f) = found
            .iter_mut()
            .find(|f| f.identity.db_id == u.db && f.identity.shard_id == u.shard)
        else {
            return true;
        };
        let on = On {
            disk,
            place: u.root.place,
        };
        let written = super::life_choice::last_written(on, &u.dir);
        if written <= f.written(disk) {
            return true;
        }
        problems.push(format!(
            "shard `redis:{}` found twice, in `{}` and `{}`: the one written last, `{}`, is used, but its identity file cannot be read ({}): rebuilt from the identity of the other",
            u.shard,
            f.file.parent().unwrap_or(&f.file).display(),
            u.dir.display(),
            u.dir.display(),
            u.reason
        ));
        f.root = u.root.clone();
        f.file = u.file.clone();
        f.written = written.into();
        false
    });
    // A mark is judged on the copy written last: a database deleted in a later life is
    // not brought back by an earlier life's unmarked copy.
    found.retain(|f| {
        let i = &f.identity;
        let why = if i.creating {
            // Its create never committed: the database was rolled back or interrupted
            // before any configuration held it (its ids stay allocated).
            format!(
                "is marked `creating`: `db:{}` `{}` was never committed",
                i.db_id, i.db.name
            )
        } else if i.deleted {
            format!(
                "is marked `deleted`: `db:{}` `{}` was deleted",
                i.db_id, i.db.name
            )
        } else {
            return true;
        };
        problems.push(format!(
            "`{}` {why}; left out, its files are untouched",
            f.file.display()
        ));
        false
    });
    // Then a tombstone anywhere on the disks is final (ids are never reused): a database
    // deleted in a later life, purged or not, is not brought back by an earlier life's
    // copies of its shards, whatever their times.
    let deleted = tombstones(disk, roots, cluster_id, problems);
    let mut told = BTreeSet::new();
    found.retain(|f| {
        let i = &f.identity;
        let Some(tombstone) = deleted.get(&i.db_id) else {
            return true;
        };
        if told.insert(i.db_id) {
            problems.push(format!(
                "`db:{}` `{}` was deleted (its tombstone `{}`): left out, its files are untouched",
                i.db_id,
                i.db.name,
                tombstone.display()
            ));
        }
        false
    });
    (found, foreign, unreadable)
}

/// The databases of `cluster_id` a tombstone under `roots` says were deleted, each with
/// the first tombstone found; a tombstone that cannot be read is reported.
fn tombstones(
    disk: &Disk,
    roots: &[Root],
    cluster_id: u64,
    problems: &mut Vec<String>,
) -> BTreeMap<Id, PathBuf> {
    let mut deleted = BTreeMap::new();
    for root in roots {
        let on = On {
            disk,
            place: root.place,
        };
        for (path, read) in disk::tombstones_on(on, &root.path) {
            match read {
                Ok(t) if t.cluster_id == cluster_id => {
                    deleted.entry(t.db_id).or_insert(path);
                }
                Ok(_) => {}
                Err(reason) => problems.push(format!(
                    "cannot read the tombstone `{}`: {reason}; its database, if found, is not known to be deleted",
                    path.display()
                )),
            }
        }
    }
    deleted
}

/// The newest (highest generation) CCS backup of `cluster_id` in `<root>/ccs/` under
/// `roots`: where it is, its allocator and the databases it lists. Read loosely, as ids
/// are.
pub(super) fn newest_backup(
    disk: &Disk,
    roots: &[Root],
    cluster_id: u64,
) -> Option<(Root, Id, BTreeSet<Id>)> {
    let mut best: Option<(u64, Root, Id, BTreeSet<Id>)> = None;
    for root in roots {
        let path = root.path.join("ccs").join("ccs.json");
        let Ok(bytes) = disk.read(root.place, &path) else {
            continue;
        };
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        if crate::ccs::model::cluster_id_text::of(&doc) != Some(cluster_id) {
            continue;
        }
        let (Some(generation), Some(alloc_id), Some(dbs)) = (
            doc.get("generation").and_then(|v| v.as_u64()),
            doc.get("alloc_id").and_then(|v| v.as_u64()),
            doc.get("databases").and_then(|v| v.as_object()),
        ) else {
            continue;
        };
        let listed = dbs.keys().filter_map(|k| k.parse().ok()).collect();
        if best.as_ref().is_none_or(|b| generation > b.0) {
            let at = Root {
                place: root.place,
                path,
            };
            best = Some((generation, at, alloc_id, listed));
        }
    }
    best.map(|(_, at, alloc, listed)| (at, alloc, listed))
}

/// The TLS record (`tls/current.json`) of the first node root whose material directory it
/// names is there, and where it was read.
pub(super) fn tls_on_disks(disk: &Disk, roots: &[Root]) -> Option<(crate::tls::TlsConfig, Root)> {
    use crate::tls::{CURRENT_FILE, TLS_DIR};
    roots.iter().find_map(|root| {
        let dir = root.path.join(TLS_DIR);
        let path = dir.join(CURRENT_FILE);
        let bytes = disk.read(root.place, &path).ok()?;
        let record: crate::tls::TlsConfig = serde_json::from_slice(&bytes).ok()?;
        disk.is_dir(root.place, &dir.join(record.material_id()))
            .then(|| {
                let at = Root {
                    place: root.place,
                    path,
                };
                (record, at)
            })
    })
}
