//! The configuration rebuilt from shard identity files alone, for when no CCS backup
//! survived. The old disks may be on this machine or on other hosts
//! (`recovery_path ssh://[user@]host[:port]/dir`): those are read through their host,
//! and the nodes found there are reached over SSH.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::ccs::{Cluster, Id, Node, PortRange, ShardIdentity, CCS_FORMAT, SHARD_IDENTITY_FILE};
use crate::host::{Hosts, NodeId, SshTarget};
use crate::recovery::files::Disk;

use super::databases::{LeftOut, LostShard};
use super::disk::{self, IdScan, IdentityRead, On, HERE};
use super::{absolute, choose_alloc_id, overlaps, FromIdentities, RebuildError, Rebuilt};

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

/// A node root (a directory holding `redis/`) and the place it is on: [`HERE`], or the
/// number of the given recovery path on another host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Root {
    pub place: NodeId,
    pub path: PathBuf,
}

/// The given recovery paths: each with its place, and the SSH target of each place.
struct Places {
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

    fn target(&self, place: NodeId) -> Option<&SshTarget> {
        self.targets.get(&place)
    }

    /// `path` as the operator names it: with `ssh://host` when it is on another host.
    fn shown(&self, root: &Root) -> String {
        match self.target(root.place) {
            Some(t) => format!("ssh://{t}{}", root.path.display()),
            None => root.path.display().to_string(),
        }
    }

    /// Whether two places are the same machine.
    fn same_machine(&self, a: NodeId, b: NodeId) -> bool {
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

    let (found, foreign, unreadable) = collect(disk, &roots, req.cluster_id, &mut problems);
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

    // Nodes: each on the recovery path where its shards were found.
    let mut node_roots: BTreeMap<Id, Root> = BTreeMap::new();
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
    }
    // Each node's recovery path: the root holding its shard written last (two lives of a
    // node side by side: the later one).
    let mut by_node: BTreeMap<Id, Vec<&Found>> = BTreeMap::new();
    for f in &found {
        by_node.entry(f.identity.node_id).or_default().push(f);
    }
    for (id, shards) in by_node {
        let one_root = shards.iter().all(|f| f.root == shards[0].root);
        let chosen = if one_root {
            shards[0]
        } else {
            // The first of the latest, as found.
            let latest = shards.iter().map(|f| f.written(disk)).max().unwrap_or(0);
            shards
                .iter()
                .find(|f| f.written(disk) == latest)
                .expect("latest is one of them")
        };
        node_roots.insert(id, chosen.root.clone());
    }
    let mut split: BTreeSet<(Id, String)> = BTreeSet::new();
    for f in &found {
        let id = f.identity.node_id;
        let root = &node_roots[&id];
        if root != &f.root && split.insert((id, places.shown(&f.root))) {
            problems.push(format!(
                "`node:{id}` has shards under both `{}` and `{}`: its recovery path is the first, which holds the shard written last; set another with `node {id} recovery_path set <path>`",
                places.shown(root),
                places.shown(&f.root)
            ));
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
        // This machine's node: the first found on this machine's disks.
        None => node_roots
            .iter()
            .find(|(_, r)| r.place == HERE)
            .or_else(|| node_roots.iter().next())
            .map(|(id, _)| *id)
            .expect("found is not empty"),
    };
    let all_roots: Vec<Root> = node_roots.values().cloned().collect();
    let overlapping = |place: NodeId, p: &Path| {
        all_roots
            .iter()
            .any(|r| places.same_machine(r.place, place) && overlaps(&r.path, p))
    };
    let mut nodes = BTreeMap::new();
    let mut node_places = BTreeMap::new();
    for (&id, root) in &node_roots {
        let persistent_path = match (&req.persistent_path, id == local) {
            (Some(p), true) if root.place == HERE => absolute(p)?,
            (Some(p), true) => p.clone(),
            // Beside its recovery path, outside the home: losing the home again never
            // loses the data recovered into it.
            _ => match beside(on(root.place), &root.path) {
                Some(p) => p,
                None if root.place != HERE => {
                    return Err(RebuildError::RecoveryPath {
                        path: PathBuf::from(places.shown(root)),
                        reason: format!(
                            "no free `-recovered` directory beside it for `node:{id}`'s new data"
                        ),
                    })
                }
                None => {
                    let mut p = home.join("nodes").join(id.to_string());
                    if overlapping(HERE, &p) {
                        p = home.join("nodes").join(format!("{id}-recovered"));
                    }
                    absolute(&p)?
                }
            },
        };
        if overlapping(root.place, &persistent_path) {
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
        let ssh = places.target(root.place).cloned();
        notes.push(format!(
            "`node:{id}`: address {addr}, {}persistent path `{}`, recovery path `{}`, ports {port_range}",
            ssh.as_ref().map_or(String::new(), |t| format!("on ssh://{t}, ")),
            persistent_path.display(),
            root.path.display()
        ));
        node_places.insert(id, root.place);
        nodes.insert(
            id,
            Node {
                id,
                addr,
                persistent_path,
                recovery_path: Some(root.path.clone()),
                port_range,
                rack_id: None,
                ssh,
                redis_server: None,
            },
        );
    }

    let super::databases::FromShards {
        mut databases,
        mut lost,
        mut left_out,
    } = super::databases::databases(&found, &mut problems);
    // The newest CCS backup on these disks knows which databases were deleted (its
    // allocator had handed their ids out, its list no longer holds them).
    if let Some((backup, alloc_id, listed)) = newest_backup(disk, &all_roots, req.cluster_id) {
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

    let mut scan = IdScan::default();
    for root in &all_roots {
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
    let tls = tls_on_disks(disk, &all_roots);
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
    in_own_directories(
        &mut cluster,
        &mut lost,
        unreadable,
        &node_places,
        disk,
        &mut problems,
    );
    place_lost(&mut cluster, &mut lost, &mut left_out, &mut problems);
    Ok(Rebuilt {
        cluster,
        alloc,
        notes,
        problems,
        lost,
        left_out,
    })
}

impl Unreadable {
    fn left_out(&self) -> String {
        format!(
            "cannot read `{}`: {}; left out",
            self.file.display(),
            self.reason
        )
    }
}

/// A master named only by its replicas' identities whose own directory is on the disks,
/// its identity file unreadable (damaged, cut short), is not lost: it is rebuilt on the
/// node whose recovery path holds that directory, on the port its `redis.conf` names when
/// no other shard there has it (else the lowest free one), so `recover` chooses among its
/// own files and its replicas' by the rules of any master. Every other unreadable
/// identity is reported as left out.
fn in_own_directories(
    cluster: &mut Cluster,
    lost: &mut Vec<LostShard>,
    unreadable: Vec<Unreadable>,
    node_places: &BTreeMap<Id, NodeId>,
    disk: &Disk,
    problems: &mut Vec<String>,
) {
    for u in unreadable {
        let Some(at) = lost.iter().position(|l| l.db == u.db && l.shard == u.shard) else {
            problems.push(u.left_out());
            continue;
        };
        let node = cluster.nodes.values().find(|n| {
            n.recovery_path.as_deref() == Some(u.root.path.as_path())
                && node_places.get(&n.id) == Some(&u.root.place)
        });
        let Some(node) = node.map(|n| n.id) else {
            problems.push(format!(
                "{}; it is the directory of lost master `redis:{}`, but no shard found beside it names its node: the master is rebuilt from its replicas' identities where they lie, and these files are not looked at",
                u.left_out(),
                u.shard
            ));
            continue;
        };
        let l = lost.remove(at);
        let endpoint_lost = {
            let db = &cluster.databases[&l.db];
            !db.masters().any(|m| m.port == db.port && m.node != 0)
        };
        let recorded = disk
            .read(
                u.root.place,
                &u.dir.join(crate::server::shard_dir::CONF_FILE),
            )
            .ok()
            .and_then(|bytes| crate::server::listening_port(&String::from_utf8_lossy(&bytes)));
        let addr = cluster.nodes[&node].addr.clone();
        let taken = |port: u16| {
            cluster.databases.values().flat_map(|d| &d.shards).any(|s| {
                s.node != 0
                    && s.port == port
                    && cluster.nodes.get(&s.node).is_some_and(|n| n.addr == addr)
            })
        };
        let port = match recorded.filter(|p| !taken(*p)) {
            Some(port) => {
                let range = &mut cluster
                    .nodes
                    .get_mut(&node)
                    .expect("found above")
                    .port_range;
                range.lo = range.lo.min(port);
                range.hi = range.hi.max(port);
                let db = cluster.databases.get_mut(&l.db).expect("rebuilt");
                let shard = db
                    .shards
                    .iter_mut()
                    .find(|s| s.id == l.shard)
                    .expect("rebuilt");
                shard.node = node;
                shard.port = port;
                Ok(port)
            }
            None => crate::recovery::relocate::place_shard(cluster, l.db, l.shard, &[node])
                .map(|placed| placed.port),
        };
        let port = match port {
            Ok(port) => port,
            Err(e) => {
                // No port there: placed as a lost master, by its replicas.
                problems.push(format!(
                    "{}; it is the directory of lost master `redis:{}`, but `node:{node}` has no free port for it ({e})",
                    u.left_out(),
                    u.shard
                ));
                lost.insert(at, l);
                continue;
            }
        };
        let db = cluster.databases.get_mut(&l.db).expect("rebuilt");
        let mut line = format!(
            "`db:{}` `{}`: the identity file of master `redis:{}`, `{}`, cannot be read ({}); rebuilt from the identity of its replica {} in its own directory, on `node:{node}` port {port}: `recover` chooses among its own files and its replicas' as for any master",
            l.db,
            l.db_name,
            l.shard,
            u.file.display(),
            u.reason,
            l.replicas
                .iter()
                .map(|r| format!("`redis:{r}`"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        if endpoint_lost && db.port != port {
            line.push_str(&format!(
                "; the endpoint moves from port {} to {port}",
                db.port
            ));
            db.port = port;
        }
        problems.push(line);
    }
}

/// Each master rebuilt from its replicas' identities goes where one of those replicas
/// lies (their files are there, and recovery loads them), on a free port of that node
/// (`node remove`'s rule for a lost node's master). When the database's endpoint was a
/// lost master's port (no master found holds it), the endpoint moves to the first one
/// placed. A database one of whose lost masters finds no port is left out.
fn place_lost(
    cluster: &mut Cluster,
    lost: &mut Vec<LostShard>,
    left_out: &mut Vec<LeftOut>,
    problems: &mut Vec<String>,
) {
    let nodes: Vec<Id> = cluster.nodes.keys().copied().collect();
    let mut failed: BTreeMap<Id, String> = BTreeMap::new();
    for l in lost.iter_mut() {
        if failed.contains_key(&l.db) {
            continue;
        }
        let endpoint_lost = {
            let db = &cluster.databases[&l.db];
            !db.masters().any(|m| m.port == db.port && m.node != 0)
        };
        match crate::recovery::relocate::place_shard(cluster, l.db, l.shard, &nodes) {
            Ok(placed) => {
                l.node = placed.to;
                l.port = placed.port;
                let db = cluster.databases.get_mut(&l.db).expect("placed in it");
                let mut line = format!(
                    "`db:{}` `{}`: master `redis:{}`{} was lost with its disk; rebuilt from the identity of its replica {}, now on `node:{}` port {}; `recover` loads the replica's files",
                    l.db,
                    l.db_name,
                    l.shard,
                    l.slots.map_or(String::new(), |s| format!(" (slots {s})")),
                    l.replicas
                        .iter()
                        .map(|r| format!("`redis:{r}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    l.node,
                    l.port
                );
                if endpoint_lost {
                    line.push_str(&format!(
                        "; the endpoint moves from port {} to {}",
                        db.port, l.port
                    ));
                    db.port = l.port;
                }
                problems.push(line);
            }
            Err(e) => {
                failed.insert(
                    l.db,
                    format!("its lost master `redis:{}` has no place: {e}", l.shard),
                );
            }
        }
    }
    for (db, reason) in failed {
        let gone = cluster.databases.remove(&db).expect("placed in it");
        lost.retain(|l| l.db != db);
        let left = LeftOut {
            db,
            name: gone.config.name,
            reason,
        };
        problems.push(left.line());
        left_out.push(left);
    }
}

/// The newest (highest generation) CCS backup of `cluster_id` in `<root>/ccs/` under
/// `roots`: where it is, its allocator and the databases it lists. Read loosely, as ids
/// are.
/// The TLS record (`tls/current.json`) of the first node root whose material directory it
/// names is there, and where it was read.
fn tls_on_disks(disk: &Disk, roots: &[Root]) -> Option<(crate::tls::TlsConfig, Root)> {
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

fn newest_backup(disk: &Disk, roots: &[Root], cluster_id: u64) -> Option<(Root, Id, BTreeSet<Id>)> {
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

/// `<root>-recovered` (or the next free one), when its parent directory can be written
/// (on another host, whether it can is found when the node's directories are made).
fn beside(on: On, root: &Path) -> Option<PathBuf> {
    if !on.is_here() {
        return super::backup::fresh_sibling_on(on, root);
    }
    let fresh = super::backup::fresh_sibling(root)?;
    let parent = fresh.parent()?;
    let writable = std::fs::metadata(parent).is_ok_and(|m| !m.permissions().readonly());
    writable.then_some(fresh)
}

/// Identity files of `cluster_id` under `roots`; everything else is reported and left
/// out. Also returns the other cluster ids seen, for the error when none matched.
fn collect(
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

impl Found {
    /// See [`Found::written`].
    fn written(&self, disk: &Disk) -> i64 {
        *self.written.get_or_init(|| {
            let on = On {
                disk,
                place: self.root.place,
            };
            self.file.parent().map_or(0, |dir| last_written(on, dir))
        })
    }
}

/// When a shard directory was last written: the newest of its data files and its
/// identity file (0 when none can be read). Logs and pid files are not data.
fn last_written(on: On, dir: &Path) -> i64 {
    use crate::recovery::plan::SourceKind;
    [SourceKind::AofDir, SourceKind::AofFile, SourceKind::Rdb]
        .iter()
        .map(|k| k.file_name())
        .chain([SHARD_IDENTITY_FILE])
        .filter_map(|name| on.disk.readable_mtime(on.place, &dir.join(name)).ok())
        .max()
        .unwrap_or(0)
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
