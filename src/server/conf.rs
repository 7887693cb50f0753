//! A shard's `redis.conf` and identity file, derived from (node, database, shard).

use crate::ccs::{Cluster, Database, Node, Persistence, Shard, ShardIdentity};

use crate::tls::ShardTls;

use super::shard_dir::{AOF_DIR, LOG_FILE, PID_FILE, RDB_FILE};

/// Short enough that a lost shard is noticed quickly on loopback clusters, long enough
/// not to flap under load.
pub const CLUSTER_NODE_TIMEOUT_MS: u32 = 5000;

/// Redis 7's own default schedule: after 1 h and 1 change, 5 min and 100, 1 min and 10000.
const SNAPSHOT_SCHEDULE: &str = "3600 1 300 100 60 10000";

/// Deviations from the database's configuration for one start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConfOptions {
    /// Force `appendonly` on or off: recovery loads from the AOF (on) or from the RDB
    /// (off; a server with appendonly on and no AOF would ignore the RDB and start
    /// empty), then switches to the configured persistence with `set_persistence`.
    pub appendonly: Option<bool>,
    /// Start without `replicaof` even when the shard follows a master or a sync source:
    /// recovery loads a shard's own files first and re-attaches it afterwards.
    pub standalone: bool,
}

/// The `save` and `appendonly` values of a persistence policy.
pub(crate) fn persistence_settings(p: Persistence) -> (&'static str, bool) {
    match p {
        Persistence::Aof => ("", true),
        Persistence::Snapshot => (SNAPSHOT_SCHEDULE, false),
        Persistence::Disabled => ("", false),
    }
}

/// The master a standalone shard follows: its master shard, or the database's sync
/// source. `password` is what that master requires (`masterauth`).
#[derive(Clone, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    pub password: Option<String>,
    /// It speaks only TLS: the shard replicates from it over TLS.
    pub tls: bool,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The whole `redis.conf` of a shard. Holds the password when the database has one, so
/// it is written with mode 0600 and never shown. `replicaof` is the master a standalone
/// shard follows (its master shard, or the database's sync source), kept in the file so
/// a restarted replica comes back as a replica. `tls` is the cluster's material as
/// installed on the shard's node: a TLS database's shard listens only on TLS with it, and
/// a plain one uses it to replicate from a source that speaks TLS.
pub fn render_conf(
    node: &Node,
    db: &Database,
    shard: &Shard,
    upstream: Option<&Upstream>,
    tls: Option<&ShardTls>,
    opts: &ConfOptions,
) -> String {
    let dir = node.shard_dir(db.id, shard.id);
    let mut c = String::new();
    let mut line = |key: &str, value: &str| {
        c.push_str(key);
        c.push(' ');
        c.push_str(value);
        c.push('\n');
    };
    line(
        "# written by lazarus for",
        &format!("db:{} redis:{}", db.id, shard.id),
    );
    line("dir", &quote(&dir.to_string_lossy()));
    line("bind", &quote(&node.addr));
    let sharded = db.config.shards > 1;
    match tls {
        Some(tls) if db.config.tls => {
            for (key, mut value) in tls.conf_settings(shard.port, sharded) {
                // A master following a plain sync source replicates from it in plain
                // text; its own replicas follow it over TLS.
                if key == "tls-replication" && upstream.is_some_and(|u| !u.tls) {
                    value = "no".into();
                }
                line(key, &quote(&value));
            }
        }
        _ => {
            line("port", &shard.port.to_string());
            if let Some(tls) = tls.filter(|_| upstream.is_some_and(|u| u.tls)) {
                for (key, value) in tls.file_settings() {
                    line(key, &quote(&value));
                }
                line("tls-replication", "yes");
            }
        }
    }
    line("protected-mode", "no");
    line("daemonize", "yes");
    line("pidfile", &quote(&dir.join(PID_FILE).to_string_lossy()));
    line("logfile", &quote(&dir.join(LOG_FILE).to_string_lossy()));
    line("dbfilename", RDB_FILE);
    line("appenddirname", AOF_DIR);
    let (save, appendonly) = persistence_settings(db.config.persistence);
    line("save", &quote(save));
    line("appendonly", yes_no(opts.appendonly.unwrap_or(appendonly)));
    line("appendfsync", "everysec");
    line("aof-use-rdb-preamble", "yes");
    line("maxmemory", &db.config.memory.unwrap_or(0).to_string());
    if let Some(pw) = &db.config.password {
        line("requirepass", &quote(pw));
    }
    // A sync source may want another password than the database's own; cluster replicas
    // and standalone replicas authenticate to masters of the same database.
    let masterauth = match upstream {
        Some(u) => u.password.as_ref().or(db.config.password.as_ref()),
        None => db.config.password.as_ref(),
    };
    if let Some(pw) = masterauth {
        line("masterauth", &quote(pw));
    }
    // Each master feeds one replica (or a few sync targets): waiting 5 s to batch full
    // syncs only delays every create and every recovery.
    line("repl-diskless-sync-delay", "0");
    if let Some(u) = upstream.filter(|_| !opts.standalone) {
        line("replicaof", &format!("{} {}", quote(&u.host), u.port));
    }
    // A peer learns a node's address from the source address of the node's connections
    // unless the node announces one. Outgoing connections to another loopback address
    // (127.0.0.2) leave from 127.0.0.1, so without this a peer records the wrong address
    // and the cluster never finishes meeting; on multi-homed hosts the same happens.
    let announce = node
        .addr
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| !ip.is_unspecified());
    if announce {
        line("replica-announce-ip", &quote(&node.addr));
    }
    if sharded {
        line("cluster-enabled", "yes");
        line("cluster-config-file", "nodes.conf");
        line("cluster-node-timeout", &CLUSTER_NODE_TIMEOUT_MS.to_string());
        if announce {
            line("cluster-announce-ip", &quote(&node.addr));
        }
    }
    c
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Quotes a value for redis.conf (sdssplitargs rules: `\\`, `\"` and `\xHH` escapes).
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for ch in value.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn identity_for(cluster: &Cluster, db: &Database, shard: &Shard) -> ShardIdentity {
    ShardIdentity {
        cluster_id: cluster.cluster_id,
        cluster_name: cluster.name.clone(),
        db_id: db.id,
        shard_id: shard.id,
        node_id: shard.node,
        role: shard.role,
        master: shard.master,
        slots: shard.slots,
        port: shard.port,
        db_port: db.port,
        db: db.config.clone(),
        node_addr: cluster.nodes.get(&shard.node).map(|n| n.addr.clone()),
        node_port_range: cluster.nodes.get(&shard.node).map(|n| n.port_range),
        creating: false,
        deleted: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ccs::{fixtures, DbConfig};
    use std::path::Path;

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
        let c = render_conf(
            &node,
            &db,
            &db.shards[0],
            None,
            None,
            &ConfOptions::default(),
        );
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
        let c = render_conf(
            &node,
            &db,
            &db.shards[0],
            None,
            None,
            &ConfOptions::default(),
        );
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
        };
        let up = Upstream {
            host: "10.0.0.1".into(),
            port: 30000,
            password: Some("theirs".into()),
            tls: false,
        };
        let c = render_conf(&node, &db, &db.shards[0], Some(&up), None, &opts);
        assert!(c.contains("appendonly no\n"), "{c}");
        assert!(!c.contains("replicaof"), "{c}");
        let c = render_conf(
            &node,
            &db,
            &db.shards[0],
            Some(&up),
            None,
            &ConfOptions::default(),
        );
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
        let c = render_conf(&node, &db, &db.shards[0], None, Some(&tls), &opts);
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
        let c = render_conf(&node, &db, &db.shards[0], None, Some(&tls), &opts);
        assert!(c.contains("port 30001\n") && !c.contains("tls"), "{c}");
    }
}
