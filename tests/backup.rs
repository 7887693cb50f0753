//! End to end: backup runs of databases on real redis-server processes, through the real
//! binary; each run's files loaded into fresh servers and compared with the source.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::data::{contents, diff};
use common::engine::{engines, Engine};
use common::world::slot_tag;
use common::{Lazarus, World};
use lazarus::ccs::{Persistence, Store};
use lazarus::db::shard_addr;

/// A fresh `redis-server` loading `rdb` (under the test's root, so the guard stops it);
/// a run's `.zst` file is opened with the `zstd` CLI first (runs are compressed by default).
fn serve(root: &Path, rdb: &Path) -> u16 {
    serve_with(Path::new("redis-server"), root, rdb)
}

/// [`serve`] with the server binary `bin` (the engine that wrote the file).
fn serve_with(bin: &Path, root: &Path, rdb: &Path) -> u16 {
    let dir = root.join(format!("fresh-{}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    if rdb.extension().is_some_and(|e| e == "zst") {
        let ok = Command::new("zstd")
            .args(["-q", "-d", "-o"])
            .arg(dir.join("dump.rdb"))
            .arg(rdb)
            .status()
            .unwrap();
        assert!(ok.success(), "zstd -d {}", rdb.display());
    } else {
        std::fs::copy(rdb, dir.join("dump.rdb")).unwrap();
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    Command::new(bin)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args([
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
            "--dbfilename",
            "dump.rdb",
        ])
        .arg("--dir")
        .arg(&dir)
        .current_dir(&dir)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .and_then(|c| c.get_connection())
            .and_then(|mut c| {
                redis::cmd("INFO")
                    .arg("persistence")
                    .query::<String>(&mut c)
            })
            // Exactly `loading:0`: `async_loading:0` is there from the start.
            .is_ok_and(|i| i.lines().any(|l| l.trim_end() == "loading:0"));
        if ok {
            return port;
        }
        assert!(
            Instant::now() < deadline,
            "fresh server on {port} never loaded"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The run's manifest, through `backup show --json`.
fn manifest(lz: &Lazarus, run: &str) -> serde_json::Value {
    let docs = lz.cmd(["--json", "backup", "show", run]).run().ok().json();
    docs[0]["result"].clone()
}

fn run_id(out: &common::Output) -> String {
    out.json()[0]["result"]["id"].as_str().unwrap().to_string()
}

fn history(lz: &Lazarus, task: &str) -> Vec<serde_json::Value> {
    let docs = lz
        .cmd(["--json", "backup", "task", "history", task])
        .run()
        .ok()
        .json();
    docs[0]["result"].as_array().cloned().unwrap_or_default()
}

/// Files under `dir`, recursively, relative names.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out.sort();
    out
}

/// A writer of sequence numbers to keys on a database's masters in turn (1 on the first,
/// 2 on the second, ...): a cut of one point in time holds 1..=n for some n.
struct SeqWriter {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl SeqWriter {
    fn start(c: &lazarus::ccs::Cluster, db: &lazarus::ccs::Database) -> SeqWriter {
        let targets: Vec<(u16, String)> = db
            .masters()
            .map(|m| {
                let a = shard_addr(c, db, m.id).unwrap();
                (a.port, slot_tag(m.slots.unwrap().start))
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let (stop2, written2) = (stop.clone(), written.clone());
        let thread = std::thread::spawn(move || {
            let mut cons: Vec<redis::Connection> = targets
                .iter()
                .map(|(port, _)| {
                    redis::Client::open(format!("redis://127.0.0.1:{port}"))
                        .unwrap()
                        .get_connection()
                        .unwrap()
                })
                .collect();
            let mut n = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                n += 1;
                let i = (n as usize) % targets.len();
                let key = format!("{{{}}}:seq:{n}", targets[i].1);
                let _: () = redis::cmd("SET")
                    .arg(key)
                    .arg(n)
                    .query(&mut cons[i])
                    .unwrap();
                written2.store(n, Ordering::Relaxed);
            }
        });
        let w = SeqWriter {
            stop,
            written,
            thread,
        };
        w.wait_for(300);
        w
    }

    fn wait_for(&self, n: u64) {
        while self.written.load(Ordering::Relaxed) < n {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
    }
}

/// Loads every file of run `id` into a fresh server: each holds the keys its manifest
/// counts, and together they hold the writer's numbers 1..=n, n at least `at_least`.
fn assert_one_point_in_time(lz: &Lazarus, repo: &Path, id: &str, at_least: u64) {
    let m = manifest(lz, id);
    assert_eq!(m["shards"].as_array().unwrap().len(), 3);
    assert!(m["pause_ms"].as_f64().unwrap() < 1000.0, "{m}");
    let mut seen = BTreeSet::new();
    for s in m["shards"].as_array().unwrap() {
        let file = repo.join(id).join(s["file"].as_str().unwrap());
        let port = serve(lz.home(), &file);
        let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .unwrap()
            .get_connection()
            .unwrap();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*:seq:*").query(&mut con).unwrap();
        for k in keys {
            seen.insert(k.rsplit(':').next().unwrap().parse::<u64>().unwrap());
        }
        let dbsize: u64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
        assert_eq!(dbsize, s["keys"].as_u64().unwrap(), "keys of {s}");
    }
    let max = *seen.iter().next_back().unwrap();
    assert!(max >= at_least, "the cut has {max} writes");
    let missing: Vec<u64> = (1..=max).filter(|n| !seen.contains(n)).take(10).collect();
    assert!(
        missing.is_empty(),
        "write {max} is in the cut but not {missing:?}"
    );
}

/// Evidence 1: a 3-shard database under a writer that writes sequence numbers to keys on
/// the three shards in turn; the run, loaded into fresh servers, holds exactly the numbers
/// 1..=n for some n: no later number without every earlier one.
#[test]
fn a_cut_under_a_steady_writer_is_one_point_in_time() {
    let World(lz, _guard, _rt, c) = World::with(1)
        .db("seq", 3, false, Persistence::Disabled)
        .installed();
    let db = c.database_by_name("seq").unwrap().clone();
    let writer = SeqWriter::start(&c, &db);
    let repo = lz.path("repo");
    let out = lz
        .cmd([
            "--json",
            "backup",
            "db",
            "seq",
            "path",
            repo.to_str().unwrap(),
        ])
        .run()
        .ok();
    let id = run_id(&out);
    std::thread::sleep(Duration::from_millis(50));
    writer.stop();
    assert_one_point_in_time(&lz, &repo, &id, 300);
}

/// Evidence 1, while every master saves again and again (`BGSAVE` each time the last one
/// ends, as `save` points, AOF rewrites or an operator do): a fork that is not the
/// snapshot's is never taken for it. A save starting just before the snapshot's makes the
/// snapshot wait (inside the pause) for its own; one after it is no concern of the run.
/// Each run succeeds and is one point in time. (It was judged by the server's fork
/// count, which those saves move too: the pause was let go before the snapshot's own
/// fork, or the run failed saying the server forked twice.)
#[test]
fn a_cut_while_the_masters_keep_saving_is_still_one_point_in_time() {
    let World(lz, _guard, _rt, c) = World::with(1)
        .db("seq", 3, false, Persistence::Disabled)
        .installed();
    let db = c.database_by_name("seq").unwrap().clone();
    let ports: Vec<u16> = db
        .masters()
        .map(|m| shard_addr(&c, &db, m.id).unwrap().port)
        .collect();
    let saving = Arc::new(AtomicBool::new(true));
    let savers: Vec<_> = ports
        .into_iter()
        .map(|port| {
            let saving = saving.clone();
            std::thread::spawn(move || {
                let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                    .unwrap()
                    .get_connection()
                    .unwrap();
                let _: () = redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("hz")
                    .arg(100)
                    .query(&mut con)
                    .unwrap();
                while saving.load(Ordering::Relaxed) {
                    // Refused while a child runs: the next try starts the next save.
                    let _: redis::RedisResult<()> = redis::cmd("BGSAVE").query(&mut con);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        })
        .collect();
    let writer = SeqWriter::start(&c, &db);
    let repo = lz.path("repo");
    let mut runs = Vec::new();
    for _ in 0..5 {
        let before = writer.written.load(Ordering::Relaxed);
        let out = lz
            .cmd([
                "--json",
                "backup",
                "db",
                "seq",
                "path",
                repo.to_str().unwrap(),
                "max_pause",
                "10s",
            ])
            .run();
        runs.push((run_id(&out.ok()), before));
    }
    writer.stop();
    saving.store(false, Ordering::Relaxed);
    for s in savers {
        s.join().unwrap();
    }
    for (id, before) in runs {
        assert_one_point_in_time(&lz, &repo, &id, before);
    }
}

/// Evidence 2: a replicated database (taken from its replica), persistence disabled,
/// logical databases 0 and 3, every value type, a stream with a consumer group, TTLs; on
/// each engine (the run's file loaded back by the engine that wrote it).
#[test]
fn a_replicated_database_is_taken_from_its_replica_with_every_type() {
    for engine in engines() {
        engine.announce("a_replicated_database_is_taken_from_its_replica_with_every_type");
        replicated_every_type(&engine);
    }
}

fn replicated_every_type(engine: &Engine) {
    let World(lz, _guard, rt, c) = World::with(2)
        .redis_server(engine.path.clone())
        .db("rep", 1, true, Persistence::Disabled)
        .installed();
    let db = c.database_by_name("rep").unwrap().clone();
    let master = db.masters().next().unwrap().clone();
    let replica = db
        .shards
        .iter()
        .find(|s| s.master == Some(master.id))
        .unwrap();
    let a = shard_addr(&c, &db, master.id).unwrap();
    let before = rt.block_on(contents(&a.host, a.port));
    assert!(before.keys().any(|(n, _)| *n == 3));

    let repo = lz.path("repo");
    let out = lz
        .cmd([
            "--json",
            "backup",
            "db",
            "rep",
            "path",
            repo.to_str().unwrap(),
        ])
        .run()
        .ok();
    let id = run_id(&out);
    let m = manifest(&lz, &id);
    let s = &m["shards"][0];
    assert_eq!(s["shard"].as_u64(), Some(master.id));
    assert_eq!(s["taken_from"].as_u64(), Some(replica.id), "{m}");
    assert_eq!(
        s["keys_per_db"]["3"].as_u64(),
        Some(before.keys().filter(|k| k.0 == 3).count() as u64)
    );
    assert!(s["expires"].as_u64().unwrap() >= 2);
    assert_eq!(m["db"]["replication"], true);
    assert!(m.get("password").is_none());
    assert_eq!(s["engine"], engine.name, "{m}");
    let port = serve_with(
        &engine.server().path,
        lz.home(),
        &repo.join(&id).join(s["file"].as_str().unwrap()),
    );
    let after = rt.block_on(contents("127.0.0.1", port));
    let d = diff(&before, &after);
    assert!(d.is_empty(), "{d:?}");
}

/// Makes the server's snapshot child slow (`rdb-key-save-delay`, µs per key), so a run
/// can be caught in the middle.
fn slow_snapshots(port: u16, micros: u64) {
    let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("rdb-key-save-delay")
        .arg(micros)
        .query(&mut con)
        .unwrap();
}

fn spawn_lazarus(lz: &Lazarus, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_lazarus"))
        .arg("--home")
        .arg(lz.home())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for_partial(repo: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !files_under(repo).iter().any(|f| f.ends_with(".partial")) {
        assert!(
            Instant::now() < deadline,
            "no run started in {}",
            repo.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn no_partials(repo: &Path) {
    let left: Vec<String> = files_under(repo)
        .into_iter()
        .filter(|f| f.ends_with(".partial"))
        .collect();
    assert!(left.is_empty(), "partial files left: {left:?}");
}

/// A shell killed while its run goes up to `s3://` leaves multipart uploads begun and
/// never completed: invisible to listings, yet kept and billed by the store until
/// aborted. The next command finds the run `interrupted` and aborts them, so "its partial
/// files were removed" holds for object storage too.
#[test]
fn a_run_killed_mid_upload_to_s3_leaves_no_upload_behind() {
    let Some(s3) = common::s3::S3Server::start("killed") else {
        return;
    };
    let World(lz, _guard, _rt, c) = World::with(1)
        .env(s3.env())
        .db("f", 1, false, Persistence::Aof)
        .installed();
    let db = c.database_by_name("f").unwrap().clone();
    let a = shard_addr(&c, &db, db.masters().next().unwrap().id).unwrap();
    lz.run("backup task create name t db f path s3://killed/lz")
        .ok();
    slow_snapshots(a.port, 20_000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lazarus"))
        .arg("--home")
        .arg(lz.home())
        .args(["backup", "task", "run", "t"])
        .envs(s3.env())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while s3.uploads("killed").is_empty() {
        assert!(Instant::now() < deadline, "no upload began");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    slow_snapshots(a.port, 0);

    let h = history(&lz, "t");
    let last = h.last().unwrap();
    assert_eq!(last["status"], "interrupted", "{h:?}");
    assert_eq!(s3.uploads("killed"), Vec::<String>::new());
    lz.run("backup list path s3://killed/lz")
        .ok()
        .stdout_lacks(last["id"].as_str().unwrap());
    // The next run goes up whole, and leaves no upload either.
    lz.run("backup task run t").ok();
    assert_eq!(s3.uploads("killed"), Vec::<String>::new());
}

/// A run a restore task restores (created, verified, failed: not yet succeeded) is the
/// restore point an operator chose, maybe the last one before an accident that every
/// newer run holds: `keep` lets it go only once that task is done with it.
#[test]
fn keep_never_removes_the_run_a_pending_restore_restores() {
    let World(lz, _guard, _rt, _c) = World::with(1)
        .db("f", 1, false, Persistence::Aof)
        .installed();
    let repo = lz.path("repo");
    lz.run(&format!(
        "backup task create name t db f path {} keep 1",
        repo.display()
    ))
    .ok();
    let chosen = run_id(&lz.cmd(["--json", "backup", "task", "run", "t"]).run().ok());
    lz.run(&format!(
        "restore task create name r db f backup {chosen} force"
    ))
    .ok();
    lz.run("backup task run t").ok();
    lz.run("backup task run t").ok();
    lz.run("backup task prune t").ok();
    assert!(
        repo.join(&chosen).join("manifest.json").is_file(),
        "keep removed the run restore task `r` restores"
    );
    lz.run("restore task verify r").ok();
    lz.run("restore task delete r").ok();
    lz.run("backup task prune t").ok().stdout_has(&chosen);
    assert!(!repo.join(&chosen).exists());
}

/// `backup task delete ... purge` is refused while a restore task not yet succeeded
/// restores one of the task's runs (naming both), and nothing is changed; once that
/// restore task is gone, it purges.
#[test]
fn purge_never_removes_the_run_a_pending_restore_restores() {
    let World(lz, _guard, _rt, _c) = World::with(1)
        .db("f", 1, false, Persistence::Aof)
        .installed();
    let repo = lz.path("repo");
    lz.run(&format!(
        "backup task create name t db f path {}",
        repo.display()
    ))
    .ok();
    let chosen = run_id(&lz.cmd(["--json", "backup", "task", "run", "t"]).run().ok());
    lz.run(&format!(
        "restore task create name r db f backup {chosen} force"
    ))
    .ok();
    lz.run("backup task delete t purge")
        .fails(1)
        .stderr_has(&format!("run `{chosen}`, which restore task `r` restores"))
        .stderr_has("restore task delete r");
    assert!(repo.join(&chosen).join("manifest.json").is_file());
    lz.run("backup task list").ok().stdout_has("t");
    lz.run("restore task delete r").ok();
    lz.run("backup task delete t purge").ok();
    assert!(!repo.join(&chosen).exists());
}

/// Evidence 3: a path that is not writable, a full disk, the shell killed mid-run, two
/// `backup due` at once, a shard killed mid-run. Each: a reason in history, no partial
/// files, the earlier run intact.
#[test]
fn failed_runs_leave_nothing_half_made_and_say_why() {
    let World(lz, _guard, _rt, c) = World::with(1)
        .db("f", 1, false, Persistence::Aof)
        .installed();
    let db = c.database_by_name("f").unwrap().clone();
    let a = shard_addr(&c, &db, db.masters().next().unwrap().id).unwrap();
    let repo = lz.path("repo");
    let repo_s = repo.to_str().unwrap().to_string();
    lz.run(&format!(
        "backup task create name t db f path {repo_s} every 1h"
    ))
    .ok();
    let good = run_id(&lz.cmd(["--json", "backup", "task", "run", "t"]).run().ok());
    let sealed = std::fs::read(repo.join(&good).join("manifest.json")).unwrap();
    let intact = |lz: &Lazarus| {
        assert_eq!(
            std::fs::read(repo.join(&good).join("manifest.json")).unwrap(),
            sealed
        );
        lz.run(&format!("backup show {good}")).ok();
    };

    // A repository that stopped being a writable directory.
    let gone = lz.path("gone");
    lz.run(&format!(
        "backup task create name w db f path {}",
        gone.display()
    ))
    .ok();
    std::fs::remove_dir(&gone).unwrap();
    std::fs::write(&gone, b"now a file").unwrap();
    lz.run("backup task run w").fails(1).stderr_has("gone");
    let h = history(&lz, "w");
    assert_eq!(h[0]["status"], "failed");
    assert!(h[0]["reason"].as_str().unwrap().contains("gone"), "{h:?}");

    // A full disk: a 64 KiB tmpfs (skipped where mounting is not allowed).
    let small = lz.path("small");
    std::fs::create_dir_all(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&small)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if mounted {
        let mut con = redis::Client::open(format!("redis://127.0.0.1:{}", a.port))
            .unwrap()
            .get_connection()
            .unwrap();
        let big: String = (0..300_000)
            .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
            .collect();
        let _: () = redis::cmd("SET")
            .arg("big:incompressible")
            .arg(&big)
            .query(&mut con)
            .unwrap();
        lz.run(&format!(
            "backup task create name full db f path {}",
            small.display()
        ))
        .ok();
        lz.run("backup task run full")
            .fails(1)
            .stderr_has("No space left on device");
        let h = history(&lz, "full");
        assert!(
            h[0]["reason"].as_str().unwrap().contains("No space left"),
            "{h:?}"
        );
        assert!(files_under(&small).is_empty(), "{:?}", files_under(&small));
        let _ = Command::new("umount").arg(&small).status();
        let _: () = redis::cmd("DEL")
            .arg("big:incompressible")
            .query(&mut con)
            .unwrap();
    } else {
        eprintln!("skipped the full-disk case: cannot mount a tmpfs here");
    }
    intact(&lz);

    // The shell killed mid-run: found `interrupted` by the next command.
    slow_snapshots(a.port, 20_000);
    let mut child = spawn_lazarus(&lz, &["backup", "task", "run", "t"]);
    wait_for_partial(&repo);
    child.kill().unwrap();
    child.wait().unwrap();
    let h = history(&lz, "t");
    let last = h.last().unwrap();
    assert_eq!(last["status"], "interrupted", "{h:?}");
    no_partials(&repo);
    assert_eq!(
        std::fs::read_dir(&repo).unwrap().count(),
        1,
        "{:?}",
        files_under(&repo)
    );
    intact(&lz);

    // Two `backup due` at once run the task once. (It is due: the last success is over an
    // hour old as far as the configuration says.)
    let runs_before = history(&lz, "t").len();
    {
        let store = Store::new(lz.home().to_path_buf());
        let lock = store.lock().unwrap();
        let mut cl = lock.load().unwrap().unwrap();
        for r in cl.backups.runs.iter_mut() {
            r.started -= 2 * 3600 * 1000;
        }
        lock.save(&mut cl).unwrap();
    }
    let one = spawn_lazarus(&lz, &["backup", "due"]);
    let two = spawn_lazarus(&lz, &["backup", "due"]);
    let outs = [
        one.wait_with_output().unwrap(),
        two.wait_with_output().unwrap(),
    ];
    let text: Vec<String> = outs
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .collect();
    let ran = text.iter().filter(|t| t.contains("succeeded")).count();
    assert_eq!(ran, 1, "{text:?}");
    assert_eq!(history(&lz, "t").len(), runs_before + 1);

    // A shard killed mid-run.
    let child = spawn_lazarus(&lz, &["backup", "task", "run", "t"]);
    wait_for_partial(&repo);
    let pid: i32 = std::fs::read_to_string(c.nodes[&1].persistent_path.join(format!(
        "redis/db-{}/shard-{}/redis.pid",
        db.id, db.shards[0].id
    )))
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let h = history(&lz, "t");
    let last = h.last().unwrap();
    assert_eq!(last["status"], "failed", "{h:?}");
    let why = last["reason"].as_str().unwrap();
    assert!(
        why.contains("broke") || why.contains("closed the connection"),
        "{last}"
    );
    no_partials(&repo);
    intact(&lz);
}

/// While another shell streams a run of a database, `restart db` refuses before anything
/// stops, naming the run and its task. The restart
/// used to go ahead, and the run failed with `redis:N does not answer: broken pipe`,
/// naming no restart.
#[test]
fn a_restart_delete_or_restore_leaves_alone_a_database_another_shell_is_backing_up() {
    let World(lz, _guard, _rt, c) = World::with(1)
        .db("f", 1, false, Persistence::Snapshot)
        .installed();
    let db = c.database_by_name("f").unwrap().clone();
    let a = shard_addr(&c, &db, db.masters().next().unwrap().id).unwrap();
    let repo = lz.path("repo");
    lz.run(&format!(
        "backup task create name t db f path {}",
        repo.display()
    ))
    .ok();
    // A run to restore from, taken before the slow one.
    lz.run("backup task run t").ok();
    let done = history(&lz, "t")[0]["id"].as_str().unwrap().to_string();
    lz.run(&format!("restore task create name back db f backup {done}"))
        .ok();
    let pids = lz.ccs()["databases"].clone();
    // Slow enough (0.2 s a key) that the run is still streaming when the restart comes;
    // it is killed, not waited for.
    slow_snapshots(a.port, 200_000);
    let mut child = spawn_lazarus(&lz, &["backup", "task", "run", "t"]);
    wait_for_partial(&repo);
    let named = "`f` is being backed up by run `";
    lz.run("restart db f")
        .fails(1)
        .stderr_has(named)
        .stderr_has("of backup task `t` in another shell: nothing was stopped")
        .stderr_has("(`backup task history t`)");
    // Nor a delete, which would stop the shards the run streams from.
    lz.run("delete db f")
        .fails(1)
        .stderr_has(named)
        .stderr_has("in another shell: nothing was stopped");
    // Nor a restore, which would stop, fence and swap them.
    lz.run("restore task start back")
        .fails(1)
        .stderr_has(named)
        .stderr_has("of backup task `t` in another shell: nothing was changed");
    assert_eq!(
        lz.ccs()["databases"],
        pids,
        "the restart, the delete or the restore touched the database"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    slow_snapshots(a.port, 0);
    // The run's shell gone, its run is no longer streaming: the restart goes through.
    lz.run("restart db f").ok();
}

/// Evidence 4: `keep` and `prune` (with `dry_run`), `every` with `backup due`.
#[test]
fn keep_prune_and_due() {
    let World(lz, _guard, _rt, _c) = World::with(1)
        .db("k", 1, false, Persistence::Snapshot)
        .installed();
    let repo: PathBuf = lz.path("repo");
    lz.run(&format!(
        "backup task create name k db k path {} keep 2 every 1h",
        repo.display()
    ))
    .ok();
    lz.run("backup due").ok().stdout_has("succeeded");
    lz.run("backup due").ok().stdout_has("not due");
    lz.run("backup task run k").ok();
    lz.run("backup task run k").ok();
    let ids: Vec<String> = history(&lz, "k")
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    lz.run("backup task prune k dry_run")
        .ok()
        .stdout_has("Would remove")
        .stdout_has(&ids[0]);
    assert!(repo.join(&ids[0]).is_dir());
    lz.run("backup task prune k").ok().stdout_has(&ids[0]);
    assert!(!repo.join(&ids[0]).exists());
    assert!(repo.join(&ids[1]).is_dir() && repo.join(&ids[2]).is_dir());
    assert_eq!(history(&lz, "k").len(), 2);
    lz.run("backup task prune k")
        .ok()
        .stdout_has("Nothing to prune");
    lz.run("backup task delete k")
        .ok()
        .stdout_has("Kept its 2 run(s)");
    assert!(repo.join(&ids[2]).join("manifest.json").is_file());
    lz.run(&format!("backup show {}", ids[2])).ok();
    // `latest` names a run here as in `verify` and `restore`: the newest restore point.
    let latest = lz
        .cmd(["--json", "backup", "show", "latest"])
        .run()
        .ok()
        .json();
    assert_eq!(latest[0]["result"]["run"], ids[2].as_str(), "{latest:?}");
    // A run that is not there: the runs there are named as recent ones.
    lz.run("backup show nosuch").fails(1).stderr_has(&format!(
        "there is no backup run `nosuch` (recent runs: `{}`",
        ids[2]
    ));
}

/// An age key file the operator names is their input: a malformed one (not a key, no
/// key at all) is `usage` (exit 2), as wrong TLS material is; a missing one `not_found`.
/// Both are refused before anything is looked up or made.
#[test]
fn a_malformed_age_key_file_is_the_operators_input() {
    let lz = Lazarus::new();
    let bad = lz.path("bad.txt");
    std::fs::write(&bad, "not a key\n").unwrap();
    let none = lz.path("none.txt");
    std::fs::write(&none, "# no key yet\n").unwrap();
    let missing = lz.path("missing.txt");
    let repo = lz.path("repo");
    let cases = [
        (
            format!(
                "backup db x path {} encrypt {}",
                repo.display(),
                bad.display()
            ),
            2,
            "usage",
            format!(
                "the age recipients file `{}` line 1 is not an age public key",
                bad.display()
            ),
        ),
        (
            format!(
                "backup db x path {} encrypt {}",
                repo.display(),
                none.display()
            ),
            2,
            "usage",
            format!(
                "the age recipients file `{}` names no recipient",
                none.display()
            ),
        ),
        (
            format!(
                "backup db x path {} encrypt {}",
                repo.display(),
                missing.display()
            ),
            1,
            "not_found",
            format!(
                "the age recipients file `{}` does not exist",
                missing.display()
            ),
        ),
        (
            format!(
                "restore task create name r db x backup {}/latest identity {}",
                repo.display(),
                bad.display()
            ),
            2,
            "usage",
            format!(
                "the age identity file `{}` is not an age identity file",
                bad.display()
            ),
        ),
        (
            format!(
                "restore task create name r db x backup {}/latest identity {}",
                repo.display(),
                missing.display()
            ),
            1,
            "not_found",
            format!(
                "the age identity file `{}` does not exist",
                missing.display()
            ),
        ),
    ];
    for (line, code, kind, message) in cases {
        let docs = lz
            .cmd(["--json"])
            .stdin(&format!("{line}\n"))
            .run()
            .fails(code)
            .stderr_has(&message)
            .json();
        assert_eq!(docs[0]["kind"], kind, "{line}");
    }
    assert!(
        !lz.path("ccs.json").exists() && !repo.exists(),
        "nothing is made"
    );
}

/// A database whose replicas serve some masters' slots (one master killed and failed
/// over, another swapped with its replica by `CLUSTER FAILOVER`) is backed up from the
/// shards serving now. A run used to fail on the dead master ("does not answer"), or
/// pause the writes of a shard that was no longer the master; each group's file now holds
/// what its serving master holds, the writes taken after the failovers included.
#[test]
fn a_failed_over_database_is_taken_from_the_shards_serving_now() {
    for engine in engines() {
        engine.announce("a_failed_over_database_is_taken_from_the_shards_serving_now");
        failed_over(&engine);
    }
}

fn failed_over(engine: &Engine) {
    let World(lz, _guard, rt, c) = World::with(2)
        .redis_server(engine.path.clone())
        .db("swap", 3, true, Persistence::Aof)
        .installed();
    let db = c.database_by_name("swap").unwrap().clone();
    let addr = |id| shard_addr(&c, &db, id).unwrap();
    let replica_of = |m: u64| db.shards.iter().find(|s| s.master == Some(m)).unwrap().id;
    let masters: Vec<_> = db.masters().cloned().collect();
    let role = |id| {
        let a = addr(id);
        let text: String = rt.block_on(async {
            let mut con = lazarus::server::connect(&a, Duration::from_secs(2))
                .await
                .unwrap();
            redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut con)
                .await
                .unwrap()
        });
        text.contains("role:master")
    };
    let (m0, m1) = (masters[0].id, masters[1].id);
    let swapped = addr(replica_of(m0));
    let mut r = redis::Client::open(format!("redis://{}:{}", swapped.host, swapped.port))
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("CLUSTER").arg("FAILOVER").query(&mut r).unwrap();
    unsafe { libc::kill(masters[1].pid.unwrap() as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(30);
    for r in [replica_of(m0), replica_of(m1)] {
        while !role(r) {
            assert!(Instant::now() < deadline, "redis:{r} not promoted");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let endpoint = lazarus::db::endpoint(&c, &db);
    let client = redis::cluster::ClusterClient::new(vec![format!("redis://{endpoint}")]).unwrap();
    // The other nodes learn of the promotion by gossip: until then a client may be sent
    // to the dead master.
    let write = |i: u32| -> redis::RedisResult<()> {
        redis::cmd("SET")
            .arg(format!("after{i}"))
            .arg(i)
            .query(&mut client.get_connection()?)
    };
    for i in 0..200 {
        while let Err(e) = write(i) {
            assert!(Instant::now() < deadline, "after{i}: {e}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    let repo = lz.path("repo");
    let out = lz
        .cmd([
            "--json",
            "backup",
            "db",
            "swap",
            "path",
            repo.to_str().unwrap(),
        ])
        .run()
        .ok();
    let id = run_id(&out);
    let m = manifest(&lz, &id);
    for (i, master) in masters.iter().enumerate() {
        let s = &m["shards"][i];
        assert_eq!(s["shard"].as_u64(), Some(master.id), "{m}");
        let serving = if master.id == m0 || master.id == m1 {
            replica_of(master.id)
        } else {
            master.id
        };
        // Taken from a replica of the serving master when one is in sync.
        let expected_from = match master.id {
            x if x == m0 => m0,
            x if x == m1 => replica_of(m1),
            _ => replica_of(master.id),
        };
        assert_eq!(s["taken_from"].as_u64(), Some(expected_from), "{m}");
        let a = addr(serving);
        let live = rt.block_on(contents(&a.host, a.port));
        let port = serve_with(
            &engine.server().path,
            lz.home(),
            &repo.join(&id).join(s["file"].as_str().unwrap()),
        );
        let taken = rt.block_on(contents("127.0.0.1", port));
        let d = diff(&live, &taken);
        assert!(d.is_empty(), "redis:{}: {d:?}", master.id);
        assert_eq!(s["keys"].as_u64(), Some(live.len() as u64));
    }
}

/// A backup started while a master is failing over (killed, its replica not yet
/// promoted: that takes the node timeout) waits for the promotion, within bounds, as
/// `verify db` does, and the run holds every key written before the kill, the dead
/// master's taken from the replica that took its slots. It used to fail at once: the
/// dead master "does not answer".
#[test]
fn a_backup_started_mid_failover_waits_for_the_promotion() {
    let World(lz, _guard, rt, c) = World::with(2)
        .db("fo", 3, true, Persistence::Aof)
        .installed();
    let db = c.database_by_name("fo").unwrap().clone();
    let addr = |id| shard_addr(&c, &db, id).unwrap();
    let con = |id| {
        let a = addr(id);
        redis::Client::open(format!("redis://{}:{}", a.host, a.port))
            .unwrap()
            .get_connection()
            .unwrap()
    };
    let masters: Vec<_> = db.masters().cloned().collect();
    let dead = &masters[1];
    let promoted = db
        .shards
        .iter()
        .find(|s| s.master == Some(dead.id))
        .unwrap()
        .id;
    let before: Vec<_> = masters
        .iter()
        .map(|m| {
            let a = addr(m.id);
            rt.block_on(contents(&a.host, a.port))
        })
        .collect();
    assert!(before.iter().all(|k| !k.is_empty()), "sample data");
    // Every write the master took is on its replica before it dies.
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(10_000)
        .query(&mut con(dead.id))
        .unwrap();
    assert_eq!(acked, 1, "redis:{promoted} has redis:{}'s writes", dead.id);
    unsafe { libc::kill(dead.pid.unwrap() as i32, libc::SIGKILL) };
    let role: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut con(promoted))
        .unwrap();
    assert!(role.contains("role:slave"), "not yet promoted: {role}");

    let repo = lz.path("repo");
    let out = lz
        .cmd([
            "--json",
            "backup",
            "db",
            "fo",
            "path",
            repo.to_str().unwrap(),
        ])
        .run()
        .ok();
    let id = run_id(&out);
    let m = manifest(&lz, &id);
    for (i, master) in masters.iter().enumerate() {
        let s = &m["shards"][i];
        assert_eq!(s["shard"].as_u64(), Some(master.id), "{m}");
        if master.id == dead.id {
            assert_eq!(s["taken_from"].as_u64(), Some(promoted), "{m}");
        }
        let port = serve(lz.home(), &repo.join(&id).join(s["file"].as_str().unwrap()));
        let taken = rt.block_on(contents("127.0.0.1", port));
        let d = diff(&before[i], &taken);
        assert!(d.is_empty(), "redis:{}: {d:?}", master.id);
        assert_eq!(s["keys"].as_u64(), Some(before[i].len() as u64), "{m}");
    }
}

/// A backup of a sharded database with a master down and no replica to take its slots
/// over is refused at once, as `verify db` is, naming the database, the shard down and
/// its slots and the way on (it said only that the shard does not answer), and leaves no
/// run behind.
#[test]
fn a_backup_of_a_cluster_no_failover_can_mend_names_what_is_not_served() {
    let World(lz, _guard, _rt, c) = World::with(1)
        .db("split", 3, false, Persistence::Disabled)
        .installed();
    let db = c.database_by_name("split").unwrap();
    let dead = db.masters().nth(1).unwrap();
    let a = shard_addr(&c, db, dead.id).unwrap();
    unsafe { libc::kill(dead.pid.unwrap() as i32, libc::SIGKILL) };
    let repo = lz.path("repo");
    lz.run(&format!("backup db split path {}", repo.display()))
        .fails(1)
        .stderr_has(&format!(
            "db `split` is not served: redis:{} ({a}), slots {}, does not answer",
            dead.id,
            dead.slots.unwrap()
        ))
        .stderr_has("no replica of a master down answers")
        .stderr_has("`restart db split`");
    assert_eq!(files_under(&repo), Vec::<String>::new());
}

/// Two clusters share an `s3://` prefix, and run ids come from each cluster's own
/// allocator and clock, so both may form the same one. The second to claim it is refused
/// naming the other cluster, having written nothing (before, S3 was listed, then written:
/// both could write one run's objects, the manifest last written winning); and a
/// cluster's clean-up of a run of that id it recorded (its shell died) leaves the other
/// cluster's run whole (before, it removed every object of that id).
#[test]
fn two_clusters_sharing_an_s3_prefix_never_overwrite_nor_remove_each_others_runs() {
    let Some(s3) = common::s3::S3Server::start("shared") else {
        return;
    };
    let World(a, _guard_a, _rt_a, ca) = World::with(1)
        .env(s3.env())
        .db("f", 1, false, Persistence::Aof)
        .installed();
    let World(b, _guard_b, _rt_b, cb) = World::with(1)
        .env(s3.env())
        .db("f", 1, false, Persistence::Aof)
        .installed();
    assert_ne!(ca.cluster_id, cb.cluster_id);
    let url = "s3://shared/lz";
    let run = a.backup_run("f", Path::new(url));

    // B forms A's run id: its claim is refused, naming A, and changes nothing there.
    for (k, v) in s3.env() {
        std::env::set_var(k, v);
    }
    let repo = lazarus::backup::Repository::open(Path::new(url)).unwrap();
    let refused = match repo.begin(&run, cb.cluster_id) {
        Ok(_) => panic!("cluster B began A's run `{run}`"),
        Err(e) => e,
    };
    assert!(
        refused.contains(&format!(
            "run id `{run}` is taken in `{url}` by cluster {}",
            ca.cluster_id
        )),
        "{refused}"
    );

    // B recorded a run of that id whose shell died: the sweep of its next backup
    // command removes only what is B's.
    {
        let store = Store::new(b.home().to_path_buf());
        let lock = store.lock().unwrap();
        let mut c = lock.cluster().unwrap();
        let db = c.database_by_name("f").unwrap().id;
        c.backups.runs.push(lazarus::ccs::BackupRun {
            id: run.clone(),
            task: None,
            db,
            db_name: "f".into(),
            path: PathBuf::from(url),
            started: 0,
            took_ms: None,
            status: lazarus::ccs::RunStatus::Running,
            reason: None,
            keys: 0,
            bytes: 0,
            server_version: None,
            pause_us: None,
            safety_for: None,
        });
        lock.save(&mut c).unwrap();
    }
    b.run("backup task list").ok();
    assert_eq!(
        b.ccs()["backups"]["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == run.as_str())
            .unwrap()["status"],
        "interrupted"
    );
    let listed = a
        .cmd(["--json", "backup", "list", "path", url])
        .run()
        .ok()
        .json();
    let row = listed[0]["result"]["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run"] == run.as_str())
        .unwrap_or_else(|| panic!("A's run `{run}` is gone: {}", listed[0]))
        .clone();
    assert_eq!(row["restorable"], true, "{row}");
    a.run(&format!("verify db f against {url}/{run}")).ok();
}

/// Right after a restart a master whose replica took its slots over answers
/// `role:master` for a moment, claiming the slots with the config epoch it had, until the
/// cluster tells it otherwise. Held open here (the master forgets its replica, which then
/// takes its slots over: for 60 s it ignores what the cluster says of it), a backup used
/// to pause and snapshot that stale master, the configured one; it now goes by what the
/// cluster says, the slots' claim with the greater config epoch, and takes the run from
/// the replica serving them, with the writes it took. A database of one shard where two
/// answer as a master has no cluster to ask: the run is refused, naming both.
#[test]
fn a_master_answering_as_one_after_a_failover_is_not_taken_for_the_one_serving() {
    let World(lz, _guard, rt, c) = World::with(2)
        .db("win", 2, true, Persistence::Aof)
        .db("one", 1, true, Persistence::Aof)
        .installed();
    let db = c.database_by_name("win").unwrap().clone();
    let addr = |db: &lazarus::ccs::Database, id| shard_addr(&c, db, id).unwrap();
    let replica_of = |db: &lazarus::ccs::Database, m: u64| {
        db.shards.iter().find(|s| s.master == Some(m)).unwrap().id
    };
    let m0 = db.masters().next().unwrap().id;
    let r0 = replica_of(&db, m0);
    let con = |a: &lazarus::server::ShardAddr| {
        redis::Client::open(format!("redis://{}:{}", a.host, a.port))
            .unwrap()
            .get_connection()
            .unwrap()
    };
    let (mut old, mut new) = (con(&addr(&db, m0)), con(&addr(&db, r0)));
    let r0_id: String = redis::cmd("CLUSTER").arg("MYID").query(&mut new).unwrap();
    let _: () = redis::cmd("CLUSTER")
        .arg("FORGET")
        .arg(&r0_id)
        .query(&mut old)
        .unwrap();
    let _: () = redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .arg("TAKEOVER")
        .query(&mut new)
        .unwrap();
    let role = |c: &mut redis::Connection| -> String {
        let text: String = redis::cmd("INFO").arg("replication").query(c).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("role:"))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while role(&mut new) != "master" {
        assert!(Instant::now() < deadline, "redis:{r0} not promoted");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The replica serving the slots takes writes the old master never sees.
    let slots = db.masters().next().unwrap().slots.unwrap();
    let mut written = 0;
    for i in 0..2000 {
        let key = format!("after-takeover-{i}");
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&key)
            .query(&mut new)
            .unwrap();
        if slot >= slots.start && slot <= slots.end {
            let _: () = redis::cmd("SET").arg(&key).arg(i).query(&mut new).unwrap();
            written += 1;
        }
    }
    assert!(written > 0);
    assert_eq!(
        role(&mut old),
        "master",
        "the window closed before the backup"
    );
    let size = |c: &mut redis::Connection| -> u64 { redis::cmd("DBSIZE").query(c).unwrap() };
    let serving_keys = size(&mut new);
    assert_eq!(serving_keys, size(&mut old) + written);

    let repo = lz.path("repo");
    let id = lz.backup_run("win", &repo);
    let m = manifest(&lz, &id);
    let s = &m["shards"][0];
    assert_eq!(s["shard"].as_u64(), Some(m0), "{m}");
    assert_eq!(s["taken_from"].as_u64(), Some(r0), "{m}");
    assert_eq!(s["keys"].as_u64(), Some(serving_keys), "{m}");
    lz.run(&format!("verify db win against {id}")).ok();

    // One shard, two masters: nothing tells which one clients write to.
    let one = c.database_by_name("one").unwrap().clone();
    let (om, or) = (
        one.masters().next().unwrap().id,
        replica_of(&one, one.masters().next().unwrap().id),
    );
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut con(&addr(&one, or)))
        .unwrap();
    let refusal = format!(
        "cannot tell which shard serves redis:{om} ({})'s data: redis:{om} ({}), redis:{or} ({}) all answer as a master",
        addr(&one, om),
        addr(&one, om),
        addr(&one, or)
    );
    lz.run(&format!("backup db one path {}", repo.display()))
        .fails(1)
        .stderr_has(&refusal);
    lz.run(&format!("verify db one against {id}"))
        .fails(1)
        .stderr_has(&refusal);
    // Waiting would not settle it (no cluster will): the refusal says what does.
    let way_out = format!(
        "waiting will not change that (a replica promoted by hand stays a master): `restart db one` makes redis:{om} ({}) the master again and re-attaches redis:{or} ({}) as its replica",
        addr(&one, om),
        addr(&one, or)
    );
    lz.run(&format!("backup db one path {}", repo.display()))
        .fails(1)
        .stderr_has(&way_out)
        .stderr_lacks("try again in a moment");
    lz.run("restart db one").ok();
    lz.run(&format!("backup db one path {}", repo.display()))
        .ok();
    let _ = rt;
}
