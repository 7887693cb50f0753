//! Databases through the library: create, kill, restart, delete, status, refusals.

use std::path::Path;
use std::time::Duration;

use lazarus::ccs::{DbConfig, Persistence};
use lazarus::db::{self, CreateDb, DbError};
use lazarus::server::{RedisServer, Servers};
use redis::AsyncCommands;

use super::{cluster_round_trip, config, shard_dirs, silent_source, World};

#[tokio::test]
async fn single_shard_aof_survives_kill_and_restart() {
    let mut w = World::new(1);
    let id = w.create(config("cache", 1, Persistence::Aof)).await;
    let d = w.c.databases[&id].clone();
    let dir = w.c.nodes[&1].shard_dir(id, d.shards[0].id);
    assert!(dir.join("lazarus-shard.json").is_file());
    let mut k = w.con("cache").await;
    let _: () = k.set("answer", 42).await.unwrap();
    assert_eq!(k.get::<_, i64>("answer").await.unwrap(), 42);
    assert!(dir.join("appendonlydir").is_dir());

    let report = w.status().await;
    assert_eq!(report.databases[0].status, "active");
    assert_eq!(report.shards[0].status, "OK");
    assert!(report.clone().issues_only().shards.is_empty());

    // Killed from outside: down in status, listed by issues_only.
    w.kill(w.guard.pids()[0]).await;
    let report = w.status().await.issues_only();
    assert_eq!(report.shards.len(), 1);
    assert_eq!(report.shards[0].status, "DOWN");
    assert_eq!(report.databases[0].status, "down");

    let target = id_of(&w.c, "cache");
    db::restart_db(&mut w.c, &w.srv, target).await.unwrap();
    let mut k = w.con("cache").await;
    assert_eq!(k.get::<_, i64>("answer").await.unwrap(), 42);
    let report = w.status().await;
    assert_eq!(report.databases[0].status, "active");

    // A removed pidfile does not hide the server from `delete`.
    std::fs::remove_file(dir.join("redis.pid")).unwrap();
    let out = db::delete_db(&mut w.c, id, false).await.unwrap();
    assert_eq!(out.stopped, 1);
    assert!(w.guard.pids().is_empty());
    assert!(
        dir.join("appendonlydir").is_dir(),
        "data kept without purge"
    );
    assert!(w.c.databases.is_empty());
}

#[tokio::test]
async fn three_shard_snapshot_cluster() {
    let mut w = World::new(1);
    let id = w.create(config("sharded", 3, Persistence::Snapshot)).await;
    assert_eq!(w.guard.pids().len(), 3);
    let endpoint = db::endpoint(&w.c, &w.c.databases[&id]);
    let client = cluster_round_trip(&endpoint, 100).await;
    let report = w.status().await;
    assert_eq!(report.databases[0].status, "active");
    assert_eq!(report.databases[0].keys, 100);
    assert!(report.shards.iter().all(|s| s.status == "OK"));

    // One shard lost: the database is degraded, not down; restart brings the cluster back.
    w.kill(w.guard.pids()[1]).await;
    let report = w.status().await.issues_only();
    assert_eq!(report.databases[0].status, "degraded");
    assert_eq!(report.shards.len(), 1);
    let target = id_of(&w.c, "sharded");
    db::restart_db(&mut w.c, &w.srv, target).await.unwrap();
    let report = w.status().await;
    assert_eq!(report.databases[0].status, "active", "{report:?}");
    let mut k = client.get_async_connection().await.unwrap();
    let _: () = k.set("after", 1).await.unwrap();
    assert_eq!(w.guard.pids().len(), 3);
    // The cluster formed again under a short node timeout, and has its own back.
    for s in &w.c.databases[&id].shards {
        let a = db::shard_addr(&w.c, &w.c.databases[&id], s.id).unwrap();
        let mut con = lazarus::server::connect(&a, Duration::from_secs(2))
            .await
            .unwrap();
        let got: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("cluster-node-timeout")
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(got[1], lazarus::server::CLUSTER_NODE_TIMEOUT_MS.to_string());
    }

    let target = id_of(&w.c, "sharded");
    let out = db::delete_db(&mut w.c, target, true).await.unwrap();
    assert_eq!(out.stopped, 3);
    assert_eq!(out.purged.len(), 1);
    assert_eq!(shard_dirs(w.root()), 0);
    assert!(w.guard.pids().is_empty());
}

#[tokio::test]
async fn replicated_and_sync_source() {
    let mut w = World::new(2);
    let mut cfg = config("primary", 1, Persistence::Aof);
    cfg.replication = true;
    cfg.password = Some("s3cret pw".into());
    let id = w.create(cfg).await;
    let d = w.c.databases[&id].clone();
    assert_eq!(d.shards.len(), 2);
    assert_ne!(
        d.shards[0].node, d.shards[1].node,
        "replica beside its master"
    );
    let mut k = w.con("primary").await;
    let _: () = k.set("k", "v").await.unwrap();
    let replica = db::shard_addr(&w.c, &d, d.shards[1].id).unwrap();
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
    let conf = w.c.nodes[&1]
        .shard_dir(id, d.shards[0].id)
        .join("redis.conf");
    assert!(std::fs::read_to_string(conf)
        .unwrap()
        .contains("requirepass"));

    // A database fed by another: its endpoint is `primary`'s.
    let _: () = k.set("fed", "yes").await.unwrap();
    // Its own password; it authenticates to the source with the source's (from the CCS).
    let mut cfg = config("mirror", 1, Persistence::Disabled);
    cfg.password = Some("other pw".into());
    cfg.sync_source = Some(db::endpoint(&w.c, &d).parse().unwrap());
    w.create(cfg).await;
    let mut m = w.con("mirror").await;
    assert_eq!(m.get::<_, String>("fed").await.unwrap(), "yes");
    let report = w.status().await;
    assert!(
        report.databases.iter().all(|d| d.status == "active"),
        "{:?}",
        report
    );
    assert_eq!(w.guard.pids().len(), 3);
}

#[tokio::test]
async fn refusals_leave_everything_as_it_was() {
    let mut w = World::new(1);
    let one = w.create(config("one", 1, Persistence::Disabled)).await;
    let before = w.c.clone();
    let pids = w.guard.pids();

    let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let mut repl = config("repl", 1, Persistence::Aof);
    repl.replication = true;
    let mut bad_source = config("fed", 1, Persistence::Aof);
    // A `host:port` that does not parse cannot be built (`Endpoint`); one nobody listens
    // on is refused by create.
    let closed = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    bad_source.sync_source = Some(lazarus::endpoint::Endpoint::new("127.0.0.1", closed_port));
    let mut sharded_source = config("fed", 2, Persistence::Aof);
    sharded_source.sync_source = Some(db::endpoint(&w.c, &w.c.databases[&one]).parse().unwrap());
    let on_port = |config, port| CreateDb {
        config,
        port: Some(port),
    };
    let any_port = |config| CreateDb { config, port: None };
    let cases = [
        (any_port(config("one", 1, Persistence::Aof)), "already used"),
        (
            on_port(config("two", 1, Persistence::Aof), taken_port),
            "in use",
        ),
        (
            on_port(config("two", 1, Persistence::Aof), w.c.databases[&one].port),
            "already used by",
        ),
        (any_port(repl), "at least 2 nodes"),
        (
            any_port(config("zero", 0, Persistence::Aof)),
            "between 1 and",
        ),
        (
            any_port(config("9lives", 1, Persistence::Aof)),
            "start with a letter",
        ),
        (any_port(bad_source), "nothing answers there"),
        (any_port(sharded_source), "single-shard"),
    ];
    for (req, expected) in cases {
        let err = db::create_db(&mut w.c, &w.srv, req)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "`{err}` lacks `{expected}`");
        assert_eq!(w.c, before);
        assert_eq!(w.guard.pids(), pids);
    }

    // A server that cannot start: the whole create is rolled back, log tail shown.
    let broken = Servers::from(RedisServer {
        path: "/bin/false".into(),
        version: "7.0.15".into(),
        engine: "redis",
    });
    let err = db::create_db(
        &mut w.c,
        &broken,
        any_port(config("broken", 3, Persistence::Aof)),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DbError::Server(_)), "{err}");
    assert_eq!(w.c, before);

    // One that dies after logging why: the log tail is in the error.
    let script = w.root().join("fake-redis-server");
    std::fs::write(
        &script,
        "#!/bin/sh\necho '# FATAL: cannot bind, boom' >> redis.log\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let fake = Servers::from(RedisServer {
        path: script,
        version: "7.0.15".into(),
        engine: "redis",
    });
    let err = db::create_db(
        &mut w.c,
        &fake,
        any_port(config("broken", 1, Persistence::Aof)),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("FATAL: cannot bind, boom"), "{err}");
    assert_eq!(w.c, before);
    assert_eq!(w.guard.pids(), pids);
    assert_eq!(shard_dirs(w.root()), 1);
    drop(taken);

    // Directories an interrupted create left behind (its ids never saved) are skipped.
    let next = w.c.alloc_id;
    let orphan = w.c.nodes[&1].shard_dir(next, next + 1);
    std::fs::create_dir_all(&orphan).unwrap();
    let id = w.create(config("after", 1, Persistence::Disabled)).await;
    assert!(id > next + 1, "{id} reuses an id on disk");
    assert!(orphan.is_dir());

    // A server the configuration does not know (as an interrupted create leaves) shows.
    let mut unsaved = w.c.clone();
    let lost = db::create_db(
        &mut unsaved,
        &w.srv,
        any_port(config("lost", 1, Persistence::Disabled)),
    )
    .await
    .unwrap();
    let report = w.status().await.issues_only();
    assert_eq!(report.shards.len(), 1, "{report:?}");
    assert_eq!(report.shards[0].status, "ORPHAN");
    assert_eq!(report.shards[0].db_id, lost);
    assert_eq!(report.shards[0].name, "lost");
}

#[tokio::test]
async fn sharded_and_replicated_cluster() {
    let mut w = World::new(2);
    let mut cfg = config("both", 2, Persistence::Aof);
    cfg.replication = true;
    let id = w.create(cfg).await;
    assert_eq!(w.guard.pids().len(), 4);
    let d = w.c.databases[&id].clone();
    for s in d.shards.iter().filter(|s| s.master.is_some()) {
        let m = d.shards.iter().find(|m| Some(m.id) == s.master).unwrap();
        assert_ne!(s.node, m.node, "replica beside its master");
        assert_eq!(s.slots, m.slots);
    }
    let report = w.status().await;
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
    db::wire(&w.c, &d).await.unwrap();
}

/// Nodes on different loopback addresses: each shard announces its node's address, else
/// peers record 127.0.0.1 (the source of its connections) and the cluster never meets.
#[tokio::test]
async fn cluster_across_loopback_addresses() {
    let mut w = World::at(&["127.0.0.1", "127.0.0.2"]);
    let mut cfg = config("spread", 2, Persistence::Aof);
    cfg.replication = true;
    let started = std::time::Instant::now();
    let id = w.create(cfg).await;
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(w.guard.pids().len(), 4);
    let d = &w.c.databases[&id];
    assert!(d.shards.iter().any(|s| s.node == 2));
    let endpoint = db::endpoint(&w.c, d);
    cluster_round_trip(&endpoint, 50).await;
    let report = w.status().await;
    assert_eq!(report.databases[0].status, "active", "{report:?}");
    let target = id_of(&w.c, "spread");
    db::delete_db(&mut w.c, target, true).await.unwrap();
    assert!(w.guard.pids().is_empty());
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
    let mut w = World::new(1);
    let port = w.c.nodes[&1].port_range.lo + 7;
    let root = w.root().to_path_buf();
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
    let req = CreateDb {
        config: config("racy", 1, Persistence::Aof),
        port: Some(port),
    };
    let res = db::create_db(&mut w.c, &w.srv, req).await;
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
    assert!(w.c.databases.is_empty());
    assert_eq!(shard_dirs(w.root()), 0);
    assert!(w.guard.pids().is_empty());
}

/// A restart where one shard cannot start (a corrupt nodes.conf: redis-server dies before
/// its pidfile) fails fast, still starts the others, and records which shards run.
#[tokio::test]
async fn restart_that_fails_part_way_records_what_runs() {
    let mut w = World::new(1);
    let id = w.create(config("parts", 2, Persistence::Snapshot)).await;
    let before = w.c.databases[&id].clone();
    let (a, b) = (&before.shards[0], &before.shards[1]);
    let dir_b = w.c.nodes[&1].shard_dir(id, b.id);
    w.kill(b.pid.unwrap()).await;
    let good = std::fs::read(dir_b.join("nodes.conf")).unwrap();
    std::fs::write(dir_b.join("nodes.conf"), "garbage\n").unwrap();

    let started = std::time::Instant::now();
    let target = id_of(&w.c, "parts");
    let err = db::restart_db(&mut w.c, &w.srv, target).await.unwrap_err();
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
    let now = w.c.databases[&id].clone();
    let live_a = now.shards[0].pid.expect("shard a restarted and recorded");
    assert_ne!(Some(live_a), a.pid);
    assert_eq!(now.shards[1].pid, None);
    assert_eq!(w.guard.pids(), vec![live_a]);

    // With the cause fixed, the advised `restart db` brings the whole database back.
    std::fs::write(dir_b.join("nodes.conf"), good).unwrap();
    let target = id_of(&w.c, "parts");
    db::restart_db(&mut w.c, &w.srv, target).await.unwrap();
    let report = w.status().await;
    assert_eq!(report.databases[0].status, "active", "{report:?}");
    let target = id_of(&w.c, "parts");
    db::delete_db(&mut w.c, target, true).await.unwrap();
    assert!(w.guard.pids().is_empty());
}

/// An interrupted create (the binary trips the signal on Ctrl-C) rolls back: no shard
/// left running, no directory, the cluster unchanged.
#[tokio::test]
async fn interrupted_create_rolls_back() {
    let mut w = World::new(1);
    let before = w.c.clone();
    let (_source, addr) = silent_source();
    let mut cfg = config("stuck", 1, Persistence::Aof);
    cfg.sync_source = Some(addr.parse().unwrap());
    let cancel = db::Cancel::default();
    let req = CreateDb {
        config: cfg,
        port: None,
    };
    let create = db::create_db_with(&mut w.c, &w.srv, req, &cancel);
    let guard = &w.guard;
    let interrupt = async {
        // Waits until the shard runs.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while guard.pids().is_empty() {
            assert!(std::time::Instant::now() < deadline, "no shard started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
    assert_eq!(w.c, before);
    assert_eq!(shard_dirs(w.root()), 0);
    assert!(w.guard.pids().is_empty());
}

/// A shard whose server reports loading progress keeps its start wait alive past the
/// timeout: the deadline bounds a stall, not the size of the data (issue 18). The real
/// redis-server, slowed to about 250 µs a key (`key-load-delay`) and reporting progress
/// every KiB, takes more than twice the 2 s timeout to load 20,000 keys.
#[tokio::test]
async fn a_shard_still_loading_keeps_its_start_wait_alive() {
    use std::os::unix::fs::PermissionsExt;
    let mut w = World::new(1);
    let id = w.create(config("slow", 1, Persistence::Snapshot)).await;
    let mut k = w.con("slow").await;
    let keys = 20_000;
    let mut pipe = redis::pipe();
    for i in 0..keys {
        pipe.set(format!("key{i}"), i).ignore();
    }
    let _: () = pipe.query_async(&mut k).await.unwrap();
    let _: () = redis::cmd("SAVE").query_async(&mut k).await.unwrap();
    drop(k);
    w.kill(w.guard.pids()[0]).await;

    let real = crate::common::world::redis();
    let script = w.root().join("slow-redis-server");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = --version ] && exec {0} --version\nexec {0} \"$@\" --key-load-delay 250 --loading-process-events-interval-bytes 1024\n",
            real.path.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let slow = Servers::from(RedisServer {
        path: script,
        ..real
    });
    let d = w.c.databases[&id].clone();
    let timeout = Duration::from_secs(2);
    let opts = lazarus::server::StartOptions {
        timeout,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    db::start_shard(&slow, &w.c, &d, &d.shards[0], &opts)
        .await
        .expect("a shard making loading progress is waited for");
    let took = started.elapsed();
    assert!(
        took > timeout * 2,
        "loaded in {took:?}: too fast to prove the wait"
    );
    let mut k = w.con("slow").await;
    let n: u64 = redis::cmd("DBSIZE").query_async(&mut k).await.unwrap();
    assert_eq!(n, keys);
}

/// The id of the database called `name` (the library takes ids; commands resolve names).
fn id_of(c: &lazarus::ccs::Cluster, name: &str) -> lazarus::ccs::Id {
    c.database_by_name(name).expect("database").id
}

/// A replica that took its master's slots (the master killed and failed over, or an
/// operator's `CLUSTER FAILOVER`) does not leave the database stuck: `restart db` used to
/// fail on every try with "slot ... is owned by another node", the slot map never formed
/// again. The master follows its replica, catches up and takes its role back; every write
/// taken while the replica served is kept.
#[tokio::test]
async fn restart_after_failover_gives_the_masters_their_slots_back() {
    let mut w = World::new(2);
    let mut cfg = config("swapped", 3, Persistence::Aof);
    cfg.replication = true;
    let id = w.create(cfg).await;
    let d = w.c.databases[&id].clone();
    let endpoint = db::endpoint(&w.c, &d);
    let client = cluster_round_trip(&endpoint, 300).await;
    let c = w.c.clone();
    let addr = |id| db::shard_addr(&c, &d, id).unwrap();
    let replica_of = |m: u64| d.shards.iter().find(|s| s.master == Some(m)).unwrap().id;
    let masters: Vec<_> = d.masters().map(|s| (s.id, s.pid.unwrap())).collect();
    async fn raw(a: &lazarus::server::ShardAddr, cmd: &mut redis::Cmd) -> redis::Value {
        let mut con = lazarus::server::connect(a, Duration::from_secs(2))
            .await
            .unwrap();
        cmd.query_async(&mut con).await.unwrap()
    }
    async fn role(a: &lazarus::server::ShardAddr) -> String {
        match raw(a, &mut redis::cmd("ROLE")).await {
            redis::Value::Array(v) => match &v[0] {
                redis::Value::BulkString(b) => String::from_utf8_lossy(b).to_string(),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    // The first pair by the operator's manual failover, the second by a crash.
    let (m0, m1) = (masters[0].0, masters[1].0);
    raw(&addr(replica_of(m0)), redis::cmd("CLUSTER").arg("FAILOVER")).await;
    w.kill(masters[1].1).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for r in [replica_of(m0), replica_of(m1)] {
        while role(&addr(r)).await != "master" {
            assert!(
                std::time::Instant::now() < deadline,
                "redis:{r} not promoted"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Writes the promoted replicas alone hold.
    let mut k = client.get_async_connection().await.unwrap();
    for i in 0..300 {
        let _: () = k.set(format!("after{i}"), i).await.unwrap();
    }

    // Status names the replicas serving their masters' slots and the way back, and
    // counts the keys they serve in place of the master that is down.
    let report = w.status().await;
    for m in [m0, m1] {
        let row = report
            .shards
            .iter()
            .find(|r| r.id == replica_of(m))
            .unwrap();
        assert_eq!(row.status, db::FAILED_OVER, "{report:?}");
        let detail = row.detail.as_deref().unwrap_or_default();
        assert!(detail.contains("`restart db swapped`"), "{detail}");
    }
    assert_eq!(report.databases[0].status, "degraded");
    assert_eq!(report.databases[0].keys, 600, "{report:?}");

    let target = id_of(&w.c, "swapped");
    db::restart_db(&mut w.c, &w.srv, target).await.unwrap();
    let report = w.status().await;
    assert_eq!(report.databases[0].status, "active", "{report:?}");
    assert!(report.shards.iter().all(|s| s.status == "OK"), "{report:?}");
    for s in &d.shards {
        let want = if s.master.is_none() {
            "master"
        } else {
            "slave"
        };
        assert_eq!(role(&addr(s.id)).await, want, "redis:{}", s.id);
    }
    let client = redis::cluster::ClusterClient::new(vec![format!("redis://{endpoint}")]).unwrap();
    let mut k = client.get_async_connection().await.unwrap();
    for i in 0..300 {
        assert_eq!(k.get::<_, i64>(format!("key{i}")).await.unwrap(), i);
        assert_eq!(k.get::<_, i64>(format!("after{i}")).await.unwrap(), i);
    }
    assert_eq!(report.databases[0].keys, 600);
}

/// A replica that never syncs (its master now asks a password it does not send): the
/// timed-out wait names the replica and ends with the last lines of its log, where the
/// server says why.
#[tokio::test]
async fn a_sync_that_times_out_shows_the_replicas_log() {
    let mut w = World::new(2);
    let id = w
        .create(DbConfig {
            replication: true,
            ..config("pair", 1, Persistence::Disabled)
        })
        .await;
    let d = w.c.databases[&id].clone();
    let master = d.masters().next().unwrap().clone();
    let replica = d
        .shards
        .iter()
        .find(|s| s.master.is_some())
        .unwrap()
        .clone();
    let a = db::shard_addr(&w.c, &d, master.id).unwrap();
    let client = redis::Client::open(format!("redis://{}:{}/", a.host, a.port)).unwrap();
    let mut k = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("not-the-replicas")
        .query_async(&mut k)
        .await
        .unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("replica")
        .query_async(&mut k)
        .await
        .map(|_: i64| ())
        .unwrap();
    let e = db::BringUp::new(&w.c, &d)
        .with_timeouts(db::Timeouts::all(Duration::from_secs(2)))
        .link()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("timed out after 2s waiting for replica"),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "last lines of the log of redis:{}, not in sync:\n",
            replica.id
        )),
        "{e}"
    );
    assert!(e.contains("NOAUTH"), "{e}");
}

/// A replica that refuses every full sync its master sends (here a Redis 7.0 replica of a
/// Valkey 8.1 master: RDB 11 it cannot load, asked for again each time) ends a sync wait
/// once its master counts several full syncs, naming both, not after the whole timeout
/// (an hour in a recovery).
#[tokio::test]
async fn a_replica_refusing_every_sync_ends_the_wait_early() {
    let Some(valkey) = crate::common::engine::Engine::valkey() else {
        eprintln!("engine valkey: not tested (no valkey-server)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let _guard = crate::common::procs::ProcessGuard::new(tmp.path());
    let base = crate::common::ports::block();
    let (mp, rp) = (base, base + 1);
    let mut children = Vec::new();
    let mut start = |bin: &Path, dir: &str, port: u16, extra: &[String]| {
        let d = tmp.path().join(dir);
        std::fs::create_dir_all(&d).unwrap();
        let child = std::process::Command::new(bin)
            .current_dir(&d)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--repl-diskless-sync-delay", "0"])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        children.push(child);
    };
    let addr = |port: u16| lazarus::server::ShardAddr {
        host: "127.0.0.1".into(),
        port,
        password: None,
        transport: lazarus::server::Transport::Plain,
    };
    start(valkey.path.as_ref().unwrap(), "master", mp, &[]);
    let up = |port: u16| async move {
        for _ in 0..200 {
            if lazarus::server::connect(&addr(port), Duration::from_millis(200))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("port {port} never answered");
    };
    up(mp).await;
    let mut m = lazarus::server::connect(&addr(mp), Duration::from_secs(2))
        .await
        .unwrap();
    let _: () = m.set("k", "v").await.unwrap();
    let redis = crate::common::world::redis();
    start(
        &redis.path,
        "replica",
        rp,
        &["--replicaof".into(), "127.0.0.1".into(), mp.to_string()],
    );
    up(rp).await;

    let began = std::time::Instant::now();
    let err = lazarus::server::wait_in_sync(&addr(rp), Duration::from_secs(600))
        .await
        .unwrap_err();
    assert!(
        matches!(err, lazarus::server::ServerError::SyncRefused { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "replica `127.0.0.1:{rp}` refuses what its master `127.0.0.1:{mp}` sends"
        )),
        "{text}"
    );
    assert!(began.elapsed() < Duration::from_secs(120), "{text}");
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A master whose directory lost its data (its node's disk wiped) while its replica
/// still holds the data: `restart db` used to start the master empty, the replica
/// synced from it and was emptied, the last copy gone. It is refused before anything
/// stops, naming both shards and the way forward; the replica keeps serving its keys.
#[tokio::test]
async fn restart_refuses_an_empty_master_over_a_replica_holding_its_data() {
    let mut w = World::new(2);
    let id = w
        .create(DbConfig {
            replication: true,
            ..config("pair", 1, Persistence::Aof)
        })
        .await;
    let d = w.c.databases[&id].clone();
    let master = d.masters().next().unwrap().clone();
    let replica = d
        .shards
        .iter()
        .find(|s| s.master == Some(master.id))
        .unwrap()
        .clone();
    let mut k = w.con("pair").await;
    for i in 0..50 {
        let _: () = k.set(format!("key{i}"), i).await.unwrap();
    }
    drop(k);
    let raddr = db::shard_addr(&w.c, &d, replica.id).unwrap();
    let replica_keys = || async {
        let mut con = lazarus::server::connect(&raddr, Duration::from_secs(2))
            .await
            .unwrap();
        redis::cmd("DBSIZE")
            .query_async::<u64>(&mut con)
            .await
            .unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while replica_keys().await != 50 {
        assert!(std::time::Instant::now() < deadline, "replica never synced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The master's node loses its disk.
    w.kill(master.pid.unwrap()).await;
    let dir = w.c.nodes[&master.node].shard_dir(id, master.id);
    std::fs::remove_dir_all(&dir).unwrap();

    let err = db::restart_db(&mut w.c, &w.srv, id).await.unwrap_err();
    let DbError::MasterWithoutData {
        master: m,
        replica: r,
        ..
    } = &err
    else {
        panic!("expected a refusal, got {err}");
    };
    assert_eq!((*m, *r), (master.id, replica.id));
    let text = err.to_string();
    assert!(text.contains(&dir.display().to_string()), "{text}");
    assert!(text.contains("nothing was stopped"), "{text}");
    use lazarus::error::DomainError;
    assert_eq!(err.kind(), lazarus::error::ErrorKind::Conflict);
    assert!(
        err.hints()
            .iter()
            .any(|h| h.contains("`restart db pair` again")),
        "{:?}",
        err.hints()
    );
    // Nothing stopped or started: the replica runs with every key, the master is down.
    assert_eq!(replica_keys().await, 50);
    assert!(!dir.exists(), "no directory made for the master");

    // With the replica's files copied in, as the hint says, the master comes back with
    // its data and the replica keeps it.
    // (Once the replica's own AOF rewrite after its sync is done: a copy taken during
    // it holds the empty base from before the sync.)
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut con = lazarus::server::connect(&raddr, Duration::from_secs(2))
            .await
            .unwrap();
        let info: String = redis::cmd("INFO")
            .arg("persistence")
            .query_async(&mut con)
            .await
            .unwrap();
        if info.contains("aof_rewrite_in_progress:0") && info.contains("aof_rewrite_scheduled:0") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{info}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rdir = w.c.nodes[&replica.node].shard_dir(id, replica.id);
    std::fs::create_dir_all(&dir).unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(rdir.join("appendonlydir"))
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    db::restart_db(&mut w.c, &w.srv, id).await.unwrap();
    let mut k = w.con("pair").await;
    assert_eq!(k.get::<_, i64>("key49").await.unwrap(), 49);
    assert_eq!(replica_keys().await, 50);
}

/// The same when the master's directory is left but holds nothing its server loads keys
/// from: a sharded snapshot database's master whose `dump.rdb` is gone (deleted, or never
/// written: it saves on a schedule) keeps its `nodes.conf`, which once passed for data,
/// and `restart db` started it empty after a power loss; its replica synced from it and
/// its own `dump.rdb`, the last copy, was replaced by the empty one.
#[tokio::test]
async fn restart_refuses_a_master_left_with_only_its_nodes_conf() {
    let mut w = World::new(2);
    let (id, d, master, replica) = replicated(&mut w, "kept", 2).await;
    cluster_round_trip(&format!("127.0.0.1:{}", d.port), 200).await;
    let held = keys_of(&w, &d, master.id).await;
    assert!(held > 0, "no key on redis:{}", master.id);
    until_keys(&w, &d, replica.id, held).await;
    // The replica saved on its schedule; then the power went: both die.
    save_on(&w, &d, replica.id).await;
    w.kill(master.pid.unwrap()).await;
    w.kill(replica.pid.unwrap()).await;
    let dir = w.c.nodes[&master.node].shard_dir(id, master.id);
    let _ = std::fs::remove_file(dir.join("dump.rdb"));
    assert!(dir.join("nodes.conf").exists());
    let rdb = w.c.nodes[&replica.node]
        .shard_dir(id, replica.id)
        .join("dump.rdb");
    let before = std::fs::read(&rdb).unwrap();

    let err = db::restart_db(&mut w.c, &w.srv, id).await.unwrap_err();
    let DbError::MasterWithoutData {
        master: m,
        replica: r,
        ..
    } = &err
    else {
        panic!("expected a refusal, got {err}");
    };
    assert_eq!((*m, *r), (master.id, replica.id));
    assert!(err.to_string().contains("nothing was stopped"), "{err}");
    // Nothing started: the replica's file is as it was, and still holds every key.
    assert_eq!(std::fs::read(&rdb).unwrap(), before);
    let report = lazarus::persist::check_path(&rdb, &Default::default());
    assert_eq!(report.keys, held);
    assert!(!dir.join("dump.rdb").exists());
}

/// After a failover, a master whose node lost its disk comes back as a new node that
/// knows no other (its `nodes.conf` went with the disk): `restart db` used to fail on
/// every try with "Unknown node" (`CLUSTER REPLICATE` of a replica it never met). It
/// meets the replica that serves its slots, follows it, catches up and takes the slots
/// back; no key is lost.
#[tokio::test]
async fn restart_after_failover_brings_back_a_master_whose_disk_was_lost() {
    let mut w = World::new(2);
    let mut cfg = config("wiped", 3, Persistence::Aof);
    cfg.replication = true;
    let id = w.create(cfg).await;
    let d = w.c.databases[&id].clone();
    let endpoint = db::endpoint(&w.c, &d);
    let client = cluster_round_trip(&endpoint, 300).await;
    let master = d.masters().next().unwrap().clone();
    let replica = d
        .shards
        .iter()
        .find(|s| s.master == Some(master.id))
        .unwrap()
        .clone();
    let raddr = db::shard_addr(&w.c, &d, replica.id).unwrap();
    let role = || async {
        let mut con = lazarus::server::connect(&raddr, Duration::from_secs(2))
            .await
            .unwrap();
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut con)
            .await
            .unwrap();
        info.contains("role:master")
    };

    // Every write on the replica before the master goes.
    let maddr = db::shard_addr(&w.c, &d, master.id).unwrap();
    let mut con = lazarus::server::connect(&maddr, Duration::from_secs(2))
        .await
        .unwrap();
    let acked: u64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(acked, 1);
    drop(con);
    w.kill(master.pid.unwrap()).await;
    let dir = w.c.nodes[&master.node].shard_dir(id, master.id);
    std::fs::remove_dir_all(&dir).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !role().await {
        assert!(
            std::time::Instant::now() < deadline,
            "redis:{} not promoted",
            replica.id
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    db::restart_db(&mut w.c, &w.srv, id).await.unwrap();
    assert!(!role().await, "redis:{} gave its slots back", replica.id);
    let report = w.status().await;
    assert_eq!(report.databases[0].status, "active", "{report:?}");
    assert!(report.shards.iter().all(|s| s.status == "OK"), "{report:?}");
    assert_eq!(report.databases[0].keys, 300, "{report:?}");
    let mut k = client.get_async_connection().await.unwrap();
    for i in 0..300 {
        assert_eq!(k.get::<_, i64>(format!("key{i}")).await.unwrap(), i);
    }
}

/// A master of a database without replicas whose disk was lost comes back empty as a
/// new node (its `nodes.conf` gone too). `restart db` used to report success, and
/// `status` every shard OK, while the other master still gave the lost one's slots to
/// its old id, with no address: every key of those slots answered `MOVED ... :0`. The
/// members forget the lost identity, the new node owns the slots, every slot is served.
#[tokio::test]
async fn restart_after_a_lost_disk_serves_every_slot_again() {
    let mut w = World::new(1);
    let id = w.create(config("halves", 2, Persistence::Aof)).await;
    let d = w.c.databases[&id].clone();
    let endpoint = db::endpoint(&w.c, &d);
    cluster_round_trip(&endpoint, 200).await;
    let (kept, lost) = (d.shards[0].clone(), d.shards[1].clone());
    w.kill(lost.pid.unwrap()).await;
    std::fs::remove_dir_all(w.c.nodes[&lost.node].shard_dir(id, lost.id)).unwrap();

    db::restart_db(&mut w.c, &w.srv, id).await.unwrap();
    let kaddr = db::shard_addr(&w.c, &d, kept.id).unwrap();
    let mut con = lazarus::server::connect(&kaddr, Duration::from_secs(2))
        .await
        .unwrap();
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(nodes.lines().count(), 2, "{nodes}");
    assert!(!nodes.contains(":0@0"), "{nodes}");
    let kept_keys: u64 = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
    // Every slot is served again: the kept half still has its keys, the lost half
    // takes writes.
    let client = redis::cluster::ClusterClient::new(vec![format!("redis://{endpoint}")]).unwrap();
    let mut k = client.get_async_connection().await.unwrap();
    let mut found = 0;
    for i in 0..200 {
        if let Some(v) = k.get::<_, Option<i64>>(format!("key{i}")).await.unwrap() {
            assert_eq!(v, i);
            found += 1;
        }
        let _: () = k.set(format!("again{i}"), i).await.unwrap();
    }
    assert_eq!(found, kept_keys);
    assert!(kept_keys > 0 && kept_keys < 200, "{kept_keys}");
    let report = w.status().await;
    assert_eq!(report.databases[0].status, "active", "{report:?}");
    assert_eq!(report.databases[0].keys, kept_keys + 200, "{report:?}");
}

/// A master that serves only part of its configured slots: it lost `nodes.conf` (a new
/// node id), claimed the slots of the keys it loaded and met the cluster again, whose
/// other master still gives all its slots to its old id, with no address, and says
/// `cluster_state:ok`: keys of those slots answer `MOVED ... :0` there. `status`
/// exited 0 with the other master `OK`. It now names the slots the master does not
/// serve and who holds them, and the way forward, and fails; `restart db` re-forms the
/// slot map and `status` is clean again.
#[tokio::test]
async fn status_names_the_slots_a_master_does_not_serve() {
    let mut w = World::new(1);
    let id = w.create(config("halves", 2, Persistence::Aof)).await;
    let d = w.c.databases[&id].clone();
    let endpoint = db::endpoint(&w.c, &d);
    cluster_round_trip(&endpoint, 100).await;
    let (kept, lost) = (d.shards[0].clone(), d.shards[1].clone());
    w.kill(lost.pid.unwrap()).await;
    let dir = w.c.nodes[&lost.node].shard_dir(id, lost.id);
    std::fs::remove_file(dir.join("nodes.conf")).unwrap();
    // Started again by hand as Lazarus starts it (daemonized, from its directory).
    let started = std::process::Command::new(&w.srv.for_node(lost.node).unwrap().path)
        .arg("redis.conf")
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(started.success());
    let (kaddr, laddr) = (
        db::shard_addr(&w.c, &d, kept.id).unwrap(),
        db::shard_addr(&w.c, &d, lost.id).unwrap(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut lcon = loop {
        if let Ok(c) = lazarus::server::connect(&laddr, Duration::from_secs(1)).await {
            break c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "redis:{} did not start",
            lost.id
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Asked again while it loads its AOF.
    loop {
        let met: redis::RedisResult<()> = redis::cmd("CLUSTER")
            .arg("MEET")
            .arg(&kaddr.host)
            .arg(kaddr.port)
            .query_async(&mut lcon)
            .await;
        match met {
            Ok(()) => break,
            Err(e) => assert!(std::time::Instant::now() < deadline, "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut kcon = lazarus::server::connect(&kaddr, Duration::from_secs(2))
        .await
        .unwrap();
    // Both know each other; the kept master also knows the old id (no address) holding
    // the slots, and says `ok`; the new node never hears of it.
    loop {
        let mut seen = Vec::new();
        for con in [&mut kcon, &mut lcon] {
            let nodes: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(con)
                .await
                .unwrap();
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(con)
                .await
                .unwrap();
            seen.push((nodes, info));
        }
        let settled = seen[0].0.lines().count() == 3
            && seen[0].0.contains(":0@0")
            && seen[0].1.contains("cluster_state:ok")
            && seen[1].0.lines().count() == 2
            && !seen.iter().any(|(n, _)| n.contains("handshake"));
        if settled {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cluster did not settle: {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let slots = lost.slots.unwrap();

    let report = w.status().await;
    let row = report.shards.iter().find(|s| s.id == lost.id).unwrap();
    assert_eq!(row.status, db::SLOTS_NOT_SERVED, "{report:?}");
    let detail = row.detail.as_deref().unwrap();
    assert!(
        detail.contains(&format!("of its slots {slots}")),
        "{detail}"
    );
    assert!(
        detail.contains(&format!("with no address (an identity lost with a `nodes.conf`: no shard answers as it) in redis:{}'s view", kept.id)),
        "{detail}"
    );
    assert!(detail.contains("`restart db halves`"), "{detail}");
    let krow = report.shards.iter().find(|s| s.id == kept.id).unwrap();
    assert_eq!(krow.status, "OK", "{report:?}");
    // The new node, missing slots in its own view, says its cluster is down.
    assert_eq!(
        report.databases[0].status, "degraded, cluster_state:fail",
        "{report:?}"
    );
    let down = report.databases[0].cluster_down.as_ref().unwrap();
    assert_eq!(down.shards, vec![lost.id], "{report:?}");
    // It serves the slots of the keys it loaded, and nobody reachable serves the rest.
    let unserved = report.unserved_slots();
    assert_eq!(unserved.len(), 1, "{unserved:?}");
    let count: u32 = unserved[0]
        .1
        .iter()
        .map(|r| u32::from(r.end - r.start) + 1)
        .sum();
    assert!(unserved[0]
        .1
        .iter()
        .all(|r| slots.start <= r.start && r.end <= slots.end));
    assert!(0 < count && count < 8192, "{unserved:?}");

    db::restart_db(&mut w.c, &w.srv, id).await.unwrap();
    let report = w.status().await;
    assert!(report.shards.iter().all(|s| s.status == "OK"), "{report:?}");
    assert_eq!(report.databases[0].status, "active", "{report:?}");
    assert!(report.unserved_slots().is_empty(), "{report:?}");
}

/// A snapshot database of `shards` masters with a replica each: its id and
/// configuration, its first master and that master's replica.
async fn replicated(
    w: &mut World,
    name: &str,
    shards: u32,
) -> (
    u64,
    lazarus::ccs::Database,
    lazarus::ccs::Shard,
    lazarus::ccs::Shard,
) {
    let id = w
        .create(DbConfig {
            replication: true,
            ..config(name, shards, Persistence::Snapshot)
        })
        .await;
    let d = w.c.databases[&id].clone();
    let master = d.masters().next().unwrap().clone();
    let replica = d
        .shards
        .iter()
        .find(|s| s.master == Some(master.id))
        .unwrap()
        .clone();
    (id, d, master, replica)
}

/// DBSIZE of shard `shard` of `d`.
async fn keys_of(w: &World, d: &lazarus::ccs::Database, shard: u64) -> u64 {
    let addr = db::shard_addr(&w.c, d, shard).unwrap();
    let mut con = lazarus::server::connect(&addr, Duration::from_secs(2))
        .await
        .unwrap();
    redis::cmd("DBSIZE")
        .query_async::<u64>(&mut con)
        .await
        .unwrap()
}

/// Waits (10 s at most) until shard `shard` of `d` holds `n` keys: a replica catching up.
async fn until_keys(w: &World, d: &lazarus::ccs::Database, shard: u64, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let held = keys_of(w, d, shard).await;
        if held == n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "redis:{shard} holds {held} keys, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `SAVE` on shard `shard` of `d`, once a background save under way (the first sync of
/// a replica, the save schedule) has ended.
async fn save_on(w: &World, d: &lazarus::ccs::Database, shard: u64) {
    let addr = db::shard_addr(&w.c, d, shard).unwrap();
    let mut con = lazarus::server::connect(&addr, Duration::from_secs(2))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match redis::cmd("SAVE").query_async::<()>(&mut con).await {
            Ok(()) => return,
            Err(e) if e.to_string().contains("in progress") => {
                assert!(std::time::Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("SAVE on redis:{shard}: {e}"),
        }
    }
}

/// A snapshot database's master and replica each save on their own schedule: after a
/// power loss the replica's `dump.rdb` may be further along the same replication history
/// than the master's. `restart db` started the master from its older file; the replica,
/// refused the rest of the history, synced whole from it, and the writes only it held
/// were gone, its file too. Refused before anything starts, with offsets and the way
/// forward; done as it says, every key comes back.
#[tokio::test]
async fn restart_refuses_a_master_behind_its_replica_after_a_power_loss() {
    let mut w = World::new(2);
    let (id, d, master, replica) = replicated(&mut w, "behind", 2).await;
    let endpoint = format!("127.0.0.1:{}", d.port);
    // Every key on this master's slots: the other master and its replica stay as they
    // were made (the replica's file may be later than its master's by pings alone).
    let tag = crate::common::world::slot_tag(master.slots.as_ref().unwrap().start);
    let client = redis::cluster::ClusterClient::new(vec![format!("redis://{endpoint}")]).unwrap();
    let mut k = client.get_async_connection().await.unwrap();
    for i in 0..100 {
        let _: () = k.set(format!("{{{tag}}}key{i}"), i).await.unwrap();
    }
    drop(k);
    save_on(&w, &d, master.id).await;
    let saved = keys_of(&w, &d, master.id).await;
    // Writes after the master's last save, which the replica's save takes.
    let mut k = client.get_async_connection().await.unwrap();
    for i in 100..400 {
        let _: () = k.set(format!("{{{tag}}}key{i}"), i).await.unwrap();
    }
    drop(k);
    let held = keys_of(&w, &d, master.id).await;
    assert!(held > saved);
    until_keys(&w, &d, replica.id, held).await;
    save_on(&w, &d, replica.id).await;
    // The power goes: every shard dies.
    for s in &d.shards {
        w.kill(s.pid.unwrap()).await;
    }
    let rdb = |s: &lazarus::ccs::Shard| w.c.nodes[&s.node].shard_dir(id, s.id).join("dump.rdb");
    let (mine, theirs) = (rdb(&master), rdb(&replica));
    let before = std::fs::read(&theirs).unwrap();

    let err = db::restart_db(&mut w.c, &w.srv, id).await.unwrap_err();
    let DbError::ReplicaAhead(ahead) = &err else {
        panic!("expected a refusal, got {err}");
    };
    // The other master took no write: its replica, later by pings alone, is not ahead.
    let [a] = &ahead.pairs[..] else {
        panic!("one master behind, not {}: {err}", ahead.pairs.len());
    };
    let replica_offset = a.replica_offset;
    assert_eq!(
        (a.master, a.replica, a.running),
        (master.id, replica.id, false)
    );
    assert!(replica_offset > a.master_offset, "{err}");
    let text = err.to_string();
    assert!(text.contains("nothing was stopped"), "{text}");
    assert!(
        text.contains(&format!("at offset {replica_offset}")),
        "{text}"
    );
    use lazarus::error::DomainError;
    assert!(
        err.hints()
            .iter()
            .any(|h| h.contains("`restart db behind` again")),
        "{:?}",
        err.hints()
    );
    // Nothing started, the replica's file untouched.
    assert!(w.guard.pids().is_empty(), "a shard was started");
    assert_eq!(std::fs::read(&theirs).unwrap(), before);

    // As the hint says: the master's file aside, the replica's in its place.
    std::fs::rename(&mine, mine.with_extension("rdb.older")).unwrap();
    std::fs::copy(&theirs, &mine).unwrap();
    db::restart_db(&mut w.c, &w.srv, id).await.unwrap();
    let d = w.c.databases[&id].clone();
    assert_eq!(keys_of(&w, &d, master.id).await, held);
    until_keys(&w, &d, replica.id, held).await;

    // Again, now that the master restarted from a file: it took a new stream id, which
    // the replica follows and saves, and which no file of the master names. Only the
    // offsets tell the replica is ahead.
    let mut k = client.get_async_connection().await.unwrap();
    for i in 400..700 {
        let _: () = k.set(format!("{{{tag}}}key{i}"), i).await.unwrap();
    }
    drop(k);
    let held = keys_of(&w, &d, master.id).await;
    until_keys(&w, &d, replica.id, held).await;
    save_on(&w, &d, replica.id).await;
    for s in &d.shards {
        w.kill(s.pid.unwrap()).await;
    }
    let err = db::restart_db(&mut w.c, &w.srv, id).await.unwrap_err();
    assert!(
        matches!(&err, DbError::ReplicaAhead(a)
            if a.pairs.iter().any(|p| p.replica == replica.id && !p.running)),
        "{err}"
    );
}

/// The same with the replica still running (a database of one shard: no failover takes
/// the master's place): its memory is further along than the master's file, and the
/// hint says to have it write that first.
#[tokio::test]
async fn restart_refuses_a_master_behind_its_running_replica() {
    let mut w = World::new(2);
    let (id, d, master, replica) = replicated(&mut w, "ahead", 1).await;
    let mut k = w.con("ahead").await;
    for i in 0..50 {
        let _: () = k.set(format!("key{i}"), i).await.unwrap();
    }
    save_on(&w, &d, master.id).await;
    for i in 50..120 {
        let _: () = k.set(format!("key{i}"), i).await.unwrap();
    }
    drop(k);
    until_keys(&w, &d, replica.id, 120).await;
    w.kill(master.pid.unwrap()).await;

    let err = db::restart_db(&mut w.c, &w.srv, id).await.unwrap_err();
    assert!(
        matches!(&err, DbError::ReplicaAhead(a)
            if a.pairs.len() == 1 && a.pairs[0].running && a.pairs[0].replica == replica.id),
        "{err}"
    );
    assert!(err.to_string().contains("in memory, running"), "{err}");
    use lazarus::error::DomainError;
    assert!(err.hints()[0].contains("`SAVE` on it"), "{:?}", err.hints());
    assert!(
        err.hints()
            .last()
            .is_some_and(|h| h.contains("`restart db ahead` again")),
        "{:?}",
        err.hints()
    );
    // Nothing stopped: the replica still serves every key.
    assert_eq!(keys_of(&w, &d, replica.id).await, 120);
}
