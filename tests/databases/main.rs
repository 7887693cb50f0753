//! End to end: databases on real redis-server processes, through the library
//! (`library.rs`) and through the binary (`binary.rs`).

#[path = "../common/mod.rs"]
mod common;

mod binary;
mod library;

use std::path::Path;
use std::time::Duration;

use common::procs::ProcessGuard;
use lazarus::ccs::{Cluster, DbConfig, Id, Persistence};
use lazarus::db::{self, CreateDb, StatusReport};
use lazarus::server::{KeptConnections, Servers};
use redis::AsyncCommands;

/// A test cluster in its own tempdir with a `redis-server` to run; every process started
/// under the tempdir is killed when it drops.
struct World {
    c: Cluster,
    srv: Servers,
    /// Kept across the test's `status` calls, as a shell keeps them: every kill, restart
    /// and move below is also a kept connection gone stale.
    kept: KeptConnections,
    // Dropped before `tmp`: the shards are killed before their directories go.
    guard: ProcessGuard,
    tmp: tempfile::TempDir,
}

impl World {
    /// `nodes` loopback nodes.
    fn new(nodes: u64) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let c = common::world::test_cluster(tmp.path(), nodes);
        World::with(tmp, c)
    }

    /// One node on each of `addrs`.
    fn at(addrs: &[&str]) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let c = common::world::test_cluster_at(tmp.path(), addrs);
        World::with(tmp, c)
    }

    fn with(tmp: tempfile::TempDir, c: Cluster) -> World {
        World {
            c,
            srv: common::world::server(),
            kept: KeptConnections::default(),
            guard: ProcessGuard::new(tmp.path()),
            tmp,
        }
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// Creates a database with a port from the node's range; it must succeed.
    async fn create(&mut self, config: DbConfig) -> Id {
        db::create_db(&mut self.c, &self.srv, CreateDb { config, port: None })
            .await
            .unwrap()
    }

    async fn status(&self) -> StatusReport {
        db::status(&self.c, None, db::STATUS_TIMEOUT, &self.kept).await
    }

    /// SIGKILLs `pid`, as a crash would, and waits until it is gone.
    async fn kill(&self, pid: u32) {
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        while self.guard.pids().contains(&pid) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A connection to the first shard of database `name`.
    async fn con(&self, name: &str) -> redis::aio::MultiplexedConnection {
        let d = self.c.database_by_name(name).unwrap();
        let addr = db::shard_addr(&self.c, d, d.shards[0].id).unwrap();
        lazarus::server::connect(&addr, Duration::from_secs(2))
            .await
            .unwrap()
    }
}

/// A database of `shards` masters without replicas, capped at 64 MB.
fn config(name: &str, shards: u32, persistence: Persistence) -> DbConfig {
    DbConfig {
        memory: Some(64 << 20),
        ..common::world::config(name, shards, false, persistence)
    }
}

/// Sets `key0` .. `key<n-1>` through a Redis Cluster client of `endpoint` and reads them
/// back; returns the client.
async fn cluster_round_trip(endpoint: &str, n: i64) -> redis::cluster::ClusterClient {
    let client = redis::cluster::ClusterClient::new(vec![format!("redis://{endpoint}")]).unwrap();
    let mut k = client.get_async_connection().await.unwrap();
    for i in 0..n {
        let _: () = k.set(format!("key{i}"), i).await.unwrap();
    }
    for i in 0..n {
        assert_eq!(k.get::<_, i64>(format!("key{i}")).await.unwrap(), i);
    }
    client
}

/// How many `shard-*` directories there are anywhere under `p`.
fn shard_dirs(p: &Path) -> usize {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    usize::from(name.starts_with("shard-")) + shard_dirs(&e.path())
                })
                .sum()
        })
        .unwrap_or(0)
}

/// A sync source that accepts connections and never answers: a create waits for the
/// first sync until it is interrupted.
fn silent_source() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let addr = format!("127.0.0.1:{}", l.local_addr().unwrap().port());
    (l, addr)
}
