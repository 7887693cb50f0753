//! Test fixtures: the one place unit tests build `Cluster`, `Node`, `Shard`, `DbConfig`
//! and `Database` values, so a field added to the model is filled in here once. Tests
//! change what matters to them with struct update syntax (`Node { addr, ..node(2, root) }`).

use std::path::Path;

use super::{
    BackupRun, Cluster, Database, DbConfig, DbState, Id, Node, Persistence, PortRange, Role,
    RunStatus, Shard, SlotRange, CCS_FORMAT,
};

/// A database configuration: AOF, no memory limit, no password, no sync source.
pub fn db_config(name: &str, shards: u32, replication: bool) -> DbConfig {
    DbConfig {
        name: name.into(),
        shards,
        replication,
        persistence: Persistence::Aof,
        memory: None,
        password: None,
        sync_source: None,
        tls: false,
        tls_auth_clients_optional: false,
    }
}

/// The port range of [`node`]: the default of clusters made before 10000-10999 was,
/// which the unit tests' shard ports (30001, ...) lie in.
pub const NODE_RANGE: PortRange = PortRange {
    lo: 30000,
    hi: 30999,
};

/// A loopback node with its data under `<root>/n<id>` and the range [`NODE_RANGE`].
pub fn node(id: Id, root: &Path) -> Node {
    Node {
        id,
        addr: "127.0.0.1".into(),
        persistent_path: root.join(format!("n{id}")),
        recovery_path: None,
        port_range: NODE_RANGE,
        rack_id: None,
        ssh: None,
        redis_server: None,
    }
}

/// A shard that never ran (no pid).
pub fn shard(
    id: Id,
    node: Id,
    role: Role,
    master: Option<Id>,
    slots: Option<SlotRange>,
    port: u16,
) -> Shard {
    Shard::new(id, node, role, master, slots, port)
}

/// The master of a single-shard database.
pub fn master(id: Id, node: Id, port: u16) -> Shard {
    shard(id, node, Role::Master, None, None, port)
}

/// An active database whose endpoint is `port`.
pub fn database(id: Id, config: DbConfig, port: u16, shards: Vec<Shard>) -> Database {
    Database {
        id,
        config,
        port,
        state: DbState::Active,
        shards,
    }
}

/// `start..=end`.
pub fn slots(start: u16, end: u16) -> SlotRange {
    SlotRange { start, end }
}

/// An empty cluster named `prod` with these nodes; node:1 (or the first) is local.
pub fn cluster(cluster_id: u64, alloc_id: Id, nodes: Vec<Node>) -> Cluster {
    Cluster {
        format: CCS_FORMAT,
        name: "prod".into(),
        cluster_id,
        alloc_id,
        generation: 1,
        local_node: nodes.first().map_or(1, |n| n.id),
        redis_server: None,
        nodes: nodes.into_iter().map(|n| (n.id, n)).collect(),
        databases: Default::default(),
        backups: Default::default(),
        tls: None,
    }
}

/// A backup run of db:1 `d` into `/r`, by hand (no task), with nothing measured.
pub fn backup_run(id: &str, started: i64, status: RunStatus) -> BackupRun {
    BackupRun {
        id: id.into(),
        task: None,
        db: 1,
        db_name: "d".into(),
        path: "/r".into(),
        started,
        took_ms: None,
        status,
        reason: None,
        keys: 0,
        bytes: 0,
        server_version: None,
        pause_us: None,
        safety_for: None,
    }
}
