//! A lost node's shards placed on the nodes left: `node <id> remove` of a node whose
//! databases are all pending recovery (its machine is gone for good). A master goes where
//! one of its replicas lies, so that recovery loads the replica's files there (a node's
//! recovery path holds every shard directory it had); a replica goes where its master is
//! not, when another node is left. Nothing runs yet, so nothing is stopped or copied here:
//! only the configuration changes, and `recover` does the rest.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::ccs::{Cluster, DbState, Id, Role};
use crate::error::{DomainError, ErrorKind};
use crate::server::ServerError;

use super::ports::reserved_by_addr;

/// One shard placed on another node.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ShardMove {
    pub db: Id,
    pub db_name: String,
    pub shard: Id,
    pub role: Role,
    pub to: Id,
    pub port: u16,
    /// A replica that could only go to its master's node (no other node is left).
    pub beside_master: bool,
}

/// Why a node's shards cannot be placed elsewhere.
#[derive(Debug, thiserror::Error)]
pub enum RelocateError {
    #[error("node:{node} holds shards of databases that are not pending recovery ({dbs}): delete or move their databases first; only a database pending recovery has its shards placed on other nodes")]
    NotPendingRecovery { node: Id, dbs: String },
    #[error("node:{node} holds shards ({shards}) and no other node is left to take them: add a node first")]
    NoOtherNode { node: Id, shards: String },
    #[error(transparent)]
    Port(#[from] ServerError),
}

impl DomainError for RelocateError {
    fn kind(&self) -> ErrorKind {
        match self {
            RelocateError::Port(e) => e.kind(),
            _ => ErrorKind::Conflict,
        }
    }
}

/// Places every shard of node `lost` on another node of `cluster` (changed in place only
/// when every shard found a place). The moves, masters first.
pub fn relocate(cluster: &mut Cluster, lost: Id) -> Result<Vec<ShardMove>, RelocateError> {
    let holding: Vec<Id> = cluster
        .databases
        .values()
        .filter(|db| db.shards.iter().any(|s| s.node == lost))
        .map(|db| db.id)
        .collect();
    if holding.is_empty() {
        return Ok(Vec::new());
    }
    let running: Vec<String> = holding
        .iter()
        .map(|id| &cluster.databases[id])
        .filter(|db| db.state != DbState::PendingRecovery)
        .map(|db| format!("db:{} `{}`", db.id, db.config.name))
        .collect();
    if !running.is_empty() {
        return Err(RelocateError::NotPendingRecovery {
            node: lost,
            dbs: running.join(", "),
        });
    }
    let survivors: Vec<Id> = cluster
        .nodes
        .keys()
        .copied()
        .filter(|&n| n != lost)
        .collect();
    if survivors.is_empty() {
        let shards = holding
            .iter()
            .flat_map(|id| cluster.databases[id].shards.iter())
            .filter(|s| s.node == lost)
            .map(|s| format!("redis:{}", s.id))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(RelocateError::NoOtherNode { node: lost, shards });
    }

    let mut next = cluster.clone();
    let mut moves = Vec::new();
    for db_id in holding {
        // Masters first: a replica's place depends on where its master went.
        for role in [Role::Master, Role::Replica] {
            let ids: Vec<Id> = next.databases[&db_id]
                .shards
                .iter()
                .filter(|s| s.node == lost && s.role == role)
                .map(|s| s.id)
                .collect();
            for shard in ids {
                moves.push(place_shard(&mut next, db_id, shard, &survivors)?);
            }
        }
    }
    *cluster = next;
    Ok(moves)
}

/// Shards per node, the fewest first among equals.
fn load(cluster: &Cluster) -> BTreeMap<Id, usize> {
    let mut load: BTreeMap<Id, usize> = cluster.nodes.keys().map(|&n| (n, 0)).collect();
    for s in cluster.databases.values().flat_map(|db| &db.shards) {
        *load.entry(s.node).or_default() += 1;
    }
    load
}

/// Places shard `shard_id` of db `db_id` on one of `survivors` (see the module's rules), on
/// the lowest free port of that node's range; the database's endpoint follows it when the
/// shard was its endpoint. Also how `cluster recover` places a master rebuilt from its
/// replicas' identities (its own node unknown).
pub(crate) fn place_shard(
    cluster: &mut Cluster,
    db_id: Id,
    shard_id: Id,
    survivors: &[Id],
) -> Result<ShardMove, RelocateError> {
    let load = load(cluster);
    let db = &cluster.databases[&db_id];
    let shard = db
        .shards
        .iter()
        .find(|s| s.id == shard_id)
        .expect("the shard was listed from this database")
        .clone();
    let least = |nodes: &mut dyn Iterator<Item = Id>| nodes.min_by_key(|n| (load[n], *n));
    let (to, beside_master) = match shard.role {
        // Where a replica lies, its files lie: recovery takes the master's data there.
        Role::Master => {
            let mut replicas = db
                .shards
                .iter()
                .filter(|s| s.master == Some(shard.id) && survivors.contains(&s.node))
                .map(|s| s.node);
            let to = least(&mut replicas).or_else(|| least(&mut survivors.iter().copied()));
            (to.expect("survivors is not empty"), false)
        }
        Role::Replica => {
            let taken: BTreeSet<Id> = db
                .shards
                .iter()
                .filter(|s| {
                    s.id != shard.id && (Some(s.id) == shard.master || s.master == shard.master)
                })
                .map(|s| s.node)
                .collect();
            let mut apart = survivors.iter().copied().filter(|n| !taken.contains(n));
            match least(&mut apart) {
                Some(to) => (to, false),
                None => {
                    let to = least(&mut survivors.iter().copied()).expect("survivors is not empty");
                    (to, true)
                }
            }
        }
    };
    let need = db.port_need();
    let node = &cluster.nodes[&to];
    let reserved = reserved_by_addr(cluster)
        .remove(&node.addr)
        .unwrap_or_default();
    let port = node.pick_port(cluster, &reserved, need)?;
    let db = cluster.databases.get_mut(&db_id).expect("listed above");
    if db.port == shard.port {
        db.port = port;
    }
    let name = db.config.name.clone();
    let s = db
        .shards
        .iter_mut()
        .find(|s| s.id == shard_id)
        .expect("found above");
    s.node = to;
    s.port = port;
    s.pid = None;
    Ok(ShardMove {
        db: db_id,
        db_name: name,
        shard: shard_id,
        role: shard.role,
        to,
        port,
        beside_master,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ccs::fixtures::{cluster, database, db_config, master, node, shard, slots};

    fn lost_world() -> Cluster {
        let root = std::path::Path::new("/nonexistent/relocate");
        let mut c = cluster(7, 50, vec![node(1, root), node(2, root), node(3, root)]);
        let (a, b) = (Some(slots(0, 8191)), Some(slots(8192, 16383)));
        let mut db = database(
            10,
            db_config("spread", 2, true),
            30001,
            vec![
                shard(11, 1, Role::Master, None, a, 30001),
                shard(12, 2, Role::Master, None, b, 30002),
                shard(13, 2, Role::Replica, Some(11), a, 30003),
                shard(14, 3, Role::Replica, Some(12), b, 30004),
            ],
        );
        db.state = DbState::PendingRecovery;
        c.databases.insert(10, db);
        c
    }

    #[test]
    fn a_master_goes_where_its_replica_lies_and_a_replica_away_from_its_master() {
        let mut c = lost_world();
        let moves = relocate(&mut c, 2).unwrap();
        let placed: Vec<(Id, Role, Id, bool)> = moves
            .iter()
            .map(|m| (m.shard, m.role, m.to, m.beside_master))
            .collect();
        assert_eq!(
            placed,
            vec![(12, Role::Master, 3, false), (13, Role::Replica, 3, false)]
        );
        let db = &c.databases[&10];
        assert!(db.shards.iter().all(|s| s.node != 2));
        // Node 3's ports stay apart, bus ports included.
        let on3: Vec<u16> = db
            .shards
            .iter()
            .filter(|s| s.node == 3)
            .map(|s| s.port)
            .collect();
        let mut seen = BTreeSet::new();
        for p in on3 {
            assert!(seen.insert(p) && seen.insert(p + 10000), "{seen:?}");
        }
    }

    #[test]
    fn with_one_node_left_a_replica_goes_beside_its_master() {
        let mut c = lost_world();
        c.nodes.remove(&3);
        for s in &mut c.databases.get_mut(&10).unwrap().shards {
            if s.node == 3 {
                s.node = 1;
            }
        }
        let moves = relocate(&mut c, 2).unwrap();
        assert!(moves.iter().all(|m| m.to == 1));
        assert!(moves.iter().any(|m| m.shard == 13 && m.beside_master));
    }

    /// Nodes `nodes` and db:20 `one`, a single master redis:21 on node 2, pending recovery.
    fn one_shard_world(nodes: &[Id]) -> Cluster {
        let root = std::path::Path::new("/nonexistent/relocate");
        let mut c = cluster(7, 50, nodes.iter().map(|&n| node(n, root)).collect());
        let mut db = database(
            20,
            db_config("one", 1, false),
            30500,
            vec![master(21, 2, 30500)],
        );
        db.state = DbState::PendingRecovery;
        c.databases.insert(20, db);
        c
    }

    #[test]
    fn the_endpoint_follows_its_master() {
        let mut c = one_shard_world(&[1, 2]);
        let moves = relocate(&mut c, 2).unwrap();
        assert_eq!(c.databases[&20].port, moves[0].port);
        assert_eq!(c.databases[&20].shards[0].node, 1);
    }

    #[test]
    fn a_running_database_or_no_node_left_changes_nothing() {
        let mut c = lost_world();
        c.databases.get_mut(&10).unwrap().state = DbState::Active;
        let before = c.clone();
        let e = relocate(&mut c, 2).unwrap_err().to_string();
        assert!(e.contains("db:10 `spread`"), "{e}");
        assert_eq!(c, before);

        let mut alone = one_shard_world(&[2]);
        let before = alone.clone();
        let e = relocate(&mut alone, 2).unwrap_err().to_string();
        assert!(e.contains("redis:21") && e.contains("no other node"), "{e}");
        assert_eq!(alone, before);
    }
}
