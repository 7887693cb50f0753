//! A cluster built with Lazarus's library on loopback, loaded through a real client, and
//! what it looks like after a disaster: for the recovery tests.

use std::collections::BTreeMap;
use std::path::Path;

use lazarus::ccs::{Cluster, DbConfig, DbState, Id, Node, Persistence, PortRange, CCS_FORMAT};
use lazarus::db::{create_db, shard_addr, CreateDb};
use lazarus::server::{RedisServer, Servers};

use super::data::{connect, contents, wait_for_persistence, write_sample, Contents};

/// `nodes` loopback nodes with persistent paths `<root>/old/node<id>`.
pub fn test_cluster(root: &Path, nodes: u64) -> Cluster {
    test_cluster_at(root, &vec!["127.0.0.1"; nodes as usize])
}

/// One node on each of `addrs` (two at most), persistent paths `<root>/old/node<id>`, on
/// a block of ports of its own ([`super::ports`]).
pub fn test_cluster_at(root: &Path, addrs: &[&str]) -> Cluster {
    assert!(addrs.len() as u16 * super::ports::NODE_PORTS <= super::ports::BLOCK_PORTS);
    let base = super::ports::block();
    let mut c = Cluster {
        format: CCS_FORMAT,
        name: "test".into(),
        cluster_id: rand::random::<u64>() >> 1,
        alloc_id: 1,
        generation: 0,
        local_node: 1,
        redis_server: None,
        nodes: BTreeMap::new(),
        databases: BTreeMap::new(),
        backups: Default::default(),
        tls: None,
    };
    for (i, addr) in addrs.iter().enumerate() {
        let id = c.allocate_id();
        let lo = base + (i as u16) * super::ports::NODE_PORTS;
        let node = Node {
            id,
            addr: addr.to_string(),
            persistent_path: root.join(format!("old/node{id}")),
            recovery_path: None,
            port_range: PortRange { lo, hi: lo + 29 },
            rack_id: None,
            ssh: None,
            redis_server: None,
        };
        c.nodes.insert(id, node);
    }
    c
}

pub fn config(name: &str, shards: u32, replication: bool, persistence: Persistence) -> DbConfig {
    DbConfig {
        name: name.into(),
        shards,
        replication,
        persistence,
        memory: None,
        password: None,
        sync_source: None,
        tls: false,
        tls_auth_clients_optional: false,
    }
}

/// The `redis-server` on PATH.
pub fn redis() -> RedisServer {
    RedisServer::locate(None, None).expect("redis-server installed")
}

/// The `redis-server` on PATH, for every node.
pub fn server() -> Servers {
    Servers::from(redis())
}

/// Creates the databases and fills every master with sample data (logical dbs 0 and 3
/// outside cluster mode); snapshot databases are saved.
pub async fn build(cluster: &mut Cluster, configs: Vec<DbConfig>) {
    // The cluster's own binary (a test on Valkey sets it), else the one on PATH.
    let server = cluster.servers(None).expect("the cluster's redis-server");
    for config in configs {
        // Tests run in parallel on random port blocks: another test's server may take a
        // port between placement and start. create_db leaves nothing behind when it
        // fails, so placing again picks another free port.
        let mut attempts = 0;
        loop {
            let req = CreateDb {
                config: config.clone(),
                port: None,
            };
            match create_db(cluster, &server, req).await {
                Ok(_) => break,
                Err(e) if attempts < 4 && format!("{e:?}").contains("PortTaken") => {
                    attempts += 1;
                }
                Err(e) => panic!("create_db: {e:?}"),
            }
        }
    }
    for db in cluster.databases.values() {
        for (i, m) in db.masters().enumerate() {
            let a = shard_addr(cluster, db, m.id).unwrap();
            let tag = match m.slots {
                Some(slots) if db.config.shards > 1 => format!("{{{}}}", slot_tag(slots.start)),
                _ => format!("{}{i}", db.config.name),
            };
            let logical = if db.config.shards > 1 {
                vec![0]
            } else {
                vec![0, 3]
            };
            for n in logical {
                let mut con = connect(&a.host, a.port, n).await;
                write_sample(&mut con, &tag, 40).await;
            }
        }
    }
    save_snapshots(cluster).await;
}

/// SAVE on every shard of every snapshot database (replicas included); every AOF shard's
/// buffer written out.
pub async fn save_snapshots(cluster: &Cluster) {
    // Replicas must have caught up before they save their copy. (WAIT on a fresh
    // connection does not do: it waits only for that connection's own writes.)
    for db in cluster.databases.values().filter(|d| d.config.replication) {
        for m in db.masters() {
            let a = shard_addr(cluster, db, m.id).unwrap();
            let mut con = connect(&a.host, a.port, 0).await;
            let target = repl_offset(&mut con).await;
            for r in db.shards.iter().filter(|s| s.master == Some(m.id)) {
                let ra = shard_addr(cluster, db, r.id).unwrap();
                let mut rcon = connect(&ra.host, ra.port, 0).await;
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while repl_offset(&mut rcon).await < target {
                    assert!(std::time::Instant::now() < deadline, "redis:{} lags", r.id);
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        }
    }
    for db in cluster
        .databases
        .values()
        .filter(|d| d.config.persistence == Persistence::Snapshot)
    {
        for s in &db.shards {
            let a = shard_addr(cluster, db, s.id).unwrap();
            let mut con = connect(&a.host, a.port, 0).await;
            let _: () = redis::cmd("SAVE").query_async(&mut con).await.unwrap();
        }
    }
    // `appendfsync everysec` answers a write before the AOF has it when an fsync is
    // still running (a busy disk): the server holds the buffer up to 2 s, and a SIGKILL
    // then loses writes the test counts on. Wait until every buffer is written.
    for db in cluster
        .databases
        .values()
        .filter(|d| d.config.persistence == Persistence::Aof)
    {
        for s in &db.shards {
            let a = shard_addr(cluster, db, s.id).unwrap();
            let mut con = connect(&a.host, a.port, 0).await;
            wait_for_persistence(
                &mut con,
                |info| info.lines().any(|l| l.trim() == "aof_buffer_length:0"),
                std::time::Duration::from_secs(10),
                &format!("redis:{} never wrote its AOF buffer", s.id),
            )
            .await;
        }
    }
}

async fn repl_offset(con: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(con)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| {
            l.trim_end()
                .strip_prefix("master_repl_offset:")?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// The contents of every master of every database, by shard id.
pub async fn picture(c: &Cluster) -> BTreeMap<Id, Contents> {
    let mut out = BTreeMap::new();
    for db in c.databases.values() {
        for m in db.masters() {
            let a = shard_addr(c, db, m.id).unwrap();
            out.insert(m.id, contents(&a.host, a.port).await);
        }
    }
    out
}

/// The cluster as `cluster recover` brings it back: nodes with new persistent paths whose
/// recovery paths are the old ones, every database pending recovery.
pub fn after_disaster(old: &Cluster, root: &Path) -> Cluster {
    let mut c = old.clone();
    for node in c.nodes.values_mut() {
        node.recovery_path = Some(node.persistent_path.clone());
        node.persistent_path = root.join(format!("new/node{}", node.id));
    }
    for db in c.databases.values_mut() {
        db.state = DbState::PendingRecovery;
        for s in &mut db.shards {
            s.pid = None;
        }
    }
    c
}

/// A hash tag whose slot lies in the 100 slots from `start`.
pub fn slot_tag(start: u16) -> String {
    (0..100_000)
        .map(|i| format!("t{i}"))
        .find(|t| {
            (start..start.saturating_add(100)).contains(&lazarus::persist::key_slot(t.as_bytes()))
        })
        .unwrap()
}
