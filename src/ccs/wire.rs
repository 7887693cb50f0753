//! From the model to the plain values the layers below take: a shard's address and
//! transport ([`crate::server::ShardAddr`]), the cluster's TLS client material, a shard's
//! identity file, a deleted database's tombstone. The server layer knows nothing of the CCS; these are the one place its
//! values are made from it.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::model::{Cluster, Database, DbTombstone, Node, Shard, ShardIdentity};
use crate::server::{
    NodeBinary, PortNeed, RedisServer, ServerError, Servers, ShardAddr, Transport,
};
use crate::tls::{ClientTls, TlsError};

impl Cluster {
    /// The binaries the cluster's shards run with ([`Servers::locate`]): `--redis-server`
    /// for every node when given, else each node's own, else the cluster's, else PATH's.
    pub fn servers(&self, override_path: Option<&std::path::Path>) -> Result<Servers, ServerError> {
        let hosts = self.hosts().map_err(|e| ServerError::NotFound {
            tried: format!("no private directory for ssh connections: {e}"),
        })?;
        let nodes: Vec<(u64, NodeBinary)> = self
            .nodes
            .values()
            .map(|n| {
                let binary = match (&n.redis_server, &n.ssh) {
                    (None, _) => NodeBinary::Default,
                    (Some(own), Some(_)) => NodeBinary::Remote(RedisServer::recorded(
                        &own.path,
                        &own.engine,
                        &own.version,
                    )),
                    (Some(own), None) => NodeBinary::Here(own.path.clone()),
                };
                (n.id, binary)
            })
            .collect();
        Servers::locate(override_path, hosts, self.redis_server.as_deref(), &nodes)
    }

    /// The persistent paths of the nodes on this machine: where the cluster's TLS
    /// material is installed here.
    pub fn local_persistent_paths(&self) -> Vec<PathBuf> {
        self.nodes
            .values()
            .filter(|n| n.ssh.is_none())
            .map(|n| n.persistent_path.clone())
            .collect()
    }

    /// The client side of the cluster's TLS material, when it has some: the local node's
    /// copy; after a disaster, any node's that is already back, or one on an old disk (a
    /// recovery path), which live shards may still be using. Only this machine's disks:
    /// a node over SSH keeps its copy on its own host.
    pub fn client_tls(&self) -> Result<Option<ClientTls>, TlsError> {
        let local = self.nodes.get(&self.local_node);
        let roots = local
            .into_iter()
            .chain(self.nodes.values())
            .filter(|n| n.ssh.is_none())
            .flat_map(|n| [Some(&n.persistent_path), n.recovery_path.as_ref()])
            .flatten()
            .cloned();
        ClientTls::installed(self.tls.as_ref(), roots)
    }

    /// How Lazarus reaches a shard that speaks TLS (`tls`) or not: TLS with the cluster's
    /// material, or a transport that names why there is none.
    pub fn transport(&self, tls: bool) -> Transport {
        if !tls {
            return Transport::Plain;
        }
        match self.client_tls() {
            Ok(Some(c)) => Transport::Tls(c),
            Ok(None) => Transport::TlsUnavailable(
                "the cluster has no TLS material (`cluster tls set`)".into(),
            ),
            Err(e) => Transport::TlsUnavailable(e.to_string()),
        }
    }

    /// A shard of `db` at `host:port`: with the database's password, over TLS with the
    /// cluster's material when the database speaks TLS.
    pub fn shard_addr(&self, db: &Database, host: &str, port: u16) -> ShardAddr {
        db.shard_addr(host, port, &self.transport(db.config.tls))
    }

    /// The identity file of `shard` of `db`: what `cluster recover` rebuilds the CCS from
    /// when no backup survives.
    pub fn identity_of(&self, db: &Database, shard: &Shard) -> ShardIdentity {
        let node = self.nodes.get(&shard.node);
        ShardIdentity {
            cluster_id: self.cluster_id,
            cluster_name: self.name.clone(),
            db_id: db.id,
            shard_id: shard.id,
            node_id: shard.node,
            role: shard.role,
            master: shard.master,
            slots: shard.slots,
            port: shard.port,
            db_port: db.port,
            db: db.config.clone(),
            node_addr: node.map(|n| n.addr.clone()),
            node_port_range: node.map(|n| n.port_range),
            creating: false,
            deleted: false,
        }
    }

    /// The tombstone `delete db` leaves of `db` on its nodes' disks.
    pub fn tombstone_of(&self, db: &Database, purged: bool) -> DbTombstone {
        DbTombstone {
            cluster_id: self.cluster_id,
            db_id: db.id,
            db_name: db.config.name.clone(),
            shards: db.shards.iter().map(|s| s.id).collect(),
            purged,
        }
    }
}

impl Database {
    /// A shard of this database at `host:port`, with the cluster's transport resolved
    /// beforehand ([`Cluster::transport`]): a command addressing many shards resolves it
    /// once. `tls` is used only when the database speaks TLS.
    pub fn shard_addr(&self, host: &str, port: u16, tls: &Transport) -> ShardAddr {
        ShardAddr::of_database(
            host,
            port,
            self.config.password.clone(),
            self.config.tls,
            tls,
        )
    }
}

impl Node {
    /// The lowest port of this node's range that no shard in `reserved` holds and that is
    /// free on its address ([`crate::server::pick_port`]); a cluster shard's bus port
    /// (port + 10000) also keeps off the ranges of `cluster`'s other nodes on the same
    /// address ([`super::rules::bus_ports_of_other_nodes`]): those ports are theirs to
    /// hand out, and a shard of theirs started there later would find it taken.
    pub fn pick_port(
        &self,
        cluster: &Cluster,
        reserved: &BTreeSet<u16>,
        need: PortNeed,
    ) -> Result<u16, ServerError> {
        let theirs = match need {
            PortNeed::Plain => BTreeSet::new(),
            PortNeed::WithBus => super::rules::bus_ports_of_other_nodes(cluster, self.id),
        };
        let reserved = match theirs.is_empty() {
            true => std::borrow::Cow::Borrowed(reserved),
            false => std::borrow::Cow::Owned(reserved | &theirs),
        };
        crate::server::pick_port(
            self.id,
            &self.addr,
            self.port_range.lo..=self.port_range.hi,
            self.ssh.is_some(),
            &reserved,
            need,
        )
    }
}
