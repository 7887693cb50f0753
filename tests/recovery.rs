//! End to end: databases built with Lazarus on real redis-server processes and loaded
//! through a client; every shard SIGKILLed and the home lost; then `recover list` and
//! `recover all` / `recover db` through the real binary, content compared key by key.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::data::{contents, diff};
use common::engine::{engines, Engine};
use common::procs::ProcessGuard;
use common::world::{after_disaster, build, config, picture, test_cluster};
use common::{runtime, Lazarus, World};
use lazarus::ccs::{shard_dir_under, Cluster, DbState, Persistence, Store, SHARD_IDENTITY_FILE};
use lazarus::db::shard_addr;

/// Writes `cluster` as the CCS of the home at `home` (an old shell's, in the drills).
fn install_at(home: &Path, cluster: &Cluster) {
    let mut c = cluster.clone();
    let lock = Store::new(home.to_path_buf()).lock().unwrap();
    lock.save(&mut c).unwrap();
}

fn stored(lz: &Lazarus) -> Cluster {
    Store::new(lz.home().to_path_buf()).load().unwrap().unwrap()
}

fn old_shard_dir(old: &Cluster, name: &str) -> PathBuf {
    let db = old.database_by_name(name).unwrap();
    let m = db.masters().next().unwrap();
    shard_dir_under(&old.nodes[&m.node].persistent_path, db.id, m.id)
}

fn state(lz: &Lazarus, name: &str) -> DbState {
    stored(lz).database_by_name(name).unwrap().state
}

fn assert_same(before: &common::data::Contents, after: &common::data::Contents, what: &str) {
    let d = diff(before, after);
    assert!(d.is_empty(), "{what}: {d:?}");
}

/// The runbook: a cluster built with Lazarus (two nodes; AOF, snapshot, 3-shard and
/// replicated databases) loses every shard to SIGKILL and its home; both machines are
/// replaced and their old disks mounted elsewhere. One piped script brings it all back.
#[test]
fn a_piped_runbook_brings_the_whole_cluster_back_identical() {
    for engine in engines() {
        engine.announce("a_piped_runbook_brings_the_whole_cluster_back_identical");
        runbook(&engine);
    }
}

fn runbook(engine: &Engine) {
    // The cluster's binary travels in its CCS backups, so the recovery runs it too.
    let World(lz, guard, rt, old) = World::with(2)
        .redis_server(engine.path.clone())
        .db("aof", 1, false, Persistence::Aof)
        .db("snap", 1, false, Persistence::Snapshot)
        .db("sharded", 3, false, Persistence::Aof)
        .db("replicated", 1, true, Persistence::Snapshot)
        .build();
    // The old shell's home wrote its CCS backups to every node.
    install_at(&lz.path("oldhome"), &old);
    let before = rt.block_on(picture(&old));
    guard.kill_all();
    std::fs::remove_dir_all(lz.path("oldhome")).unwrap();
    for id in [1, 2] {
        std::fs::rename(
            lz.path(&format!("old/node{id}")),
            lz.path(&format!("disk{id}")),
        )
        .unwrap();
    }
    // The replicated database's master lost its files: its replica's copy stands in.
    let replicated = old.database_by_name("replicated").unwrap();
    let master = replicated.masters().next().unwrap();
    let master_disk = lz.path(&format!("disk{}", master.node));
    std::fs::remove_dir_all(shard_dir_under(&master_disk, replicated.id, master.id)).unwrap();

    let script = format!(
        "# bring the cluster back from the old disks\n\
         cluster recover filename {d1}/ccs/ccs.json node_uid 1\n\
         node 1 recovery_path set {d1}\n\
         node 2 recovery_path set {d2}\n\
         recover list\n\
         recover all\n\
         status\n",
        d1 = lz.path("disk1").display(),
        d2 = lz.path("disk2").display()
    );
    let disks_before = tree(&lz.path("disk1"), &lz.path("disk2"));
    let out = lz.script(&script).ok();
    assert!(
        out.stdout.contains("ready: AOF") && out.stdout.contains("ready: snapshot"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("missing files"), "{}", out.stdout);
    assert!(
        out.stdout.contains(&format!(
            "(replica redis:{}'s copy)",
            replicated.shards[1].id
        )),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stdout.matches("Completed successfully").count(),
        4,
        "{}",
        out.stdout
    );
    // The snapshot databases' content is proved key by key; the AOF ones' commands are
    // replayed, and their streams' commands (not replayed) leave the proof to the key
    // counts, which the line says, naming the command.
    for name in ["snap", "replicated"] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.contains(&format!("`{name}`: content verified: "))
                    && l.contains(" keys, digest ")),
            "{name}: {}",
            out.stdout
        );
    }
    for name in ["aof", "sharded"] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.contains(&format!("`{name}`: content not verified: "))
                    && l.contains("`XADD` is not replayed")),
            "{name}: {}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains("PENDING"), "{}", out.stdout);
    let shard_rows: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with(' ') && l.contains(" redis:"))
        .collect();
    assert_eq!(shard_rows.len(), 7, "{}", out.stdout);
    assert!(
        shard_rows.iter().all(|l| l.trim_end().ends_with(" OK")),
        "{}",
        out.stdout
    );

    // Same endpoints, same contents, everything active.
    let new = stored(&lz);
    for db in old.databases.values() {
        assert_eq!(new.databases[&db.id].port, db.port);
        assert_eq!(new.databases[&db.id].state, DbState::Active);
    }
    let after = rt.block_on(picture(&new));
    for (shard, was) in &before {
        assert_same(was, &after[shard], &format!("redis:{shard}"));
    }

    // Run again: nothing left to do, nothing touched.
    lz.run("recover all")
        .ok()
        .stdout_has("No recoverable databases found");
    lz.run("recover db snap").ok().stdout_has("already active");
    lz.run("recover db snpa")
        .fails(1)
        .stderr_has("there is no database `snpa`, did you mean `snap`?");

    // The old disks are exactly as they were; every new shard holds real files.
    assert_eq!(tree(&lz.path("disk1"), &lz.path("disk2")), disks_before);
    for db in new.databases.values() {
        for s in &db.shards {
            let dir = new.nodes[&s.node].shard_dir(db.id, s.id);
            for name in ["dump.rdb", "appendonlydir"] {
                if let Ok(meta) = std::fs::symlink_metadata(dir.join(name)) {
                    assert!(!meta.file_type().is_symlink(), "{}", dir.display());
                }
            }
            // An AOF's parts were loaded through links while they were copied: the
            // copies took the links' places.
            if let Ok(parts) = std::fs::read_dir(dir.join("appendonlydir")) {
                for part in parts {
                    let part = part.unwrap().path();
                    let meta = std::fs::symlink_metadata(&part).unwrap();
                    assert!(meta.is_file(), "{}", part.display());
                }
            }
            assert!(!dir.join("lazarus-recovering").exists());
        }
    }

    // The shard directories' data files are hard links to the originals but for the incr
    // file each server appends to, its own (and the manifests, the shard's). The servers then write,
    // save and rewrite their AOFs: the old disks stay exactly as they were.
    use std::os::unix::fs::MetadataExt;
    let mut linked = 0;
    for db in new.databases.values() {
        for s in db.masters() {
            let dir = new.nodes[&s.node].shard_dir(db.id, s.id);
            if let Ok(meta) = std::fs::metadata(dir.join("dump.rdb")) {
                linked += usize::from(meta.nlink() > 1);
            }
            let aof = dir.join("appendonlydir");
            let Ok(manifest) = std::fs::read_to_string(aof.join("appendonly.aof.manifest")) else {
                continue;
            };
            let last_incr = manifest
                .lines()
                .filter(|l| l.ends_with("type i"))
                .filter_map(|l| l.split_whitespace().nth(1))
                .next_back()
                .unwrap()
                .to_string();
            assert_eq!(
                std::fs::metadata(aof.join(&last_incr)).unwrap().nlink(),
                1,
                "{}",
                aof.display()
            );
            let base = manifest.lines().find(|l| l.ends_with("type b")).unwrap();
            let base = base.split_whitespace().nth(1).unwrap();
            assert_eq!(
                std::fs::metadata(aof.join(base)).unwrap().nlink(),
                2,
                "{}",
                aof.display()
            );
            linked += 1;
        }
    }
    assert!(linked >= 6, "{linked} shards' files linked");
    // And the databases' lines said so.
    assert_eq!(
        out.stdout
            .matches("its files are hard links to the recovery path's")
            .count(),
        4,
        "{}",
        out.stdout
    );
    rt.block_on(async {
        for db in new.databases.values() {
            for m in db.masters() {
                let a = shard_addr(&new, db, m.id).unwrap();
                let mut con = common::data::connect_at(&a, 0).await;
                if db.shards.len() == 1 {
                    let _: () = redis::cmd("SET")
                        .arg("written-after-recovery")
                        .arg("x")
                        .query_async(&mut con)
                        .await
                        .unwrap();
                }
                let _: () = redis::cmd("SAVE").query_async(&mut con).await.unwrap();
                if db.config.persistence == Persistence::Aof {
                    let _: String = redis::cmd("BGREWRITEAOF")
                        .query_async(&mut con)
                        .await
                        .unwrap();
                    let deadline = Instant::now() + Duration::from_secs(30);
                    loop {
                        let info: String = redis::cmd("INFO")
                            .arg("persistence")
                            .query_async(&mut con)
                            .await
                            .unwrap();
                        let busy = info.lines().any(|l| {
                            l.trim_end() == "aof_rewrite_in_progress:1"
                                || l.trim_end() == "aof_rewrite_scheduled:1"
                        });
                        if !busy {
                            break;
                        }
                        assert!(Instant::now() < deadline, "rewrite in time");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    });
    assert_eq!(tree(&lz.path("disk1"), &lz.path("disk2")), disks_before);
    drop(guard);
}

/// Every file under the roots with its contents, mode and modification time.
fn tree(a: &Path, b: &Path) -> Vec<(PathBuf, Vec<u8>, u32, std::time::SystemTime)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![a.to_path_buf(), b.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            let mode = meta.permissions().mode();
            out.push((
                p.clone(),
                std::fs::read(&p).unwrap(),
                mode,
                meta.modified().unwrap(),
            ));
        }
    }
    out.sort();
    out
}

/// Flips the byte at the middle of `path`.
fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

/// Rewrites an RDB's version to `version`, with a valid CRC-64 trailer again.
fn set_rdb_version(path: &Path, version: u32) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[5..9].copy_from_slice(format!("{version:04}").as_bytes());
    let body = bytes.len() - 8;
    let crc = lazarus::persist::crc64(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

/// Writes an RDB 10 holding a hash `h` whose last listpack entry runs past the terminator
/// (which a load does not look at: the servers load it) and a string `k`.
fn write_damaged_value_rdb(path: &Path) {
    let mut lp = vec![19, 0, 0, 0, 4, 0];
    for item in [b"f", b"v", b"g", b"w"] {
        lp.extend([0x81, item[0], 2]);
    }
    lp.push(0xff);
    lp[15] = 0x85;
    let mut b = b"REDIS0010".to_vec();
    b.extend([16, 1, b'h', lp.len() as u8]);
    b.extend(&lp);
    b.extend([0, 1, b'k', 1, b'v', 0xff]);
    let crc = lazarus::persist::crc64(&b);
    b.extend(crc.to_le_bytes());
    std::fs::write(path, b).unwrap();
}

/// The newest incr file of an appendonlydir.
fn incr_file(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("appendonlydir"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".incr.aof"))
        .collect();
    files.sort();
    files.pop().expect("an incr file")
}

#[test]
fn damaged_sources_are_named_and_the_rest_comes_back() {
    let lz = Lazarus::new();
    let guard = ProcessGuard::new(lz.home());
    let rt = runtime();
    let mut old = test_cluster(lz.home(), 1);
    let snap = |n| config(n, 1, false, Persistence::Snapshot);
    rt.block_on(build(
        &mut old,
        vec![
            snap("good"),
            snap("flipped"),
            config("truncated", 1, false, Persistence::Aof),
            snap("gone"),
            snap("toonew"),
            snap("foreign"),
            snap("damagedvalue"),
        ],
    ));
    let before = rt.block_on(picture(&old));
    guard.kill_all();

    flip_byte(&old_shard_dir(&old, "flipped").join("dump.rdb"));
    let incr = incr_file(&old_shard_dir(&old, "truncated"));
    let len = std::fs::metadata(&incr).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&incr)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    let gone = old_shard_dir(&old, "gone");
    std::fs::remove_dir_all(gone.parent().unwrap()).unwrap();
    set_rdb_version(&old_shard_dir(&old, "toonew").join("dump.rdb"), 11);
    let identity = old_shard_dir(&old, "foreign").join(SHARD_IDENTITY_FILE);
    let text = std::fs::read_to_string(&identity).unwrap();
    let text = text.replace(
        &format!("\"cluster_id\": \"{}\"", old.cluster_id),
        "\"cluster_id\": \"4242\"",
    );
    std::fs::write(&identity, text).unwrap();
    write_damaged_value_rdb(&old_shard_dir(&old, "damagedvalue").join("dump.rdb"));

    let new = after_disaster(&old, lz.home());
    lz.install(&new);
    let list = lz.run("recover list").ok();
    let line = |name: &str| {
        let db = new.database_by_name(name).unwrap();
        let tag = format!("db:{} redis:{}", db.id, db.shards[0].id);
        list.stdout
            .lines()
            .find(|l| l.starts_with(&tag))
            .unwrap_or_else(|| panic!("no {tag}\n{}", list.stdout))
            .to_string()
    };
    assert!(line("good").contains("ready: snapshot"), "{}", list.stdout);
    assert!(
        line("damagedvalue").contains("ready: snapshot")
            && line("damagedvalue").contains("WARNING: it holds damaged values")
            && line("damagedvalue").contains("`h` in database 0 at offset 28"),
        "{}",
        list.stdout
    );
    assert!(
        line("flipped").contains("missing files: corrupted: `"),
        "{}",
        list.stdout
    );
    assert!(line("flipped").contains("at byte"), "{}", list.stdout);
    assert!(
        line("truncated").contains("corrupted: `"),
        "{}",
        list.stdout
    );
    assert!(
        line("gone").contains("storage location not found"),
        "{}",
        list.stdout
    );
    assert!(
        line("toonew").contains("incompatible: ") && line("toonew").contains("RDB version 11"),
        "{}",
        list.stdout
    );
    assert!(
        line("foreign").contains("foreign: ") && line("foreign").contains("4242"),
        "{}",
        list.stdout
    );

    let out = lz.run("recover all").fails(1);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(text.contains("`good`: Completed successfully"), "{text}");
    // A value damaged where the load does not look: it loads, and the line says so.
    assert!(
        text.contains("`damagedvalue`: Completed successfully (2 keys from snapshot)")
            && text.contains("WARNING: loaded with damaged values")
            && text.contains("`h` in database 0 at offset 28"),
        "{text}"
    );
    // No files found is no reason to come back EMPTY unasked (issue 9 item 4).
    assert!(
        text.contains("`gone`: failed: ")
            && text.contains("the database stays pending recovery")
            && text.contains("`recover db gone allow_empty`"),
        "{text}"
    );
    for name in ["flipped", "truncated", "toonew", "foreign", "gone"] {
        assert!(text.contains(&format!("`{name}`: failed: ")), "{text}");
        assert_eq!(state(&lz, name), DbState::PendingRecovery, "{name}");
    }
    assert!(out.stdout.contains("2 recovered, 5 failed"), "{text}");
    // The truncated AOF's parts were loaded through symlinks: the server refused them
    // (`aof-load-truncated no`) and never cut the original.
    assert_eq!(std::fs::metadata(&incr).unwrap().len(), len - 7);
    assert!(
        out.stderr.contains("5 of 7 databases failed to recover"),
        "{text}"
    );
    let json = lz
        .cmd(["--json", "recover", "db", "gone", "allow_empty"])
        .run()
        .ok()
        .json();
    let gone = &json[0]["result"]["recovered"][0];
    assert_eq!(gone["empty"].as_array().map(Vec::len), Some(1), "{json:?}");
    // Where the time went: its server started with nothing to load.
    assert!(gone["phases"]["load_ms"].as_u64() > Some(0), "{json:?}");
    assert_eq!(state(&lz, "gone"), DbState::Active);
    // Run again for scripts: only the damaged ones are left, and they fail again.
    let json = lz.cmd(["--json", "recover", "all"]).run().fails(1).json();
    assert_eq!(json[0]["ok"], false, "{json:?}");
    assert_eq!(
        json[0]["result"]["failed"].as_array().unwrap().len(),
        4,
        "{json:?}"
    );
    assert!(json[0]["result"]["recovered"]
        .as_array()
        .unwrap()
        .is_empty());
    let good = new.database_by_name("good").unwrap();
    let after = rt.block_on(picture(&new_only(&new, &["good"])));
    let id = good.masters().next().unwrap().id;
    assert_same(&before[&id], &after[&id], "good");

    // The damaged files are exactly as they were left: recovery only reads them.
    assert!(old_shard_dir(&old, "flipped").join("dump.rdb").exists());
    // A database the operator gives up on comes back empty, on request.
    lz.run("recover db only_configuration flipped")
        .ok()
        .stdout_has("configuration only: the database is EMPTY");
    assert_eq!(state(&lz, "flipped"), DbState::Active);
    drop(guard);
}

/// The flow a truncated AOF's line names, end to end: the fixed copy put in the damaged
/// one's place (the damaged one moved aside) and `recover db` brings back every key but
/// the one whose record was cut.
#[test]
fn a_truncated_aof_is_recovered_from_its_fixed_copy_put_in_its_place() {
    let World(lz, guard, rt, old) = World::with(1)
        .db("orders", 1, false, Persistence::Aof)
        .build();
    let db = old.database_by_name("orders").unwrap();
    let a = shard_addr(&old, db, db.masters().next().unwrap().id).unwrap();
    let mut before = rt.block_on(async {
        // The last record of the AOF: the one the cut takes.
        let mut con = common::data::connect(&a.host, a.port, 0).await;
        let _: () = redis::cmd("SET")
            .arg("cut:last")
            .arg("value")
            .query_async(&mut con)
            .await
            .unwrap();
        common::world::save_snapshots(&old).await;
        picture(&old).await
    });
    guard.kill_all();
    let master = *before.keys().next().unwrap();
    let cut = before
        .get_mut(&master)
        .unwrap()
        .remove(&(0, b"cut:last".to_vec()));
    assert!(cut.is_some(), "the key to cut was written");

    let aof = old_shard_dir(&old, "orders").join("appendonlydir");
    let incr = incr_file(&old_shard_dir(&old, "orders"));
    let len = std::fs::metadata(&incr).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&incr)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    let new = after_disaster(&old, lz.home());
    lz.install(&new);

    let way = format!(
        "move `{}` aside (never delete it: it keeps the bytes the copy cuts), put the copy at `{}`, then `recover db orders`",
        aof.display(),
        aof.display()
    );
    let fix = format!("`check file {} fix <dest>`", aof.display());
    let list = lz.run("recover list").ok();
    assert!(
        list.stdout.contains(&fix) && list.stdout.contains(&way),
        "{}",
        list.stdout
    );
    let refused = lz.run("recover db orders").fails(1);
    let text = format!("{}{}", refused.stdout, refused.stderr);
    assert!(text.contains(&fix) && text.contains(&way), "{text}");
    assert_eq!(state(&lz, "orders"), DbState::PendingRecovery);

    // The way, as the operator follows it.
    let copy = lz.path("appendonlydir.fixed");
    let fixed = lz
        .run(&format!(
            "check file {} fix {}",
            aof.display(),
            copy.display()
        ))
        .ok();
    assert!(
        fixed.stdout.contains(&format!(
            "to recover from it: move `{}` aside (never delete it: it keeps the bytes the copy cuts), put `{}` at `{}`, then `recover db <db>`",
            aof.display(),
            copy.display(),
            aof.display()
        )),
        "{}",
        fixed.stdout
    );
    let aside = lz.path("appendonlydir.damaged");
    std::fs::rename(&aof, &aside).unwrap();
    std::fs::rename(&copy, &aof).unwrap();
    lz.run("recover db orders")
        .ok()
        .stdout_has("Completed successfully");
    assert_eq!(state(&lz, "orders"), DbState::Active);
    let after = rt.block_on(picture(&new));
    assert_same(&before[&master], &after[&master], "orders");
    // The damaged original is where it was moved, whole.
    assert_eq!(
        std::fs::metadata(aside.join(incr.file_name().unwrap()))
            .unwrap()
            .len(),
        len - 7
    );
    drop(guard);
}

/// A script's `recover all` says why a database failed once: in its summary, not again
/// in its progress lines.
#[test]
fn a_scripts_recover_all_says_each_failure_once() {
    let World(lz, guard, _rt, old) = World::with(1)
        .db("gone", 1, false, Persistence::Snapshot)
        .build();
    guard.kill_all();
    let dir = old_shard_dir(&old, "gone");
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    lz.install(&after_disaster(&old, lz.home()));

    let out = lz.script("recover all\n").fails(1);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(
        text.matches("the database stays pending recovery").count(),
        1,
        "{text}"
    );
    assert!(out.stdout.contains("`gone`: failed: "), "{text}");
    // Progress still shows the database ended, and how.
    assert!(out.stderr.contains("gone: failed"), "{text}");
    drop(guard);
}

fn new_only(c: &Cluster, names: &[&str]) -> Cluster {
    let mut c = c.clone();
    c.databases
        .retain(|_, d| names.contains(&d.config.name.as_str()));
    c
}

#[test]
fn an_interrupted_recovery_is_finished_by_running_it_again() {
    let World(lz, guard, rt, old) = World::with(1)
        .db("first", 1, false, Persistence::Aof)
        .db("second", 1, false, Persistence::Snapshot)
        .build();
    let before = rt.block_on(picture(&old));
    guard.kill_all();
    let new = after_disaster(&old, lz.home());
    lz.install(&new);

    // Kill the shell once a shard server runs in a new directory: a server left running,
    // a shard directory half-filled, nothing marked active.
    let mut child = Command::new(env!("CARGO_BIN_EXE_lazarus"))
        .arg("--home")
        .arg(lz.home())
        .args(["recover", "all"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let markers = |c: &Cluster| {
        c.databases
            .values()
            .flat_map(|d| d.shards.iter().map(move |s| (d.id, s)))
            .any(|(db, s)| {
                c.nodes[&s.node]
                    .shard_dir(db, s.id)
                    .join("redis.pid")
                    .exists()
            })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !markers(&new) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let pending = stored(&lz)
        .databases
        .values()
        .filter(|d| d.state == DbState::PendingRecovery)
        .count();
    assert!(
        pending > 0,
        "the shell was killed only after recovery ended"
    );
    assert!(
        !guard.pids().is_empty(),
        "a shard server should be left running"
    );

    let out = lz.run("recover all").ok();
    assert!(
        out.stdout.matches("Completed successfully").count() >= 1,
        "{}",
        out.stdout
    );
    let after = rt.block_on(picture(&new));
    for (shard, was) in &before {
        assert_same(was, &after[shard], &format!("redis:{shard}"));
    }
    lz.run("recover all")
        .ok()
        .stdout_has("No recoverable databases found");
    drop(guard);
}

#[test]
fn only_configuration_takes_the_data_of_the_sync_source() {
    let World(lz, guard, rt, mut old) = World::with(1)
        .db("source", 1, false, Persistence::Snapshot)
        .db("plain", 1, false, Persistence::Aof)
        .build();
    let src = old.database_by_name("source").unwrap().clone();
    let endpoint = format!("127.0.0.1:{}", src.port);
    rt.block_on(async {
        let server = common::world::server();
        for name in ["early", "late"] {
            let mut follower = config(name, 1, false, Persistence::Snapshot);
            follower.sync_source = Some(endpoint.parse().unwrap());
            let req = lazarus::db::CreateDb {
                config: follower,
                port: None,
            };
            lazarus::db::create_db(&mut old, &server, req)
                .await
                .unwrap();
        }
    });
    let src_before = rt.block_on(async {
        let a = shard_addr(&old, &src, src.shards[0].id).unwrap();
        contents(&a.host, a.port).await
    });
    guard.kill_all();
    let new = after_disaster(&old, lz.home());
    lz.install(&new);
    let now_in = |name: &str| {
        let db = new.database_by_name(name).unwrap();
        let a = shard_addr(&new, db, db.shards[0].id).unwrap();
        rt.block_on(contents(&a.host, a.port))
    };

    // The source is still down: the follower comes back following it, empty, at once.
    let started = Instant::now();
    lz.run("recover db only_configuration early")
        .ok()
        .stdout_has("EMPTY until its sync source `127.0.0.1:");
    assert!(started.elapsed() < Duration::from_secs(20));
    lz.run("recover db source")
        .ok()
        .stdout_has("Completed successfully");
    lz.run("recover db late only_configuration")
        .ok()
        .stdout_has("full sync from `127.0.0.1:");
    assert_same(&src_before, &now_in("late"), "late");
    // The early one syncs as soon as its source is back.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !diff(&src_before, &now_in("early")).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_same(&src_before, &now_in("early"), "early");
    lz.run("recover db plain only_configuration")
        .ok()
        .stdout_has("EMPTY");
    assert!(now_in("plain").is_empty());
    drop(guard);
}

/// Files written by one engine recovered by the other: Redis 7.0's onto Valkey 8.1 load
/// (Valkey reads every older RDB version), content identical; Valkey 8.1's onto Redis 7.0
/// are refused as incompatible, naming the versions, and nothing is started.
#[test]
fn files_move_from_redis_to_valkey_and_newer_files_are_refused_by_older_servers() {
    let Some(valkey) = Engine::valkey() else {
        eprintln!("engine valkey: not tested (no valkey-server)");
        return;
    };
    let valkey_bin = valkey.path.clone().unwrap();
    for (from, to) in [(Engine::redis(), valkey.clone()), (valkey, Engine::redis())] {
        eprintln!("files of {} recovered by {}", from.name, to.name);
        let World(lz, guard, rt, old) = World::with(1)
            .redis_server(from.path.clone())
            .db("snap", 1, false, Persistence::Snapshot)
            .db("aof", 1, false, Persistence::Aof)
            .build();
        install_at(&lz.path("oldhome"), &old);
        rt.block_on(rewrite_then_write(&old, "aof"));
        let before = rt.block_on(picture(&old));
        let expiries_before = rt.block_on(expiries(&old, "snap"));
        let aof_expiries_before = rt.block_on(expiries(&old, "aof"));
        guard.kill_all();
        std::fs::remove_dir_all(lz.path("oldhome")).unwrap();
        std::fs::rename(lz.path("old/node1"), lz.path("disk1")).unwrap();
        let d1 = lz.path("disk1");
        lz.run(&format!(
            "cluster recover filename {}/ccs/ccs.json node_uid 1",
            d1.display()
        ))
        .ok();
        lz.run(&format!("node 1 recovery_path set {}", d1.display()))
            .ok();
        let target: Vec<String> = match &to.path {
            Some(p) => vec!["--redis-server".into(), p.display().to_string()],
            None => {
                // The recovered CCS names Valkey (the old cluster's binary): point it back.
                let redis = which_redis();
                vec!["--redis-server".into(), redis.display().to_string()]
            }
        };
        let run = |words: &[&str]| {
            let mut args = target.clone();
            args.extend(words.iter().map(|w| w.to_string()));
            lz.cmd(args).run()
        };
        if to.name == "valkey" {
            let out = run(&["recover", "all"]).ok();
            assert_eq!(
                out.stdout.matches("Completed successfully").count(),
                2,
                "{}",
                out.stdout
            );
            let after = rt.block_on(picture(&stored(&lz)));
            for (shard, was) in &before {
                assert_same(was, &after[shard], &format!("redis:{shard} on valkey"));
            }
            // Valkey runs them now.
            let pid = stored(&lz).databases.values().next().unwrap().shards[0]
                .pid
                .unwrap();
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
            assert_eq!(exe, std::fs::canonicalize(&valkey_bin).unwrap());
            // `status` names the engine by its own version, not the Redis one it mimics.
            let status = run(&["--json", "status", "shards"])
                .ok()
                .json()
                .pop()
                .unwrap();
            let shards = status["result"]["shards"].as_array().unwrap();
            assert!(
                shards
                    .iter()
                    .all(|s| s["engine"].as_str().unwrap().starts_with("valkey 8.")),
                "{status}"
            );
        } else {
            let out = run(&["recover", "list"]);
            assert!(
                out.stdout.contains("incompatible"),
                "{}\n{}",
                out.stdout,
                out.stderr
            );
            assert!(out.stdout.contains("`replay` can write"), "{}", out.stdout);
            let out = run(&["recover", "all"]).fails(1);
            assert!(
                !out.stdout.contains("Completed successfully"),
                "{}",
                out.stdout
            );
            assert_eq!(state(&lz, "snap"), DbState::PendingRecovery);
            // `replay`: the snapshot's keys written as commands into Redis 7.0, every
            // value identical, type by type, and every expiry to the millisecond.
            let out = run(&["recover", "db", "snap", "replay"]).ok();
            assert!(
                out.stdout.contains("snapshot replayed as commands"),
                "{}",
                out.stdout
            );
            assert!(out.stdout.contains("content verified"), "{}", out.stdout);
            let now = stored(&lz);
            let snap = now.database_by_name("snap").unwrap();
            let shard = snap.shards[0].id;
            let after = rt.block_on(common::data::contents_at(
                &shard_addr(&now, snap, shard).unwrap(),
            ));
            assert_same(&before[&shard], &after, "snap replayed onto redis");
            let recorded = rt.block_on(expiries(&now, "snap"));
            assert!(!recorded.is_empty());
            assert_eq!(
                recorded, expiries_before,
                "expiry times differ after replay"
            );
            let pid = snap.shards[0].pid.unwrap();
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
            assert_eq!(exe, std::fs::canonicalize(which_redis()).unwrap());
            // The AOF: its RDB 11/12 base's keys as RESTOREs, then its incremental
            // commands as they are, proven against the files' digest.
            let out = run(&["recover", "db", "aof", "replay"]).ok();
            assert!(
                out.stdout.contains("AOF replayed as commands"),
                "{}",
                out.stdout
            );
            assert!(out.stdout.contains("content verified"), "{}", out.stdout);
            let now = stored(&lz);
            let aof = now.database_by_name("aof").unwrap();
            let shard = aof.shards[0].id;
            let after = rt.block_on(common::data::contents_at(
                &shard_addr(&now, aof, shard).unwrap(),
            ));
            assert_same(&before[&shard], &after, "aof replayed onto redis");
            let recorded = rt.block_on(expiries(&now, "aof"));
            assert_eq!(
                recorded, aof_expiries_before,
                "expiry times differ after the AOF replay"
            );
        }
        drop(guard);
    }
}

/// Rewrites the AOF of database `name`'s one master (its keys go into an RDB base), then
/// changes some of them and adds others, so the AOF holds both a base and commands.
async fn rewrite_then_write(c: &Cluster, name: &str) {
    let db = c.database_by_name(name).unwrap();
    let a = shard_addr(c, db, db.shards[0].id).unwrap();
    let mut con = common::data::connect_at(&a, 0).await;
    let _: redis::Value = redis::cmd("BGREWRITEAOF")
        .query_async(&mut con)
        .await
        .unwrap();
    common::data::wait_for_persistence(
        &mut con,
        |info| {
            info.contains("aof_rewrite_in_progress:0") && info.contains("aof_rewrite_scheduled:0")
        },
        Duration::from_secs(30),
        "the AOF rewrite did not end",
    )
    .await;
    let tag = format!("{name}0");
    let _: () = redis::pipe()
        .cmd("SET")
        .arg(format!("{tag}:s:1"))
        .arg("changed")
        .cmd("HDEL")
        .arg(format!("{tag}:h"))
        .arg("f1")
        .cmd("PEXPIRE")
        .arg(format!("{tag}:l"))
        .arg(86_400_000)
        .cmd("DEL")
        .arg(format!("{tag}:s:2"))
        .cmd("ZINCRBY")
        .arg(format!("{tag}:z"))
        .arg(2)
        .arg("one")
        .atomic()
        .query_async(&mut con)
        .await
        .unwrap();
    let mut three = common::data::connect_at(&a, 3).await;
    let _: () = redis::pipe()
        .cmd("SET")
        .arg("after-rewrite")
        .arg("x")
        .arg("PX")
        .arg(5_000_000)
        .cmd("RPUSH")
        .arg(format!("{tag}:l"))
        .arg("e")
        .query_async(&mut three)
        .await
        .unwrap();
}

/// Every key with a TTL in database `name`'s masters: its absolute expiry in ms
/// (`PEXPIRETIME`), by logical db and key.
async fn expiries(c: &Cluster, name: &str) -> BTreeMap<(u32, Vec<u8>), i64> {
    let db = c.database_by_name(name).unwrap();
    let mut out = BTreeMap::new();
    for m in db.masters() {
        let a = shard_addr(c, db, m.id).unwrap();
        for logical in 0..16u32 {
            let mut con = common::data::connect_at(&a, logical).await;
            let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
                .arg("*")
                .query_async(&mut con)
                .await
                .unwrap();
            for key in keys {
                let at: i64 = redis::cmd("PEXPIRETIME")
                    .arg(&key)
                    .query_async(&mut con)
                    .await
                    .unwrap();
                if at > 0 {
                    out.insert((logical, key), at);
                }
            }
        }
    }
    out
}

fn which_redis() -> PathBuf {
    lazarus::server::RedisServer::locate(None, None)
        .expect("redis-server on PATH")
        .path
}

/// `replay` into a sharded database: a Redis Cluster master takes writes only for the
/// slots it serves, so the keys go in once the slot map is formed (before, every write
/// was refused `CLUSTERDOWN`), and the proof holds for every master.
#[test]
fn a_sharded_database_is_replayed_once_its_slot_map_is_formed() {
    let World(lz, guard, rt, old) = World::with(1)
        .db("orders", 2, false, Persistence::Snapshot)
        .build();
    let before = rt.block_on(picture(&old));
    guard.kill_all();
    // Files Redis 7.0 cannot load: only `replay` brings them back.
    let db = old.database_by_name("orders").unwrap();
    for m in db.masters() {
        let dir = shard_dir_under(&old.nodes[&m.node].persistent_path, db.id, m.id);
        common::data::make_rdb_11(&dir.join("dump.rdb"));
    }
    let new = after_disaster(&old, lz.home());
    lz.install(&new);
    lz.run("recover db orders replay")
        .ok()
        .stdout_has("replayed as commands")
        .stdout_has("content verified");
    let after = rt.block_on(picture(&stored(&lz)));
    assert_eq!(before.len(), 2);
    for (shard, was) in &before {
        assert_same(was, &after[shard], &format!("redis:{shard} replayed"));
    }
    drop(guard);
}

/// Issue 16: a file validated earlier in a script is not read again after `recover` has
/// hard-linked it into a shard directory (the link moves its change time, nothing else),
/// and the original is untouched.
#[test]
fn a_file_validated_before_recovery_links_it_is_still_remembered() {
    let World(lz, guard, rt, old) = World::with(1)
        .db("snap", 1, false, Persistence::Snapshot)
        .build();
    let before = rt.block_on(picture(&old));
    guard.kill_all();
    let rdb = old_shard_dir(&old, "snap").join("dump.rdb");
    let new = after_disaster(&old, lz.home());
    lz.install(&new);
    // Files changed in the last 2 s are never remembered: let the save age.
    std::thread::sleep(Duration::from_millis(2100));
    let bytes = std::fs::read(&rdb).unwrap();
    let out = lz
        .script(&format!(
            "check file {p}\nrecover db snap\ncheck file {p}\n",
            p = rdb.display()
        ))
        .ok();
    assert!(
        out.stdout.contains("Completed successfully"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("its files are hard links to the recovery path's"),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stdout
            .matches("earlier in this run; unchanged since")
            .count(),
        1,
        "{}",
        out.stdout
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&rdb).unwrap().nlink(), 2);
    assert_eq!(std::fs::read(&rdb).unwrap(), bytes);
    let after = rt.block_on(picture(&stored(&lz)));
    for (shard, was) in &before {
        assert_same(was, &after[shard], &format!("redis:{shard}"));
    }
    drop(guard);
}

/// A Valkey 8 master's RDB is one a Redis 7.0 replica cannot load: `recover` refuses such
/// a pair before any port moves or any shard starts (as `create db` and `restart db`
/// do), naming both engines and versions, where it used to start the master and wait
/// for a first sync that never came. Once the nodes' binaries pair again, it recovers.
#[test]
fn recover_refuses_a_replica_that_cannot_load_its_masters_rdb() {
    let Some(valkey) = Engine::valkey() else {
        eprintln!("engine valkey: not tested (no valkey-server)");
        return;
    };
    let valkey_bin = valkey.path.clone().unwrap();
    let World(lz, guard, rt, old) = World::with(2)
        .db("pair", 1, true, Persistence::Snapshot)
        .build();
    let before = rt.block_on(picture(&old));
    guard.kill_all();
    let new = after_disaster(&old, lz.home());
    lz.install(&new);
    let master = new
        .database_by_name("pair")
        .unwrap()
        .masters()
        .next()
        .unwrap()
        .node;
    lz.run(&format!(
        "node {master} redis_server set {}",
        valkey_bin.display()
    ))
    .ok();
    let ccs = std::fs::read(lz.path("ccs.json")).unwrap();
    let port = new.nodes[&master].port_range.hi;
    for line in [
        "recover all",
        &format!("recover db pair port {port} free_port"),
    ] {
        let started = Instant::now();
        lz.run(line)
            .fails(1)
            .stderr_has(&format!("a master on node:{master} (valkey 8."))
            .stderr_has("which writes RDB version 11) with a replica on node:")
            .stderr_has("(redis 7.0.")
            .stderr_has("which loads RDB version 10 and older)");
        assert!(started.elapsed() < Duration::from_secs(10), "{line}");
        assert_eq!(std::fs::read(lz.path("ccs.json")).unwrap(), ccs, "{line}");
        assert!(guard.pids().is_empty(), "{line}: a shard was started");
        assert_eq!(state(&lz, "pair"), DbState::PendingRecovery);
    }
    // The replica's node given the master's engine: the pair loads, and comes back.
    let replica = 3 - master;
    lz.run(&format!(
        "node {replica} redis_server set {}",
        valkey_bin.display()
    ))
    .ok();
    lz.run("recover all")
        .ok()
        .stdout_has("Completed successfully");
    let after = rt.block_on(picture(&stored(&lz)));
    for (shard, was) in &before {
        assert_same(was, &after[shard], &format!("redis:{shard}"));
    }
    drop(guard);
}
