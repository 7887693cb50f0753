//! Benchmark (not a test): `status` over TLS shards against the same number of plain
//! shards, in one run, interleaved. Issue 12's target: TLS costs at most 1.5x.
//!
//! Run: `cargo bench --bench tls` (`BENCH_TLS_SHARDS=100`, `BENCH_TLS_RUNS=9`;
//! `BENCH_TLS_CPU=1` also prints each call's own CPU time and the shards' CPU time;
//! `BENCH_TLS_KEY=p256|p384|ed25519` the material's key type, ECDSA P-256 by default)

#[path = "../tests/common/certs.rs"]
mod certs;
#[allow(dead_code)]
#[path = "../tests/common/procs.rs"]
mod procs;
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use lazarus::ccs::{Cluster, DbConfig, Node, Persistence, PortRange, CCS_FORMAT};
use lazarus::db::{self, CreateDb};
use lazarus::server::{KeptConnections, RedisServer, Servers};
use lazarus::tls::{self, MaterialPaths};

fn cluster(root: &Path, name: &str, lo: u16, hi: u16) -> Cluster {
    let mut c = Cluster {
        format: CCS_FORMAT,
        name: name.into(),
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
            persistent_path: root.join(name).join("node1"),
            recovery_path: None,
            port_range: PortRange { lo, hi },
            rack_id: None,
            redis_server: None,
            ssh: None,
        },
    );
    c
}

fn config(name: String, tls: bool) -> DbConfig {
    DbConfig {
        name,
        shards: 1,
        replication: false,
        persistence: Persistence::Disabled,
        memory: None,
        password: None,
        sync_source: None,
        tls,
        tls_auth_clients_optional: false,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn fill(c: &mut Cluster, srv: &Servers, shards: u64, tls: bool) {
    for i in 0..shards {
        let req = CreateDb {
            config: config(format!("db{i}"), tls),
            port: None,
        };
        db::create_db(c, srv, req).await.unwrap();
    }
}

#[tokio::main]
async fn main() {
    let shards = support::env_num("BENCH_TLS_SHARDS", 100);
    let runs = support::env_num("BENCH_TLS_RUNS", 9) as usize;
    let tmp = tempfile::tempdir().unwrap();
    let _guard = procs::ProcessGuard::new(tmp.path());
    let srv = RedisServer::locate(None, None).expect("redis-server installed");
    println!(
        "redis-server {} at {}; {shards} shards each side, {runs} runs",
        srv.version,
        srv.path.display()
    );

    // The material, made now and checked and installed as `cluster tls set` does.
    let key_type = std::env::var("BENCH_TLS_KEY").unwrap_or_else(|_| "p256".into());
    let alg = match key_type.as_str() {
        "p256" => &rcgen::PKCS_ECDSA_P256_SHA256,
        "p384" => &rcgen::PKCS_ECDSA_P384_SHA384,
        "ed25519" => &rcgen::PKCS_ED25519,
        other => panic!("BENCH_TLS_KEY {other}: p256, p384 or ed25519"),
    };
    println!("key type {key_type}");
    let files = certs::Ca::of_type("bench CA", alg).write(&tmp.path().join("in"), "");
    let paths = MaterialPaths {
        cacert: files.cacert.clone(),
        cert: files.cert.clone(),
        key: files.key.clone(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let material = tls::check(&paths, now).unwrap();

    let base = 21000 + (rand::random::<u16>() % 20) * 400;
    let mut plain = cluster(tmp.path(), "plain", base, base + 199);
    let mut secure = cluster(tmp.path(), "tls", base + 200, base + 399);
    tls::install(&secure.nodes[&1].persistent_path, &material).unwrap();
    secure.tls = Some(material.record.clone());
    let t = Instant::now();
    let servers = Servers::from(srv.clone());
    fill(&mut plain, &servers, shards, false).await;
    fill(&mut secure, &servers, shards, true).await;
    println!(
        "({} shards started in {:.1} s)",
        2 * shards,
        t.elapsed().as_secs_f64()
    );

    // The library call (probes only): on new connections each time, then as a shell's
    // later `status` runs, over the connections its first one kept. Then the whole
    // binary as an operator runs it (process start, CCS load, the PEM parsed once,
    // probes, tables). Interleaved, so a busy moment of the shared machine falls on both
    // sides alike.
    let mut lib = (Vec::new(), Vec::new());
    let mut warm = (Vec::new(), Vec::new());
    let kept = [KeptConnections::default(), KeptConnections::default()];
    for run in 0..2 * runs {
        let kept_now = run >= runs;
        let outs = match kept_now {
            false => &mut lib,
            true => &mut warm,
        };
        for (i, c) in [&plain, &secure].into_iter().enumerate() {
            let fresh = KeptConnections::default();
            let with = if kept_now { &kept[i] } else { &fresh };
            if kept_now && with.is_empty() {
                // The shell's first `status`, which makes the connections it keeps.
                db::status(c, Some(&srv.version), db::STATUS_TIMEOUT, with).await;
            }
            let t = Instant::now();
            let (cpu0, shards0) = (cpu(), shards_cpu(c));
            let report = db::status(c, Some(&srv.version), db::STATUS_TIMEOUT, with).await;
            let took = t.elapsed();
            match i {
                0 => outs.0.push(took),
                _ => outs.1.push(took),
            }
            if std::env::var("BENCH_TLS_CPU").is_ok() {
                println!(
                    "{}{} wall {:?} own cpu {:?} shards' cpu {:?}",
                    c.name,
                    if kept_now { " kept" } else { "" },
                    t.elapsed(),
                    cpu() - cpu0,
                    shards_cpu(c) - shards0
                );
            }
            assert!(
                report.shards.iter().all(|s| s.status == "OK"),
                "{:?}",
                report.shards.iter().find(|s| s.status != "OK")
            );
        }
    }
    // How the library's handshakes went: resumed after the first call, and none
    // retried for another key exchange group.
    println!(
        "library TLS handshakes: {:?}",
        lazarus::server::tls_handshakes()
    );
    let homes = [tmp.path().join("home-plain"), tmp.path().join("home-tls")];
    support::install(&homes[0], &plain);
    support::install(&homes[1], &secure);
    let mut bin = (Vec::new(), Vec::new());
    for _ in 0..runs {
        for (home, c, out) in [
            (&homes[0], &plain, &mut bin.0),
            (&homes[1], &secure, &mut bin.1),
        ] {
            let shards0 = shards_cpu(c);
            let (took, text) = support::lazarus(home, &["status", "endpoints"]);
            assert!(!text.contains("DOWN"), "{text}");
            if std::env::var("BENCH_TLS_CPU").is_ok() {
                println!(
                    "{} binary wall {took:?} shards' cpu {:?}",
                    c.name,
                    shards_cpu(c) - shards0
                );
            }
            out.push(took);
        }
    }
    for (what, (p, t)) in [
        ("library db::status, new connections", lib),
        (
            "library db::status, a shell's later status (kept connections)",
            warm,
        ),
        ("`lazarus status`", bin),
    ] {
        let (p, t) = (support::median(p), support::median(t));
        println!(
            "{what}: plain {}  tls {}  ratio {:.2}x (median of {runs}; target <= 1.5x)",
            ms(p),
            ms(t),
            t.as_secs_f64() / p.as_secs_f64()
        );
    }
}

/// The CPU time the shards of `c` have used so far (`/proc/<pid>/schedstat`, in ns).
fn shards_cpu(c: &Cluster) -> Duration {
    let ns: u64 = c
        .databases
        .values()
        .flat_map(|db| &db.shards)
        .filter_map(|s| std::fs::read_to_string(format!("/proc/{}/schedstat", s.pid?)).ok())
        .filter_map(|t| t.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

fn cpu() -> Duration {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}
