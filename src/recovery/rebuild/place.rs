//! Where the masters rebuilt from their replicas' identities go: in their own directory
//! when it is on the disks (its identity file unreadable), else where one of those
//! replicas lies; a database one of whose lost masters finds no place is left out.

use std::collections::BTreeMap;

use crate::ccs::{Cluster, Database, Id};
use crate::host::NodeId;
use crate::recovery::files::Disk;

use super::databases::{LeftOut, LostShard};
use super::found::Unreadable;

/// A master named only by its replicas' identities whose own directory is on the disks,
/// its identity file unreadable (damaged, cut short), is not lost: it is rebuilt on the
/// node whose recovery path holds that directory, on the port its `redis.conf` names when
/// no other shard there has it (else the lowest free one), so `recover` chooses among its
/// own files and its replicas' by the rules of any master. Every other unreadable
/// identity is reported as left out.
pub(super) fn in_own_directories(
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
        let endpoint_lost = endpoint_lost(&cluster.databases[&l.db]);
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
            // Outside the node's range, it stays apart, as a `port` given at create does:
            // the range is the one the node had.
            Some(port) => {
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
            shards_named(&l.replicas),
        );
        if endpoint_lost {
            line.push_str(&endpoint_follows(db, port));
        }
        problems.push(line);
    }
}

/// Each master rebuilt from its replicas' identities goes where one of those replicas
/// lies (their files are there, and recovery loads them), on a free port of that node
/// (`node remove`'s rule for a lost node's master). When the database's endpoint was a
/// lost master's port (no master found holds it), the endpoint moves to the first one
/// placed (a line says so when its port changes). A database one of whose lost masters
/// finds no port is left out.
pub(super) fn place_lost(
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
        let endpoint_lost = endpoint_lost(&cluster.databases[&l.db]);
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
                    shards_named(&l.replicas),
                    l.node,
                    l.port
                );
                if endpoint_lost {
                    line.push_str(&endpoint_follows(db, l.port));
                }
                line.push_str(&endpoint_host(cluster, l.db, l.shard, l.node));
                line.push_str(&beside_replica(&cluster.databases[&l.db], l.shard, l.node));
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

/// A master rebuilt on `node`, where a replica of its own lies: the words saying so,
/// and, when no replica of it is on another node, that one node then holds every copy
/// of its slots (`status` reports that). None when no replica of it is on `node`.
fn beside_replica(db: &Database, master: Id, node: Id) -> String {
    let beside: Vec<Id> = db
        .shards
        .iter()
        .filter(|s| s.master == Some(master) && s.node == node)
        .map(|s| s.id)
        .collect();
    if beside.is_empty() {
        return String::new();
    }
    let mut words = format!(
        "; the master runs on the node of its replica {}",
        shards_named(&beside)
    );
    if db.unprotected_masters().iter().any(|u| u.shard == master) {
        words.push_str(&format!(
            ": no copy of its data is on another node, so losing `node:{node}` loses it; `status` reports it (`{}`) until a replica runs elsewhere",
            crate::db::NO_REPLICA_ELSEWHERE
        ));
    }
    words
}

/// Whether `db`'s endpoint was a lost master's port: no master found holds it.
fn endpoint_lost(db: &Database) -> bool {
    !db.masters().any(|m| m.port == db.port && m.node != 0)
}

/// The endpoint of a database whose endpoint was a lost master's port follows that
/// master to `port`, where it is rebuilt: the words saying so, none when the port stays
/// the same (the master rebuilt on another node's address, on the port it had).
fn endpoint_follows(db: &mut Database, port: u16) -> String {
    if db.port == port {
        return String::new();
    }
    let line = format!("; the endpoint moves from port {} to {port}", db.port);
    db.port = port;
    line
}

/// The endpoint's host is the address of the node of the database's first master
/// ([`crate::db::endpoint`]): when that is the lost master `shard`, now on `node`, the
/// words naming the endpoint as it now is (the lost node's address is not known, and
/// the replica's node may have another).
fn endpoint_host(cluster: &Cluster, db: Id, shard: Id, node: Id) -> String {
    let db = &cluster.databases[&db];
    if db.masters().next().is_none_or(|m| m.id != shard) {
        return String::new();
    }
    format!(
        "; the endpoint is now `{}`, on the address of `node:{node}`",
        crate::db::endpoint(cluster, db)
    )
}

/// `` `redis:4`, `redis:6` ``: shards as the rebuild's lines name them.
fn shards_named(ids: &[Id]) -> String {
    ids.iter()
        .map(|r| format!("`redis:{r}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
