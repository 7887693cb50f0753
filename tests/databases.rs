//! End to end: databases on real redis-server processes, through the library.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::procs::ProcessGuard;
use lazarus::ccs::{Cluster, DbConfig, Node, Persistence, PortRange, CCS_FORMAT};
use lazarus::db::{self, CreateDb, DbError};
use lazarus::server::RedisServer;
use redis::AsyncCommands;

/// A cluster of `nodes` loopback nodes under `root`, each with its own port range taken
/// at random so that tests running side by side rarely probe the same ports.
fn test_cluster(root: &Path, nodes: u64) -> Cluster {
    let base = 20000 + (rand::random::<u16>() % 150) * 60;
    let mut c = Cluster {
        format: CCS_FORMAT,
        name: "test".into(),
        cluster_id: rand::random(),
        alloc_id: 1,
        generation: 0,
        local_node: 1,
        redis_server: None,
        nodes: BTreeMap::new(),
        databases: BTreeMap::new(),
    };
    for i in 0..nodes {
        let id = c.allocate_id();
        let lo = base + (i as u16) * 30;
        c.nodes.insert(
            id,
            Node {
                id,
                addr: "127.0.0.1".into(),
                persistent_path: root.join(format!("node{id}")),
                recovery_path: None,
                port_range: PortRange { lo, hi: lo + 29 },
                rack_id: None,
            },
        );
    }
    c
}

fn config(name: &str, shards: u32, persistence: Persistence) -> DbConfig {
    DbConfig {
        name: name.into(),
        shards,
        replication: false,
        persistence,
        memory: Some(64 << 20),
        password: None,
        sync_source: None,
    }
}

fn server() -> RedisServer {
    RedisServer::locate(None, None).expect("redis-server installed")
}

async fn con(c: &Cluster, name: &str) -> redis::aio::MultiplexedConnection {
    let d = c.database_by_name(name).unwrap();
    let addr = db::shard_addr(c, d, d.shards[0].id).unwrap();
    lazarus::server::connect(&addr, Duration::from_secs(2))
        .await
        .unwrap()
}

fn shard_dirs(root: &Path) -> usize {
    walk(root)
}

fn walk(p: &Path) -> usize {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    usize::from(name.starts_with("shard-")) + walk(&e.path())
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn single_shard_aof_survives_kill_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let guard = ProcessGuard::new(tmp.path());
    let mut c = test_cluster(tmp.path(), 1);
    let srv = server();
    let id = db::create_db(
        &mut c,
        &srv,
        CreateDb {
            config: config("cache", 1, Persistence::Aof),
            port: None,
        },
    )
    .await
    .unwrap();
    let d = c.databases[&id].clone();
    let dir = c.nodes[&1].shard_dir(id, d.shards[0].id);
    assert!(dir.join("lazarus-shard.json").is_file());
    let mut k = con(&c, "cache").await;
    let _: () = k.set("answer", 42).await.unwrap();
    assert_eq!(k.get::<_, i64>("answer").await.unwrap(), 42);
    assert!(dir.join("appendonlydir").is_dir());

    let report = db::status(&c, None, db::STATUS_TIMEOUT).await;
    assert_eq!(report.databases[0].status, "active");
    assert_eq!(report.shards[0].status, "OK");
    assert!(report.clone().issues_only().shards.is_empty());

    // Killed from outside: down in status, listed by issues_only.
    let pid = guard.pids()[0];
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    while guard.pids().contains(&pid) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = db::status(&c, None, db::STATUS_TIMEOUT).await.issues_only();
    assert_eq!(report.shards.len(), 1);
    assert_eq!(report.shards[0].status, "DOWN");
    assert_eq!(report.databases[0].status, "down");

    db::restart_db(&mut c, &srv, "cache").await.unwrap();
    let mut k = con(&c, "cache").await;
    assert_eq!(k.get::<_, i64>("answer").await.unwrap(), 42);
    let report = db::status(&c, None, db::STATUS_TIMEOUT).await;
    assert_eq!(report.databases[0].status, "active");

    let out = db::delete_db(&mut c, &format!("db:{id}"), false)
        .await
        .unwrap();
    assert_eq!(out.stopped, 1);
    assert!(guard.pids().is_empty());
    assert!(
        dir.join("appendonlydir").is_dir(),
        "data kept without purge"
    );
    assert!(c.databases.is_empty());
}

#[tokio::test]
async fn three_shard_snapshot_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let guard = ProcessGuard::new(tmp.path());
    let mut c = test_cluster(tmp.path(), 1);
    let srv = server();
    let id = db::create_db(
        &mut c,
        &srv,
        CreateDb {
            config: config("sharded", 3, Persistence::Snapshot),
            port: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(guard.pids().len(), 3);
    let endpoint = db::endpoint(&c, &c.databases[&id]);
    let client = redis::cluster::ClusterClient::new(vec![format!("redis://{endpoint}")]).unwrap();
    let mut k = client.get_async_connection().await.unwrap();
    for i in 0..100 {
        let _: () = k.set(format!("key{i}"), i).await.unwrap();
    }
    for i in 0..100 {
        assert_eq!(k.get::<_, i64>(format!("key{i}")).await.unwrap(), i);
    }
    let report = db::status(&c, None, db::STATUS_TIMEOUT).await;
    assert_eq!(report.databases[0].status, "active");
    assert_eq!(report.databases[0].keys, 100);
    assert!(report.shards.iter().all(|s| s.status == "OK"));

    let out = db::delete_db(&mut c, "sharded", true).await.unwrap();
    assert_eq!(out.stopped, 3);
    assert_eq!(out.purged.len(), 1);
    assert_eq!(shard_dirs(tmp.path()), 0);
    assert!(guard.pids().is_empty());
}

#[tokio::test]
async fn replicated_and_sync_source() {
    let tmp = tempfile::tempdir().unwrap();
    let guard = ProcessGuard::new(tmp.path());
    let mut c = test_cluster(tmp.path(), 2);
    let srv = server();
    let mut cfg = config("primary", 1, Persistence::Aof);
    cfg.replication = true;
    cfg.password = Some("s3cret pw".into());
    let id = db::create_db(
        &mut c,
        &srv,
        CreateDb {
            config: cfg,
            port: None,
        },
    )
    .await
    .unwrap();
    let d = c.databases[&id].clone();
    assert_eq!(d.shards.len(), 2);
    assert_ne!(
        d.shards[0].node, d.shards[1].node,
        "replica beside its master"
    );
    let mut k = con(&c, "primary").await;
    let _: () = k.set("k", "v").await.unwrap();
    let replica = db::shard_addr(&c, &d, d.shards[1].id).unwrap();
    let mut r = lazarus::server::connect(&replica, Duration::from_secs(2))
        .await
        .unwrap();
    let mut seen = None;
    for _ in 0..100 {
        seen = r.get::<_, Option<String>>("k").await.unwrap();
        if seen.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen.as_deref(), Some("v"));
    let conf =
        std::fs::read_to_string(c.nodes[&1].shard_dir(id, d.shards[0].id).join("redis.conf"))
            .unwrap();
    assert!(conf.contains("requirepass"));

    // A database fed by another: its endpoint is `primary`'s.
    let _: () = k.set("fed", "yes").await.unwrap();
    let mut cfg = config("mirror", 1, Persistence::Disabled);
    cfg.password = Some("s3cret pw".into());
    cfg.sync_source = Some(db::endpoint(&c, &d));
    db::create_db(
        &mut c,
        &srv,
        CreateDb {
            config: cfg,
            port: None,
        },
    )
    .await
    .unwrap();
    let mut m = con(&c, "mirror").await;
    assert_eq!(m.get::<_, String>("fed").await.unwrap(), "yes");
    let report = db::status(&c, None, db::STATUS_TIMEOUT).await;
    assert!(
        report.databases.iter().all(|d| d.status == "active"),
        "{:?}",
        report
    );
    assert_eq!(guard.pids().len(), 3);
}

#[tokio::test]
async fn refusals_leave_everything_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let guard = ProcessGuard::new(tmp.path());
    let mut c = test_cluster(tmp.path(), 1);
    let srv = server();
    db::create_db(
        &mut c,
        &srv,
        CreateDb {
            config: config("one", 1, Persistence::Disabled),
            port: None,
        },
    )
    .await
    .unwrap();
    let before = c.clone();
    let pids = guard.pids();

    let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let mut repl = config("repl", 1, Persistence::Aof);
    repl.replication = true;
    let mut bad_source = config("fed", 1, Persistence::Aof);
    bad_source.sync_source = Some("127.0.0.1:notaport".into());
    let mut sharded_source = config("fed", 2, Persistence::Aof);
    sharded_source.sync_source = Some(db::endpoint(
        &c,
        &c.databases.values().next().unwrap().clone(),
    ));
    let cases: Vec<(CreateDb, &str)> = vec![
        (
            CreateDb {
                config: config("one", 1, Persistence::Aof),
                port: None,
            },
            "already used",
        ),
        (
            CreateDb {
                config: config("two", 1, Persistence::Aof),
                port: Some(taken_port),
            },
            "in use",
        ),
        (
            CreateDb {
                config: config("two", 1, Persistence::Aof),
                port: Some(c.databases.values().next().unwrap().port),
            },
            "already used by",
        ),
        (
            CreateDb {
                config: repl,
                port: None,
            },
            "at least 2 nodes",
        ),
        (
            CreateDb {
                config: config("zero", 0, Persistence::Aof),
                port: None,
            },
            "between 1 and",
        ),
        (
            CreateDb {
                config: config("9lives", 1, Persistence::Aof),
                port: None,
            },
            "start with a letter",
        ),
        (
            CreateDb {
                config: bad_source,
                port: None,
            },
            "host:port",
        ),
        (
            CreateDb {
                config: sharded_source,
                port: None,
            },
            "single-shard",
        ),
    ];
    for (req, expected) in cases {
        let err = db::create_db(&mut c, &srv, req)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "`{err}` lacks `{expected}`");
        assert_eq!(c, before);
        assert_eq!(guard.pids(), pids);
    }

    // A server that cannot start: the whole create is rolled back, log tail shown.
    let broken = RedisServer {
        path: "/bin/false".into(),
        version: "7.0.15".into(),
    };
    let err = db::create_db(
        &mut c,
        &broken,
        CreateDb {
            config: config("broken", 3, Persistence::Aof),
            port: None,
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DbError::Server(_)), "{err}");
    assert_eq!(c, before);
    assert_eq!(guard.pids(), pids);
    assert_eq!(shard_dirs(tmp.path()), 1);
    drop(taken);
}
