//! From the CCS to a started shard: the plain values the server layer starts a shard
//! with ([`ShardStart`]: its `redis.conf`, identity file and address), built from the
//! cluster, the database and the shard.

use crate::ccs::{Cluster, Database, Node, Shard};
use crate::server::{
    self, ConfOptions, ServerError, Servers, ShardConf, ShardDir, ShardStart, StartOptions,
    Upstream,
};
use crate::tls::{self, ShardTls};

/// Starts `shard` of `db` and waits until it has loaded its data ([`server::start_shard`]).
/// Returns its pid.
pub async fn start_shard(
    servers: &Servers,
    cluster: &Cluster,
    db: &Database,
    shard: &Shard,
    opts: &StartOptions,
) -> Result<u32, ServerError> {
    let start = shard_start(cluster, db, shard, opts)?;
    server::start_shard(servers, &start, opts.timeout).await
}

/// What starting `shard` of `db` takes, as the server layer's plain values.
pub fn shard_start(
    cluster: &Cluster,
    db: &Database,
    shard: &Shard,
    opts: &StartOptions,
) -> Result<ShardStart, ServerError> {
    let failed = |reason: String| ServerError::StartFailed {
        shard: shard.id,
        reason,
        log_tail: String::new(),
    };
    let node = cluster
        .nodes
        .get(&shard.node)
        .ok_or_else(|| failed(format!("node:{} is not in the cluster", shard.node)))?;
    let upstream = upstream_of(cluster, db, shard);
    let tls = cluster.tls.as_ref().map(|r| ShardTls {
        auth_clients_optional: db.config.tls_auth_clients_optional,
        ..ShardTls::new(&tls::installed_dir(&node.persistent_path, r))
    });
    if db.config.tls && tls.is_none() {
        return Err(failed(
            "the database speaks TLS but the cluster has no TLS material (`cluster tls set`)"
                .into(),
        ));
    }
    let conf = conf_for(node, db, shard, upstream.as_ref(), tls.as_ref(), &opts.conf);
    let mut identity = cluster.identity_of(db, shard);
    identity.creating = opts.creating;
    let identity = serde_json::to_vec_pretty(&identity)
        .map_err(|e| ServerError::io(conf.dir.path(), std::io::Error::other(e)))?;
    Ok(ShardStart {
        shard: shard.id,
        node: node.id,
        identity,
        addr: cluster.shard_addr(db, &node.addr, shard.port),
        conf,
    })
}

/// The `redis.conf` of `shard` of `db` on `node`.
pub fn conf_for(
    node: &Node,
    db: &Database,
    shard: &Shard,
    upstream: Option<&Upstream>,
    tls: Option<&ShardTls>,
    opts: &ConfOptions,
) -> ShardConf {
    ShardConf {
        label: format!("db:{} redis:{}", db.id, shard.id),
        dir: ShardDir::under(node.id, &node.persistent_path, db.id, shard.id),
        bind: node.addr.clone(),
        port: shard.port,
        sharded: db.config.shards > 1,
        speaks_tls: db.config.tls,
        persistence: db.config.persistence,
        memory: db.config.memory,
        password: db.config.password.clone(),
        upstream: upstream.cloned(),
        tls: tls.cloned(),
        opts: *opts,
    }
}

/// The master a standalone shard follows: a replica its master shard; a master the
/// database's sync source, with that database's password when the CCS knows it. Cluster
/// shards follow through CLUSTER REPLICATE instead.
fn upstream_of(cluster: &Cluster, db: &Database, shard: &Shard) -> Option<Upstream> {
    if db.config.shards > 1 {
        return None;
    }
    match shard.master {
        Some(master) => {
            let m = db.shards.iter().find(|s| s.id == master)?;
            let node = cluster.nodes.get(&m.node)?;
            Some(Upstream {
                host: node.addr.clone(),
                port: m.port,
                password: db.config.password.clone(),
                tls: db.config.tls,
            })
        }
        None => {
            let source = db.config.sync_source.as_ref()?;
            let (host, port, tls) = (source.host.clone(), source.port, source.tls);
            let source = cluster.databases.values().find(|other| {
                other.port == port
                    && other
                        .masters()
                        .next()
                        .and_then(|m| cluster.nodes.get(&m.node))
                        .is_some_and(|n| n.addr == host)
            });
            Some(Upstream {
                host,
                port,
                password: source.and_then(|s| s.config.password.clone()),
                tls: source.map_or(tls, |s| s.config.tls),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ccs::{fixtures, DbConfig, Node, Persistence};
    use crate::server::{render_conf, Upstream};
    use crate::tls::ShardTls;
    use std::path::Path;

    /// The configuration file of `db`'s first shard.
    fn first_shard_conf(
        node: &Node,
        db: &Database,
        up: Option<&Upstream>,
        tls: Option<&ShardTls>,
        opts: &ConfOptions,
    ) -> String {
        render_conf(&conf_for(node, db, &db.shards[0], up, tls, opts))
    }

    fn sample(persistence: Persistence, shards: u32, password: Option<&str>) -> (Node, Database) {
        let node = Node {
            persistent_path: "/data/n 1".into(),
            ..fixtures::node(1, Path::new("/"))
        };
        let config = DbConfig {
            persistence,
            memory: Some(1 << 20),
            password: password.map(str::to_string),
            ..fixtures::db_config("cache", shards, false)
        };
        let db = fixtures::database(2, config, 30001, vec![fixtures::master(3, 1, 30001)]);
        (node, db)
    }

    #[test]
    fn aof_conf_has_everysec_and_no_schedule() {
        let (node, db) = sample(Persistence::Aof, 1, None);
        let c = first_shard_conf(&node, &db, None, None, &ConfOptions::default());
        assert!(c.contains("dir \"/data/n 1/redis/db-2/shard-3\"\n"), "{c}");
        assert!(c.contains("appendonly yes\n"));
        assert!(c.contains("appendfsync everysec\n"));
        assert!(c.contains("save \"\"\n"));
        assert!(c.contains("maxmemory 1048576\n"));
        assert!(c.contains("daemonize yes\n"));
        assert!(!c.contains("cluster-enabled"));
        assert!(!c.contains("requirepass"));
    }

    #[test]
    fn snapshot_cluster_conf_with_password() {
        let (node, db) = sample(Persistence::Snapshot, 3, Some("p\"w"));
        let c = first_shard_conf(&node, &db, None, None, &ConfOptions::default());
        assert!(c.contains("save \"3600 1 300 100 60 10000\"\n"), "{c}");
        assert!(c.contains("appendonly no\n"));
        assert!(c.contains("cluster-enabled yes\n"));
        assert!(c.contains("cluster-config-file nodes.conf\n"));
        assert!(c.contains("cluster-announce-ip \"127.0.0.1\"\n"), "{c}");
        assert!(c.contains("requirepass \"p\\\"w\"\n"));
        assert!(c.contains("masterauth \"p\\\"w\"\n"));
    }

    #[test]
    fn appendonly_override_wins() {
        let (node, db) = sample(Persistence::Aof, 1, None);
        let opts = ConfOptions {
            appendonly: Some(false),
            standalone: true,
            ..ConfOptions::default()
        };
        let up = Upstream {
            host: "10.0.0.1".into(),
            port: 30000,
            password: Some("theirs".into()),
            tls: false,
        };
        let c = first_shard_conf(&node, &db, Some(&up), None, &opts);
        assert!(c.contains("appendonly no\n"), "{c}");
        assert!(!c.contains("replicaof"), "{c}");
        assert!(!c.contains("auto-aof-rewrite"), "{c}");
        // Loading from an AOF: no rewrite of its own until the checks are done.
        let loading_aof = ConfOptions {
            appendonly: Some(true),
            standalone: true,
            ..ConfOptions::default()
        };
        let c = first_shard_conf(&node, &db, None, None, &loading_aof);
        assert!(c.contains("appendonly yes\n"), "{c}");
        assert!(c.contains("auto-aof-rewrite-percentage 0\n"), "{c}");
        assert!(!c.contains("aof-load-truncated"), "{c}");
        // Loading through symlinks to the original files: refuse, never truncate them.
        let stand_in = ConfOptions {
            aof_stand_in: true,
            ..loading_aof
        };
        let c = first_shard_conf(&node, &db, None, None, &stand_in);
        assert!(c.contains("aof-load-truncated no\n"), "{c}");
        let c = first_shard_conf(&node, &db, Some(&up), None, &ConfOptions::default());
        assert!(c.contains("replicaof \"10.0.0.1\" 30000\n"), "{c}");
        assert!(c.contains("masterauth \"theirs\"\n"), "{c}");
        assert!(!c.contains("tls"), "{c}");
    }

    #[test]
    fn tls_database_listens_only_on_tls() {
        let (node, mut db) = sample(Persistence::Aof, 3, None);
        db.config.tls = true;
        let tls = ShardTls::new(Path::new("/data/n 1/tls/ab"));
        let opts = ConfOptions::default();
        let c = first_shard_conf(&node, &db, None, Some(&tls), &opts);
        for want in [
            "port \"0\"\n",
            "tls-port \"30001\"\n",
            "tls-cert-file \"/data/n 1/tls/ab/cert.crt\"\n",
            "tls-key-file \"/data/n 1/tls/ab/key.pem\"\n",
            "tls-ca-cert-file \"/data/n 1/tls/ab/ca.crt\"\n",
            "tls-replication \"yes\"\n",
            "tls-cluster \"yes\"\n",
            "tls-auth-clients \"yes\"\n",
        ] {
            assert!(c.contains(want), "{want} in {c}");
        }
        assert!(!c.contains("port 30001"), "{c}");
        // A plain database keeps its plain port even when the cluster has material.
        db.config.tls = false;
        let c = first_shard_conf(&node, &db, None, Some(&tls), &opts);
        assert!(c.contains("port 30001\n") && !c.contains("tls"), "{c}");
    }
}
