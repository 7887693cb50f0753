//! The CCS document: one serde value describing a whole cluster.
//!
//! Everything here is plain data. Storage (locking, atomic writes, node backups) lives in
//! the store; what runs is asked of the processes themselves, never assumed from here.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::backups::Backups;

/// Node, database and shard ids all come from one allocator and are never reused.
pub type Id = u64;

/// Bumped when the document's shape changes incompatibly.
pub const CCS_FORMAT: u32 = 1;

/// Name of the identity file written into every shard directory.
pub use crate::server::shard_dir::IDENTITY_FILE as SHARD_IDENTITY_FILE;

/// Hash slots, and how a shard persists: the server layer's own values, which the
/// document records as they are.
pub use crate::server::{Persistence, SlotRange, SLOT_COUNT};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    pub format: u32,
    pub name: String,
    #[serde(with = "cluster_id_text")]
    pub cluster_id: u64,
    /// The next id to hand out; always above every id ever allocated.
    pub alloc_id: Id,
    /// Incremented on every committed change, so backups can be ordered.
    pub generation: u64,
    /// The node this machine is.
    pub local_node: Id,
    /// `redis-server` to run shards with; `None` means the one on PATH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_server: Option<PathBuf>,
    pub nodes: BTreeMap<Id, Node>,
    #[serde(default)]
    pub databases: BTreeMap<Id, Database>,
    /// Backup tasks, their runs' history, restore tasks.
    #[serde(default, skip_serializing_if = "Backups::is_empty")]
    pub backups: Backups,
    /// The cluster's TLS material (`cluster tls set`): paths and fingerprints only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

impl Cluster {
    /// Hands out the next id. Ids are never reused, even after the entity is gone.
    ///
    /// Ids stay at or below [`super::MAX_ID`] (2^53, exact in every JSON reader). Past it
    /// the allocator stops moving, so what it hands out is out of range and the save that
    /// would commit it is refused by [`super::validate()`]: never a wrapped or reused id.
    pub fn allocate_id(&mut self) -> Id {
        let id = self.alloc_id;
        if id <= super::MAX_ID {
            self.alloc_id = id + 1;
        }
        id
    }

    pub fn database_by_name(&self, name: &str) -> Option<&Database> {
        self.databases.values().find(|db| db.config.name == name)
    }
}

pub use crate::tls::{TlsConfig, TlsFile};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub id: Id,
    /// IP address shards bind to and clients connect to.
    pub addr: String,
    /// Where shard data (`redis/db-<id>/shard-<id>/`) and CCS backups (`ccs/`) live.
    pub persistent_path: PathBuf,
    /// Where this node's old persistence files are, after a disaster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_path: Option<PathBuf>,
    pub port_range: PortRange,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack_id: Option<String>,
    /// The binary this node's shards run (`node add ... redis_server <path>`); `None`:
    /// the cluster's, else the one on PATH. `--redis-server` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_server: Option<NodeServer>,
    /// How to reach the node's machine (`node add ... ssh <[user@]host[:port]>`); `None`:
    /// this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<crate::host::SshTarget>,
}

/// A node's own server binary as it was checked when set: path, engine, version.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NodeServer {
    pub path: PathBuf,
    /// `redis` or `valkey`.
    pub engine: String,
    /// What `--version` said when it was set (`8.1.8`).
    pub version: String,
}

impl NodeServer {
    /// `valkey 8.1.8 (/opt/valkey/bin/valkey-server)`.
    pub fn describe(&self) -> String {
        format!("{} {} ({})", self.engine, self.version, self.path.display())
    }
}

impl Cluster {
    /// The machine of every node: this one, or over SSH (one connection per target).
    pub fn hosts(&self) -> std::io::Result<crate::host::Hosts> {
        crate::host::Hosts::for_nodes(self.nodes.values().map(|n| (n.id, n.ssh.as_ref())))
    }
}

impl Node {
    pub fn ccs_backup_dir(&self) -> PathBuf {
        self.persistent_path.join("ccs")
    }

    pub fn shard_dir(&self, db: Id, shard: Id) -> PathBuf {
        shard_dir_under(&self.persistent_path, db, shard)
    }
}

/// `<root>/redis/db-<db>/shard-<shard>`: the layout of shard data under a persistent
/// path, and so under a recovery path.
pub fn shard_dir_under(root: &Path, db: Id, shard: Id) -> PathBuf {
    crate::server::shard_dir::shard_path_under(root, db, shard)
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    /// A node's range when none is given (`cluster create`, the default local cluster;
    /// `node add` searches blocks of 1000 from here). Clear of Linux's default ephemeral
    /// ports (32768-60999), where an outgoing connection's source port can hold a shard's
    /// port, and so are its cluster bus ports (+ 10000: 20000-20999). Clusters made with
    /// the earlier default (30000-30999) keep the range they recorded.
    pub const DEFAULT: PortRange = PortRange {
        lo: 10000,
        hi: 10999,
    };

    pub fn contains(&self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.lo, self.hi)
    }
}

/// What the configuration says a database should be doing. Whether its processes really
/// run is asked of them (`status`), never stored.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DbState {
    Active,
    /// Brought back by `cluster recover`; waits for `recover db` / `recover all`.
    PendingRecovery,
}

impl fmt::Display for DbState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DbState::Active => "active",
            DbState::PendingRecovery => "pending recovery",
        })
    }
}

/// A database's configuration: what `create db` was told, and what recovery restores.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DbConfig {
    pub name: String,
    /// Number of master shards; more than one makes the database a Redis Cluster.
    /// Named apart from `Database::shards` because `Database` flattens this struct.
    #[serde(rename = "shard_count")]
    pub shards: u32,
    pub replication: bool,
    pub persistence: Persistence,
    /// `maxmemory` in bytes; `None` means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Secret: never printed, never written to history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `host:port` of another database this one replicates from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_source: Option<crate::endpoint::Endpoint>,
    /// The shards listen only on TLS, replicate and (sharded) form their cluster over
    /// it, with the cluster's TLS material ([`Cluster::tls`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// `tls_auth_clients optional`: clients of a TLS database need no certificate (the
    /// shards still present theirs, and present them to each other); by default a
    /// client needs one signed by the cluster's CA.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_auth_clients_optional: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Database {
    pub id: Id,
    #[serde(flatten)]
    pub config: DbConfig,
    /// Endpoint port: the first master shard's port.
    pub port: u16,
    pub state: DbState,
    pub shards: Vec<Shard>,
}

impl DbConfig {
    /// `2 shard(s), replication enabled, persistence aof`: the shape a database is made in.
    pub fn shape(&self) -> String {
        let replication = if self.replication {
            "enabled"
        } else {
            "disabled"
        };
        format!(
            "{} shard(s), replication {replication}, persistence {}",
            self.shards, self.persistence
        )
    }
}

/// A master of a replicated database with no copy of its slots' data on another node:
/// no replica in the configuration (a rebuild found none: they lived on a lost disk), or
/// every replica on its own node. One lost node loses that data.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct UnprotectedMaster {
    pub shard: Id,
    pub node: Id,
    /// Its replicas, every one on its own node; empty when it has none.
    pub replicas_beside: Vec<Id>,
}

impl UnprotectedMaster {
    /// `redis:4 has no replica`, `redis:4 has its replica redis:5 on its own node:2`.
    pub fn why(&self) -> String {
        if self.replicas_beside.is_empty() {
            return format!("redis:{} has no replica", self.shard);
        }
        let replicas: Vec<String> = self
            .replicas_beside
            .iter()
            .map(|r| format!("redis:{r}"))
            .collect();
        format!(
            "redis:{} has its replica {} on its own node:{}",
            self.shard,
            replicas.join(", "),
            self.node
        )
    }
}

impl Database {
    pub fn masters(&self) -> impl Iterator<Item = &Shard> {
        self.shards.iter().filter(|s| s.role == Role::Master)
    }

    /// With replication enabled, its masters whose every replica (none included) is on
    /// their own node: what one node's loss would take from it for good.
    pub fn unprotected_masters(&self) -> Vec<UnprotectedMaster> {
        if !self.config.replication {
            return Vec::new();
        }
        let mut unprotected: Vec<UnprotectedMaster> = self
            .masters()
            .filter_map(|m| {
                let replicas: Vec<&Shard> = self
                    .shards
                    .iter()
                    .filter(|s| s.role == Role::Replica && s.master == Some(m.id))
                    .collect();
                if replicas.iter().any(|r| r.node != m.node) {
                    return None;
                }
                Some(UnprotectedMaster {
                    shard: m.id,
                    node: m.node,
                    replicas_beside: replicas.iter().map(|r| r.id).collect(),
                })
            })
            .collect();
        unprotected.sort_by_key(|u| u.shard);
        unprotected
    }

    /// The ports each of its shards holds on its address: its client port, and its bus
    /// port in a cluster.
    pub fn port_need(&self) -> crate::server::PortNeed {
        if self.config.shards > 1 {
            crate::server::PortNeed::WithBus
        } else {
            crate::server::PortNeed::Plain
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Master,
    Replica,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Master => "master",
            Role::Replica => "replica",
        })
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    pub id: Id,
    pub node: Id,
    pub role: Role,
    /// For a replica: the master shard it follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<Id>,
    /// Slots owned (a replica carries its master's); `None` for a single-shard database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<SlotRange>,
    pub port: u16,
    /// Pid of the last process started for this shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// A master that came back EMPTY from a recovery (`allow_empty`: none of its files
    /// were found), since when (Unix seconds). `recover db <db> from_files` fills it
    /// while it has taken no write since, and clears this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_since: Option<i64>,
    /// For a master: the modification time (unix nanoseconds) of the source the last
    /// recovery or restore loaded into it (the newest file of an `appendonlydir/`). A
    /// later recovery refuses an older source as stale; one written at this very time is
    /// that same file. Absent in documents written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded_ns: Option<i64>,
}

impl Shard {
    /// A shard placed but not yet run: no pid, nothing loaded.
    pub fn new(
        id: Id,
        node: Id,
        role: Role,
        master: Option<Id>,
        slots: Option<SlotRange>,
        port: u16,
    ) -> Shard {
        Shard {
            id,
            node,
            role,
            master,
            slots,
            port,
            pid: None,
            empty_since: None,
            loaded_ns: None,
        }
    }
}

/// Written as `lazarus-shard.json` into every shard directory: enough to rebuild the
/// cluster configuration when no CCS backup survives.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ShardIdentity {
    #[serde(with = "cluster_id_text")]
    pub cluster_id: u64,
    pub cluster_name: String,
    pub db_id: Id,
    pub shard_id: Id,
    pub node_id: Id,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<SlotRange>,
    pub port: u16,
    /// The database's endpoint port.
    pub db_port: u16,
    pub db: DbConfig,
    /// The node's address and port range when the shard was written, so a rebuild from
    /// identity files alone restores them (absent in files written before they existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port_range: Option<PortRange>,
    /// Written by a `create db` that has not committed yet: its shards started, the
    /// configuration not yet saved everywhere. Cleared once it is; a rebuild from
    /// identity files leaves a database still marked out (its create never finished).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub creating: bool,
    /// Written by `delete db` (without `purge`) into the shard directories it keeps: a
    /// rebuild from identity files leaves a deleted database out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// Written by `delete db` (with or without `purge`) as `redis/db-<id>.deleted.json` under
/// the persistent path of every node that held its shards: the database is gone for good
/// (its ids are never handed out again), so a rebuild from identity files leaves it out
/// even where an earlier life's copies of its shards (a recovery path's, unmarked)
/// survive the deletion.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DbTombstone {
    #[serde(with = "cluster_id_text")]
    pub cluster_id: u64,
    pub db_id: Id,
    pub db_name: String,
    /// Its shards' ids: handed out, never to be reused.
    pub shards: Vec<Id>,
    /// Whether its data directories were removed (`purge`).
    pub purged: bool,
}

/// A `cluster_id` in JSON is a string: a bare 64-bit number is rounded by `jq` and
/// JavaScript (as etcd writes its 64-bit ids). Files written before read as numbers.
pub mod cluster_id_text {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(id: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&id.to_string())
    }

    /// [`serialize`] of a `cluster_id` that may be unknown (`null`).
    pub fn serialize_opt<S: Serializer>(
        id: &Option<u64>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => serialize(id, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = u64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a cluster_id: a 64-bit number, as a string or a number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
                Ok(v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
                u64::try_from(v).map_err(|_| E::custom(format!("cluster_id {v} is negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
                v.parse()
                    .map_err(|_| E::custom(format!("cluster_id `{v}` is not a 64-bit number")))
            }
        }
        deserializer.deserialize_any(IdVisitor)
    }

    /// The `cluster_id` of a JSON document read loosely (a string, or a number in files
    /// written before).
    pub fn of(doc: &serde_json::Value) -> Option<u64> {
        match doc.get("cluster_id")? {
            serde_json::Value::String(s) => s.parse().ok(),
            v => v.as_u64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_id_is_a_string_in_json_and_old_numbers_still_read() {
        #[derive(Serialize, Deserialize)]
        struct Doc {
            #[serde(with = "cluster_id_text")]
            cluster_id: u64,
        }
        let big = u64::MAX - 1;
        let json = serde_json::to_string(&Doc { cluster_id: big }).unwrap();
        assert_eq!(json, format!("{{\"cluster_id\":\"{big}\"}}"));
        let old: Doc = serde_json::from_str(&format!("{{\"cluster_id\":{big}}}")).unwrap();
        assert_eq!(old.cluster_id, big);
        assert!(serde_json::from_str::<Doc>("{\"cluster_id\":\"x1\"}").is_err());
    }

    #[test]
    fn database_round_trips_through_json() {
        use crate::ccs::fixtures::{database, db_config, master};
        let db = Database {
            state: DbState::PendingRecovery,
            ..database(
                3,
                db_config("cache", 1, false),
                30001,
                vec![master(4, 1, 30001)],
            )
        };
        let json = serde_json::to_string(&db).unwrap();
        assert_eq!(serde_json::from_str::<Database>(&json).unwrap(), db);
    }
}
