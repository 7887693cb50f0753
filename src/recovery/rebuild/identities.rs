//! The configuration rebuilt from shard identity files alone, for when no CCS backup
//! survived.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::ccs::{Cluster, Id, Node, PortRange, ShardIdentity, CCS_FORMAT, SHARD_IDENTITY_FILE};

use super::disk::{self, IdScan, IdentityRead};
use super::{absolute, choose_alloc_id, overlaps, FromIdentities, RebuildError, Rebuilt};

/// An identity file of our cluster and where it was found.
pub(super) struct Found {
    pub root: PathBuf,
    pub file: PathBuf,
    pub identity: ShardIdentity,
}

fn quoted_paths(paths: &[PathBuf]) -> String {
    let list: Vec<String> = paths.iter().map(|p| format!("`{}`", p.display())).collect();
    list.join(", ")
}

/// Rebuilds the configuration of `req.cluster_id` from the identity files under the
/// recovery paths (not yet stored). Nodes without a given persistent path get
/// `<home>/nodes/<id>`, as a new local cluster would.
pub fn from_identities(req: &FromIdentities, home: &Path) -> Result<Rebuilt, RebuildError> {
    let mut notes = Vec::new();
    let mut problems = Vec::new();
    let mut given = Vec::new();
    for path in &req.recovery_paths {
        let path = absolute(path)?;
        // The rule `node <id> recovery_path set` applies; the path is kept as given
        // (absolute), not resolved.
        crate::ccs::rules::recovery_path(&path)?;
        given.push(path);
    }
    if given.is_empty() {
        return Err(RebuildError::RecoveryPath {
            path: PathBuf::new(),
            reason: "no recovery path given".into(),
        });
    }

    let mut roots: Vec<PathBuf> = Vec::new();
    for path in &given {
        let found = disk::node_roots(path);
        if found.is_empty() {
            problems.push(format!(
                "no `redis/` directory at or below `{}`: nothing to recover there",
                path.display()
            ));
        }
        for root in found {
            if !roots.contains(&root) {
                if &root != path {
                    notes.push(format!("found node data under `{}`", root.display()));
                }
                roots.push(root);
            }
        }
    }

    let (found, foreign) = collect(&roots, req.cluster_id, &mut problems);
    if found.is_empty() {
        let others = if foreign.is_empty() {
            String::new()
        } else {
            let ids: Vec<String> = foreign.iter().map(|c| c.to_string()).collect();
            format!("; found files of cluster_id {} only", ids.join(", "))
        };
        return Err(RebuildError::NoIdentities {
            cluster_id: req.cluster_id,
            searched: quoted_paths(&given),
            others,
        });
    }

    // Nodes: each on the recovery path where its shards were found.
    let mut node_roots: BTreeMap<Id, PathBuf> = BTreeMap::new();
    let mut node_ports: BTreeMap<Id, Vec<u16>> = BTreeMap::new();
    let mut recorded: BTreeMap<Id, (Option<String>, Option<PortRange>)> = BTreeMap::new();
    for f in &found {
        let id = f.identity.node_id;
        node_ports.entry(id).or_default().push(f.identity.port);
        // Shards of one node record the same address and range; should they differ (the
        // node changed between writes), the last one read wins.
        let entry = recorded.entry(id).or_default();
        entry.0 = f.identity.node_addr.clone().or(entry.0.take());
        entry.1 = f.identity.node_port_range.or(entry.1);
        match node_roots.get(&id) {
            None => {
                node_roots.insert(id, f.root.clone());
            }
            Some(root) if root != &f.root => problems.push(format!(
                "`node:{id}` has shards under both `{}` and `{}`: its recovery path is the first; set another with `node {id} recovery_path set <path>`",
                root.display(),
                f.root.display()
            )),
            Some(_) => {}
        }
    }
    let local = match req.node_uid {
        Some(id) if !node_roots.contains_key(&id) => {
            return Err(RebuildError::UnknownNode {
                id,
                source_desc: "the identity files found".into(),
                known: super::node_list(node_roots.keys().copied()),
            })
        }
        Some(id) => id,
        None => *node_roots.keys().next().expect("found is not empty"),
    };
    let all_roots: Vec<PathBuf> = node_roots.values().cloned().collect();
    let mut nodes = BTreeMap::new();
    for (&id, root) in &node_roots {
        let persistent_path = match (&req.persistent_path, id == local) {
            (Some(p), true) => absolute(p)?,
            // Beside its recovery path, outside the home: losing the home again never
            // loses the data recovered into it.
            _ if beside(root).is_some() => beside(root).expect("checked"),
            _ => {
                let mut p = home.join("nodes").join(id.to_string());
                if all_roots.iter().any(|r| overlaps(r, &p)) {
                    p = home.join("nodes").join(format!("{id}-recovered"));
                }
                absolute(&p)?
            }
        };
        if all_roots.iter().any(|r| overlaps(r, &persistent_path)) {
            problems.push(format!(
                "`node:{id}` persistent path `{}` overlaps a recovery path: recovering into it would rewrite the files recovered from",
                persistent_path.display()
            ));
        }
        let (recorded_addr, recorded_range) = recorded.remove(&id).unwrap_or_default();
        let addr = match (req.addr, id == local) {
            (Some(addr), true) => addr.to_string(),
            _ => recorded_addr.unwrap_or_else(|| "127.0.0.1".to_string()),
        };
        let port_range = covering_range(recorded_range, &node_ports[&id]);
        notes.push(format!(
            "`node:{id}`: address {addr}, persistent path `{}`, recovery path `{}`, ports {port_range}",
            persistent_path.display(),
            root.display()
        ));
        nodes.insert(
            id,
            Node {
                id,
                addr,
                persistent_path,
                recovery_path: Some(root.clone()),
                port_range,
                rack_id: None,
                ssh: None,
                redis_server: None,
            },
        );
    }

    let mut databases = super::databases::databases(&found, &mut problems);
    // The newest CCS backup on these disks knows which databases were deleted (its
    // allocator had handed their ids out, its list no longer holds them).
    if let Some((backup, alloc_id, listed)) = newest_backup(&all_roots, req.cluster_id) {
        databases.retain(|id, db| {
            let deleted = *id < alloc_id && !listed.contains(id);
            if deleted {
                problems.push(format!(
                    "`db:{id}` `{}` is not in the newest CCS backup found, `{}`, which was written after it existed: it was deleted; left out, its files are untouched",
                    db.config.name,
                    backup.display()
                ));
            }
            !deleted
        });
    }
    let name = req.name.clone().unwrap_or_else(|| {
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        for f in &found {
            *names.entry(f.identity.cluster_name.as_str()).or_default() += 1;
        }
        let (name, _) = names
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .expect("found is not empty");
        name.to_string()
    });

    let mut scan = IdScan::default();
    for root in &all_roots {
        scan.scan_root(root, req.cluster_id);
    }
    for node in nodes.values() {
        if node.persistent_path.is_dir() {
            scan.scan_root(&node.persistent_path, req.cluster_id);
        }
    }
    let alloc = choose_alloc_id(req.alloc_id, scan.largest)?;
    let cluster = Cluster {
        format: CCS_FORMAT,
        name,
        cluster_id: req.cluster_id,
        alloc_id: alloc.alloc_id,
        generation: 0,
        local_node: local,
        redis_server: None,
        nodes,
        databases,
        backups: Default::default(),
        tls: None,
    };
    Ok(Rebuilt {
        cluster,
        alloc,
        notes,
        problems,
    })
}

/// The newest (highest generation) CCS backup of `cluster_id` in `<root>/ccs/` under
/// `roots`: its path, its allocator and the databases it lists. Read loosely, as ids are.
fn newest_backup(roots: &[PathBuf], cluster_id: u64) -> Option<(PathBuf, Id, BTreeSet<Id>)> {
    let mut best: Option<(u64, PathBuf, Id, BTreeSet<Id>)> = None;
    for root in roots {
        let path = root.join("ccs").join("ccs.json");
        let Ok(bytes) = std::fs::read(&path) else {
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
            best = Some((generation, path, alloc_id, listed));
        }
    }
    best.map(|(_, path, alloc, listed)| (path, alloc, listed))
}

/// `<root>-recovered` (or the next free one), when its parent directory can be written.
fn beside(root: &Path) -> Option<PathBuf> {
    let fresh = super::backup::fresh_sibling(root)?;
    let parent = fresh.parent()?;
    let writable = std::fs::metadata(parent).is_ok_and(|m| !m.permissions().readonly());
    writable.then_some(fresh)
}

/// Identity files of `cluster_id` under `roots`; everything else is reported and left
/// out. Also returns the other cluster ids seen, for the error when none matched.
fn collect(
    roots: &[PathBuf],
    cluster_id: u64,
    problems: &mut Vec<String>,
) -> (Vec<Found>, BTreeSet<u64>) {
    let mut found: Vec<Found> = Vec::new();
    let mut foreign = BTreeSet::new();
    let mut seen: BTreeMap<Id, PathBuf> = BTreeMap::new();
    for root in roots {
        for (dir, reason) in disk::unreadable_dirs(root) {
            problems.push(format!(
                "cannot read `{}`: {reason}; any shard under it is left out",
                dir.display()
            ));
        }
        for dir in disk::shard_dirs(root) {
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
                    problems.push(format!(
                        "cannot read `{}`: {reason}; left out",
                        file.display()
                    ));
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
            if identity.creating {
                // Its create never committed: the database was rolled back or interrupted
                // before any configuration held it (its ids stay allocated).
                problems.push(format!(
                    "`{}` is marked `creating`: `db:{}` `{}` was never committed; left out, its files are untouched",
                    file.display(),
                    identity.db_id,
                    identity.db.name
                ));
                continue;
            }
            if identity.deleted {
                problems.push(format!(
                    "`{}` is marked `deleted`: `db:{}` `{}` was deleted; left out, its files are untouched",
                    file.display(),
                    identity.db_id,
                    identity.db.name
                ));
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
            if let Some(first) = seen.get(&identity.shard_id) {
                problems.push(format!(
                    "shard `redis:{}` found twice, in `{}` and `{}`: the first is used",
                    identity.shard_id,
                    first.display(),
                    dir.dir.display()
                ));
                continue;
            }
            seen.insert(identity.shard_id, dir.dir.clone());
            found.push(Found {
                root: root.clone(),
                file,
                identity,
            });
        }
    }
    (found, foreign)
}

/// The node's port range: as recorded (else the default), widened just enough to hold
/// every shard port found.
fn covering_range(recorded: Option<PortRange>, ports: &[u16]) -> PortRange {
    let mut range = recorded.unwrap_or(PortRange::DEFAULT);
    for &port in ports {
        range.lo = range.lo.min(port);
        range.hi = range.hi.max(port);
    }
    range
}
