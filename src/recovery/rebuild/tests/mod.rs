//! The two rebuild forms against hand-made disks: backups and identity trees written with
//! serde from the model types. Fixtures here; tests by form beside.

mod backup;
mod identities;
mod store;

use std::fs;
use std::path::{Path, PathBuf};

use crate::ccs::fixtures;
use crate::ccs::{
    Cluster, Database, DbConfig, DbState, Node, PortRange, Role, Shard, ShardIdentity, SlotRange,
    SHARD_IDENTITY_FILE,
};

use super::*;

pub(super) const CID: u64 = 0xfeed_beef;

pub(super) fn node(id: Id, root: &Path) -> Node {
    fixtures::node(id, root)
}

/// node:2 on its own address and port range, as `node add` may make it.
pub(super) fn node2(root: &Path) -> Node {
    Node {
        addr: "127.0.0.2".into(),
        port_range: PortRange {
            lo: 30002,
            hi: 30099,
        },
        ..node(2, root)
    }
}

/// A shard that ran (pid 4242).
pub(super) fn shard(
    id: Id,
    node: Id,
    role: Role,
    master: Option<Id>,
    slots: Option<SlotRange>,
    port: u16,
) -> Shard {
    Shard {
        pid: Some(4242),
        empty_since: None,
        loaded_ns: None,
        ..fixtures::shard(id, node, role, master, slots, port)
    }
}

pub(super) fn config(name: &str, shards: u32, replication: bool) -> DbConfig {
    fixtures::db_config(name, shards, replication)
}

/// Two nodes; `cache` (db:3) a master on node:1 with a replica on node:2; `orders` (db:6)
/// three masters across the nodes. alloc_id 10.
pub(super) fn sample(root: &Path) -> Cluster {
    let mut cluster = Cluster {
        generation: 7,
        ..fixtures::cluster(CID, 10, vec![node(1, root), node2(root)])
    };
    cluster.databases.insert(
        3,
        Database {
            id: 3,
            config: config("cache", 1, true),
            port: 30001,
            state: DbState::Active,
            shards: vec![
                shard(4, 1, Role::Master, None, None, 30001),
                shard(5, 2, Role::Replica, Some(4), None, 30002),
            ],
        },
    );
    let s = |start, end| Some(SlotRange { start, end });
    cluster.databases.insert(
        6,
        Database {
            id: 6,
            config: config("orders", 3, false),
            port: 30003,
            state: DbState::Active,
            shards: vec![
                shard(7, 1, Role::Master, None, s(0, 5460), 30003),
                shard(8, 2, Role::Master, None, s(5461, 10922), 30004),
                shard(9, 1, Role::Master, None, s(10923, 16383), 30005),
            ],
        },
    );
    cluster
}

/// What the nodes left on disk: backups and identity files, as Lazarus writes them.
pub(super) fn write_disks(cluster: &Cluster) {
    for node in cluster.nodes.values() {
        fs::create_dir_all(node.ccs_backup_dir()).unwrap();
        fs::write(
            node.ccs_backup_dir().join("ccs.json"),
            serde_json::to_vec_pretty(cluster).unwrap(),
        )
        .unwrap();
    }
    for db in cluster.databases.values() {
        for s in &db.shards {
            let dir = cluster.nodes[&s.node].shard_dir(db.id, s.id);
            fs::create_dir_all(&dir).unwrap();
            let identity = ShardIdentity {
                cluster_id: cluster.cluster_id,
                cluster_name: cluster.name.clone(),
                db_id: db.id,
                shard_id: s.id,
                node_id: s.node,
                role: s.role,
                master: s.master,
                slots: s.slots,
                port: s.port,
                db_port: db.port,
                db: db.config.clone(),
                node_addr: Some(cluster.nodes[&s.node].addr.clone()),
                node_port_range: Some(cluster.nodes[&s.node].port_range),
                creating: false,
                deleted: false,
            };
            fs::write(
                dir.join(SHARD_IDENTITY_FILE),
                serde_json::to_vec(&identity).unwrap(),
            )
            .unwrap();
        }
    }
}

pub(super) fn backup_of(cluster: &Cluster, node: Id) -> PathBuf {
    cluster.nodes[&node].ccs_backup_dir().join("ccs.json")
}
