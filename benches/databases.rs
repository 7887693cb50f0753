//! Benchmark (not a test): `create db` time for a 1-shard and a 6-shard database, and
//! `status` latency over 100 live shards asked concurrently.
//!
//! Run: `cargo bench --bench databases`

#[allow(dead_code)]
#[path = "../tests/common/procs.rs"]
mod procs;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lazarus::ccs::{Cluster, DbConfig, Node, Persistence, PortRange, CCS_FORMAT};
use lazarus::db::{self, CreateDb};
use lazarus::server::{RedisServer, Servers};

fn config(name: &str, shards: u32) -> DbConfig {
    DbConfig {
        name: name.into(),
        shards,
        replication: false,
        persistence: Persistence::Aof,
        memory: None,
        password: None,
        sync_source: None,
        tls: false,
        tls_auth_clients_optional: false,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    format!(
        "min {}  median {}  max {}  (n={})",
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1]),
        v.len()
    )
}

#[tokio::main]
async fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = procs::ProcessGuard::new(tmp.path());
    let srv = Servers::from(RedisServer::locate(None, None).expect("redis-server installed"));
    let mut c = Cluster {
        format: CCS_FORMAT,
        name: "bench".into(),
        cluster_id: 1,
        alloc_id: 2,
        generation: 0,
        local_node: 1,
        redis_server: None,
        nodes: BTreeMap::new(),
        databases: BTreeMap::new(),
        backups: Default::default(),
        tls: None,
    };
    c.nodes.insert(
        1,
        Node {
            id: 1,
            addr: "127.0.0.1".into(),
            persistent_path: tmp.path().join("node1"),
            recovery_path: None,
            port_range: PortRange {
                lo: 21000,
                hi: 21400,
            },
            rack_id: None,
            ssh: None,
            redis_server: None,
        },
    );
    let one = srv.for_node(1).unwrap();
    println!("redis-server {} at {}", one.version, one.path.display());

    let mut one = Vec::new();
    for i in 0..5 {
        let t = Instant::now();
        db::create_db(
            &mut c,
            &srv,
            CreateDb {
                config: config(&format!("one{i}"), 1),
                port: None,
            },
        )
        .await
        .unwrap();
        one.push(t.elapsed());
    }
    println!("create db, 1 shard (aof):   {}", summary(one));

    let mut six = Vec::new();
    for i in 0..3 {
        let t = Instant::now();
        db::create_db(
            &mut c,
            &srv,
            CreateDb {
                config: config(&format!("six{i}"), 6),
                port: None,
            },
        )
        .await
        .unwrap();
        six.push(t.elapsed());
    }
    println!("create db, 6 shards (cluster): {}", summary(six));

    // Fill up to 100 shards with single-shard databases.
    let mut n = 0;
    while c.databases.values().map(|d| d.shards.len()).sum::<usize>() < 100 {
        db::create_db(
            &mut c,
            &srv,
            CreateDb {
                config: config(&format!("fill{n}"), 1),
                port: None,
            },
        )
        .await
        .unwrap();
        n += 1;
    }
    let shards: usize = c.databases.values().map(|d| d.shards.len()).sum();

    let mut lat = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        let report = db::status(
            &c,
            Some(&srv.for_node(1).unwrap().version),
            db::STATUS_TIMEOUT,
            // A new connection to every shard each time, as a one-shot `lazarus status`.
            &Default::default(),
        )
        .await;
        lat.push(t.elapsed());
        assert!(report.shards.iter().all(|s| s.status == "OK"));
    }
    println!(
        "status, {shards} shards ({} databases), library call: {}",
        c.databases.len(),
        summary(lat)
    );

    // The whole binary, as an operator runs it: process start, CCS load, probes, tables.
    let home = tmp.path().join("home");
    lazarus::ccs::Store::new(home.clone())
        .lock()
        .unwrap()
        .save(&mut c)
        .unwrap();
    let mut lat = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lazarus"))
            .arg("--home")
            .arg(&home)
            .arg("status")
            .output()
            .unwrap();
        lat.push(t.elapsed());
        assert!(out.status.success(), "{out:?}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("DOWN"));
    }
    println!(
        "`lazarus status`, {shards} shards, whole binary: {}",
        summary(lat)
    );
}
