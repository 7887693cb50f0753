//! The configuration from a node's CCS backup: validated, adapted to the machine it is
//! recovered on, checked against what the disks show. The backup may lie on another
//! host (`filename ssh://[user@]host[:port]/path`); the disks of nodes on other hosts
//! are read through their host.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::ccs::{Cluster, DbState, Id, CCS_FORMAT};
use crate::recovery::files::Disk;
use crate::recovery::lives;

use super::disk::{self, IdScan, On, SightingKind, HERE};
use super::{absolute, choose_alloc_id, node_list, overlaps, FromBackup, RebuildError, Rebuilt};

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
    let bytes =
        crate::ccs::validate::read_document(path).map_err(|e| RebuildError::BackupUnreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    parse_backup(path, &bytes)
}

/// [`read_backup`] of a backup's bytes read elsewhere; `path` names it.
fn parse_backup(path: &Path, bytes: &[u8]) -> Result<Cluster, RebuildError> {
    let invalid = |reason: String| RebuildError::BackupInvalid {
        path: path.to_path_buf(),
        reason,
    };
    let doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
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
    let cluster: Cluster = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    crate::ccs::validate(&cluster).map_err(|fault| invalid(fault.to_string()))?;
    Ok(cluster)
}

/// The first new life of the node at `path` (`<base>-recovered`, `-recovered-2`, ...:
/// [`crate::recovery::lives`]) that holds no shard data yet.
pub(super) fn fresh_sibling(path: &Path) -> Option<PathBuf> {
    lives::new_life_names(path)
        .into_iter()
        .find(|p| !p.join("redis").exists())
}

/// The paths of one node's lives on this machine (see [`lives::family`]).
pub fn recovered_family(path: &Path) -> Vec<PathBuf> {
    lives::family(path)
}

/// [`fresh_sibling`] on another host.
pub(super) fn fresh_sibling_on(on: On, path: &Path) -> Option<PathBuf> {
    lives::new_life_names(path)
        .into_iter()
        .find(|p| !on.disk.exists(on.place, &p.join("redis")))
}

/// Shard directories of this cluster that the backup does not know: made after it was
/// written. Their ids are avoided by the allocator; the operator should know they exist.
fn unknown_shards(cluster: &Cluster, on: On, root: &Path, problems: &mut Vec<String>) {
    for dir in disk::shard_dirs_on(on, root) {
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

/// A backup on another host: the file named, or the `ccs.json` inside a named `ccs/` or
/// persistent path there; read through the host, as large as a local one may be.
fn read_remote_backup(url: &str) -> Result<(PathBuf, Cluster), RebuildError> {
    let unreadable = |reason: String| RebuildError::BackupUnreadable {
        path: PathBuf::from(url),
        reason,
    };
    let (target, path) = crate::backup::parse_ssh_url(url).map_err(unreadable)?;
    let hosts = crate::host::Hosts::for_nodes([(1, Some(&target))])
        .map_err(|e| unreadable(e.to_string()))?;
    let host = hosts.of(1);
    let rt = tokio::runtime::Handle::current();
    let is_file = |p: &Path| {
        rt.block_on(host.metadata(p))
            .is_ok_and(|m| m.kind == crate::host::FileKind::File)
    };
    let file = [path.join("ccs.json"), path.join("ccs").join("ccs.json")]
        .into_iter()
        .find(|p| !is_file(&path) && is_file(p))
        .unwrap_or(path);
    let shown = PathBuf::from(format!("ssh://{target}{}", file.display()));
    let meta = rt
        .block_on(host.metadata(&file))
        .map_err(|e| unreadable(e.to_string()))?;
    if meta.len > crate::ccs::validate::MAX_DOCUMENT_BYTES {
        return Err(unreadable(format!(
            "{} bytes: no CCS document is that large",
            meta.len
        )));
    }
    let bytes = rt
        .block_on(host.read(&file))
        .map_err(|e| unreadable(e.to_string()))?;
    Ok((shown.clone(), parse_backup(&shown, &bytes)?))
}

/// Rebuilds the configuration from a node's CCS backup (not yet stored). A backup on
/// another host, or one whose nodes are on other hosts, is read (and those nodes' disks
/// looked at) through their hosts, on a thread of its own.
pub fn from_backup(req: &FromBackup) -> Result<Rebuilt, RebuildError> {
    let text = req.filename.to_string_lossy().into_owned();
    if text.starts_with("ssh://") {
        return super::off_runtime(|| {
            let (path, cluster) = read_remote_backup(&text)?;
            adapt_on_hosts(req, path, cluster)
        });
    }
    let path = absolute(&backup_file(&req.filename))?;
    let cluster = read_backup(&path)?;
    if cluster.nodes.values().any(|n| n.ssh.is_some()) {
        return super::off_runtime(|| adapt_on_hosts(req, path, cluster));
    }
    adapt(req, path, cluster, &Disk::local())
}

fn adapt_on_hosts(
    req: &FromBackup,
    path: PathBuf,
    cluster: Cluster,
) -> Result<Rebuilt, RebuildError> {
    let hosts = cluster.hosts().map_err(|e| RebuildError::BadPath {
        path: PathBuf::new(),
        reason: format!("no private directory for the ssh connections: {e}"),
    })?;
    adapt(req, path, cluster, &Disk::of_hosts(hosts))
}

/// The backup's configuration adapted to this recovery: `disk` reads each node's disk
/// where it is.
fn adapt(
    req: &FromBackup,
    path: PathBuf,
    mut cluster: Cluster,
    disk: &Disk,
) -> Result<Rebuilt, RebuildError> {
    // Where each node's disk is read: this machine, or its host.
    let on = |node: Id| On {
        disk,
        place: if disk.is_remote(node) { node } else { HERE },
    };
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

    // Per node, the databases the backup lists still pending recovery with a shard on
    // it: an earlier recovery of this same incident wrote the backup before they got
    // their files, so their files are still at the recovery path it recorded.
    let mut pending_on: BTreeMap<Id, Vec<String>> = BTreeMap::new();
    for db in cluster.databases.values() {
        if db.state != DbState::PendingRecovery {
            continue;
        }
        let nodes: BTreeSet<Id> = db.shards.iter().map(|s| s.node).collect();
        for node in nodes {
            pending_on
                .entry(node)
                .or_default()
                .push(format!("db:{} `{}`", db.id, db.config.name));
        }
    }

    let mut roots: BTreeSet<(Id, PathBuf)> = BTreeSet::new();
    for node in cluster.nodes.values_mut() {
        let id = node.id;
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
        let old_has_data = disk.is_dir(on(id).place, &old.join("redis"));
        // A recovery path belongs to the recovery that set it: carried into another
        // incident it would bring that one's old files back over newer data. It is
        // this incident still while databases on the node wait for their files (pending
        // recovery in the backup: none has run since, so none has newer data) and the
        // node's persistent path holds no shard data of its own (which would be the
        // newer life to recover from, below).
        if let Some(carried) = node.recovery_path.take() {
            // Still looked at for ids in use and newer backups.
            roots.insert((id, carried.clone()));
            let waiting = pending_on.get(&id).filter(|_| !old_has_data);
            if let Some(waiting) = waiting.filter(|_| !overlaps(&carried, &node.persistent_path)) {
                notes.push(format!(
                    "`node:{}` recovery path `{}` kept from the backup: {} still pending recovery there, whose files it holds",
                    node.id,
                    carried.display(),
                    waiting.join(", ")
                ));
                node.recovery_path = Some(carried);
            } else if !(old_has_data && carried == old) {
                // Databases still pending in the backup read the carried path, but the
                // node's data written since comes first: the way back to theirs, said.
                let after = match pending_on.get(&id) {
                    Some(waiting) if old_has_data => format!(
                        ": its persistent path holds newer shard data, recovered from first; {} (pending recovery in the backup) had its files there: once the rest is back, `node {} recovery_path set {}`, then `recover all`",
                        waiting.join(", "),
                        node.id,
                        crate::lang::quote(&carried.to_string_lossy())
                    ),
                    _ => String::new(),
                };
                notes.push(format!(
                    "`node:{}` recovery path `{}` (an earlier recovery's) is not carried over{after}",
                    node.id,
                    carried.display()
                ));
            }
        }
        if old_has_data && !given_path {
            // Recovering in place would have redis-server rewrite the only copy of the
            // old files: recover into a fresh sibling and read from the old path.
            let fresh = match on(id).is_here() {
                true => fresh_sibling(&old),
                false => fresh_sibling_on(on(id), &old),
            };
            if let Some(fresh) = fresh {
                notes.push(format!(
                    "`node:{}` persistent path is now `{}`: its old one still holds its shard data",
                    node.id,
                    fresh.display()
                ));
                node.persistent_path = fresh;
            }
        }
        if old_has_data && !overlaps(&old, &node.persistent_path) {
            notes.push(format!(
                "`node:{}` recovery path set to `{}`, its old persistent path, which still holds shard data",
                node.id,
                old.display()
            ));
            node.recovery_path = Some(old.clone());
        }
        if old_has_data && overlaps(&old, &node.persistent_path) {
            problems.push(format!(
                "`node:{}` persistent path `{}` still holds the old shard data: recovering into it would rewrite those files; copy them elsewhere and point `node {} recovery_path set` at the copy",
                node.id,
                old.display(),
                node.id
            ));
        }
        roots.insert((id, old));
        roots.insert((id, node.persistent_path.clone()));
        roots.extend(node.recovery_path.clone().map(|p| (id, p)));
    }
    let is_dir = |(id, r): &&(Id, PathBuf)| disk.is_dir(on(*id).place, r);
    for (id, root) in roots.iter().filter(is_dir) {
        unknown_shards(&cluster, on(*id), root, &mut problems);
    }
    // A node recovered before lived on in the `-recovered` sibling Lazarus made for it:
    // its backups there are newer than the ones left at the old path.
    let family: BTreeSet<(Id, PathBuf)> = roots
        .iter()
        .flat_map(|(id, r)| {
            let lives = match on(*id).is_here() {
                true => recovered_family(r),
                false => disk.recovered_family(*id, r),
            };
            lives.into_iter().map(|p| (*id, p))
        })
        .collect();
    // The given backup, as the nodes' disks name it (one on another host never is one
    // of this machine's).
    let (given_host, given_path) = match crate::backup::parse_ssh_url(&path.to_string_lossy()) {
        Ok((t, p)) => (Some((t.host, t.port)), p),
        Err(_) => (None, path.clone()),
    };
    let given = |id: Id, backup: &Path| {
        let host = cluster.nodes.get(&id).and_then(|n| n.ssh.as_ref());
        let host = host
            .filter(|_| !on(id).is_here())
            .map(|t| (t.host.clone(), t.port));
        backup == given_path && host == given_host
    };
    for (id, root) in roots.iter().chain(&family).filter(is_dir) {
        let on = on(*id);
        scan.scan_root_on(Some(on), root, cluster.cluster_id);
        let backup = root.join("ccs").join("ccs.json");
        let generation = match on.is_here() {
            true => disk::backup_generation(&backup, cluster.cluster_id),
            false => disk::backup_field_on(on, &backup, cluster.cluster_id, "generation"),
        };
        if let Some(generation) = generation {
            if generation > cluster.generation && !given(*id, &backup) {
                let newer = match cluster.nodes.get(id).and_then(|n| n.ssh.as_ref()) {
                    Some(t) if !on.is_here() => {
                        PathBuf::from(format!("ssh://{t}{}", backup.display()))
                    }
                    _ => backup,
                };
                return Err(RebuildError::NewerBackup {
                    newer,
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
        lost: Vec::new(),
        left_out: Vec::new(),
    })
}
