//! A database as `create db`, `restart db` and `restart all` show it, shared by
//! `cmd/db.rs` and `cmd/restart.rs`.

use serde::Serialize;

use crate::ccs::{Cluster, Database, DbState, Id, Persistence, Role};
use crate::db;
use crate::persist::SlotRange;

/// A database as `create db` and `restart db` show it: never its password, only whether
/// it has one.
#[derive(Clone, Debug, Serialize)]
pub struct DbView {
    pub id: Id,
    pub name: String,
    pub endpoint: String,
    pub shard_count: u32,
    pub replication: bool,
    pub persistence: Persistence,
    pub memory: Option<u64>,
    pub password: bool,
    pub sync_source: Option<String>,
    pub state: DbState,
    pub shards: Vec<ShardView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ShardView {
    pub id: Id,
    pub node: Id,
    pub role: Role,
    pub master: Option<Id>,
    /// `{start, end}`, as `status`, `recover list` and a manifest show a shard's slots.
    pub slots: Option<SlotRange>,
    pub port: u16,
    pub pid: Option<u32>,
}

impl DbView {
    pub fn new(cluster: &Cluster, d: &Database) -> DbView {
        DbView {
            id: d.id,
            name: d.config.name.clone(),
            endpoint: db::endpoint(cluster, d),
            shard_count: d.config.shards,
            replication: d.config.replication,
            persistence: d.config.persistence,
            memory: d.config.memory,
            password: d.config.password.is_some(),
            sync_source: d.config.sync_source.as_ref().map(ToString::to_string),
            state: d.state,
            shards: d
                .shards
                .iter()
                .map(|s| ShardView {
                    id: s.id,
                    node: s.node,
                    role: s.role,
                    master: s.master,
                    slots: s.slots,
                    port: s.port,
                    pid: s.pid,
                })
                .collect(),
        }
    }
}
