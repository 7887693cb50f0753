//! Benchmark (not a test) of backups and restores, printing side by side:
//! 1. `lazarus backup db` of a ≥1 GB database against `redis-cli --rdb` of the same
//!    database in the same run (target: at most 1.2×, validation included);
//! 2. the write pause of 3-shard runs (target: under 100 ms);
//! 3. `restore task start` of that ≥1 GB single-shard run against a bare `redis-server`
//!    loading the same RDB (target: at most 1.2×);
//! 4. a 3-shard run restored into 1 shard (keys by RESTORE): keys per second, against
//!    `redis-cli --pipe` of the same keys and values;
//! 5. (`s3`) backup and restore of a ≥1 GB database through an `s3://` repository on a
//!    loopback S3 server against a local directory repository of the same data in the
//!    same run, both with the default codec (zstd): target at most 1.3× each, and the
//!    peak RSS of each `lazarus` process (target under 256 MB). Against each server found:
//!    moto (as the tests use it) and s3s-fs (`LAZARUS_S3S_FS` or `PATH`; see
//!    `tests/common/s3.rs`; `LAZARUS_BENCH_S3_SERVER` keeps one).
//!
//! Run: `cargo bench --bench backup` (release build; the binary is timed as an operator
//! runs it). `LAZARUS_BENCH_MB` sizes the big database (default 1100),
//! `LAZARUS_BENCH_RUNS` the runs per figure (median; default 3), `LAZARUS_BENCH_ONLY` one
//! of `big`, `restore` (3. alone: one untimed backup), `pause`, `reshard`, `s3`
//! (`LAZARUS_BENCH_S3_MB`, default 1100; needs moto, see `.ci/run`).
//! `LAZARUS_BENCH_STEPS=1` prints where each restore's time went: the steps it records
//! in the CCS (for `restore task show`), read every 10 ms while it runs;
//! `LAZARUS_BENCH_RESTORE_ARGS="verify counts"` restores without the content proof.

#[allow(dead_code)]
#[path = "../tests/common/data.rs"]
mod data;
#[allow(dead_code)]
#[path = "../tests/common/ports.rs"]
mod ports;
#[allow(dead_code)]
#[path = "../tests/common/procs.rs"]
mod procs;
#[allow(dead_code)]
#[path = "../tests/common/s3.rs"]
mod s3;
mod support;
#[allow(dead_code)]
#[path = "../tests/common/world.rs"]
mod world;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lazarus::ccs::{Cluster, Persistence};
use lazarus::db::{create_db, shard_addr, CreateDb};
use procs::ProcessGuard;
use rand::RngCore;
use support::{
    bare_server, cpu_of, env_num, install, lazarus, lazarus_rss, lazarus_usage, median, secs,
};
use world::{config, redis, server, test_cluster};

/// `mb` MB of 1 KB incompressible strings (and a hash per thousand keys) into every
/// master of the database, spread by hash tags over their slots.
async fn fill(cluster: &Cluster, name: &str, mb: u64) {
    let db = cluster.database_by_name(name).unwrap();
    let mut pool = vec![0u8; 8 << 20];
    rand::thread_rng().fill_bytes(&mut pool);
    let masters: Vec<_> = db.masters().collect();
    let per = mb * 1024 / masters.len() as u64;
    for m in masters {
        let a = shard_addr(cluster, db, m.id).unwrap();
        let tag = match m.slots {
            Some(s) if db.config.shards > 1 => format!("{{{}}}", world::slot_tag(s.start)),
            _ => String::new(),
        };
        let mut con = data::connect(&a.host, a.port, 0).await;
        let batch = 2000;
        let mut i = 0;
        while i < per {
            let mut pipe = redis::pipe();
            for k in i..(i + batch).min(per) {
                let off = (k as usize * 997) % (pool.len() - 1024);
                pipe.cmd("SET")
                    .arg(format!("{tag}key:{k}"))
                    .arg(&pool[off..off + 1024])
                    .ignore();
                if k % 1000 == 0 {
                    pipe.cmd("HSET")
                        .arg(format!("{tag}h:{k}"))
                        .arg("a")
                        .arg(k)
                        .ignore();
                }
            }
            let _: () = pipe.query_async(&mut con).await.unwrap();
            i += batch;
        }
    }
}

fn redis_cli_rdb(port: u16, file: &Path) -> Duration {
    let started = Instant::now();
    let st = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--rdb"])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    started.elapsed()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run_id(stdout: &str) -> String {
    stdout
        .split('`')
        .nth(1)
        .expect("a run id in the reply")
        .to_string()
}

/// Creates database `target` (no persistence) and restore task `task` of run `run` into
/// it: another database's run, so `from_other_db`.
fn restore_into_new_db(home: &Path, task: &str, target: &str, run: &str) {
    lazarus(home, &["create", "db", target, "persistence", "disabled"]);
    lazarus(
        home,
        &[
            "restore",
            "task",
            "create",
            "name",
            task,
            "db",
            target,
            "backup",
            run,
            "from_other_db",
        ],
    );
}

/// `lazarus restore task start <task>`, timed; with `LAZARUS_BENCH_STEPS=1` each step the
/// task records in the CCS is printed with the time it was first seen.
fn timed_restore(home: &Path, task: &str) -> Duration {
    // `LAZARUS_BENCH_RESTORE_ARGS="verify counts"` times it without the content proof.
    let extra = std::env::var("LAZARUS_BENCH_RESTORE_ARGS").unwrap_or_default();
    let mut args = vec!["restore", "task", "start", task];
    args.extend(extra.split_whitespace());
    if std::env::var_os("LAZARUS_BENCH_STEPS").is_none() {
        return lazarus(home, &args).0;
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = {
        let (done, ccs, task) = (done.clone(), home.join("ccs.json"), task.to_string());
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut seen: Vec<(Duration, String)> = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let step = std::fs::read(&ccs)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .and_then(|v| {
                        v["backups"]["restores"][&task]["step"]
                            .as_str()
                            .map(|s| s.split(':').next().unwrap_or(s).to_string())
                    });
                if let Some(step) = step {
                    if seen.last().is_none_or(|(_, last)| *last != step) {
                        seen.push((started.elapsed(), step));
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            seen.push((started.elapsed(), "done".into()));
            seen
        })
    };
    let took = lazarus(home, &args).0;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = watch.join().unwrap();
    for pair in seen.windows(2) {
        println!(
            "    {:>7}  {:>6} ms  {}",
            secs(pair[0].0),
            (pair[1].0 - pair[0].0).as_millis(),
            pair[0].1
        );
    }
    took
}

fn big(root: &Path, rt: &tokio::runtime::Runtime, restore_only: bool) {
    let mb = env_num("LAZARUS_BENCH_MB", 1100);
    let runs = env_num("LAZARUS_BENCH_RUNS", 3);
    std::fs::create_dir_all(root).unwrap();
    let guard = ProcessGuard::new(root);
    let mut c = test_cluster(root, 1);
    rt.block_on(async {
        create_db(
            &mut c,
            &server(),
            CreateDb {
                config: config("big", 1, false, Persistence::Disabled),
                port: None,
            },
        )
        .await
        .unwrap();
        fill(&c, "big", mb).await;
    });
    let home = root.join("home");
    install(&home, &c);
    let port = c.database_by_name("big").unwrap().port;
    let repo = root.join("repo");

    let (mut cli, mut ours) = (Vec::new(), Vec::new());
    let mut last_run = String::new();
    for run in 0..if restore_only { 1 } else { runs } {
        if restore_only {
            let (_, out) = lazarus(
                &home,
                &[
                    "backup",
                    "db",
                    "big",
                    "path",
                    repo.to_str().unwrap(),
                    "compress",
                    "none",
                ],
            );
            last_run = run_id(&out);
            break;
        }
        let file = root.join(format!("cli{run}.rdb"));
        cli.push(redis_cli_rdb(port, &file));
        let size = std::fs::metadata(&file).unwrap().len();
        std::fs::remove_file(&file).unwrap();
        let (took, out) = lazarus(
            &home,
            &[
                "backup",
                "db",
                "big",
                "path",
                repo.to_str().unwrap(),
                "compress",
                "none",
            ],
        );
        ours.push(took);
        let id = run_id(&out);
        if !last_run.is_empty() {
            let _ = std::fs::remove_dir_all(repo.join(&last_run));
        }
        last_run = id;
        println!(
            "  run {run}: lazarus backup db {}   redis-cli --rdb {}   ({:.2} GB)",
            secs(ours[run as usize]),
            secs(cli[run as usize]),
            size as f64 / 1e9
        );
    }
    if !restore_only {
        let (o, r) = (median(ours), median(cli));
        println!(
        "backup db, {mb} MB database (median of {runs}):  lazarus {}   redis-cli --rdb {}   ratio {:.2}x",
        secs(o),
        secs(r),
        o.as_secs_f64() / r.as_secs_f64()
    );
    }

    // Restore of that run: `restore task start` against a bare server loading the file.
    let rdb = std::fs::read_dir(repo.join(&last_run))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "rdb"))
        .unwrap();
    let (mut bare, mut restores) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let dir = root.join(format!("bare{run}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&rdb, dir.join("dump.rdb")).unwrap();
        bare.push(bare_server(&redis().path, &dir, free_port()));
        std::fs::remove_dir_all(&dir).unwrap();
        // Into an empty database, as the bare server loads into an empty one.
        let task = format!("r{run}");
        let target = format!("empty{run}");
        restore_into_new_db(&home, &task, &target, &last_run);
        restores.push(timed_restore(&home, &task));
        lazarus(&home, &["delete", "db", &target, "purge"]);
        println!(
            "  run {run}: lazarus restore task start {}   bare redis-server {}",
            secs(restores[run as usize]),
            secs(bare[run as usize])
        );
    }
    let (o, b) = (median(restores), median(bare));
    println!(
        "restore, {:.2} GB single-shard run (median of {runs}):  lazarus {}   bare redis-server {}   ratio {:.2}x",
        std::fs::metadata(&rdb).unwrap().len() as f64 / 1e9,
        secs(o),
        secs(b),
        o.as_secs_f64() / b.as_secs_f64()
    );
    drop(guard);
}

fn pause(root: &Path, rt: &tokio::runtime::Runtime) {
    let mb = env_num("LAZARUS_BENCH_PAUSE_MB", 300);
    let runs = env_num("LAZARUS_BENCH_RUNS", 3).max(5);
    std::fs::create_dir_all(root).unwrap();
    let guard = ProcessGuard::new(root);
    let mut c = test_cluster(root, 1);
    rt.block_on(async {
        create_db(
            &mut c,
            &server(),
            CreateDb {
                config: config("three", 3, false, Persistence::Disabled),
                port: None,
            },
        )
        .await
        .unwrap();
        fill(&c, "three", mb).await;
    });
    let home = root.join("home");
    install(&home, &c);
    let repo = root.join("repo");
    let mut pauses = Vec::new();
    for _ in 0..runs {
        let (_, out) = lazarus(
            &home,
            &[
                "backup",
                "db",
                "three",
                "path",
                repo.to_str().unwrap(),
                "compress",
                "none",
            ],
        );
        let id = run_id(&out);
        let (_, json) = lazarus(&home, &["--json", "backup", "show", &id]);
        let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        let ms = v["result"]["pause_ms"].as_f64().unwrap();
        pauses.push(Duration::from_secs_f64(ms / 1000.0));
        let _ = std::fs::remove_dir_all(repo.join(&id));
    }
    let shown: Vec<String> = pauses
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64() * 1000.0))
        .collect();
    println!(
        "write pause, 3-shard database of {mb} MB ({runs} runs, ms): {}   median {:.1} ms",
        shown.join(" "),
        median(pauses).as_secs_f64() * 1000.0
    );
    drop(guard);
}

fn reshard(root: &Path, rt: &tokio::runtime::Runtime) {
    let keys = env_num("LAZARUS_BENCH_KEYS", 1_000_000);
    std::fs::create_dir_all(root).unwrap();
    let guard = ProcessGuard::new(root);
    let mut c = test_cluster(root, 1);
    let value = vec![b'v'; 100];
    rt.block_on(async {
        for (name, shards) in [("three", 3), ("one", 1)] {
            create_db(
                &mut c,
                &server(),
                CreateDb {
                    config: config(name, shards, false, Persistence::Disabled),
                    port: None,
                },
            )
            .await
            .unwrap();
        }
        let db = c.database_by_name("three").unwrap();
        for m in db.masters() {
            let a = shard_addr(&c, db, m.id).unwrap();
            let mut con = data::connect(&a.host, a.port, 0).await;
            let slots = m.slots.unwrap();
            let mut pipe = redis::pipe();
            let mut n = 0;
            for k in 0..keys {
                let key = format!("key:{k}");
                if !slots.contains(lazarus::persist::key_slot(key.as_bytes())) {
                    continue;
                }
                pipe.cmd("SET").arg(&key).arg(&value).ignore();
                n += 1;
                if n % 5000 == 0 {
                    let _: () = pipe.query_async(&mut con).await.unwrap();
                    pipe = redis::pipe();
                }
            }
            let _: () = pipe.query_async(&mut con).await.unwrap();
        }
    });
    let home = root.join("home");
    install(&home, &c);
    let repo = root.join("repo");
    let (_, out) = lazarus(
        &home,
        &[
            "backup",
            "db",
            "three",
            "path",
            repo.to_str().unwrap(),
            "compress",
            "none",
        ],
    );
    let id = run_id(&out);
    lazarus(
        &home,
        &[
            "restore", "task", "create", "name", "into-one", "db", "one", "backup", &id,
        ],
    );
    let (ours, _) = lazarus(&home, &["restore", "task", "start", "into-one"]);

    // The same keys and values by `redis-cli --pipe` into a fresh server.
    let proto = root.join("proto.resp");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&proto).unwrap());
        for k in 0..keys {
            let key = format!("key:{k}");
            write!(
                f,
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n",
                key.len(),
                value.len()
            )
            .unwrap();
            f.write_all(&value).unwrap();
            f.write_all(b"\r\n").unwrap();
        }
    }
    let dir = root.join("pipe");
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let mut child = Command::new(redis().path)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    while client.get_connection().is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let st = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--pipe"])
        .stdin(std::fs::File::open(&proto).unwrap())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let pipe_took = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "restore 3 shards into 1, {keys} keys: lazarus restore task start {} ({:.0} keys/s, whole task)   redis-cli --pipe {} ({:.0} keys/s)",
        secs(ours),
        keys as f64 / ours.as_secs_f64(),
        secs(pipe_took),
        keys as f64 / pipe_took.as_secs_f64()
    );
    drop(guard);
}

/// Section 5: an `s3://` repository against a local directory, same data, same run.
fn s3_against_local(root: &Path, rt: &tokio::runtime::Runtime) {
    let mb = env_num("LAZARUS_BENCH_S3_MB", 1100);
    let runs = env_num("LAZARUS_BENCH_RUNS", 3);
    // Both S3 servers found, one after the other over the same database: moto (as the
    // tests use it) and s3s-fs, whose own cost on the shared cores is far smaller.
    // `LAZARUS_BENCH_S3_SERVER=moto|s3s-fs` keeps one.
    let only = std::env::var("LAZARUS_BENCH_S3_SERVER").unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only == name;
    let mut servers: Vec<(&str, s3::S3Server)> = Vec::new();
    if wanted("moto") {
        servers.extend(s3::S3Server::start("bench").map(|s| ("moto", s)));
    }
    if wanted("s3s-fs") {
        servers.extend(s3::S3Server::start_s3s_fs("bench").map(|s| ("s3s-fs", s)));
    }
    if servers.is_empty() {
        return;
    }
    std::fs::create_dir_all(root).unwrap();
    let guard = ProcessGuard::new(root);
    let mut c = test_cluster(root, 1);
    rt.block_on(async {
        create_db(
            &mut c,
            &server(),
            CreateDb {
                config: config("big", 1, false, Persistence::Disabled),
                port: None,
            },
        )
        .await
        .unwrap();
        fill(&c, "big", mb).await;
    });
    let home = root.join("home");
    install(&home, &c);
    for (name, s3) in &servers {
        // The spawned binary takes the endpoint and credentials from the environment.
        for (k, v) in s3.env() {
            std::env::set_var(k, v);
        }
        s3_runs(
            &home,
            &root.join(format!("repo-{name}")),
            (name, s3.pid()),
            mb,
            runs,
        );
    }
    drop(guard);
}

/// Section 5's runs against one S3 server: each run backs up to the local directory and to
/// `s3://`, then restores each into a new database.
fn s3_runs(home: &Path, dir: &Path, (server, pid): (&str, u32), mb: u64, runs: u64) {
    let url = "s3://bench/lazarus";
    let (mut lb, mut sb, mut lr, mut sr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut rss = [0u64; 4];
    for run in 0..runs {
        // CPU seconds of the backup: Lazarus's and the S3 server's (0 for the local run).
        let mut cpu = [(0.0, 0.0); 2];
        let mut one = |repo: &str, times: &mut Vec<Duration>, rt_: &mut Vec<Duration>, k: usize| {
            let before = cpu_of(pid);
            let (took, out, kb, used) = lazarus_usage(home, &["backup", "db", "big", "path", repo]);
            cpu[k / 2] = (used, cpu_of(pid) - before);
            times.push(took);
            rss[k] = rss[k].max(kb);
            let id = run_id(&out);
            let tag = server.replace('-', "");
            let target = format!("e{tag}{run}{k}");
            let task = format!("t{tag}{run}{k}");
            restore_into_new_db(home, &task, &target, &format!("{repo}/{id}"));
            let (took, _, kb) = lazarus_rss(home, &["restore", "task", "start", &task]);
            rt_.push(took);
            rss[k + 1] = rss[k + 1].max(kb);
            lazarus(home, &["delete", "db", &target, "purge"]);
        };
        one(dir.to_str().unwrap(), &mut lb, &mut lr, 0);
        one(url, &mut sb, &mut sr, 2);
        println!(
            "  {server} run {run}: backup local {}  s3 {}   restore local {}  s3 {}   backup CPU: lazarus local {:.2} s, s3 {:.2} s; the S3 server {:.2} s",
            secs(lb[run as usize]),
            secs(sb[run as usize]),
            secs(lr[run as usize]),
            secs(sr[run as usize]),
            cpu[0].0,
            cpu[1].0,
            cpu[1].1
        );
    }
    let (lb, sb, lr, sr) = (median(lb), median(sb), median(lr), median(sr));
    println!(
        "s3:// ({server}) against a local directory, {mb} MB database (median of {runs}): backup {} vs {} ratio {:.2}x; restore {} vs {} ratio {:.2}x",
        secs(sb),
        secs(lb),
        sb.as_secs_f64() / lb.as_secs_f64(),
        secs(sr),
        secs(lr),
        sr.as_secs_f64() / lr.as_secs_f64()
    );
    println!(
        "peak RSS of lazarus ({server}): backup local {} MB, s3 {} MB; restore local {} MB, s3 {} MB",
        rss[0] / 1024,
        rss[2] / 1024,
        rss[1] / 1024,
        rss[3] / 1024
    );
}

fn main() {
    let base = std::env::var_os("LAZARUS_BENCH_DIR").map(std::path::PathBuf::from);
    let tmp = match &base {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .unwrap();
    let root = tmp.path().to_path_buf();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let only = std::env::var("LAZARUS_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "pause" {
        pause(&root.join("pause"), &rt);
    }
    if only.is_empty() || only == "reshard" {
        reshard(&root.join("reshard"), &rt);
    }
    if only.is_empty() || only == "big" || only == "restore" {
        big(&root.join("big"), &rt, only == "restore");
    }
    if only.is_empty() || only == "s3" {
        s3_against_local(&root.join("s3"), &rt);
    }
}
