//! Benchmark (not a test), printing side by side:
//! 1. `lazarus recover db` of a ≥1 GB database against a bare `redis-server` started by
//!    hand on a copy of the same files (the target: at most 1.2×);
//! 2. `lazarus recover all` of 20 databases against `recover db` of each, one after another.
//!
//! Run: `cargo bench --bench recovery` (release build; the binary is timed as an operator
//! runs it; `LAZARUS_BENCH_RECOVER_ARGS="verify counts"` leaves out the content proof;
//! `LAZARUS_BENCH_PERSISTENCE=aof` makes the big database's files its AOF twin, a
//! multi-part AOF of the same data). `LAZARUS_BENCH_MB` sizes the big database (default 1100), `LAZARUS_BENCH_DBS`
//! and `LAZARUS_BENCH_DB_MB` the many (default 20 of 20 MB). Each run also prints where
//! its time went, from the `phases` of the `--json` reply.

#[allow(dead_code)]
#[path = "../tests/common/data.rs"]
mod data;
#[allow(dead_code)]
#[path = "../tests/common/ports.rs"]
mod ports;
#[allow(dead_code)]
#[path = "../tests/common/procs.rs"]
mod procs;
mod support;
#[allow(dead_code)]
#[path = "../tests/common/world.rs"]
mod world;

use std::path::Path;
use std::time::Duration;

use lazarus::ccs::{Cluster, Persistence};
use lazarus::db::{create_db, shard_addr, CreateDb};
use procs::ProcessGuard;
use rand::RngCore;
use support::{bare_server, env_num, install, lazarus, median, secs};
use world::{after_disaster, config, server, test_cluster};

/// Fills the database's first master with `mb` MB of 1 KB incompressible strings and a
/// hash per thousand keys, then saves it.
async fn fill(cluster: &Cluster, name: &str, mb: u64) {
    let db = cluster.database_by_name(name).unwrap();
    let a = shard_addr(cluster, db, db.shards[0].id).unwrap();
    let mut con = data::connect(&a.host, a.port, 0).await;
    let mut pool = vec![0u8; 8 << 20];
    rand::thread_rng().fill_bytes(&mut pool);
    let keys = mb * 1024;
    let batch = 2000;
    let mut i = 0;
    while i < keys {
        let mut pipe = redis::pipe();
        for k in i..(i + batch).min(keys) {
            let off = (k as usize * 997) % (pool.len() - 1024);
            pipe.cmd("SET")
                .arg(format!("key:{k}"))
                .arg(&pool[off..off + 1024])
                .ignore();
            if k % 1000 == 0 {
                pipe.cmd("HSET")
                    .arg(format!("h:{k}"))
                    .arg("a")
                    .arg(k)
                    .arg("b")
                    .arg("x")
                    .ignore();
            }
        }
        let _: () = pipe.query_async(&mut con).await.unwrap();
        i += batch;
    }
    let _: () = redis::cmd("SAVE").query_async(&mut con).await.unwrap();
}

fn big(root: &Path, rt: &tokio::runtime::Runtime) {
    let mb = env_num("LAZARUS_BENCH_MB", 1100);
    // `LAZARUS_BENCH_PERSISTENCE=aof`: the same data as a multi-part AOF (the RDB's twin).
    let aof = std::env::var("LAZARUS_BENCH_PERSISTENCE").is_ok_and(|p| p == "aof");
    let persistence = if aof {
        Persistence::Aof
    } else {
        Persistence::Snapshot
    };
    std::fs::create_dir_all(root).unwrap();
    let guard = ProcessGuard::new(root);
    let mut old = test_cluster(root, 1);
    let server = server();
    rt.block_on(async {
        create_db(
            &mut old,
            &server,
            CreateDb {
                config: config("big", 1, false, persistence),
                port: None,
            },
        )
        .await
        .unwrap();
        fill(&old, "big", mb).await;
    });
    guard.kill_all();
    let db = old.database_by_name("big").unwrap();
    let shard = &db.shards[0];
    let data = old.nodes[&shard.node]
        .shard_dir(db.id, shard.id)
        .join(if aof { "appendonlydir" } else { "dump.rdb" });
    let size = if aof {
        std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    } else {
        std::fs::metadata(&data).unwrap().len()
    };

    // Alternating runs on the same files; medians, since the machine is shared.
    let runs = env_num("LAZARUS_BENCH_RUNS", 3);
    let (mut bares, mut ours) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let bare_dir = root.join(format!("bare{run}"));
        std::fs::create_dir_all(&bare_dir).unwrap();
        let copied = std::process::Command::new("cp")
            .arg("-a")
            .arg(&data)
            .arg(&bare_dir)
            .status()
            .unwrap();
        assert!(copied.success());
        // Each contender starts with the disk quiet: the copy's (and the last run's
        // removal's) writeback had made the bare loads swing 2.6-5.7 s.
        unsafe { libc::sync() };
        bares.push(bare_server(
            &server.for_node(shard.node).unwrap().path,
            &bare_dir,
            shard.port,
        ));
        if std::env::var_os("LAZARUS_BENCH_KEEP").is_none() {
            std::fs::remove_dir_all(&bare_dir).unwrap();
        }

        let home = root.join(format!("home-big{run}"));
        let new_root = root.join(format!("run{run}"));
        install(&home, &after_disaster(&old, &new_root));
        // `LAZARUS_BENCH_RECOVER_ARGS="verify counts"` times it without the content proof.
        let extra = std::env::var("LAZARUS_BENCH_RECOVER_ARGS").unwrap_or_default();
        let mut args = vec!["--json", "recover", "db", "big"];
        args.extend(extra.split_whitespace());
        unsafe { libc::sync() };
        let (took, out) = lazarus(&home, &args);
        ours.push(took);
        println!("  run {run}: {}", phases(&recovered(&out)));
        guard.kill_all();
        if std::env::var_os("LAZARUS_BENCH_KEEP").is_none() {
            std::fs::remove_dir_all(&new_root).unwrap();
        }
        println!(
            "  run {run}: lazarus {}   bare redis-server {}",
            secs(ours[run as usize]),
            secs(bares[run as usize])
        );
    }
    let (ours, bare) = (median(ours), median(bares));
    println!(
        "recover db, {:.2} GB {} (median of {runs}):  lazarus {}   bare redis-server {}   ratio {:.2}x",
        size as f64 / 1e9,
        if aof { "AOF" } else { "RDB" },
        secs(ours),
        secs(bare),
        ours.as_secs_f64() / bare.as_secs_f64()
    );
    drop(guard);
}

fn many(root: &Path, rt: &tokio::runtime::Runtime) {
    let n = env_num("LAZARUS_BENCH_DBS", 20);
    let mb = env_num("LAZARUS_BENCH_DB_MB", 20);
    std::fs::create_dir_all(root).unwrap();
    let guard = ProcessGuard::new(root);
    let mut old = test_cluster(root, 2);
    let server = server();
    rt.block_on(async {
        for i in 0..n {
            let p = if i % 2 == 0 {
                Persistence::Snapshot
            } else {
                Persistence::Aof
            };
            let shards = if i % 5 == 4 { 3 } else { 1 };
            let name = format!("db{i}");
            create_db(
                &mut old,
                &server,
                CreateDb {
                    config: config(&name, shards, false, p),
                    port: None,
                },
            )
            .await
            .unwrap();
            if shards == 1 {
                fill(&old, &name, mb).await;
            } else {
                // Empty, but with its files: recovery refuses a shard without any.
                let db = old.database_by_name(&name).unwrap();
                for s in db.masters() {
                    let a = shard_addr(&old, db, s.id).unwrap();
                    let mut con = data::connect(&a.host, a.port, 0).await;
                    let _: () = redis::cmd("SAVE").query_async(&mut con).await.unwrap();
                }
            }
        }
    });
    guard.kill_all();

    let all_root = root.join("all");
    install(&root.join("home-all"), &after_disaster(&old, &all_root));
    let (parallel, out) = lazarus(&root.join("home-all"), &["--json", "recover", "all"]);
    let all = recovered(&out);
    println!("  recover all, summed over the databases: {}", phases(&all));
    for r in &all {
        println!("    db:{}: {}", r["id"], phases(std::slice::from_ref(r)));
    }
    guard.kill_all();

    let seq_root = root.join("seq");
    let home = root.join("home-seq");
    install(&home, &after_disaster(&old, &seq_root));
    let mut sequential = Duration::ZERO;
    for i in 0..n {
        sequential += lazarus(&home, &["recover", "db", &format!("db{i}")]).0;
    }
    guard.kill_all();
    println!(
        "recover all, {n} databases (~{mb} MB each, 1 in 5 a 3-shard cluster):  parallel {}   one after another {}   speed-up {:.2}x",
        secs(parallel),
        secs(sequential),
        sequential.as_secs_f64() / parallel.as_secs_f64()
    );
    drop(guard);
}

/// The recovered databases of a `--json` recovery reply.
fn recovered(json: &str) -> Vec<serde_json::Value> {
    let reply: serde_json::Value = serde_json::from_str(json).expect("a JSON reply");
    reply["result"]["recovered"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The `phases` of `recovered`, summed: where the time went (validation, the copy and the
/// load run at once within a database).
fn phases(recovered: &[serde_json::Value]) -> String {
    let names = [
        ("validation", "validation_ms"),
        ("copy", "copy_ms"),
        ("load", "load_ms"),
        ("key counts", "checks_ms"),
        ("proof", "proof_ms"),
        ("bring-up", "bring_up_ms"),
    ];
    names
        .iter()
        .map(|(label, key)| {
            let ms: u64 = recovered
                .iter()
                .map(|r| r["phases"][key].as_u64().unwrap_or(0))
                .sum();
            format!("{label} {:.2} s", ms as f64 / 1000.0)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let base = std::env::var_os("LAZARUS_BENCH_DIR").map(std::path::PathBuf::from);
    let tmp = match &base {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .unwrap();
    let (root, _tmp) = if std::env::var_os("LAZARUS_BENCH_KEEP").is_some() {
        // Left for a look at the shards' logs and files afterwards.
        let kept = tmp.keep();
        eprintln!("keeping {}", kept.display());
        (kept, None)
    } else {
        (tmp.path().to_path_buf(), Some(tmp))
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let only = std::env::var("LAZARUS_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "big" {
        big(&root.join("big"), &rt);
    }
    if only.is_empty() || only == "many" {
        many(&root.join("many"), &rt);
    }
}
