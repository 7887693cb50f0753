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
/// at random so that tests running side by side rarely probe the same ports. Ranges stay
/// in 21000-28999 so that cluster bus ports (+10000) miss the default 30000-30999.
fn test_cluster(root: &Path, nodes: u64) -> Cluster {
    test_cluster_at(root, &vec!["127.0.0.1"; nodes as usize])
}

/// Like `test_cluster`, one node on each of `addrs`.
fn test_cluster_at(root: &Path, addrs: &[&str]) -> Cluster {
    let base = 21000 + (rand::random::<u16>() % 130) * 60;
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
    for (i, addr) in addrs.iter().enumerate() {
        let id = c.allocate_id();
        let lo = base + (i as u16) * 30;
        c.nodes.insert(
            id,
            Node {
                id,
                addr: addr.to_string(),
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

    // A removed pidfile does not hide the server from `delete`.
    std::fs::remove_file(dir.join("redis.pid")).unwrap();
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

    // One shard lost: the database is degraded, not down; restart brings the cluster back.
    let pid = guard.pids()[1];
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    while guard.pids().contains(&pid) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = db::status(&c, None, db::STATUS_TIMEOUT).await.issues_only();
    assert_eq!(report.databases[0].status, "degraded");
    assert_eq!(report.shards.len(), 1);
    db::restart_db(&mut c, &srv, "sharded").await.unwrap();
    let report = db::status(&c, None, db::STATUS_TIMEOUT).await;
    assert_eq!(report.databases[0].status, "active", "{report:?}");
    let mut k = client.get_async_connection().await.unwrap();
    let _: () = k.set("after", 1).await.unwrap();
    assert_eq!(guard.pids().len(), 3);

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
    // Its own password; it authenticates to the source with the source's (from the CCS).
    let mut cfg = config("mirror", 1, Persistence::Disabled);
    cfg.password = Some("other pw".into());
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

    // One that dies after logging why: the log tail is in the error.
    let script = tmp.path().join("fake-redis-server");
    std::fs::write(
        &script,
        "#!/bin/sh\necho '# FATAL: cannot bind, boom' >> redis.log\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let fake = RedisServer {
        path: script,
        version: "7.0.15".into(),
    };
    let err = db::create_db(
        &mut c,
        &fake,
        CreateDb {
            config: config("broken", 1, Persistence::Aof),
            port: None,
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("FATAL: cannot bind, boom"), "{err}");
    assert_eq!(c, before);
    assert_eq!(guard.pids(), pids);
    assert_eq!(shard_dirs(tmp.path()), 1);
    drop(taken);

    // Directories an interrupted create left behind (its ids never saved) are skipped.
    let next = c.alloc_id;
    let orphan = c.nodes[&1].shard_dir(next, next + 1);
    std::fs::create_dir_all(&orphan).unwrap();
    let id = db::create_db(
        &mut c,
        &srv,
        CreateDb {
            config: config("after", 1, Persistence::Disabled),
            port: None,
        },
    )
    .await
    .unwrap();
    assert!(id > next + 1, "{id} reuses an id on disk");
    assert!(orphan.is_dir());

    // A server the configuration does not know (as an interrupted create leaves) shows.
    let mut unsaved = c.clone();
    let lost = db::create_db(
        &mut unsaved,
        &srv,
        CreateDb {
            config: config("lost", 1, Persistence::Disabled),
            port: None,
        },
    )
    .await
    .unwrap();
    let report = db::status(&c, None, db::STATUS_TIMEOUT).await.issues_only();
    assert_eq!(report.shards.len(), 1, "{report:?}");
    assert_eq!(report.shards[0].status, "ORPHAN");
    assert_eq!(report.shards[0].db_id, lost);
    assert_eq!(report.shards[0].name, "lost");
}

/// The `redis://` URL of a database's endpoint, from `--json status databases`.
fn endpoint_of(lz: &common::Lazarus, name: &str) -> String {
    let doc = lz.cmd(["--json", "status", "databases"]).run().ok().json();
    doc[0]["result"]["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no database {name}: {doc:?}"))["endpoint"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn commands_create_kill_restart_and_refuse() {
    let lz = common::Lazarus::new();
    let guard = ProcessGuard::new(lz.home());
    lz.run("create db first persistence disabled")
        .ok()
        .stdout_has("Created the default local cluster")
        .stdout_has("Endpoint: 127.0.0.1:");
    lz.run("delete db first purge").ok();
    // Other test binaries on this machine use the default range (30000-30999): a port
    // freed by the kill below could be taken before the restart. A range of our own.
    let mut doc = lz.ccs();
    let lo = 21000 + (rand::random::<u16>() % 130) * 60;
    doc["nodes"]["1"]["port_range"] = serde_json::json!({ "lo": lo, "hi": lo + 29 });
    std::fs::write(lz.path("ccs.json"), doc.to_string()).unwrap();

    let out = lz
        .run("create db cache memory 64mb password pw-7f3a")
        .ok()
        .stdout_has("Endpoint: 127.0.0.1:");
    assert!(!out.stdout.contains("pw-7f3a") && !out.stderr.contains("pw-7f3a"));
    let endpoint = endpoint_of(&lz, "cache");
    let client = redis::Client::open(format!("redis://:pw-7f3a@{endpoint}/")).unwrap();
    let mut k = client.get_connection().unwrap();
    redis::cmd("SET")
        .arg("kept")
        .arg("yes")
        .exec(&mut k)
        .unwrap();
    lz.run("status databases")
        .ok()
        .stdout_has("DB:ID")
        .stdout_has("ENDPOINT")
        .stdout_has("active");
    lz.run("status issues_only").ok().stdout_lacks("cache");

    let pid = guard.pids()[0];
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    while guard.pids().contains(&pid) {
        std::thread::sleep(Duration::from_millis(10));
    }
    lz.run("status shards issues_only").ok().stdout_has("DOWN");
    let doc = lz
        .cmd(["--json", "status", "issues_only"])
        .run()
        .ok()
        .json();
    assert_eq!(doc[0]["result"]["databases"][0]["status"], "down");

    lz.run("restart db cache").ok().stdout_has("Restarted db:");
    let mut k = client.get_connection().unwrap();
    let kept: String = redis::cmd("GET").arg("kept").query(&mut k).unwrap();
    assert_eq!(kept, "yes");

    // Refusals: the CCS file and the processes stay exactly as they were.
    let ccs = std::fs::read(lz.path("ccs.json")).unwrap();
    let pids = guard.pids();
    let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    for (line, code, says) in [
        ("create db cache", 1, "already used"),
        (&format!("create db other port {port}"), 1, "in use"),
        ("create db other memory lots", 2, "not a size"),
        ("create db other replication enabled", 1, "at least 2 nodes"),
        (
            "create db other sync_source 127.0.0.1:1",
            1,
            "nothing answers",
        ),
        ("delete db nosuch", 1, "no database"),
        ("restart db db:99", 1, "no database"),
    ] {
        lz.run(line).fails(code).stderr_has(says);
        assert_eq!(std::fs::read(lz.path("ccs.json")).unwrap(), ccs, "{line}");
        assert_eq!(guard.pids(), pids, "{line}");
    }
    drop(taken);
    lz.cmd([
        "--redis-server",
        "/nonexistent/redis-server",
        "restart",
        "db",
        "cache",
    ])
    .run()
    .fails(1)
    .stderr_has("apt-get install redis-server");
    assert_eq!(guard.pids(), pids);

    // Database names and ids complete wherever a database is expected.
    lz.cmd(["complete", "--", "delete", "db", ""])
        .run()
        .ok()
        .stdout_has("cache");
    lz.cmd(["complete", "--", "restart", "db", "db:"])
        .run()
        .ok()
        .stdout_has("db:4");

    // A second node makes replication possible, replica on the other node.
    let base = lo + 30;
    lz.run(&format!(
        "node add addr 127.0.0.1 persistent_path {} port_range {base}-{}",
        lz.path("node2").display(),
        base + 29
    ))
    .ok();
    lz.run("create db pair replication enabled persistence snapshot")
        .ok();
    let doc = lz.cmd(["--json", "status", "shards"]).run().ok().json();
    let nodes: Vec<_> = doc[0]["result"]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "pair")
        .map(|s| {
            (
                s["node"].as_u64().unwrap(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(nodes.len(), 2);
    assert_ne!(nodes[0].0, nodes[1].0);
    assert!(nodes.iter().all(|(_, s)| s == "OK"), "{nodes:?}");

    lz.run("delete db pair purge").ok().stdout_has("Removed");
    lz.run("delete db cache").ok().stdout_has("Kept its data");
    assert!(guard.pids().is_empty());
}

#[tokio::test]
async fn sharded_and_replicated_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let guard = ProcessGuard::new(tmp.path());
    let mut c = test_cluster(tmp.path(), 2);
    let srv = server();
    let mut cfg = config("both", 2, Persistence::Aof);
    cfg.replication = true;
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
    assert_eq!(guard.pids().len(), 4);
    let d = c.databases[&id].clone();
    for s in d.shards.iter().filter(|s| s.master.is_some()) {
        let m = d.shards.iter().find(|m| Some(m.id) == s.master).unwrap();
        assert_ne!(s.node, m.node, "replica beside its master");
        assert_eq!(s.slots, m.slots);
    }
    let report = db::status(&c, None, db::STATUS_TIMEOUT).await;
    assert_eq!(report.databases[0].status, "active", "{report:?}");
    assert_eq!(
        report
            .shards
            .iter()
            .filter(|s| s.live_role.as_deref() == Some("replica"))
            .count(),
        2
    );
    // Forming again is a no-op: what recovery relies on.
    db::wire(&c, &d).await.unwrap();
}

/// Nodes on different loopback addresses: each shard announces its node's address, else
/// peers record 127.0.0.1 (the source of its connections) and the cluster never meets.
#[tokio::test]
async fn cluster_across_loopback_addresses() {
    let tmp = tempfile::tempdir().unwrap();
    let guard = ProcessGuard::new(tmp.path());
    let mut c = test_cluster_at(tmp.path(), &["127.0.0.1", "127.0.0.2"]);
    let srv = server();
    let mut cfg = config("spread", 2, Persistence::Aof);
    cfg.replication = true;
    let started = std::time::Instant::now();
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
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(guard.pids().len(), 4);
    let d = &c.databases[&id];
    assert!(d.shards.iter().any(|s| s.node == 2));
    let endpoint = db::endpoint(&c, d);
    let client = redis::cluster::ClusterClient::new(vec![format!("redis://{endpoint}")]).unwrap();
    let mut k = client.get_async_connection().await.unwrap();
    for i in 0..50 {
        let _: () = k.set(format!("key{i}"), i).await.unwrap();
    }
    for i in 0..50 {
        assert_eq!(k.get::<_, i64>(format!("key{i}")).await.unwrap(), i);
    }
    let report = db::status(&c, None, db::STATUS_TIMEOUT).await;
    assert_eq!(report.databases[0].status, "active", "{report:?}");
    db::delete_db(&mut c, "spread", true).await.unwrap();
    assert!(guard.pids().is_empty());
}

/// Whether a file named `name` exists anywhere under `p`.
fn has_file(p: &Path, name: &str) -> bool {
    std::fs::read_dir(p).is_ok_and(|rd| {
        rd.flatten()
            .any(|e| e.file_name() == name || has_file(&e.path(), name))
    })
}

/// A port taken between the probe and the server's bind: redis-server dies before writing
/// its pidfile; create fails at once with the log's reason and rolls back.
#[tokio::test]
async fn port_taken_after_the_probe_fails_fast() {
    let tmp = tempfile::tempdir().unwrap();
    let guard = ProcessGuard::new(tmp.path());
    let mut c = test_cluster(tmp.path(), 1);
    let port = c.nodes[&1].port_range.lo + 7;
    let root = tmp.path().to_path_buf();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    // redis.conf is written after the probe and before the server starts: take the
    // port in that window.
    let grabber = std::thread::spawn(move || {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if has_file(&root, "redis.conf") {
                return std::net::TcpListener::bind(("127.0.0.1", port)).ok();
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        None
    });
    let started = std::time::Instant::now();
    let res = db::create_db(
        &mut c,
        &server(),
        CreateDb {
            config: config("racy", 1, Persistence::Aof),
            port: Some(port),
        },
    )
    .await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let listener = grabber.join().unwrap();
    assert!(listener.is_some(), "the test did not get the port");
    let err = res.unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.contains("Address already in use"), "{err}");
    assert!(c.databases.is_empty());
    assert_eq!(shard_dirs(tmp.path()), 0);
    assert!(guard.pids().is_empty());
}

/// A restart where one shard cannot start (a corrupt nodes.conf: redis-server dies before
/// its pidfile) fails fast, still starts the others, and records which shards run.
#[tokio::test]
async fn restart_that_fails_part_way_records_what_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let guard = ProcessGuard::new(tmp.path());
    let mut c = test_cluster(tmp.path(), 1);
    let srv = server();
    let id = db::create_db(
        &mut c,
        &srv,
        CreateDb {
            config: config("parts", 2, Persistence::Snapshot),
            port: None,
        },
    )
    .await
    .unwrap();
    let before = c.databases[&id].clone();
    let (a, b) = (&before.shards[0], &before.shards[1]);
    let dir_b = c.nodes[&1].shard_dir(id, b.id);
    let pid_b = b.pid.unwrap();
    unsafe { libc::kill(pid_b as i32, libc::SIGKILL) };
    while guard.pids().contains(&pid_b) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let good = std::fs::read(dir_b.join("nodes.conf")).unwrap();
    std::fs::write(dir_b.join("nodes.conf"), "garbage\n").unwrap();

    let started = std::time::Instant::now();
    let err = db::restart_db(&mut c, &srv, "parts").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let text = err.to_string();
    assert!(text.contains("corrupted cluster config file"), "{text}");
    assert!(text.contains(&format!("running: redis:{}", a.id)), "{text}");
    assert!(
        text.contains(&format!("not running: redis:{}", b.id)),
        "{text}"
    );
    let now = c.databases[&id].clone();
    let live_a = now.shards[0].pid.expect("shard a restarted and recorded");
    assert_ne!(Some(live_a), a.pid);
    assert_eq!(now.shards[1].pid, None);
    assert_eq!(guard.pids(), vec![live_a]);

    // With the cause fixed, the advised `restart db` brings the whole database back.
    std::fs::write(dir_b.join("nodes.conf"), good).unwrap();
    db::restart_db(&mut c, &srv, "parts").await.unwrap();
    let report = db::status(&c, None, db::STATUS_TIMEOUT).await;
    assert_eq!(report.databases[0].status, "active", "{report:?}");
    db::delete_db(&mut c, "parts", true).await.unwrap();
    assert!(guard.pids().is_empty());
}

/// Waits until `n` processes run under the guard's root.
async fn wait_for_pids(guard: &ProcessGuard, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while guard.pids().len() < n {
        assert!(std::time::Instant::now() < deadline, "no shard started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A sync source that accepts connections and never answers: the create waits for the
/// first sync until it is interrupted.
fn silent_source() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let addr = format!("127.0.0.1:{}", l.local_addr().unwrap().port());
    (l, addr)
}

/// An interrupted create (the binary trips the signal on Ctrl-C) rolls back: no shard
/// left running, no directory, the cluster unchanged.
#[tokio::test]
async fn interrupted_create_rolls_back() {
    let tmp = tempfile::tempdir().unwrap();
    let guard = ProcessGuard::new(tmp.path());
    let mut c = test_cluster(tmp.path(), 1);
    let before = c.clone();
    let (_source, addr) = silent_source();
    let mut cfg = config("stuck", 1, Persistence::Aof);
    cfg.sync_source = Some(addr);
    let cancel = db::Cancel::default();
    let srv = server();
    let create = db::create_db_with(
        &mut c,
        &srv,
        CreateDb {
            config: cfg,
            port: None,
        },
        &cancel,
    );
    let interrupt = async {
        wait_for_pids(&guard, 1).await;
        cancel.trip();
    };
    let started = std::time::Instant::now();
    let (res, ()) = tokio::join!(create, interrupt);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let err = res.unwrap_err();
    assert!(matches!(err, DbError::Interrupted(_)), "{err}");
    assert_eq!(c, before);
    assert_eq!(shard_dirs(tmp.path()), 0);
    assert!(guard.pids().is_empty());
}

/// The same through the binary: Ctrl-C (SIGINT) during `create db` rolls back and says so.
#[test]
fn ctrl_c_during_create_rolls_back() {
    let lz = common::Lazarus::new();
    let guard = ProcessGuard::new(lz.home());
    let (_source, addr) = silent_source();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_lazarus"))
        .arg("--home")
        .arg(lz.home())
        .args(["create", "db", "stuck", "sync_source", &addr])
        .env_remove("LAZARUS_HOME")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while guard.pids().iter().all(|&p| p == child.id()) {
        assert!(std::time::Instant::now() < deadline, "no shard started");
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("was rolled back"), "{stderr}");
    assert!(guard.pids().is_empty());
    assert_eq!(shard_dirs(lz.home()), 0);
    assert!(!lz.path("ccs.json").exists());
}

/// `restart db` that fails part-way saves which shards run: the CCS holds the restarted
/// shard's new pid and no pid for the one that could not start.
#[test]
fn failed_restart_is_recorded() {
    let lz = common::Lazarus::new();
    let guard = ProcessGuard::new(lz.home());
    lz.run("cluster create name t").ok();
    let mut doc = lz.ccs();
    let lo = 21000 + (rand::random::<u16>() % 130) * 60;
    doc["nodes"]["1"]["port_range"] = serde_json::json!({ "lo": lo, "hi": lo + 29 });
    std::fs::write(lz.path("ccs.json"), doc.to_string()).unwrap();
    lz.run("create db parts shards 2 persistence disabled").ok();
    let shards = |doc: &serde_json::Value| -> Vec<serde_json::Value> {
        let db = doc["databases"]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap();
        db["shards"].as_array().unwrap().clone()
    };
    let before = shards(&lz.ccs());
    let doc = lz.ccs();
    let db_id = doc["databases"].as_object().unwrap().keys().next().unwrap();
    let b_id = &before[1]["id"];
    let dir_b = lz.path(&format!("nodes/1/redis/db-{db_id}/shard-{b_id}"));
    let pid_b = before[1]["pid"].as_u64().unwrap() as u32;
    unsafe { libc::kill(pid_b as i32, libc::SIGKILL) };
    while guard.pids().contains(&pid_b) {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::write(dir_b.join("nodes.conf"), "garbage\n").unwrap();

    lz.run("restart db parts")
        .fails(1)
        .stderr_has("did not finish")
        .stderr_has(&format!("not running: redis:{b_id}"));
    let after = shards(&lz.ccs());
    let live = guard.pids();
    assert_eq!(live.len(), 1);
    assert_eq!(after[0]["pid"].as_u64(), Some(u64::from(live[0])));
    assert_ne!(after[0]["pid"], before[0]["pid"]);
    assert!(after[1]["pid"].is_null());
    lz.run("delete db parts purge").ok();
    assert!(guard.pids().is_empty());
}
