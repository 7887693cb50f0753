//! The configuration rebuilt from shard identity files alone, for when no CCS backup
//! survived. The old disks may be on this machine or on other hosts
//! (`recovery_path ssh://[user@]host[:port]/dir`): those are read through their host,
//! and the nodes found there are reached over SSH.
//!
//! The steps, each in its part: the node roots under the given paths (here), the
//! identity files read there and judged (`found`), which life of each node is rebuilt
//! and where it lives next (`life_choice`), the databases they make (`databases`), and where
//! the masters rebuilt from their replicas' identities go (`place`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::ccs::{Cluster, CCS_FORMAT};
use crate::host::{Hosts, NodeId, SshTarget};
use crate::recovery::files::Disk;

use super::disk::{self, IdScan, On, HERE};
use super::{
    absolute, choose_alloc_id, found, life_choice, place, FromIdentities, RebuildError, Rebuilt,
};

/// A node root (a directory holding `redis/`) and the place it is on: [`HERE`], or the
/// number of the given recovery path on another host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Root {
    pub place: NodeId,
    pub path: PathBuf,
}

/// The given recovery paths: each with its place, and the SSH target of each place.
pub(super) struct Places {
    given: Vec<Root>,
    targets: BTreeMap<NodeId, SshTarget>,
}

impl Places {
    fn parse(paths: &[PathBuf]) -> Result<Places, RebuildError> {
        let mut given = Vec::new();
        let mut targets = BTreeMap::new();
        for (i, path) in paths.iter().enumerate() {
            let text = path.to_string_lossy();
            if text.starts_with("ssh://") {
                let (target, dir) = crate::backup::parse_ssh_url(&text).map_err(|reason| {
                    RebuildError::RecoveryPath {
                        path: path.clone(),
                        reason,
                    }
                })?;
                let place = i as NodeId + 1;
                targets.insert(place, target);
                given.push(Root { place, path: dir });
                continue;
            }
            let path = absolute(path)?;
            // The rule `node <id> recovery_path set` applies; the path is kept as given
            // (absolute), not resolved.
            crate::ccs::rules::recovery_path(&path)?;
            given.push(Root { place: HERE, path });
        }
        Ok(Places { given, targets })
    }

    pub(super) fn target(&self, place: NodeId) -> Option<&SshTarget> {
        self.targets.get(&place)
    }

    /// `path` as the operator names it: with `ssh://host` when it is on another host.
    pub(super) fn shown(&self, root: &Root) -> String {
        match self.target(root.place) {
            Some(t) => format!("ssh://{t}{}", root.path.display()),
            None => root.path.display().to_string(),
        }
    }

    /// Whether two places are the same machine.
    pub(super) fn same_machine(&self, a: NodeId, b: NodeId) -> bool {
        self.target(a) == self.target(b)
    }
}

fn quoted(places: &Places, roots: &[Root]) -> String {
    let list: Vec<String> = roots
        .iter()
        .map(|r| format!("`{}`", places.shown(r)))
        .collect();
    list.join(", ")
}

/// Rebuilds the configuration of `req.cluster_id` from the identity files under the
/// recovery paths (not yet stored). Nodes without a given persistent path get
/// `<root>-recovered` beside their recovery path, or `<home>/nodes/<id>`, as a new local
/// cluster would. Recovery paths on other hosts are read through their host, on a
/// thread of its own (this is called from code that is not async).
pub fn from_identities(req: &FromIdentities, home: &Path) -> Result<Rebuilt, RebuildError> {
    let places = Places::parse(&req.recovery_paths)?;
    if places.targets.is_empty() {
        return rebuild(req, home, &places, &Disk::local());
    }
    super::off_runtime(|| {
        let hosts =
            Hosts::for_nodes(places.targets.iter().map(|(p, t)| (*p, Some(t)))).map_err(|e| {
                RebuildError::RecoveryPath {
                    path: PathBuf::from(places.shown(&places.given[0])),
                    reason: format!("no private directory for the ssh connection: {e}"),
                }
            })?;
        rebuild(req, home, &places, &Disk::of_hosts(hosts))
    })
}

fn rebuild(
    req: &FromIdentities,
    home: &Path,
    places: &Places,
    disk: &Disk,
) -> Result<Rebuilt, RebuildError> {
    let on = |place: NodeId| On { disk, place };
    let mut notes = Vec::new();
    let mut problems = Vec::new();
    let given = &places.given;
    if given.is_empty() {
        return Err(RebuildError::RecoveryPath {
            path: PathBuf::new(),
            reason: "no recovery path given".into(),
        });
    }
    for g in given.iter().filter(|g| g.place != HERE) {
        if !disk.is_dir(g.place, &g.path) {
            return Err(RebuildError::RecoveryPath {
                path: PathBuf::from(places.shown(g)),
                reason: "it is not a directory there, or the host cannot be read".into(),
            });
        }
    }

    let (roots, inside) = find_roots(places, disk, &mut notes, &mut problems);

    let (found, foreign, unreadable) = found::collect(disk, &roots, req.cluster_id, &mut problems);
    if found.is_empty() {
        for u in &unreadable {
            problems.push(u.left_out());
        }
        let mut others = if foreign.is_empty() {
            String::new()
        } else {
            let ids: Vec<String> = foreign.iter().map(|c| c.to_string()).collect();
            format!("; found files of cluster_id {} only", ids.join(", "))
        };
        for line in inside {
            others.push_str("; ");
            others.push_str(&line);
        }
        return Err(RebuildError::NoIdentities {
            cluster_id: req.cluster_id,
            searched: quoted(places, given),
            others,
        });
    }

    let life_choice::Lives {
        nodes,
        places: node_places,
        local,
        roots: all_roots,
    } = life_choice::nodes(req, home, places, disk, &found, &mut notes, &mut problems)?;

    let super::databases::FromShards {
        mut databases,
        mut lost,
        mut left_out,
    } = super::databases::databases(&found, &mut problems);
    // The newest CCS backup on these disks knows which databases were deleted (its
    // allocator had handed their ids out, its list no longer holds them).
    if let Some((backup, alloc_id, listed)) = found::newest_backup(disk, &all_roots, req.cluster_id)
    {
        databases.retain(|id, db| {
            let deleted = *id < alloc_id && !listed.contains(id);
            if deleted {
                problems.push(format!(
                    "`db:{id}` `{}` is not in the newest CCS backup found, `{}`, which was written after it existed: it was deleted; left out, its files are untouched",
                    db.config.name,
                    places.shown(&backup)
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

    // Every root found, not only the nodes' recovery paths: an earlier life's ids were
    // handed out all the same.
    let mut scan = IdScan::default();
    for root in &roots {
        scan.scan_root_on(Some(on(root.place)), &root.path, req.cluster_id);
    }
    for node in nodes.values() {
        let place = node_places[&node.id];
        if disk.is_dir(place, &node.persistent_path) {
            scan.scan_root_on(Some(on(place)), &node.persistent_path, req.cluster_id);
        }
    }
    let alloc = choose_alloc_id(req.alloc_id, scan.largest)?;
    // The cluster's TLS material, as `cluster tls set` left it on every node's disk: a
    // TLS database comes back over it (its node's copy taken from the recovery path).
    let tls = found::tls_on_disks(disk, &all_roots);
    if let Some((record, at)) = &tls {
        notes.push(format!(
            "TLS material `{}` found at `{}`: TLS databases come back over it",
            record.material_id(),
            places.shown(at)
        ));
    }
    let mut cluster = Cluster {
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
        tls: tls.map(|(record, _)| record),
    };
    place::in_own_directories(
        &mut cluster,
        &mut lost,
        unreadable,
        &node_places,
        disk,
        &mut problems,
    );
    place::place_lost(&mut cluster, &mut lost, &mut left_out, &mut problems);
    Ok(Rebuilt {
        cluster,
        alloc,
        notes,
        problems,
        lost,
        left_out,
    })
}

/// The node roots (directories holding `redis/`) at or below the given recovery paths,
/// each once; a path with none is reported, and one into a node's `redis/` also returned
/// (the error names the directory to give when nothing is found at all).
fn find_roots(
    places: &Places,
    disk: &Disk,
    notes: &mut Vec<String>,
    problems: &mut Vec<String>,
) -> (Vec<Root>, Vec<String>) {
    let on = |place: NodeId| On { disk, place };
    let given = &places.given;
    let mut roots: Vec<Root> = Vec::new();
    let mut inside = Vec::new();
    for g in given {
        let found = disk::node_roots_on(on(g.place), &g.path);
        if found.is_empty() {
            // A path into a node's `redis/` (the directory itself, a database's, a
            // shard's) names the node directory above it.
            let above = g.path.ancestors().skip(1).take(3).find(|a| {
                g.path
                    .starts_with(a.join(crate::server::shard_dir::REDIS_DIR))
                    && disk.is_dir(g.place, &a.join(crate::server::shard_dir::REDIS_DIR))
            });
            let line = match above {
                Some(a) => {
                    let root = Root {
                        place: g.place,
                        path: a.to_path_buf(),
                    };
                    let line = format!(
                        "`{}` is a node's `redis/` directory or lies inside one: give `{}`, the node directory holding it",
                        places.shown(g),
                        places.shown(&root)
                    );
                    inside.push(line.clone());
                    line
                }
                None => format!(
                    "no `redis/` directory at or below `{}`: nothing to recover there",
                    places.shown(g)
                ),
            };
            problems.push(line);
        }
        for path in found {
            let root = Root {
                place: g.place,
                path,
            };
            let dup = roots
                .iter()
                .any(|r| r.path == root.path && places.same_machine(r.place, root.place));
            if !dup {
                if root.path != g.path {
                    notes.push(format!("found node data under `{}`", places.shown(&root)));
                }
                roots.push(root);
            }
        }
    }
    (roots, inside)
}
