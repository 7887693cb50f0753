//! Moving a database pending recovery off a port another program holds: `recover db <db>
//! port <n>` (its endpoint) and `free_port` (each shard whose stored port is taken, to the
//! lowest free port of its node's range). Whatever holds the old port is never touched;
//! each move is saved before the recovery starts.

use std::collections::{BTreeMap, BTreeSet};

use crate::ccs::{Cluster, Database, Id, StoreError, StoreLock};
use crate::error::{DomainError, ErrorKind};
use crate::server::port_is_free;

/// Why a shard was not moved.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("`port {port}` is db:{db} `{name}`'s port already: give another one")]
    Unchanged { port: u16, db: Id, name: String },
    #[error("`port {port}` is held by redis:{shard} of db:{db} `{name}` in the configuration: give another one")]
    Reserved {
        port: u16,
        shard: Id,
        db: Id,
        name: String,
    },
    /// The message of [`crate::server::unusable_port`].
    #[error("{0}")]
    BadPort(String),
    #[error("`port {port}` on `{addr}` is in use: give a free one")]
    InUse { port: u16, addr: String },
    #[error("db:{db}: {} of redis:{shard} is held by another program and node:{node} has no free port left in its range: widen the range{}", held_port(*.from, *.held), if *.endpoint { " or give `port <n>`" } else { "" })]
    NoFreePort {
        db: Id,
        shard: Id,
        node: Id,
        from: u16,
        /// The port found in use: `from`, or its cluster bus port.
        held: u16,
        /// The shard is the database's endpoint (`port <n>` moves only that one).
        endpoint: bool,
    },
    #[error(transparent)]
    OtherNodesRange(#[from] crate::ccs::rules::PortOfOtherNode),
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DomainError for MoveError {
    fn kind(&self) -> ErrorKind {
        match self {
            MoveError::Unchanged { .. } | MoveError::BadPort(_) => ErrorKind::Usage,
            MoveError::Reserved { .. }
            | MoveError::InUse { .. }
            | MoveError::NoFreePort { .. }
            | MoveError::OtherNodesRange(_) => ErrorKind::Conflict,
            MoveError::Internal(_) => ErrorKind::Internal,
            MoveError::Store(e) => e.kind(),
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            MoveError::Store(e) => e.hints(),
            _ => Vec::new(),
        }
    }
}

/// `recover db <db> port <n>`: the database's endpoint (the shard listening on its port,
/// else its first master) moves to `port` (see [`move_shard`]).
pub fn move_endpoint(
    lock: &StoreLock,
    cluster: &mut Cluster,
    id: Id,
    port: u16,
) -> Result<String, MoveError> {
    let shard = endpoint_shard(&cluster.databases[&id])
        .ok_or_else(|| MoveError::Internal(format!("db:{id} has no shard")))?;
    move_shard(lock, cluster, id, shard, port)
}

/// The shard `port <n>` moves: the one listening on the database's port, else its first
/// master.
fn endpoint_shard(db: &Database) -> Option<Id> {
    db.shards
        .iter()
        .find(|s| s.port == db.port)
        .or_else(|| db.masters().next())
        .map(|s| s.id)
}

/// `free_port`: every shard of db `id` whose stored port another program holds moves to
/// the port [`taken_ports`] picked for it. Returns one line per move.
pub fn move_taken(
    lock: &StoreLock,
    cluster: &mut Cluster,
    id: Id,
) -> Result<Vec<String>, MoveError> {
    let mut moved = Vec::new();
    for m in taken_ports(cluster, id) {
        let to = m.to.ok_or(MoveError::NoFreePort {
            db: id,
            shard: m.shard,
            node: m.node,
            from: m.from,
            held: m.held,
            endpoint: m.endpoint,
        })?;
        moved.push(move_shard(lock, cluster, id, m.shard, to)?);
    }
    Ok(moved)
}

/// Shard `shard` of db `id` moves to `port` (the database's endpoint with it when it is
/// the endpoint shard), which must be free on its node and held by no other shard of the
/// configuration (nor its bus port); saved before the recovery starts. Whatever holds the
/// old port is never touched.
pub fn move_shard(
    lock: &StoreLock,
    cluster: &mut Cluster,
    id: Id,
    shard: Id,
    port: u16,
) -> Result<String, MoveError> {
    let db = &cluster.databases[&id];
    let need = db.port_need();
    let shard = db
        .shards
        .iter()
        .find(|s| s.id == shard)
        .ok_or_else(|| MoveError::Internal(format!("db:{id} has no redis:{shard}")))?
        .clone();
    let addr = cluster
        .nodes
        .get(&shard.node)
        .map(|n| n.addr.clone())
        .ok_or_else(|| MoveError::Internal(format!("redis:{} has no node", shard.id)))?;
    let old = shard.port;
    let endpoint = old == db.port;
    let name = db.config.name.clone();
    if port == old {
        return Err(MoveError::Unchanged { port, db: id, name });
    }
    if let Some(why) = crate::server::unusable_port(port, need) {
        return Err(MoveError::BadPort(why));
    }
    let wanted: Vec<u16> = need.ports(port).collect();
    crate::ccs::rules::port_of_other_node(cluster, shard.node, port, wanted.iter().copied())?;
    for other in cluster.databases.values() {
        let other_need = other.port_need();
        for s in &other.shards {
            let same_addr = cluster.nodes.get(&s.node).is_some_and(|n| n.addr == addr);
            if s.id != shard.id
                && same_addr
                && other_need.ports(s.port).any(|p| wanted.contains(&p))
            {
                return Err(MoveError::Reserved {
                    port,
                    shard: s.id,
                    db: other.id,
                    name: other.config.name.clone(),
                });
            }
        }
    }
    if !port_is_free(&addr, port, need) {
        return Err(MoveError::InUse { port, addr });
    }
    let held = match crate::server::port_in_use(&addr, old, need) {
        None => String::new(),
        Some(held) if held == old => " (held by another program, left alone)".to_string(),
        Some(bus) => format!(" (its cluster bus port {bus} held by another program, left alone)"),
    };
    let mut next = cluster.clone();
    let db = next
        .databases
        .get_mut(&id)
        .ok_or_else(|| MoveError::Internal(format!("db:{id} vanished")))?;
    if endpoint {
        db.port = port;
    }
    if let Some(s) = db.shards.iter_mut().find(|s| s.id == shard.id) {
        s.port = port;
    }
    lock.save(&mut next)?;
    *cluster = next;
    Ok(if endpoint {
        format!(
            "db:{id} `{name}`: endpoint moved from port {old}{held} to port {port} (redis:{})",
            shard.id
        )
    } else {
        format!(
            "db:{id} `{name}`: redis:{} moved from port {old}{held} to port {port}",
            shard.id
        )
    })
}

/// Every port the configuration's shards hold, by address: client ports, and bus ports
/// of cluster shards (nodes on one address share its ports).
pub(crate) fn reserved_by_addr(cluster: &Cluster) -> BTreeMap<String, BTreeSet<u16>> {
    let mut reserved: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for db in cluster.databases.values() {
        for s in &db.shards {
            if let Some(n) = cluster.nodes.get(&s.node) {
                reserved
                    .entry(n.addr.clone())
                    .or_default()
                    .extend(db.port_need().ports(s.port));
            }
        }
    }
    reserved
}

/// A shard whose stored port another program holds, and the port `free_port` would move
/// it to (none: its node's range has no free port left).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortMove {
    pub shard: Id,
    pub node: Id,
    pub from: u16,
    /// The port found in use: `from`, or (a cluster shard) its bus port.
    pub held: u16,
    pub to: Option<u16>,
    /// The database's endpoint shard: the only one `port <n>` moves.
    pub endpoint: bool,
}

impl PortMove {
    /// The port another program holds: `port 30005`, or when only the shard's cluster bus
    /// port is held, that one as [`crate::server::taken_port`] names it.
    pub fn held_text(&self) -> String {
        held_port(self.from, self.held)
    }
}

fn held_port(port: u16, held: u16) -> String {
    match held == port {
        true => format!("port {port}"),
        false => crate::server::taken_port(port, held),
    }
}

/// The shards of db `id` on this machine whose stored port (or bus port) cannot be bound
/// now, each with the lowest port of its node's range that is free and that no shard of
/// the configuration holds (nor a move before it). Shards on other hosts are probed
/// there when they start, not here.
pub fn taken_ports(cluster: &Cluster, id: Id) -> Vec<PortMove> {
    let Some(db) = cluster.databases.get(&id) else {
        return Vec::new();
    };
    let need = db.port_need();
    let endpoint = endpoint_shard(db);
    let mut reserved = reserved_by_addr(cluster);
    let mut moves = Vec::new();
    for s in &db.shards {
        let Some(node) = cluster.nodes.get(&s.node).filter(|n| n.ssh.is_none()) else {
            continue;
        };
        let Some(in_use) = crate::server::port_in_use(&node.addr, s.port, need) else {
            continue;
        };
        let held = reserved.entry(node.addr.clone()).or_default();
        let to = node.pick_port(cluster, held, need).ok();
        if let Some(p) = to {
            held.extend(need.ports(p));
        }
        moves.push(PortMove {
            shard: s.id,
            node: node.id,
            from: s.port,
            held: in_use,
            to,
            endpoint: endpoint == Some(s.id),
        });
    }
    moves
}
