//! Choosing between a node's lives on the disks (an earlier recovery's disk beside the
//! `-recovered` directory it made): when a shard directory was last written (of a shard
//! found twice, `found` keeps the copy written last), a node's recovery path is the root
//! holding its shard written last, and its persistent path is a new life beside it
//! (named by [`crate::recovery::lives`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::ccs::{Id, Node, PortRange, SHARD_IDENTITY_FILE};
use crate::host::NodeId;
use crate::recovery::files::Disk;

use super::disk::{On, HERE};
use super::found::Found;
use super::identities::{Places, Root};
use super::{absolute, overlaps, FromIdentities, RebuildError};

/// Which life of each node is rebuilt, and where it lives next: see [`nodes`].
pub(super) struct Lives {
    pub nodes: BTreeMap<Id, Node>,
    /// Where each node's disk is read.
    pub places: BTreeMap<Id, NodeId>,
    /// This machine's node.
    pub local: Id,
    /// Each node's recovery path, as a root.
    pub roots: Vec<Root>,
}

/// The nodes the identities name: each on the recovery path holding its shard written
/// last (two lives of a node side by side: the later one), its persistent path a new life
/// beside it (or the one given for this machine's node), its address and port range as
/// its shards recorded them.
pub(super) fn nodes(
    req: &FromIdentities,
    home: &Path,
    places: &Places,
    disk: &Disk,
    found: &[Found],
    notes: &mut Vec<String>,
    problems: &mut Vec<String>,
) -> Result<Lives, RebuildError> {
    let on = |place: NodeId| On { disk, place };
    // Nodes: each on the recovery path where its shards were found.
    let mut node_roots: BTreeMap<Id, Root> = BTreeMap::new();
    let mut node_ports: BTreeMap<Id, Vec<u16>> = BTreeMap::new();
    let mut recorded: BTreeMap<Id, (Option<String>, Option<PortRange>)> = BTreeMap::new();
    for f in found {
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
    for f in found {
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
    for f in found {
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
    Ok(Lives {
        nodes,
        places: node_places,
        local,
        roots: all_roots,
    })
}

impl Found {
    /// See [`Found::written`].
    pub(super) fn written(&self, disk: &Disk) -> i64 {
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
pub(super) fn last_written(on: On, dir: &Path) -> i64 {
    use crate::recovery::plan::SourceKind;
    [SourceKind::AofDir, SourceKind::AofFile, SourceKind::Rdb]
        .iter()
        .map(|k| k.file_name())
        .chain([SHARD_IDENTITY_FILE])
        .filter_map(|name| on.disk.readable_mtime(on.place, &dir.join(name)).ok())
        .max()
        .unwrap_or(0)
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

/// The node's port range: as its shards recorded it, even when a shard's port lies
/// outside it (a database created with a `port` of its own keeps it apart, as at create).
/// Identities written before nodes were recorded name only their shards' ports: then the
/// blocks of 1000 holding them (the default of the Lazarus that wrote them was such a
/// block), within 1024-55535 unless a port lies beyond.
fn covering_range(recorded: Option<PortRange>, ports: &[u16]) -> PortRange {
    if let Some(range) = recorded {
        return range;
    }
    let (Some(&lo), Some(&hi)) = (ports.iter().min(), ports.iter().max()) else {
        return PortRange::DEFAULT;
    };
    PortRange {
        lo: (lo / 1000 * 1000).max(crate::server::MIN_SHARD_PORT.min(lo)),
        hi: (hi / 1000 * 1000)
            .saturating_add(999)
            .min(crate::server::MAX_BUS_SHARD_PORT.max(hi)),
    }
}
