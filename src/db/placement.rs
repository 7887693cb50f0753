//! Placing a new database's shards on nodes and ports.

use std::collections::{BTreeMap, BTreeSet};

use crate::ccs::{Cluster, Database, DbConfig, DbState, Id, Role, Shard};
use crate::server::{even_slots, require_free, PortNeed, Servers};

use super::DbError;

/// Allocates the database's ids and lays out its shards: masters round-robin over the
/// nodes (by id), each replica on the node after its master's, so never beside it. Ports
/// come from each node's range, skipping ports the CCS gives to other shards and ports
/// found taken; `port` fixes the endpoint (first master) port and must be free.
///
/// Allocates ids from `cluster`: run it on a scratch copy that is dropped on failure.
pub fn place(
    cluster: &mut Cluster,
    config: DbConfig,
    port: Option<u16>,
) -> Result<Database, DbError> {
    place_avoiding(cluster, config, port, &BTreeMap::new())
}

/// [`place`] that also keeps off `avoid` (ports by address), e.g. ports another process
/// took between the probe and a server binding them.
pub fn place_avoiding(
    cluster: &mut Cluster,
    config: DbConfig,
    port: Option<u16>,
    avoid: &BTreeMap<String, BTreeSet<u16>>,
) -> Result<Database, DbError> {
    let nodes: Vec<Id> = cluster.nodes.keys().copied().collect();
    if nodes.is_empty() {
        return Err(DbError::TooFewNodes { have: 0 });
    }
    if config.replication && nodes.len() < 2 {
        return Err(DbError::TooFewNodes { have: nodes.len() });
    }
    let need = if config.shards > 1 {
        PortNeed::WithBus
    } else {
        PortNeed::Plain
    };

    // Ports are per address: loopback nodes share one, so reserve by address.
    let mut used: BTreeMap<(String, u16), (Id, Id)> = BTreeMap::new();
    for db in cluster.databases.values() {
        for s in &db.shards {
            if let Some(node) = cluster.nodes.get(&s.node) {
                used.insert((node.addr.clone(), s.port), (db.id, s.id));
            }
        }
    }
    // What each address's shards hold: client ports, and bus ports of cluster shards.
    let mut reserved_by_addr: BTreeMap<String, BTreeSet<u16>> = avoid.clone();
    for db in cluster.databases.values() {
        let held = db.port_need();
        for s in &db.shards {
            if let Some(node) = cluster.nodes.get(&s.node) {
                reserved_by_addr
                    .entry(node.addr.clone())
                    .or_default()
                    .extend(held.ports(s.port));
            }
        }
    }

    let first_addr = cluster.nodes[&nodes[0]].addr.clone();
    if let Some(p) = port {
        if let Some(&(db, shard)) = used.get(&(first_addr.clone(), p)) {
            return Err(DbError::PortReserved { port: p, db, shard });
        }
        if let Some(why) = crate::server::unusable_port(p, need) {
            return Err(DbError::BadPort(why));
        }
        crate::ccs::rules::port_of_other_node(cluster, nodes[0], p, need.ports(p))?;
        if cluster.nodes[&nodes[0]].ssh.is_none() {
            require_free(&first_addr, p, need)?;
        }
    }

    let db_id = cluster.allocate_id();
    let slots = even_slots(config.shards);
    let mut shards: Vec<Shard> = Vec::new();
    let mut take_port = |cluster: &Cluster, node: Id, fixed: Option<u16>| {
        let n = &cluster.nodes[&node];
        let taken = reserved_by_addr.entry(n.addr.clone()).or_default();
        let p = match fixed {
            Some(p) => p,
            None => n.pick_port(cluster, taken, need)?,
        };
        taken.extend(need.ports(p));
        Ok::<u16, DbError>(p)
    };
    for i in 0..config.shards as usize {
        let node = nodes[i % nodes.len()];
        let fixed = if i == 0 { port } else { None };
        let p = take_port(cluster, node, fixed)?;
        let slots = (config.shards > 1).then(|| slots[i]);
        shards.push(Shard::new(
            cluster.allocate_id(),
            node,
            Role::Master,
            None,
            slots,
            p,
        ));
    }
    if config.replication {
        for i in 0..config.shards as usize {
            let node = nodes[(i + 1) % nodes.len()];
            let p = take_port(cluster, node, None)?;
            let master = &shards[i];
            let replica = Shard::new(
                cluster.allocate_id(),
                node,
                Role::Replica,
                Some(master.id),
                master.slots,
                p,
            );
            shards.push(replica);
        }
    }
    Ok(Database {
        id: db_id,
        port: shards[0].port,
        config,
        state: DbState::Active,
        shards,
    })
}

/// Each replica must load what its master writes: a replica's first sync is its
/// master's RDB, and a server refuses an RDB version newer than it knows (a Valkey 8
/// master writes RDB 11, which Redis 7.0, loading up to 10, cannot load: the replica
/// would retry for ever). Refused before any server starts, naming both nodes' engines
/// and versions. A binary whose RDB version is unknown is not judged here.
pub fn check_replica_engines(db: &Database, server: &Servers) -> Result<(), DbError> {
    for r in db.shards.iter().filter(|s| s.role == Role::Replica) {
        let Some(m) = r
            .master
            .and_then(|id| db.shards.iter().find(|s| s.id == id))
        else {
            continue;
        };
        let (Ok(rs), Ok(ms)) = (server.for_node(r.node), server.for_node(m.node)) else {
            continue;
        };
        if let (Some(loads), Some(writes)) = (rs.max_rdb(), ms.max_rdb()) {
            if loads < writes {
                return Err(DbError::ReplicaCannotLoad {
                    master_node: m.node,
                    master: ms.label(),
                    writes,
                    replica_node: r.node,
                    replica: rs.label(),
                    loads,
                });
            }
        }
    }
    Ok(())
}

/// A TLS database's shards need TLS builds: every node it places a shard on must run
/// one, asked with the one probe ([`Servers::refuse_without_tls`]) before any server
/// starts, whichever binary was chosen (`--redis-server`, the node's, the cluster's or
/// PATH's). A database without TLS is not asked.
pub async fn check_tls_servers(db: &Database, server: &Servers) -> Result<(), DbError> {
    if !db.config.tls {
        return Ok(());
    }
    let mut nodes: Vec<u64> = db.shards.iter().map(|s| s.node).collect();
    nodes.sort_unstable();
    nodes.dedup();
    server.refuse_without_tls(nodes).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ccs::{Node, PortRange};
    use crate::server::PortNeed;
    use std::path::Path;

    fn cluster(nodes: u64) -> Cluster {
        let mut c = crate::ccs::fixtures::cluster(7, 1, Vec::new());
        for _ in 0..nodes {
            let id = c.allocate_id();
            // Ports and bus ports (+ 10000) clear of Linux's ephemeral range (from
            // 32768), where an outgoing connection's source port can hold one, and of the
            // integration tests' blocks (12000-19999, bus ports 22000-29999).
            let lo = 21000 + 50 * id as u16;
            c.nodes.insert(
                id,
                Node {
                    persistent_path: format!("/nonexistent/{id}").into(),
                    port_range: PortRange { lo, hi: lo + 49 },
                    ..crate::ccs::fixtures::node(id, Path::new("/"))
                },
            );
        }
        c
    }

    fn config(shards: u32, replication: bool) -> DbConfig {
        crate::ccs::fixtures::db_config("d", shards, replication)
    }

    #[test]
    fn replicas_never_beside_their_master() {
        for nodes in 2..=4 {
            let mut c = cluster(nodes);
            let db = place(&mut c, config(3, true), None).unwrap();
            assert_eq!(db.shards.len(), 6);
            for r in db.shards.iter().filter(|s| s.role == Role::Replica) {
                let m = db.shards.iter().find(|m| Some(m.id) == r.master).unwrap();
                assert_ne!(r.node, m.node);
                assert_eq!(r.slots, m.slots);
            }
            let ids: BTreeSet<Id> = db.shards.iter().map(|s| s.id).chain([db.id]).collect();
            assert_eq!(ids.len(), 7, "ids are distinct");
            let ports: BTreeSet<u16> = db.shards.iter().map(|s| s.port).collect();
            assert_eq!(ports.len(), 6, "loopback nodes never share a port");
        }
    }

    #[test]
    fn no_port_is_another_shards_bus_port() {
        // node:2's range starts where node:1's later bus ports are, on the same address:
        // node:1's first 25 ports keep their bus ports clear of it, the rest do not.
        let mut c = cluster(2);
        let lo = c.nodes[&1].port_range.lo + 10000 + 25;
        c.nodes.get_mut(&2).unwrap().port_range = PortRange { lo, hi: lo + 49 };
        let first = place(&mut c, config(2, false), None).unwrap();
        c.databases.insert(first.id, first);
        let second = place(&mut c, config(3, false), None).unwrap();
        let all: Vec<&Shard> = c
            .databases
            .values()
            .flat_map(|d| &d.shards)
            .chain(&second.shards)
            .collect();
        let held: Vec<u16> = all.iter().flat_map(|s| [s.port, s.port + 10000]).collect();
        let distinct: BTreeSet<u16> = held.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            held.len(),
            "client and bus ports overlap: {held:?}"
        );
        // A bus port never lies in another node's range on the same address: a shard
        // of that node would find it taken.
        for s in &all {
            for n in c.nodes.values().filter(|n| n.id != s.node) {
                assert!(
                    !n.port_range.contains(s.port + 10000),
                    "redis:{} on node:{} has its bus port {} in node:{}'s range {}",
                    s.id,
                    s.node,
                    s.port + 10000,
                    n.id,
                    n.port_range
                );
            }
        }
    }

    #[test]
    fn a_bus_port_keeps_off_other_nodes_ranges() {
        // Every bus port of node:1's range but the last lies in node:2's range.
        let mut c = cluster(2);
        let lo1 = c.nodes[&1].port_range.lo;
        c.nodes.get_mut(&2).unwrap().port_range = PortRange {
            lo: lo1 + 10000,
            hi: lo1 + 10048,
        };
        let db = place(&mut c, config(1, false), None).unwrap();
        assert_eq!(db.shards[0].port, lo1, "a standalone shard has no bus port");
        let n1 = c.nodes[&1].clone();
        let p = n1
            .pick_port(&c, &BTreeSet::new(), PortNeed::WithBus)
            .unwrap();
        assert_eq!(p, lo1 + 49, "the one port whose bus port is clear");
        // On another address the other node's range is another machine's.
        c.nodes.get_mut(&2).unwrap().addr = "10.0.0.2".into();
        assert_eq!(
            n1.pick_port(&c, &BTreeSet::new(), PortNeed::WithBus)
                .unwrap(),
            lo1
        );
    }

    #[test]
    fn ports_lost_to_another_process_are_avoided() {
        let mut c = cluster(1);
        let first = place(&mut c.clone(), config(1, false), None).unwrap().port;
        let addr = c.nodes[&1].addr.clone();
        let avoid = BTreeMap::from([(addr, BTreeSet::from([first]))]);
        let again = place_avoiding(&mut c, config(1, false), None, &avoid).unwrap();
        assert_ne!(again.port, first);
    }

    #[test]
    fn replication_on_one_node_is_refused() {
        let mut c = cluster(1);
        let before = c.alloc_id;
        let err = place(&mut c, config(1, true), None).unwrap_err();
        assert!(matches!(err, DbError::TooFewNodes { have: 1 }), "{err}");
        assert_eq!(c.alloc_id, before);
    }

    #[test]
    fn a_port_another_shard_has_is_refused() {
        let mut c = cluster(1);
        let db = place(&mut c, config(1, false), None).unwrap();
        let port = db.port;
        c.databases.insert(db.id, db);
        let err = place(&mut c, config(1, false), Some(port)).unwrap_err();
        assert!(matches!(err, DbError::PortReserved { .. }), "{err}");
    }
}
